"""Brief §13a.1 / DATA-04: blood counts more than 7 days old count as absent for every rule that reads a count.

The defect this holds: the 7-day window used to be applied after the derived facts were computed, so a derived count
(``wbc_or_anc_current``: the WBC, or the ANC standing in for it) still saw a stale low WBC and fired ELIG-GEN-10 while
the stale platelets of the same draw were correctly absent. The window is now applied before any fact is derived.

Metamorphic check: with stale labs, the counts' values cannot change any decision — whatever they are.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

import radiopal
from radiopal.patient import build_facts, parse_patient
from radiopal.synth import patient_at

COUNTS = ("platelets", "wbc", "anc", "haemoglobin")
VERY_LOW = {"platelets": {"value": 5, "unit": "10^9/L"}, "wbc": {"value": 0.5, "unit": "10^9/L"},
            "anc": {"value": 0.2, "unit": "10^9/L"}, "haemoglobin": {"value": 5.0, "unit": "g/dL"}}
NORMAL = {"platelets": {"value": 250, "unit": "10^9/L"}, "wbc": {"value": 7.0, "unit": "10^9/L"},
          "anc": {"value": 4.0, "unit": "10^9/L"}, "haemoglobin": {"value": 13.5, "unit": "g/dL"}}


def _with_labs(document: dict[str, Any], days_old: int, counts: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(document)
    labs = doc.setdefault("labs", {}) or {}
    doc["labs"] = labs
    evaluation = dt.date.fromisoformat(doc["evaluation_date"])
    labs["date"] = (evaluation - dt.timedelta(days=days_old)).isoformat()
    labs.update(copy.deepcopy(counts))
    return doc


def _decisions(rulebase: Any, document: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    result = rulebase.evaluate(document)
    return [(d.therapy, d.status, tuple(d.reasons)) for d in result.decisions]


def _patients(n: int) -> list[dict[str, Any]]:
    return [p.document for p in (patient_at(i, seed=13, bad_fraction=0.0, missing_fraction=0.0) for i in range(n))]


@pytest.fixture(scope="module")
def rulebase() -> Any:
    return radiopal.load_rulebase()


def test_every_current_count_fact_is_unknown_on_stale_labs_derived_ones_included():
    for document in _patients(40):
        table = build_facts(parse_patient(_with_labs(document, 8, VERY_LOW)))
        current = [f for f in table if f.name.endswith("_current") and f.name != "labs_current"]
        assert {"plt_current", "wbc_current", "anc_current", "hb_current", "wbc_or_anc_current"} <= {f.name for f in current}
        for fact in current:
            assert not fact.known, (document["patient_id"], fact)
            assert fact.missing == ("labs.date",), fact


def test_with_stale_labs_the_counts_change_no_decision(rulebase: Any):
    for document in _patients(120):
        low = _decisions(rulebase, _with_labs(document, 8, VERY_LOW))
        normal = _decisions(rulebase, _with_labs(document, 8, NORMAL))
        assert low == normal, document["patient_id"]


def test_the_same_counts_on_current_labs_do_change_decisions(rulebase: Any):
    """The other side of the boundary: at 7 days the counts are read, so the metamorphic check above can fail."""
    changed = 0
    for document in _patients(60):
        if _decisions(rulebase, _with_labs(document, 7, VERY_LOW)) != _decisions(rulebase, _with_labs(document, 7, NORMAL)):
            changed += 1
    assert changed >= 50


def test_a_stale_low_wbc_fires_no_block_and_asks_for_current_labs(rulebase: Any):
    document = _with_labs(_patients(1)[0], 8, NORMAL)
    document["labs"]["wbc"] = {"value": 2.0, "unit": "10^9/L"}
    result = rulebase.evaluate(document)
    fired = {f.compiled.rule.id for f in result.firings}
    assert not fired & {"ELIG-GEN-10", "ELIG-GEN-11", "ELIG-RA-06", "ELIG-RA-07"}
    assert "labs.date" in result.missing_data
