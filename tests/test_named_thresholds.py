"""Named thresholds (issue #16 item 2): every clinical number of the rule base is defined once in
rules/thresholds.yaml, rules name it, the loader resolves it to the number, lint checks the declared relations, and a
change of one number shows every rule it touches. Clinical numbers come from the brief (ELIG-GEN-10: platelets 60,
WBC 2.4; ELIG-GEN-11 caution zone from the floor to 100; RT-06 uses the GEN-10 floor; DATA-05 bone scan ≤ 8 weeks)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from radiopal.cli import main
from radiopal.conditions import Compare
from radiopal.diff import diff_rulebases, meaning
from radiopal.lint import lint_rules
from radiopal.rulebase.load import load_rules
from radiopal.rulebase.thresholds import usage

RULES = REPO / "rules"
SHARED_VIGNETTES = REPO.parent / "shared" / "vignettes"
DEMO = str(REPO / "examples" / "patient-mcrpc.yaml")


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADIOPAL_CACHE_DIR", str(tmp_path / "cache"))


def _copy(tmp_path: Path, name: str = "rules") -> Path:
    target = tmp_path / name
    shutil.copytree(RULES, target)
    return target


def _set_value(rules: Path, name: str, value: str, key: str = "value") -> None:
    """Change one field of one threshold in the copy's thresholds.yaml (text edit, as an author would)."""
    path = rules / "thresholds.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index(f"  {name}:\n")
    match = re.compile(rf"^    {key}: .*$", re.M).search(text, start)
    assert match is not None
    path.write_text(text[:match.start()] + f"    {key}: {value}" + text[match.end():], encoding="utf-8")


def _nodes(rule):
    for condition in (rule.when, *(r.when for r in rule.requires)):
        yield from condition.nodes() if condition is not None else ()


def test_the_shipped_rules_name_every_clinical_number_and_use_every_threshold():
    report = lint_rules(RULES)
    codes = {f.code for f in report.findings}
    assert "unnamed-number" not in codes and "unused-threshold" not in codes
    assert not report.errors
    loaded = load_rules(RULES)
    assert len(loaded.thresholds.thresholds) >= 50
    for rule in loaded.rules:
        for node in _nodes(rule):
            if isinstance(node, Compare) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
                assert node.threshold or node.value == 0, f"{rule.key}: {node.describe()}"


def _written_out(tmp_path: Path) -> Path:
    """The shipped rules with every `threshold: NAME` replaced by the number and unit it names (as before #16)."""
    table = load_rules(RULES).thresholds
    target = _copy(tmp_path, "written-out")
    (target / "thresholds.yaml").unlink()

    def number(name: str) -> str:
        t = table.thresholds[name]
        value = int(t.value) if float(t.value).is_integer() else t.value
        return f'value: {value}' + ("" if t.unit in ("1", "d") else f', unit: "{t.unit}"')

    for path in target.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"plus_days: \{threshold: (\w+)\}",
                      lambda m: f"plus_days: {int(table.thresholds[m.group(1)].value)}", text)
        text = re.sub(r"(\{(?:days_since|days_since_field): \w+, op: \S+) threshold: (\w+)\}",
                      lambda m: f"{m.group(1)} value: {_days(table.thresholds[m.group(2)])}}}", text)
        text = re.sub(r"threshold: (\w+)", lambda m: number(m.group(1)), text)
        path.write_text(text, encoding="utf-8")
    return target


def _days(threshold) -> int:
    return int(threshold.value * (7 if threshold.unit == "wk" else 1))


def test_naming_the_numbers_changed_no_rule_and_no_decision(tmp_path: Path):
    """The conversion proof: the rules with the numbers written out mean exactly what the named ones mean, rule by
    rule, and decide every scenario and vignette alike."""
    import radiopal

    written = _written_out(tmp_path)
    named, plain = radiopal.load_rulebase(RULES), radiopal.load_rulebase(written)
    plain_rules = {r.key: r for r in plain.rules}
    for rule in named.rules:
        assert meaning(rule) == meaning(plain_rules[rule.key]), rule.key
    scenarios = [REPO / "tests" / "scenarios"] + ([SHARED_VIGNETTES] if SHARED_VIGNETTES.is_dir() else [])
    report = diff_rulebases(plain, named, scenarios)
    assert report.scenarios >= 180
    assert report.decisions == [] and report.advisories == [] and report.changed == []


