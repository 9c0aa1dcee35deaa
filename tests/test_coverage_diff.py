"""Rule and condition coverage of scenarios (`radiopal test --coverage`) and the version impact diff (`radiopal diff`),
on a tiny rule base and three small scenarios written here, so the numbers are known exactly."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from conftest import BASE_PATIENT, PLATELET_FLOOR, REPO, rule_items, write_rulebase
from radiopal.api import load_rulebase
from radiopal.cli import main
from radiopal.coverage import compute_coverage, render_coverage, report_coverage
from radiopal.diff import diff_rulebases
from radiopal.scenarios import run_scenarios

RULES = """\
# yaml-language-server: $schema=../kb/schemas/rulefile.schema.json
area: demo
version: "1"
rules:
""" + rule_items(PLATELET_FLOOR) + """\
  - id: ELIG-SR-01
    title: Sr-89 for prostate cancer with enough platelets
    version: 1
    strength: moderate
    verification: V-sec
    sources: [metastron_uspi]
    therapies: [sr89]
    when:
      all:
        - {fact: plt_current, op: ">=", value: 100, unit: "10^9/L"}
        - {fact: site, op: "==", value: prostate}
    then: {status: eligible}
  - id: BHA-02
    variant: e
    title: Zoledronic acid below CrCl 30
    version: 1
    strength: strong
    verification: V
    sources: [zometa_label]
    therapies: [zoledronic_acid]
    when: {fact: crcl, op: "<", value: 30, unit: "mL/min"}
    then: {status: contraindicated}
  - id: DATA-06
    variant: demo
    title: Platelets needed
    version: 1
    strength: strong
    verification: V
    sources: [contract]
    therapies: [sr89]
    requires: [plt_current]
    then: {status: insufficient_data}
