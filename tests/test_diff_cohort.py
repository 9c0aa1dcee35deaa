"""The impact of a rule-base change on a population (issue #16 item 4): raise the ELIG-GEN-10 platelet floor from 60 to
75 ×10^9/L in a copy of the rules, run `radiopal diff OLD NEW --cohort` over a synthetic cohort, and the number of
patients whose Sr-89 goes from eligible to contraindicated equals the count computed independently here: patients
with Sr-89 eligible under the shipped rules and current platelets from 60 up to (not including) 75."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import radiopal
from conftest import REPO
from radiopal.cli import main
from radiopal.synth import generate

pytest.importorskip("pyarrow", reason="the cohort job needs the cohort extra: pip install 'radiopal[cohort]'")


def _raised_floor(tmp_path: Path) -> Path:
    """The shipped rules with the beta-emitter platelet floor raised from 60 to 75 in its one place, the named
    threshold plt_floor_beta (ELIG-GEN-10 and every rule sharing the floor follow it)."""
    rules = tmp_path / "rules-75"
    shutil.copytree(REPO / "rules", rules)
    path = rules / "thresholds.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("  plt_floor_beta:\n")
    at = text.index("    value: 60\n", start)
    path.write_text(text[:at] + "    value: 75\n" + text[at + len("    value: 60\n"):], encoding="utf-8")
    return rules


def test_diff_over_a_cohort_counts_the_transitions_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    patients = [p.document for p in generate(400, seed=11, bad_fraction=0.0, missing_fraction=0.0)]
    cohort = tmp_path / "cohort.jsonl"
    cohort.write_text("".join(json.dumps(d) + "\n" for d in patients), encoding="utf-8")
    shipped = radiopal.load_rulebase()
    expected = set()
    for document in patients:
        result = shipped.evaluate(document)
        plt = result.facts.get("plt_current")
        if result.decision("sr89").status == "eligible" and plt is not None and plt.known and 60 <= plt.value < 75:
            expected.add(document["patient_id"])
    assert expected, "the synthetic cohort reaches platelets between 60 and 75"
    html = tmp_path / "impact.html"
    code = main(["diff", str(REPO / "rules"), str(_raised_floor(tmp_path)), "--cohort", str(cohort), "--serial",
                 "--format", "json", "--html", str(html)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)["cohort"]
    row = next(t for t in report["transitions"] if (t["therapy"], t["from"], t["to"]) == ("sr89", "eligible",
                                                                                             "contraindicated"))
    assert row["patients"] == len(expected)
    assert set(row["examples"]) <= expected and len(row["examples"]) == min(5, len(expected))
    assert report["patients"] == 400 and report["changed_patients"] >= len(expected)
    page = html.read_text(encoding="utf-8")
    assert "<svg" in page and "sr89: eligible → contraindicated" in page and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