def test_one_number_changed_in_one_place_moves_every_rule_that_shares_it(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]):
    """The issue's example: raising the ELIG-GEN-10 platelet floor from 60 to 75. ELIG-GEN-11's caution zone and
    RT-06's proxy floor follow (they share the name), lint stays clean, and diff names the threshold and its rules."""
    rules = _copy(tmp_path)
    _set_value(rules, "plt_floor_beta", "75")
    assert main(["thresholds", str(rules), "--name", "plt_floor_beta", "--format", "json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    (entry,) = listing["thresholds"]
    assert entry["value"] == 75 and entry["unit"] == "10^9/L" and entry["verification"] == "V-sec"
    users = {r["rule"].split("/")[0] for r in entry["rules"]}
    assert {"ELIG-GEN-10", "ELIG-GEN-11", "RT-06", "SEQ-08"} <= users
    loaded = load_rules(rules)
    for rule in usage(loaded.rules)["plt_floor_beta"]:
        values = {n.value for n in _nodes(rule) if isinstance(n, Compare) and n.threshold == "plt_floor_beta"}
        assert values == {75}, rule.key
    assert not lint_rules(rules).errors
    import radiopal

    report = diff_rulebases(radiopal.load_rulebase(RULES), radiopal.load_rulebase(rules))
    (change,) = report.named_thresholds
    assert change["name"] == "plt_floor_beta" and change["old"].startswith("60 ") and change["new"].startswith("75 ")
    assert {"ELIG-GEN-10", "ELIG-GEN-11", "RT-06"} <= {r.split("/")[0] for r in change["rules"]}
    assert all(c.written_alike and "plt_floor_beta" in c.named for c in report.changed)
    assert {c.key.split("/")[0] for c in report.changed} >= {"ELIG-GEN-10", "ELIG-GEN-11", "RT-06"}
    text = report.to_text()
    assert "plt_floor_beta: 60 10^9/L [V-sec] → 75 10^9/L [V-sec]" in text
    assert "numbers changed but the file version (1) was NOT raised" in text


def test_a_broken_relation_is_a_lint_error_and_the_rule_base_does_not_run(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]):
    """A floor raised above the caution zone's ceiling (ELIG-GEN-11 would be empty): relation-violated, located at the
    relation in thresholds.yaml; the lint gate refuses to evaluate with it."""
    rules = _copy(tmp_path)
    _set_value(rules, "plt_floor_beta", "120")
    report = lint_rules(rules)
    broken = [f for f in report.errors if f.code == "relation-violated"]
    assert len(broken) == 1
    finding = broken[0]
    assert finding.file.endswith("thresholds.yaml") and finding.line > 0
    assert "plt_floor_beta (120 10^9/L)" in finding.message and "plt_caution_ceiling_beta (100 10^9/L)" in finding.message
    lines = (rules / "thresholds.yaml").read_text(encoding="utf-8").splitlines()
    assert "beta-platelet-caution-zone" in lines[finding.line - 1]
    assert main(["recommend", DEMO, "--rules", str(rules)]) == 2
    err = capsys.readouterr().err
    assert "relation-violated" in err and "Traceback" not in err


def test_a_unit_that_does_not_fit_its_use_is_an_error_at_the_rule(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]):
    rules = _copy(tmp_path)
    _set_value(rules, "plt_floor_beta", '"mL/min"', key="unit")
    report = lint_rules(rules)
    wrong = [f for f in report.errors if f.code == "threshold-unit"]
    assert wrong and all("plt_floor_beta" in f.message and "mL/min" in f.message for f in wrong)
    first = wrong[0]
    assert first.file.endswith(".yaml") and not first.file.endswith("thresholds.yaml") and first.line > 0
    assert "threshold: plt_floor_beta" in Path(first.file).read_text(encoding="utf-8").splitlines()[first.line - 1]
    assert main(["lint", str(rules)]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_a_duration_in_weeks_is_compared_in_days():
    """DATA-05: a bone scan at most 8 weeks old; the rule compares days since the scan with 56."""
    loaded = load_rules(RULES)
    (rule,) = [r for r in loaded.rules if r.id == "DATA-05"]
    (node,) = [n for n in _nodes(rule) if isinstance(n, Compare) and n.threshold == "bone_scan_max_age"]
    assert node.subject == "days_since" and node.value == 56
    assert loaded.thresholds.thresholds["bone_scan_max_age"].unit == "wk"


def test_a_cycle_of_relations_and_an_undefined_name_are_errors_with_file_and_line(tmp_path: Path):
    rules = _copy(tmp_path)
    path = rules / "thresholds.yaml"
    path.write_text(path.read_text(encoding="utf-8") + (
        "  - id: reversed-zone\n"
        "    order: [plt_caution_ceiling_beta, plt_floor_beta]\n"
        "    note: a mistaken relation that closes a cycle with beta-platelet-caution-zone\n"
        "  - id: names-a-ghost\n"
        "    order: [plt_floor_beta, plt_ceiling_ghost]\n"
        "    note: names a threshold nobody defined\n"), encoding="utf-8")
    eligibility = rules / "eligibility-radionuclides.yaml"
    text = eligibility.read_text(encoding="utf-8")
    eligibility.write_text(text.replace("threshold: wbc_floor_beta}", "threshold: wbc_flor_beta}", 1),
                           encoding="utf-8")
    report = lint_rules(rules)
    by_code = {}
    for f in report.errors:
        by_code.setdefault(f.code, []).append(f)
    (cycle,) = by_code["relation-cycle"]
    assert "plt_floor_beta" in cycle.message and "plt_caution_ceiling_beta" in cycle.message
    assert cycle.file.endswith("thresholds.yaml") and cycle.line > 0
    ghost = [f for f in by_code["thresholds-file"] if "plt_ceiling_ghost" in f.message]
    assert ghost and ghost[0].line > 0
    (unknown,) = by_code["unknown-threshold"]
    assert unknown.file.endswith("eligibility-radionuclides.yaml") and unknown.line > 0
    assert "wbc_flor_beta" in unknown.message and "wbc_floor_beta" in unknown.hint


def test_a_malformed_thresholds_file_is_an_error_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rules = _copy(tmp_path)
    (rules / "thresholds.yaml").write_text("version: '1'\nthresholds:\n  plt_floor_beta: {value: 60, unit: [\n",
                                           encoding="utf-8")
    assert main(["recommend", DEMO, "--rules", str(rules)]) == 2
    err = capsys.readouterr().err
    assert "thresholds.yaml:" in err and "Traceback" not in err
    (rules / "thresholds.yaml").write_text(
        "version: '1'\nthresholds:\n  plt_floor_beta: {value: sixty, unit: '10^9/L', verification: V, "
        "sources: [snm_bone_pain], brief: ELIG-GEN-10}\n", encoding="utf-8")
    report = lint_rules(rules)
    schema = [f for f in report.errors if f.code == "thresholds-file"]
    assert schema and schema[0].line == 3 and "sixty" in schema[0].message


def test_a_number_written_in_a_rule_is_flagged(tmp_path: Path):
    rules = _copy(tmp_path)
    path = rules / "surgery.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("threshold: mirels_fixation}", "value: 9}", 1), encoding="utf-8")
    found = [f for f in lint_rules(rules).findings if f.code == "unnamed-number"]
    assert len(found) == 1 and found[0].severity == "warning" and "SURG-02" in found[0].rule
    assert found[0].line > 0 and "value: 9" in path.read_text(encoding="utf-8").splitlines()[found[0].line - 1]