"""


def scenario(folder: Path, name: str, platelets: float, expected: str) -> Path:
    doc = copy.deepcopy(BASE_PATIENT)
    doc["patient_id"] = name.upper()
    doc["labs"]["platelets"]["value"] = platelets
    doc["expected"] = {"decisions": {"sr89": {"status": expected}}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def suite(tmp_path: Path) -> tuple[Path, Path]:
    rules = write_rulebase(tmp_path / "rules", RULES)
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    scenario(scenarios, "plt-210", 210, "eligible")
    scenario(scenarios, "plt-50", 50, "contraindicated")
    scenario(scenarios, "plt-80", 80, "not_indicated")
    return rules, scenarios


def by_rule(data: dict) -> dict[str, dict]:
    return {r["rule"]: r for r in data["rules"]}


def test_coverage_counts_the_scenarios_that_fired_each_rule_and_lists_the_rules_never_fired(suite):
    rules, scenarios = suite
    rb = load_rulebase(rules)
    data = compute_coverage(rb, run_scenarios([scenarios], rb))
    rows = by_rule(data)
    assert data["scenarios"] == 3
    assert rows["ELIG-GEN-10"]["fired"] == 1 and rows["ELIG-SR-01"]["fired"] == 1
    assert data["never_fired"] == ["BHA-02/e", "DATA-06/demo"]
    assert data["summary"]["rules_fired"] == 2 and data["summary"]["rule_coverage"] == 50.0
    assert sorted(data["per_scenario"][str(scenarios / "plt-50.yaml")]) == ["ELIG-GEN-10"]


def test_a_condition_counts_as_covered_only_when_seen_both_met_and_not_met(suite):
    rules, scenarios = suite
    rb = load_rulebase(rules)
    rows = by_rule(compute_coverage(rb, run_scenarios([scenarios], rb)))
    floor = {c["id"]: c for c in rows["ELIG-GEN-10"]["conditions"]}
    assert floor["when"]["covered"] and floor["when"]["met"] == 1 and floor["when"]["not_met"] == 2
    gate = {c["id"]: c for c in rows["ELIG-SR-01"]["conditions"]}
    assert gate["when.all[0]"]["covered"]
    assert not gate["when.all[1]"]["covered"] and gate["when.all[1]"]["not_met"] == 0  # every scenario is prostate
    crcl = rows["BHA-02/e"]["conditions"][0]
    assert (crcl["met"], crcl["not_met"], crcl["covered"]) == (0, 3, False)
    requirement = {c["id"]: c for c in rows["DATA-06/demo"]["conditions"]}["requires[0]"]
    assert (requirement["met"], requirement["not_met"]) == (0, 3)  # platelets were never missing


def test_coverage_writes_json_and_prints_a_readable_table(suite, tmp_path, capsys):
    rules, scenarios = suite
    out = tmp_path / "out" / "coverage.json"
    assert main(["test", "-q", "--rules", str(rules), str(scenarios), "--coverage-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Rule coverage: 2/4 rules fired in 3 scenarios (50.0%)" in printed
    assert "Never fired (2):" in printed and "BHA-02/e" in printed
    assert "when.all[1] (never not met)" in printed
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["summary"]["rules"] == 4 and data["rulebase"]["hash"].startswith("sha256:")


def test_coverage_of_the_shipped_rules_on_shipped_scenarios_evaluates_every_rule(tmp_path):
    folder = REPO / "tests" / "scenarios"
    paths = sorted(folder.glob("*.yaml"))[:3]
    assert paths, "tests/scenarios/ ships with the repository"
    rb = load_rulebase()
    data = report_coverage(rb, run_scenarios(paths, rb), tmp_path / "c.json", None)
    assert data["scenarios"] == len(paths) and data["summary"]["rules"] == len(rb.rules)
    assert data["summary"]["rules_fired"] > 0 and data["summary"]["conditions"] > 0
    assert render_coverage(data).startswith("Rule coverage:")


def test_identical_rule_bases_diff_to_no_change_and_exit_0(suite, capsys):
    rules, scenarios = suite
    assert main(["diff", str(rules), str(rules), "--scenarios", str(scenarios)]) == 0
    out = capsys.readouterr().out
    assert "no change (identical rule bases; 3 scenarios, no decision changes)" in out


def changed_copy(rules: Path, tmp_path: Path, *, bump: bool) -> Path:
    text = (rules / "r0.yaml").read_text(encoding="utf-8")
    text = text.replace('op: "<", value: 60, unit: "10^9/L"}', 'op: "<", value: 40, unit: "10^9/L"}')
    if bump:
        text = text.replace("    version: 1\n    strength: strong\n    verification: V-sec",
                            "    version: 2\n    strength: strong\n    verification: V-sec", 1)
        text = text.replace('version: "1"', 'version: "2"', 1)
    head, tail = text.split("  - id: BHA-02", 1)
    text = head + "  - id: BHA-02" + tail.replace("variant: e", "variant: f")
    new = tmp_path / "new-rules"
    new.mkdir()
    (new / "r0.yaml").write_text(text, encoding="utf-8")
    return new


def test_a_changed_threshold_is_shown_side_by_side_with_the_decisions_it_changes(suite, tmp_path):
    rules, scenarios = suite
    new = changed_copy(rules, tmp_path, bump=True)
    report = diff_rulebases(load_rulebase(rules), load_rulebase(new), [scenarios])
    assert [r.key for r in report.added] == ["BHA-02/f"] and [r.key for r in report.removed] == ["BHA-02/e"]
    (change,) = report.changed
    assert change.key == "ELIG-GEN-10" and change.fields == ["version", "when"] and change.version_raised
    (threshold,) = change.thresholds
    assert (threshold["fact"], threshold["old"], threshold["new"]) == ("plt_current", "< 60 10^9/L", "< 40 10^9/L")
    (decision,) = report.decisions
    assert decision["patient_id"] == "PLT-50" and decision["therapy"] == "sr89"
    assert decision["old"]["status"] == "contraindicated" and decision["old"]["rules"] == ["ELIG-GEN-10"]
    assert decision["new"]["status"] == "not_indicated" and decision["new"]["rules"] == []
    text = report.to_text()
    assert "plt_current: < 60 10^9/L → < 40 10^9/L" in text
    assert "PLT-50" in text and "contraindicated → not_indicated" in text and "old: ELIG-GEN-10" in text


def test_a_changed_rule_whose_version_was_not_raised_is_flagged(suite, tmp_path, capsys):
    rules, scenarios = suite
    new = changed_copy(rules, tmp_path, bump=False)
    assert main(["diff", str(rules), str(new), "--scenarios", str(scenarios), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["changed"] is True
    (change,) = data["rules"]["changed"]
    assert change["rule"] == "ELIG-GEN-10" and change["version_raised"] is False
    assert data["files"] == [{"area": "demo", "change": "rules changed but the file version (1) was NOT raised"}]
    assert len(data["decisions"]) == 1 and data["scenarios"] == 3


def test_diff_accepts_plain_patient_documents_and_reports_unreadable_ones(suite, tmp_path):
    rules, _ = suite
    folder = tmp_path / "patients"
    folder.mkdir()
    doc = copy.deepcopy(BASE_PATIENT)
    doc["labs"]["platelets"]["value"] = 50
    (folder / "p.json").write_text(json.dumps(doc), encoding="utf-8")
    (folder / "broken.yaml").write_text("patient_id: [", encoding="utf-8")
    report = diff_rulebases(load_rulebase(rules), load_rulebase(changed_copy(rules, tmp_path, bump=True)), [folder])
    assert report.scenarios == 1 and len(report.decisions) == 1
    assert report.errors and report.errors[0]["scenario"].endswith("broken.yaml")
