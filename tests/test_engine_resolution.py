"""The engine on tiny rule bases: §13 precedence, defaults, dates, doses, unknowns, phases, determinism."""

from __future__ import annotations

import datetime as dt

import radiopal
from conftest import PLATELET_FLOOR, SR89_RETREATMENT, rule_items, write_rulebase

HEADER = """\
area: t{n}
version: "1"
rules:
"""


def make(tmp_path, *rules_text: str) -> radiopal.RuleBase:
    text = HEADER.format(n=0) + rule_items(*rules_text)
    return radiopal.load_rulebase(write_rulebase(tmp_path / "rules", text))


INDICATION = """
- id: ELIG-SR-01
  title: Sr-89 candidate
  version: 1
  strength: strong
  verification: V
  sources: [metastron_uspi]
  therapies: [sr89]
  when: {fact: pain_distribution, op: "==", value: multifocal}
  then: {status: eligible}
"""

WASHOUT = """
- id: SEQ-01
  title: Chemotherapy washout
  version: 1
  strength: moderate
  verification: U
  unverified: 28 days is a rule-base derivation
  sources: [rulebase_derived]
  therapies: [sr89]
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
    earliest_date: {of: chemotherapy, field: last_dose_date, plus_days: 28, none_if: {field: ongoing, op: "==", value: true}}
"""


def test_a_therapy_no_rule_speaks_for_is_not_indicated_by_default(tmp_path, patient):
    result = make(tmp_path, INDICATION).evaluate(patient)
    decision = result.decision("sm153")
    assert decision.status == "not_indicated"
    assert decision.is_default
    assert decision.reasons == ()


def test_every_therapy_of_the_contract_gets_exactly_one_decision_in_order(tmp_path, patient):
    result = make(tmp_path, INDICATION).evaluate(patient)
    out = result.to_dict()
    assert [d["therapy"] for d in out["decisions"]] == list(result.rulebase.catalogue.therapy_ids)
    assert len(out["decisions"]) == 21


def test_a_safety_block_beats_an_indication(tmp_path, patient):
    patient["labs"]["platelets"] = {"value": 59, "unit": "10^9/L"}
    result = make(tmp_path, INDICATION, PLATELET_FLOOR).evaluate(patient)
    decision = result.decision("sr89")
    assert decision.status == "contraindicated"
    assert "ELIG-GEN-10" in decision.reasons
    assert [f.rule_id for f in decision.overridden] == ["ELIG-SR-01"]


def test_a_threshold_written_in_another_unit_is_converted_and_the_limit_itself_does_not_block(tmp_path, patient):
    patient["labs"]["platelets"] = {"value": 60000, "unit": "/uL"}
    result = make(tmp_path, INDICATION, PLATELET_FLOOR).evaluate(patient)
    assert result.decision("sr89").status == "eligible"


def test_an_unknown_value_never_fires_a_block_nor_an_indication(tmp_path, patient):
    del patient["labs"]["platelets"]
    patient["pain"]["distribution"] = None
    result = make(tmp_path, INDICATION, PLATELET_FLOOR).evaluate(patient)
    assert result.decision("sr89").status == "not_indicated"
    assert result.firings == []


def test_stale_labs_count_as_absent_for_current_counts(tmp_path, patient):
    patient["labs"]["date"] = "2025-05-20"  # 13 days before the evaluation date
    patient["labs"]["platelets"] = {"value": 20, "unit": "10^9/L"}
    result = make(tmp_path, INDICATION, PLATELET_FLOOR).evaluate(patient)
    assert result.decision("sr89").status == "eligible"
    fact = result.facts["plt_current"]
    assert not fact.known and fact.missing == ("labs.date",)


def test_a_deferral_carries_its_earliest_date(tmp_path, patient):
    patient["treatment_history"]["radionuclides"] = [{"agent": "sr89", "date": "2025-04-01"}]
    result = make(tmp_path, INDICATION, SR89_RETREATMENT).evaluate(patient)
    decision = result.decision("sr89")
    assert decision.status == "deferred"
    assert decision.earliest_date == dt.date(2025, 6, 30)


def test_the_interval_is_over_on_exactly_its_last_day(tmp_path, patient):
    patient["treatment_history"]["radionuclides"] = [{"agent": "sr89", "date": "2025-03-04"}]  # 90 days
    result = make(tmp_path, INDICATION, SR89_RETREATMENT).evaluate(patient)
    assert result.decision("sr89").status == "eligible"


def test_the_latest_of_several_deferral_dates_wins(tmp_path, patient):
    patient["treatment_history"]["radionuclides"] = [{"agent": "sr89", "date": "2025-04-01"}]
    patient["treatment_history"]["chemotherapy"] = [
        {"agent": "docetaxel", "class": "taxane", "myelosuppressive": True, "last_dose_date": "2025-05-30", "ongoing": False},
        {"agent": "carboplatin", "class": "platinum", "myelosuppressive": True, "last_dose_date": "2025-05-20",
         "ongoing": False},
    ]
    decision = make(tmp_path, INDICATION, SR89_RETREATMENT, WASHOUT).evaluate(patient).decision("sr89")
    assert decision.status == "deferred"
    assert decision.earliest_date == dt.date(2025, 6, 30)  # retreatment (04-01 + 90) beats washout (05-30 + 28)
    assert decision.reasons == ("ELIG-SR-01", "SEQ-01", "SEQ-03")


