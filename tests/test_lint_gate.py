"""A rule base that fails lint does not run by accident (issue #16 item 1): the commands that evaluate refuse it
(exit 2, the findings listed with file:line); --allow-lint-errors runs it and marks the output; a clean result is
cached on disk (only a clean mark), and any change to the rules lints again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO
from radiopal.cli import main

DEMO = str(REPO / "examples" / "patient-mcrpc.yaml")


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("RADIOPAL_CACHE_DIR", str(cache))
    return cache


def _failing_lint(tmp_path: Path) -> Path:
    """The shipped rules with the zoledronic acid 3.5 mg band widened down to 45 mL/min, over the 3.3 mg band (40-49):
    at a CrCl of 47 two doses apply - lint's `dose-overlap`, an error - while the loader alone accepts the files (the
    issue's example: it used to answer 3.3 mg without a word)."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    path = rules / "bone-health.yaml"
    text = path.read_text(encoding="utf-8")
    band = ('        - {fact: crcl, op: ">=", threshold: zoledronic_crcl_3_5mg_min}\n'
            '        - {fact: crcl, op: "<=", threshold: zoledronic_crcl_3_5mg_max}')
    assert text.count(band) == 1
    widened = band.replace("threshold: zoledronic_crcl_3_5mg_min", 'value: 45, unit: "mL/min"')
    path.write_text(text.replace(band, widened), encoding="utf-8")
    return rules


@pytest.mark.parametrize("command", [
    ["recommend", DEMO], ["explain", DEMO], ["questionnaire", DEMO], ["test", str(REPO / "tests" / "scenarios")],
])
def test_a_rule_base_with_lint_errors_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 command: list[str]):
    rules = _failing_lint(tmp_path)
    assert main([*command, "--rules", str(rules)]) == 2
    err = capsys.readouterr().err
    assert "fails lint" in err and "bone-health.yaml:" in err and "dose-overlap" in err
    assert "Traceback" not in err


def test_diff_refuses_either_side_that_fails_lint(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rules = _failing_lint(tmp_path)
    assert main(["diff", str(REPO / "rules"), str(rules)]) == 2
    assert "fails lint" in capsys.readouterr().err


def test_allow_lint_errors_runs_it_and_marks_every_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rules = _failing_lint(tmp_path)
    assert main(["recommend", DEMO, "--rules", str(rules), "--allow-lint-errors"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rulebase"]["failed_lint"] >= 1
    assert main(["recommend", DEMO, "--rules", str(rules), "--allow-lint-errors", "--format", "text"]) == 0
    assert "rule base failed lint" in capsys.readouterr().out


def test_the_shipped_rules_pass_and_a_clean_result_is_cached(private_cache: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["recommend", DEMO]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "failed_lint" not in out["rulebase"]
    marks = list(private_cache.glob("lint-clean-*"))
    assert len(marks) == 1
    from radiopal.lintgate import lint_gate

    assert lint_gate().cached is True
    assert lint_gate(allow_errors=True).failed is False


def test_a_changed_rule_base_is_linted_again(tmp_path: Path):
    from radiopal.errors import RulebaseError
    from radiopal.lintgate import lint_gate

    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    assert lint_gate(rules).failed is False
    bad = _failing_lint(tmp_path / "other")
    with pytest.raises(RulebaseError, match="fails lint"):
        lint_gate(bad)