def test_explanations_and_the_graph_show_the_name_and_its_citation():
    """WBC 2.0 (below ELIG-GEN-10's 2.4 floor): the explanation shows wbc_floor_beta with its citation beside the
    value. Docetaxel 14 days ago (SEQ-01 washout 28 days, U-derived in the brief): chemo_washout is marked [U]. The
    graph's test lines name the threshold."""
    import radiopal
    from radiopal.explain.build import explain
    from radiopal.explain.text import render_text

    rulebase = radiopal.load_rulebase()
    document = yaml.safe_load((REPO / "examples" / "patient-mcrpc.yaml").read_text(encoding="utf-8"))
    document["labs"]["wbc"] = {"value": 2.0, "unit": "10^9/L"}
    result = rulebase.evaluate(document)
    assert result.decision("sr89").status == "contraindicated"
    explained = explain(result, "sr89")
    data = json.dumps(explained.to_dict(), ensure_ascii=False)
    assert '"threshold_name": "wbc_floor_beta"' in data
    assert ('"threshold_citation": "ELIG-GEN-10 [V-sec]: metastron_uspi, snm_bone_pain, katin_criteria, '
            'powsner_1997"') in data
    text = render_text(explained)
    assert "wbc_or_anc_current < 2.4 ×10⁹/L (wbc_floor_beta) — now 2 ×10⁹/L" in text
    assert "wbc_floor_beta: ELIG-GEN-10 [V-sec]" in text
    lines = [c for n in result.graph.to_dict()["nodes"] for c in n.get("conditions") or []
             if c.get("threshold") == "wbc_floor_beta"]
    assert lines and all("(wbc_floor_beta)" in c["test"] for c in lines)
    assert all(c["threshold_citation"].startswith("ELIG-GEN-10 [V-sec]: metastron_uspi") for c in lines)

    document = yaml.safe_load((REPO / "examples" / "patient-mcrpc.yaml").read_text(encoding="utf-8"))
    document["treatment_history"]["chemotherapy"][0]["last_dose_date"] = "2025-09-01"
    result = rulebase.evaluate(document)
    assert result.decision("sr89").status == "deferred"
    explained = explain(result, "sr89")
    data = json.dumps(explained.to_dict(), ensure_ascii=False)
    assert '"threshold_name": "chemo_washout"' in data and '"unverified_threshold": true' in data
    assert "chemo_washout: SEQ-01 [U]:" in render_text(explained)


