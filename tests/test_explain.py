"""Explanations for clinicians: why, why not, what would change it — as data, text, JSON and a self-contained HTML report.

Most tests use a tiny rule base written to a temporary folder (the shipped kb gives the facts and the catalogue), so
they do not depend on the clinical rules. The vignette tests at the end use the shipped rules and ../shared.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

import radiopal
from conftest import BASE_PATIENT, SM153_INDICATION, rule_items, vignette_document, write_rulebase
from radiopal.cli import main
from radiopal.cli.explain import use_colour
from radiopal.explain import (
    ConditionExplanation,
    Explanation,
    RuleExplanation,
    TherapyExplanation,
    explain,
    render_html,
    render_text,
)
from radiopal.explain.html import iter_resource_urls
from radiopal.resources import schema_path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
needs_shared_vignettes = pytest.mark.skipif(
    not (SHARED / "vignettes").is_dir(),
    reason=f"the shared vignettes are not at {SHARED} (a clone without the read-only ../shared folder)",
)

RULES = """
area: test-explain
title: Tiny rule base for the explanation tests
version: "0.0.1"
rules:
  - id: DATA-06
    variant: beta
    title: Data the beta-emitters need
    summary: Current platelet and white-cell counts are needed.
    version: 1
    strength: strong
    verification: V-sec
    sources: [contract]
    therapies: [sr89, sm153]
    requires: [bone_pattern, plt_current, wbc_or_anc_current]
    then: {status: insufficient_data}
""" + rule_items(SM153_INDICATION) + """\
  - id: ELIG-SR-01
    title: Sr-89 preferred with good counts
    summary: Sr-89 is preferred when platelets are at least 100 ×10⁹/L.
    version: 1
    strength: moderate
    verification: V
    sources: [metastron_uspi]
    therapies: [sr89]
    when:
      all:
        - {fact: plt_current, op: ">=", value: 100, unit: "10^9/L"}
        - {fact: pain_distribution, op: "==", value: multifocal}
    then: {status: recommended}
  - id: ELIG-GEN-10
    title: Haematology hard floor
    summary: Platelets below 60 ×10⁹/L or white cells below 2.4 ×10⁹/L rule out beta-emitters.
    version: 1
    strength: strong
    verification: V-sec
    sources: [metastron_uspi, snm_bone_pain]
    therapies: [sr89, sm153]
    when:
      any:
        - {fact: plt_current, op: "<", value: 60, unit: "10^9/L"}
        - {fact: wbc_or_anc_current, op: "<", value: 2.4, unit: "10^9/L"}
    then: {status: contraindicated}
  - id: SEQ-01
    title: Myelosuppressive chemotherapy washout
    summary: Wait 28 days after the last myelosuppressive chemotherapy before a radionuclide.
    version: 1
    strength: moderate
    verification: U
    unverified: the 28-day washout is a rule-base derivation
    sources: [quadramet_eu_smpc, rulebase_derived]
    therapies: [sr89, sm153]
    when:
      exists: chemotherapy
      where:
        all:
          - {field: myelosuppressive, op: "==", value: true}
          - any:
              - {field: ongoing, op: "==", value: true}
              - {days_since_field: last_dose_date, op: "<", value: 28}
    then:
      status: deferred
      earliest_date: {of: chemotherapy, field: last_dose_date, plus_days: 28,
                      none_if: {field: ongoing, op: "==", value: true}}
      advisories: [ADV-POST-RN-CHEMO]
  - id: RT-01
    title: Single 8 Gy for localized pain
    summary: Localized bone pain is treated with a single 8 Gy fraction.
    version: 1
    strength: strong
    verification: V-sec
    sources: [astro_2017]
    therapies: [ebrt_single_8gy]
    when: {fact: pain_distribution, op: "==", value: localized}
    then: {status: recommended}
  - id: RT-01
    variant: b
    title: Multifraction is an equivalent alternative
    version: 1
    strength: strong
    verification: V-sec
    sources: [astro_2017]
    therapies: [ebrt_multifraction]
    when: {status_of: ebrt_single_8gy, op: in, value: [recommended, eligible]}
    then: {status: eligible}
