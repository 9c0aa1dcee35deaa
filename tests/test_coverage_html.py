"""`radiopal test --coverage-html FILE` (issue #16 item 5): one self-contained page showing, in each rule file's text,
the rules no scenario fired and the condition branches no scenario saw both met and not met."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO
from radiopal.cli import main

SCENARIOS = REPO / "tests" / "scenarios"


def _rows(page: str) -> dict[str, str]:
    """Source-table row id (f{file}-L{line}) → the row's HTML."""
    return {m.group(1): m.group(0) for m in re.finditer(r'<tr id="(f\d+-L\d+)"[^>]*>.*?</tr>', page, re.S)}


def test_the_page_marks_what_the_scenarios_never_exercise(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    import json

    page_path, data_path = tmp_path / "coverage.html", tmp_path / "coverage.json"
    scenarios = sorted(str(p) for p in SCENARIOS.glob("chemo-0*.yaml"))
    assert main(["test", *scenarios, "-q", "--coverage-html", str(page_path), "--coverage-out", str(data_path)]) == 0
    assert f"coverage page written to {page_path}" in capsys.readouterr().out
    page = page_path.read_text(encoding="utf-8")
    data = json.loads(data_path.read_text(encoding="utf-8"))
    rows = _rows(page)
    files = {name: f"f{i}" for i, name in enumerate(re.findall(r'<section id="f\d+" aria-label="([^"]+)"', page))}
    by_key = {r["rule"]: r for r in data["rules"]}
    fired = [r for r in data["rules"] if r["fired"]]
    never = [r for r in data["rules"] if not r["fired"]]
    assert fired and never
    for rule in never:  # the first line of every never-fired rule is shaded
        row = rows[f"{files[rule['file']]}-L{rule['line']}"]
        assert 'class="nofire' in row, rule["rule"]
    for rule in fired:
        assert "nofire" not in rows[f"{files[rule['file']]}-L{rule['line']}"], rule["rule"]
    # A condition branch of a fired rule that was never seen both ways is marked on its own line, saying what is missing.
    partial = next(r for r in fired if any(not c["covered"] for c in r["conditions"]))
    node = next(c for c in partial["conditions"] if not c["covered"])
    row = rows[f"{files[partial['file']]}-L{node['line']}"]
    assert "gap" in row and node["id"] in row
    assert any(word in row for word in ("never met", "never not met", "only unknown"))
    assert by_key[partial["rule"]]["conditions_covered"] < len(partial["conditions"])
    # Self-contained: no script, no external asset, the summary figures as computed.
    assert "<script" not in page and not re.search(r'(src|href)="https?://', page)
    summary = data["summary"]
    assert f"{summary['rules_fired']}/{summary['rules']} ({summary['rule_coverage']}%)" in page
    assert "decision support for clinicians, not a prescriber" in page


def test_an_unwritable_page_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    target = tmp_path / "missing-folder" / "sub" / "coverage.html"
    (tmp_path / "missing-folder").write_text("a file, not a folder", encoding="utf-8")
    code = main(["test", str(SCENARIOS / "chemo-01-cisplatin-crcl-60.yaml"), "-q", "--coverage-html",
                 str(target)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "coverage.html" in err