def test_the_thresholds_command_lists_text_and_refuses_an_unknown_name(capsys: pytest.CaptureFixture[str]):
    assert main(["thresholds"]) == 0
    out = capsys.readouterr().out
    assert "plt_floor_beta = 60 10^9/L   ELIG-GEN-10 [V-sec]" in out
    assert "relation zoledronic-crcl-bands:" in out
    assert main(["thresholds", "--name", "plt_flor_beta"]) == 2
    err = capsys.readouterr().err
    assert "plt_floor_beta" in err and "Traceback" not in err


def test_the_reference_page_lists_every_threshold_and_marks_the_unverified(tmp_path: Path):
    from radiopal import docgen

    docgen.generate(tmp_path)
    page = (tmp_path / "thresholds.md").read_text(encoding="utf-8")
    table = load_rules(RULES).thresholds
    for name, threshold in table.thresholds.items():
        row = next(line for line in page.splitlines() if line.startswith(f"| `{name}` |"))
        assert ("**[U]**" in row) == (threshold.verification == "U"), name
    assert "`beta-platelet-caution-zone`" in page and "../shared" not in page


def test_dose_bands_declared_to_tile_a_range_are_held_to_it(tmp_path: Path):
    """BHA-02: every CrCl from 30 up has a zoledronic acid dose. A band edge written out (42) instead of named leaves
    [40, 42) without a dose: the declared tiling is broken, an error at the relation; moving the named edge instead
    moves both bands that share it and breaks nothing."""
    rules = _copy(tmp_path)
    path = rules / "bone-health.yaml"
    text = path.read_text(encoding="utf-8")
    edge = '{fact: crcl, op: ">=", threshold: zoledronic_crcl_3_3mg_min}'
    assert text.count(edge) == 1
    path.write_text(text.replace(edge, '{fact: crcl, op: ">=", value: 42, unit: "mL/min"}'), encoding="utf-8")
    broken = [f for f in lint_rules(rules).errors if f.code == "relation-violated"]
    assert len(broken) == 1 and "zoledronic-doses-tile-crcl" in broken[0].message
    assert "crcl in [40, 42) mL/min" in broken[0].message and broken[0].file.endswith("thresholds.yaml")
    moved = _copy(tmp_path, "moved")
    _set_value(moved, "zoledronic_crcl_3_3mg_min", "42")
    assert not lint_rules(moved).errors