def test_ongoing_chemotherapy_gives_no_date_of_its_own(tmp_path, patient):
    patient["treatment_history"]["chemotherapy"] = [
        {"agent": "docetaxel", "class": "taxane", "myelosuppressive": True, "last_dose_date": "2025-05-30", "ongoing": True},
    ]
    decision = make(tmp_path, INDICATION, WASHOUT).evaluate(patient).decision("sr89")
    assert decision.status == "deferred"
    assert decision.earliest_date is None
    assert decision.date_unknown


def test_with_an_undated_deferral_the_latest_dated_one_still_gives_the_earliest_date(tmp_path, patient):
    # Brief §13.4: the latest date among the date-bearing deferral rules that fired.
    patient["treatment_history"]["radionuclides"] = [{"agent": "sr89", "date": "2025-04-01"}]
    patient["treatment_history"]["chemotherapy"] = [
        {"agent": "docetaxel", "class": "taxane", "myelosuppressive": True, "last_dose_date": "2025-05-30", "ongoing": True},
    ]
    decision = make(tmp_path, INDICATION, SR89_RETREATMENT, WASHOUT).evaluate(patient).decision("sr89")
    assert decision.status == "deferred"
    assert decision.earliest_date == dt.date(2025, 6, 30)
    assert decision.date_unknown


def test_a_missing_field_of_a_history_entry_is_reported_with_the_contract_path(tmp_path, patient):
    consolidation = """
- id: CHEMO-02
  title: Consolidation after docetaxel response
  version: 1
  strength: weak
  verification: V
  sources: [fizazi_2009]
  therapies: [docetaxel_sm153]
  when:
    exists: chemotherapy
    where: {field: best_response, op: in, value: [response, stable]}
  then: {status: eligible}
"""
    patient["treatment_history"]["chemotherapy"] = [
        {"agent": "docetaxel", "class": "taxane", "myelosuppressive": True, "last_dose_date": "2025-01-30", "ongoing": False},
    ]
    result = make(tmp_path, consolidation).evaluate(patient)
    outcome = result.rulebase.rules[0].when.explain(
        __import__("radiopal.conditions", fromlist=["Env"]).Env(result.facts.facts, result.facts.evaluation_date))
    assert {p for o in outcome.walk() for p in o.missing} == {"treatment_history.chemotherapy[].best_response"}


def test_a_unverified_rule_marks_the_decision_it_decides(tmp_path, patient):
    patient["treatment_history"]["chemotherapy"] = [
        {"agent": "docetaxel", "class": "taxane", "myelosuppressive": True, "last_dose_date": "2025-05-30", "ongoing": False},
    ]
    out = make(tmp_path, INDICATION, WASHOUT).evaluate(patient).to_dict()
    sr89 = next(d for d in out["decisions"] if d["therapy"] == "sr89")
    assert sr89["status"] == "deferred" and sr89["unverified"] is True


def test_a_rule_reading_another_therapys_final_status_runs_after_it_is_resolved(tmp_path, patient):
    follow = """
- id: RT-01b
  title: Multifraction whenever single fraction fits
  version: 1
  strength: strong
  verification: V-sec
  sources: [astro_2017]
  therapies: [ebrt_multifraction]
  when: {status_of: sr89, op: in, value: [recommended, eligible]}
  then: {status: eligible}
"""
    rb = make(tmp_path, INDICATION, PLATELET_FLOOR, follow)
    assert rb.evaluate(patient).decision("ebrt_multifraction").status == "eligible"
    patient["labs"]["platelets"] = {"value": 10, "unit": "10^9/L"}
    assert rb.evaluate(patient).decision("ebrt_multifraction").status == "not_indicated"


def test_requirement_rules_report_the_missing_paths(tmp_path, patient):
    need = """
- id: DATA-06
  title: Counts needed
  version: 1
  strength: strong
  verification: V
  sources: [contract]
  therapies: [sr89]
  requires: [plt_current, wbc_or_anc_current]
  then: {status: insufficient_data}
"""
    del patient["labs"]
    result = make(tmp_path, INDICATION, need).evaluate(patient)
    assert result.decision("sr89").status == "insufficient_data"
    assert result.missing_data == ["labs.date", "labs.platelets", "labs.wbc"]


def test_the_same_input_gives_the_same_bytes(tmp_path, patient):
    rb = make(tmp_path, INDICATION, PLATELET_FLOOR, SR89_RETREATMENT, WASHOUT)
    first = rb.evaluate(patient).to_json()
    second = radiopal.load_rulebase(rb.folder).evaluate(dict(reversed(list(patient.items())))).to_json()
    assert first == second
    assert rb.evaluate(patient).graph.to_json() == rb.evaluate(patient).graph.to_json()