"""


@pytest.fixture(scope="module")
def rulebase(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return radiopal.load_rulebase(write_rulebase(tmp_path_factory.mktemp("rules"), RULES))


@pytest.fixture(scope="module")
def rules_dir(rulebase: Any) -> str:
    return str(rulebase.folder)


def _explain(rulebase: Any, doc: dict[str, Any], therapy: str) -> TherapyExplanation:
    return explain(rulebase.evaluate(doc), therapy=therapy).therapy(therapy)


def _rule(t: TherapyExplanation, key: str) -> RuleExplanation:
    return next(r for r in t.rules() if r.key == key)


def _node(rule: RuleExplanation, name: str) -> ConditionExplanation:
    assert rule.conditions is not None
    return next(n for n in rule.conditions.walk() if n.name == name and n.kind in ("compare", "requirement"))


def _with_chemo(patient: dict[str, Any], last_dose: str, ongoing: bool = False) -> dict[str, Any]:
    patient["treatment_history"]["chemotherapy"] = [
        {"agent": "docetaxel", "class": "taxane", "myelosuppressive": True, "last_dose_date": last_dose,
         "ongoing": ongoing}
    ]
    return patient


# --- three-valued conditions with the patient's values --------------------------------------------------------------


def test_a_met_condition_shows_the_patient_value_with_unit_source_and_threshold(rulebase, patient):
    patient["labs"]["platelets"] = {"value": 45, "unit": "10^9/L"}
    rule = _rule(_explain(rulebase, patient, "sr89"), "ELIG-GEN-10")
    plt = _node(rule, "plt_current")
    assert (plt.result, plt.value, plt.op, plt.threshold) == ("met", "45 ×10⁹/L", "<", "60 ×10⁹/L")
    assert plt.source == ["labs.platelets"]
    wbc = _node(rule, "wbc_or_anc_current")
    assert (wbc.result, wbc.value) == ("not_met", "6.1 ×10⁹/L")


def test_a_condition_on_absent_data_is_unknown_and_names_the_paths_to_supply(rulebase, patient):
    del patient["labs"]
    rule = _rule(_explain(rulebase, patient, "sm153"), "ELIG-GEN-10")
    assert rule.role == "unresolved" and rule.result == "unknown" and not rule.fired
    plt = _node(rule, "plt_current")
    assert plt.result == "unknown" and plt.value == "unknown"
    assert set(plt.missing) == {"labs.platelets", "labs.date"}


def test_a_converted_lab_value_also_shows_what_the_document_gave(rulebase, patient):
    patient["labs"]["platelets"] = {"value": 82000, "unit": "/uL"}
    plt = _node(_rule(_explain(rulebase, patient, "sr89"), "ELIG-SR-01"), "plt_current")
    assert (plt.result, plt.value, plt.given_as) == ("not_met", "82 ×10⁹/L", "82000 /µL")


def test_a_status_of_condition_shows_the_other_therapys_final_status(rulebase, patient):
    patient["pain"]["distribution"] = "localized"
    t = _explain(rulebase, patient, "ebrt_multifraction")
    rule = _rule(t, "RT-01/b")
    node = next(n for n in rule.conditions.walk() if n.subject == "status_of")
    assert (t.status, rule.phase, node.result, node.value) == ("eligible", 2, "met", "recommended")
    assert node.source == ["decision:ebrt_single_8gy"]


# --- why ------------------------------------------------------------------------------------------------------------


def test_why_lists_the_deciding_rule_and_the_indication_it_overrode(rulebase, patient):
    patient["labs"]["platelets"] = {"value": 45, "unit": "10^9/L"}
    t = _explain(rulebase, patient, "sr89")
    assert t.status == "contraindicated"
    deciding = [r for r in t.why.rules if r.role == "deciding"]
    assert [r.key for r in deciding] == ["ELIG-GEN-10"] and deciding[0].fired
    indication = _rule(t, "ELIG-SM-01")
    assert indication.role == "indication" and indication.result == "met"
    assert (indication.overridden_by, indication.overridden_by_rules) == ("contraindicated", ["ELIG-GEN-10"])
    assert "Platelets below 60" in t.why.summary


def test_a_weaker_blocking_status_is_shown_as_overridden_and_by_what(rulebase, patient):
    patient["labs"]["platelets"] = {"value": 45, "unit": "10^9/L"}
    t = _explain(rulebase, _with_chemo(patient, "2025-05-19"), "sm153")
    assert t.status == "contraindicated"
    (seq,) = [r for r in t.why.overridden if r.key == "SEQ-01"]
    assert (seq.role, seq.status, seq.overridden_by, seq.overridden_by_rules) == (
        "overridden", "deferred", "contraindicated", ["ELIG-GEN-10"])


def test_the_default_not_indicated_is_explained_as_no_rule_proposing_it(rulebase, patient):
    patient["bone_disease"]["pattern"] = "osteolytic"
    t = _explain(rulebase, patient, "sm153")
    assert (t.status, t.why.default, t.headline) == ("not_indicated", True, "Not indicated: no rule proposes it")
    assert "No rule proposes a status" in t.why.summary and "ELIG-SM-01" in t.why.summary
    assert [r.key for r in t.why_not.would_enable] == ["ELIG-SM-01"]
    none_at_all = _explain(rulebase, patient, "ra223")
    assert none_at_all.why.default and "has no rule" in none_at_all.why.summary


# --- why not --------------------------------------------------------------------------------------------------------


def test_why_not_shows_the_failed_and_unknown_conditions_with_values_and_the_data_to_collect(rulebase, patient):
    patient["bone_disease"]["pattern"] = "osteolytic"
    patient["bone_disease"]["bone_scan"]["uptake_at_painful_sites"] = None
    t = _explain(rulebase, patient, "sm153")
    (rule,) = t.why_not.would_enable
    decisive = {n.name: n for n in rule.conditions.walk() if n.decisive}
    assert set(decisive) == {"bone_pattern", "uptake_at_painful_sites"}  # not the met pain_distribution
    assert (decisive["bone_pattern"].result, decisive["bone_pattern"].value) == ("not_met", "osteolytic")
    assert decisive["uptake_at_painful_sites"].result == "unknown"
    assert decisive["uptake_at_painful_sites"].missing == ["bone_disease.bone_scan.uptake_at_painful_sites"]
    item = next(d for d in t.data_to_collect if d.path == "bone_disease.bone_scan.uptake_at_painful_sites")
    assert item.rules == ["ELIG-SM-01"] and not item.required
    assert "1 not met, 1 unknown" in t.why_not.summary


def test_why_not_lists_each_blocking_rule_with_the_conditions_that_made_it_fire(rulebase, patient):
    t = _explain(rulebase, _with_chemo(patient, "2025-05-19"), "sm153")
    assert t.status == "deferred" and t.why_not.question == "Why not recommended or eligible?"
    (seq,) = t.why_not.blocking
    assert (seq.key, seq.fired, seq.role) == ("SEQ-01", True, "blocking")
    decisive = [n for n in seq.conditions.walk() if n.decisive]
    days = next(n for n in decisive if n.subject == "days_since_field")
    assert (days.result, days.value_raw, days.date, days.threshold) == ("met", 14, "2025-05-19", "28 days")
    assert days.source == ["treatment_history.chemotherapy[0].last_dose_date"]
    assert not any(n.name == "ongoing" for n in decisive)  # not met, and not why it fired


def test_an_eligible_therapy_is_asked_why_not_recommended(rulebase, patient):
    patient["labs"]["platelets"] = {"value": 82, "unit": "10^9/L"}
    t = _explain(rulebase, patient, "sr89")
    assert t.status == "eligible" and t.why_not.question == "Why not recommended?"
    assert [r.key for r in t.why_not.would_enable] == ["ELIG-SR-01"] and t.why_not.blocking == []
    assert _explain(rulebase, BASE_PATIENT, "sr89").why_not is None  # recommended: nothing to ask


# --- what would change it -------------------------------------------------------------------------------------------


def test_what_would_change_gives_the_threshold_a_value_must_reach(rulebase, patient):
    patient["labs"]["platelets"] = {"value": 82, "unit": "10^9/L"}
    t = _explain(rulebase, patient, "sr89")
    (change,) = [c for c in t.what_would_change if c.kind == "threshold"]
    assert (change.purpose, change.threshold, change.current, change.rules) == (
        "enable", "≥ 100 ×10⁹/L", "82 ×10⁹/L", ["ELIG-SR-01"])
    assert "plt_current (labs.platelets) ≥ 100 ×10⁹/L, now 82 ×10⁹/L" in change.text


def test_what_would_lift_a_floor_is_the_opposite_of_the_blocking_test(rulebase, patient):
    patient["labs"]["platelets"] = {"value": 45, "unit": "10^9/L"}
    t = _explain(rulebase, patient, "sm153")
    (lift,) = [c for c in t.what_would_change if c.purpose == "lift"]
    assert (lift.kind, lift.threshold, lift.current) == ("threshold", "≥ 60 ×10⁹/L", "45 ×10⁹/L")


def test_what_would_change_gives_the_earliest_date_and_the_date_the_washout_ends(rulebase, patient):
    t = _explain(rulebase, _with_chemo(patient, "2025-05-19"), "sm153")
    assert (t.earliest_date, t.headline) == ("2025-06-16", "Deferred until 2025-06-16")
    (first,) = [c for c in t.what_would_change if c.kind == "earliest_date"]
    assert (first.date, first.rules, first.unverified) == ("2025-06-16", ["SEQ-01"], True)
    seq = _rule(t, "SEQ-01")
    assert seq.earliest_date == "2025-06-16" and "+ 28 days" in (seq.earliest_date_rule or "")
    assert next(n for n in seq.conditions.walk() if n.subject == "days_since_field").flips_on == "2025-06-16"


def test_ongoing_chemotherapy_defers_without_a_date_and_says_so(rulebase, patient):
    t = _explain(rulebase, _with_chemo(patient, "2025-05-26", ongoing=True), "sr89")
    assert (t.status, t.earliest_date, t.date_unknown) == ("deferred", None, True)
    assert "no earliest date" in t.headline
    assert any(c.kind == "earliest_date" and c.date is None for c in t.what_would_change)


def test_missing_required_data_is_listed_first_as_data_to_collect(rulebase, patient):
    del patient["labs"]
    t = _explain(rulebase, patient, "sm153")
    assert t.status == "insufficient_data"
    required = [d.path for d in t.data_to_collect if d.required]
    assert set(required) == {"labs.date", "labs.platelets", "labs.wbc"}
    assert [d.required for d in t.data_to_collect] == sorted((d.required for d in t.data_to_collect), reverse=True)
    (collect,) = [c for c in t.what_would_change if c.purpose == "decide"]
    assert collect.kind == "collect" and set(collect.paths) == set(required)
    assert t.headline.startswith("Insufficient data: supply ")


def test_anything_resting_on_an_unverified_rule_is_marked(rulebase, patient):
    result = rulebase.evaluate(_with_chemo(patient, "2025-05-19"))
    t = explain(result, "sm153").therapy("sm153")
    seq = _rule(t, "SEQ-01")
    assert t.unverified and seq.unverified and seq.unverified_note == "the 28-day washout is a rule-base derivation"
    assert not _rule(t, "ELIG-SM-01").unverified
    assert "SEQ-01 [U]" in render_text(explain(result, "sm153"))


def test_an_unknown_therapy_id_is_an_input_error_listing_the_known_ids(rulebase, patient):
    result = rulebase.evaluate(patient)
    with pytest.raises(radiopal.InputError) as info:
        explain(result, "sm135")
    assert "sm153" in str(info.value) and "denosumab" in str(info.value)


def test_one_therapy_or_all_of_them(rulebase, patient):
    result = rulebase.evaluate(patient)
    assert [t.therapy for t in explain(result, "sm153").therapies] == ["sm153"]
    assert [t.therapy for t in explain(result).therapies] == list(rulebase.catalogue.therapy_ids)


# --- JSON -----------------------------------------------------------------------------------------------------------


def _validator() -> Draft202012Validator:
    schema = json.loads(schema_path("explanation").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def test_the_explanation_schema_is_closed_and_every_property_is_described():
    schema = json.loads(schema_path("explanation").read_text(encoding="utf-8"))
    assert schema["$id"] == "https://radiopal.example/schemas/explanation.schema.json"

    def objects(node: Any, where: str = "#") -> list[tuple[str, dict[str, Any]]]:
        found = []
        if isinstance(node, dict):
            if "properties" in node:
                found.append((where, node))
            for key, value in node.items():
                found += objects(value, f"{where}/{key}")
        return found

    for where, sub in objects(schema):
        assert sub.get("additionalProperties") is False, f"{where} is not closed"
        for name, prop in sub["properties"].items():
            assert prop.get("description"), f"{where}/properties/{name} has no description"


@pytest.mark.parametrize("variant", ["plain", "low_platelets", "no_labs", "washout", "ongoing", "osteolytic"])
def test_explanations_validate_against_the_schema(rulebase, patient, variant):
    if variant == "low_platelets":
        patient["labs"]["platelets"] = {"value": 45000, "unit": "/uL"}
    elif variant == "no_labs":
        del patient["labs"]
    elif variant in ("washout", "ongoing"):
        _with_chemo(patient, "2025-05-19", ongoing=variant == "ongoing")
    elif variant == "osteolytic":
        patient["bone_disease"]["pattern"] = "osteolytic"
        patient["bone_disease"]["bone_scan"]["uptake_at_painful_sites"] = None
    data = explain(rulebase.evaluate(patient)).to_dict()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(data)]
    assert errors == []
    assert json.loads(json.dumps(data)) == data


def test_cli_json_output_validates_and_is_the_same_for_the_same_input(rules_dir, patient, tmp_path):
    source = tmp_path / "p.json"
    source.write_text(json.dumps(_with_chemo(patient, "2025-05-19")), encoding="utf-8")
    outputs = []
    for name in ("a.json", "b.json"):
        assert main(["explain", str(source), "--rules", rules_dir, "--format", "json", "-o", str(tmp_path / name)]) == 0
        outputs.append((tmp_path / name).read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1]
    data = json.loads(outputs[0])
    assert list(_validator().iter_errors(data)) == []
    assert data["kind"] == "radiopal-explanation" and data["disclaimer"] == radiopal.DISCLAIMER


# --- CLI errors -----------------------------------------------------------------------------------------------------


def test_cli_unknown_therapy_exits_2_and_lists_the_known_ids(rules_dir, patient, tmp_path, capsys):
    source = tmp_path / "p.json"
    source.write_text(json.dumps(patient), encoding="utf-8")
    assert main(["explain", str(source), "--rules", rules_dir, "--therapy", "radium"]) == 2
    err = capsys.readouterr().err
    assert "unknown therapy 'radium'" in err and "ra223" in err and "zoledronic_acid" in err
    assert "Traceback" not in err


def test_cli_unwritable_output_exits_2_without_a_traceback(rules_dir, patient, tmp_path, capsys):
    source = tmp_path / "p.json"
    source.write_text(json.dumps(patient), encoding="utf-8")
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    for fmt in ("text", "json", "html"):
        code = main(["explain", str(source), "--rules", rules_dir, "--format", fmt, "-o", str(blocker / "out.x")])
        err = capsys.readouterr().err
        assert code == 2 and "cannot" in err and "Traceback" not in err


def test_cli_through_a_subprocess_exits_2_on_a_bad_therapy(rules_dir, patient, tmp_path):
    source = tmp_path / "p.json"
    source.write_text(json.dumps(patient), encoding="utf-8")
    program = "import sys; from radiopal.cli import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", program, "explain", str(source), "--rules", rules_dir,
                           "--therapy", "nope"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "known therapy ids: sr89" in proc.stderr and "Traceback" not in proc.stderr


# --- text -----------------------------------------------------------------------------------------------------------


def test_text_has_ansi_colour_only_when_asked_and_the_cli_asks_only_on_a_terminal(rulebase, patient, monkeypatch):
    explanation = explain(rulebase.evaluate(patient), "sr89")
    assert "\x1b[" not in render_text(explanation)
    assert "\x1b[" in render_text(explanation, colour=True)

    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Stream(True)) and not use_colour(Stream(False))
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Stream(True))


def test_cli_text_to_a_file_or_pipe_has_no_colour(rules_dir, patient, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    source = tmp_path / "p.json"
    source.write_text(json.dumps(patient), encoding="utf-8")
    assert main(["explain", str(source), "--rules", rules_dir, "--therapy", "sr89"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out and "sr89" in out and radiopal.DISCLAIMER in out


# --- HTML -----------------------------------------------------------------------------------------------------------


def _html(rules_dir: str, doc: dict[str, Any], tmp_path: Path, *extra: str) -> str:
    source = tmp_path / "p.json"
    source.write_text(json.dumps(doc), encoding="utf-8")
    target = tmp_path / "report.html"
    assert main(["explain", str(source), "--rules", rules_dir, "--format", "html", "-o", str(target), *extra]) == 0
    return target.read_text(encoding="utf-8")


def test_the_html_report_loads_nothing_from_the_network(rules_dir, patient, tmp_path):
    page = _html(rules_dir, _with_chemo(patient, "2025-05-19"), tmp_path)
    urls = list(iter_resource_urls(page))
    assert [u for u in urls if not u.startswith(("data:", "#"))] == []
    assert "<link" not in page and "<script src" not in page and "@import" not in page
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert csp is not None and html.unescape(csp.group(1)).startswith("default-src 'none';")
    assert "<!DOCTYPE svg" not in page  # the SVG's DOCTYPE names a remote DTD; it is dropped when inlined


def test_the_html_report_has_the_disclaimer_the_u_marks_and_every_therapy(rulebase, rules_dir, patient, tmp_path):
    page = _html(rules_dir, _with_chemo(patient, "2025-05-19"), tmp_path)
    assert html.escape(radiopal.DISCLAIMER) in page
    assert 'class="u-mark"' in page and ">[U]</span>" in page
    assert page.count('<details class="therapy') == len(rulebase.catalogue.therapy_ids)
    assert 'id="t-sm153"' in page and "2025-06-16" in page
    assert "@media print" in page and "details::details-content" in page
    assert "V-sec" in page and rulebase.digest in page and "2025-06-02" in page and "T-BASE" in page
    assert 'id="ref-quadramet_eu_smpc"' in page


def test_the_html_report_draws_the_graph_or_gives_the_dot_text_and_how_to_get_graphviz(
        rulebase, patient, monkeypatch):
    result = rulebase.evaluate(_with_chemo(patient, "2025-05-19"))
    explanation = explain(result, "sm153")
    import radiopal.explain.html as report

    if report.shutil.which("dot"):
        page = render_html(explanation, result)
        assert "<svg" in page and 'role="img"' in page
    monkeypatch.setattr(report.shutil, "which", lambda name: None)
    page = render_html(explanation, result)
    assert "<svg" not in page and '<pre class="dot"' in page and "apt-get install graphviz" in page
    assert "digraph" in page


def test_the_html_report_escapes_text_from_the_document(rulebase, patient):
    patient["patient_id"] = '<img src=x onerror="alert(1)">&'
    result = rulebase.evaluate(patient)
    page = render_html(explain(result), result, graphs=False)
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&amp;" in page


def test_explanations_are_not_built_on_the_evaluate_path(rules_dir):
    program = (
        "import json, sys, radiopal\n"
        f"rb = radiopal.load_rulebase({rules_dir!r})\n"
        f"rb.evaluate(json.loads({json.dumps(json.dumps(BASE_PATIENT))}))\n"
        "print('radiopal.explain' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_explanation_object_is_plain_data(rulebase, patient):
    explanation = explain(rulebase.evaluate(patient))
    assert isinstance(explanation, Explanation)
    data = explanation.to_dict()
    assert data == json.loads(json.dumps(data, ensure_ascii=False))
    assert [t["therapy"] for t in data["therapies"]] == list(rulebase.catalogue.therapy_ids)


# --- the shared vignettes, with the shipped rules ---------------------------------------------------------------------
# These two need the clinical rules (SEQ-01 in rules/sequencing.yaml; DATA-06 in rules/data.yaml).


def _vignette_file(name: str, tmp_path: Path) -> Path:
    """The vignette with its `expected:` key stripped, written to a temporary file (contract §C)."""
    doc = vignette_document(SHARED / "vignettes" / f"{name}.yaml")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _section(page: str, therapy: str) -> str:
    start = page.index(f'id="t-{therapy}"')
    return page[start:page.index("</details>", start)]


@pytest.fixture(scope="module")
def shipped() -> Any:
    return radiopal.load_rulebase()


@needs_shared_vignettes
def test_v05_text_and_html_show_the_chemotherapy_washout_deferral(shipped, tmp_path):
    result = shipped.evaluate(_vignette_file("V05", tmp_path))
    explanation = explain(result)
    text = render_text(explanation)
    page = render_html(explanation, result)
    for therapy in ("sm153", "sr89"):
        start = text.index(f"═══ {therapy} — ")
        block = text[start:text.index("\n═══ ", start)]
        assert "DEFERRED" in block and "Deferred until 2025-03-31" in block
        assert "14 days" in block and "28 days" in block and "SEQ-01" in block
        section = _section(page, therapy)
        assert "deferred" in section and "2025-03-31" in section
        assert "14 days" in section and "28 days" in section and "SEQ-01" in section
        t = explanation.therapy(therapy)
        assert (t.status, t.earliest_date) == ("deferred", "2025-03-31")


@needs_shared_vignettes
def test_v19_lists_the_missing_blood_counts_as_data_to_collect(shipped, tmp_path):
    result = shipped.evaluate(_vignette_file("V19", tmp_path))
    explanation = explain(result)
    wanted = ("labs.platelets", "labs.anc", "labs.haemoglobin")
    t = explanation.therapy("ra223")
    assert {d.path for d in t.data_to_collect if d.required} >= set(wanted)
    text = render_text(explain(result, "ra223"))
    collect = text[text.index("Data to collect"):]
    assert all(path in collect for path in wanted)
    section = _section(render_html(explanation, result), "ra223")
    collect_html = section[section.index("Data to collect"):]
    assert all(f"<code>{path}</code>" in collect_html for path in wanted)
