"""Property-based tests of the engine on generated valid patient documents (hypothesis).

Patients come from two generators: the seeded synthetic cohort (:mod:`radiopal.synth`, a plausible clinical story per
seed and index) and a hypothesis strategy drawing every section from the schema's enums and ranges (which shrinks to
a small failing document). Properties:

* any valid document gives a contract §B output that validates against ``kb/schemas/decision.schema.json``, with
  exactly one decision per therapy, in contract §B.3 order;
* decisions do not depend on the order of fields, on which allowed unit a lab is given in (for values that convert
  exactly), or on fields no rule reads for the decision (painful-site text without EBRT history, ALP, PSA, weight);
* raising the platelet count, all else equal, never turns a radionuclide from eligible/recommended into
  contraindicated and never adds a haematology rule (ELIG-GEN-10, ELIG-RA-06, ELIG-RA-07) to its reasons;
* the same input gives the same bytes.

Example counts are modest (the file runs in well under a minute); ``RADIOPAL_FUZZ_EXAMPLES`` scales them up.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from radiopal.patient.units import convert
from radiopal.schemacheck import validator
from radiopal.synth import patient_at

#: Contract §B.3, in output order.
THERAPIES = (
    "sr89", "sm153", "ra223", "re186", "re188", "p32", "sn117m",
    "ebrt_single_8gy", "ebrt_multifraction", "sbrt", "hemibody_rt",
    "surgery_referral",
    "cisplatin_sensitisation", "docetaxel_sm153", "doxorubicin_sr89", "docetaxel_sr89",
    "zoledronic_acid", "pamidronate", "ibandronate", "clodronate", "denosumab",
)
RADIONUCLIDES = THERAPIES[:7]
HAEMATOLOGY_RULES = frozenset({"ELIG-GEN-10", "ELIG-RA-06", "ELIG-RA-07"})

_SCALE = int(os.environ.get("RADIOPAL_FUZZ_EXAMPLES") or 0)


def examples(default: int) -> settings:
    """``default`` examples (more when RADIOPAL_FUZZ_EXAMPLES is set), no deadline."""
    return settings(max_examples=max(default, _SCALE // 10), deadline=None, database=None,
                    derandomize=not _SCALE,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def rulebase() -> Any:
    from radiopal.api import default_rulebase

    return default_rulebase()


# --- strategies -------------------------------------------------------------------------------------------------------
def synth_patients(missing_fraction: float = 0.15) -> st.SearchStrategy[dict[str, Any]]:
    """Documents of the seeded synthetic cohort (valid or with required fields removed; never schema-invalid)."""
    return st.builds(
        lambda seed, index: patient_at(index, seed=seed, bad_fraction=0.0, missing_fraction=missing_fraction).document,
        st.integers(0, 50), st.integers(0, 100_000),
    )


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value, null, or absent (the sentinel ``...`` is dropped by :func:`compact`)."""
    return st.one_of(strategy, strategy, st.none(), st.just(...))


def compact(section: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if v is not ...}


@st.composite
def drawn_patients(draw: st.DrawFn) -> dict[str, Any]:
    """A schema-valid document with every section drawn from the schema's enums and ranges."""
    today = draw(st.dates(dt.date(2020, 1, 1), dt.date(2030, 12, 31)))

    def before(max_days: int = 3000) -> st.SearchStrategy[str]:
        return st.integers(0, max_days).map(lambda d: (today - dt.timedelta(days=d)).isoformat())

    sex = draw(st.sampled_from(["male", "female"]))
    site = draw(st.sampled_from(["prostate", "breast", "lung", "renal", "thyroid", "myeloma", "other"]))
    demographics = compact({
        "age_years": draw(maybe(st.integers(18, 100))), "sex": sex,
        "weight_kg": draw(maybe(st.integers(35, 150))),
        "pregnant": draw(maybe(st.booleans())) if sex == "female" else ...,
        "breastfeeding": draw(maybe(st.booleans())) if sex == "female" else ...,
    })
    tumour = compact({
        "site": site, "castration_resistant": draw(maybe(st.booleans())),
        "primary_controlled": draw(maybe(st.booleans())), "radiosensitive_histology": draw(maybe(st.booleans())),
    })
    impending = draw(st.booleans())
    bone = compact({
        "pattern": draw(maybe(st.sampled_from(["osteoblastic", "osteolytic", "mixed", "unknown"]))),
        "lesion_count": draw(maybe(st.integers(0, 60))),
        "total_metastases_count": draw(maybe(st.integers(0, 80))),
        "bone_scan": draw(maybe(st.fixed_dictionaries({
            "date": before(200), "uptake_at_painful_sites": st.one_of(st.booleans(), st.none()),
            "superscan": st.booleans()}))),
        "visceral_metastases": draw(maybe(st.booleans())),
        "lymph_node_max_short_axis_cm": draw(maybe(st.sampled_from([0.5, 1.2, 2.9, 3.0, 4.5]))),
        "spinal_cord_compression": draw(maybe(st.sampled_from(["none", "impending", "established"]))),
        "scc_single_level": draw(maybe(st.booleans())),
        "paraplegia_over_48h": draw(maybe(st.booleans())),
        "neurological_deficit": draw(maybe(st.booleans())),
        "pathological_fracture": draw(maybe(st.booleans())),
        "impending_fracture": impending,
        "mirels_score": draw(maybe(st.integers(4, 12))) if impending else ...,
    })
    pain = compact({
        "score_nrs": draw(maybe(st.integers(0, 10))),
        "distribution": draw(maybe(st.sampled_from(["none", "localized", "multifocal"]))),
        "painful_sites": draw(maybe(st.lists(st.sampled_from(["pelvis", "ribs", "lumbar spine", "left femur"]),
                                             max_size=3, unique=True))),
        "analgesic_step": draw(maybe(st.integers(0, 3))),
    })
    performance = compact({"ecog": draw(maybe(st.integers(0, 4))),
                           "life_expectancy_weeks": draw(maybe(st.integers(1, 300)))})
    labs: dict[str, Any] = {"date": draw(before(14))}
    cells = st.sampled_from(["10^9/L", "10^3/uL", "/uL"])
    for name, low, high in (("platelets", 0, 500), ("wbc", 0, 20), ("anc", 0, 12)):
        if draw(st.integers(0, 5)):
            value = draw(st.integers(low * 10, high * 10)) / 10
            unit = draw(cells)
            labs[name] = {"value": round(value * 1000) if unit == "/uL" else value, "unit": unit}
    if draw(st.booleans()):
        labs["haemoglobin"] = {"value": draw(st.integers(50, 170)) / 10, "unit": "g/dL"}
    if draw(st.booleans()):
        labs["creatinine_clearance"] = {"value": draw(st.integers(5, 140)), "unit": "mL/min",
                                        "method": draw(st.sampled_from(["cockcroft_gault", "egfr"]))}
    if draw(st.booleans()):
        corrected = draw(st.booleans())
        labs["calcium"] = {"value": draw(st.integers(170, 300)) / 100, "unit": "mmol/L", "corrected": corrected}
        if not corrected or draw(st.booleans()):
            labs["albumin"] = {"value": draw(st.integers(20, 50)), "unit": "g/L"}
    if draw(st.booleans()):
        labs["platelet_trend"] = draw(st.sampled_from(["stable", "falling", "rising"]))
    labs_section = draw(st.sampled_from([labs, labs, labs, None, ...]))
    history = {
        "chemotherapy": draw(st.lists(st.fixed_dictionaries({
            "agent": st.sampled_from(["docetaxel", "cisplatin", "carmustine"]),
            "class": st.sampled_from(["taxane", "platinum", "nitrosourea", "mitomycin", "other"]),
            "myelosuppressive": st.booleans(), "last_dose_date": before(400), "ongoing": st.booleans(),
            "best_response": st.sampled_from(["response", "stable", "progression", "unknown"])}), max_size=2)),
        "radionuclides": draw(st.lists(st.fixed_dictionaries({
            "agent": st.sampled_from(["sr89", "sm153", "ra223", "re186", "re188", "p32", "sn117m", "other"]),
            "date": before(400)}, optional={"response": st.booleans()}), max_size=4)),
        "ebrt": draw(st.lists(st.fixed_dictionaries({
            "date": before(400), "site": st.sampled_from(["pelvis", "ribs", "left femur"]),
            "technique": st.sampled_from(["conventional", "sbrt", "hemibody_upper", "hemibody_lower"])}), max_size=2)),
        "bone_health_agents": draw(st.lists(st.fixed_dictionaries({
            "agent": st.sampled_from(["zoledronic_acid", "pamidronate", "ibandronate", "clodronate", "denosumab"]),
            "last_dose_date": before(200), "ongoing": st.booleans()}), max_size=2)),
        "hormonal": draw(st.lists(st.fixed_dictionaries({
            "agent": st.sampled_from(["adt_lhrh", "abiraterone", "enzalutamide", "tamoxifen", "other"]),
            "ongoing": st.booleans()}, optional={"start_date": before(3000)}), max_size=3)),
        "prior_mcrpc_systemic_lines": draw(maybe(st.integers(0, 4))),
    }
    doc: dict[str, Any] = {
        "schema_version": "1.0", "patient_id": f"H-{draw(st.integers(0, 9999))}", "evaluation_date": today.isoformat(),
        "context": {"regulatory_region": draw(st.sampled_from(["EU", "US", "other"])),
                    "trial_available": draw(st.booleans())},
        "demographics": demographics, "primary_tumour": tumour, "bone_disease": bone, "pain": pain,
        "performance": performance, "labs": labs_section,
        "dental": compact({"unhealed_oral_lesion": draw(maybe(st.booleans()))}),
        "treatment_history": compact(history),
    }
    return compact(doc)


VALID_PATIENTS = st.one_of(synth_patients(), drawn_patients())


# --- helpers ----------------------------------------------------------------------------------------------------------
def decisions_of(result: Any) -> list[tuple[Any, ...]]:
    return [(d.therapy, d.status, d.earliest_date, d.dose_mg, tuple(d.reasons)) for d in result.decisions]


def answer(result: Any) -> tuple[Any, ...]:
    """What a clinician is told: decisions, missing data and advisory ids."""
    return (decisions_of(result), tuple(result.missing_data), tuple(sorted({a.id for a in result.advisories})))


def reorder(value: Any, rng: random.Random) -> Any:
    """The same data with every mapping's keys in a shuffled order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: reorder(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [reorder(v, rng) for v in value]
    return value


def labs_current(doc: dict[str, Any]) -> bool:
    labs = doc.get("labs")
    if not isinstance(labs, dict) or not labs.get("date"):
        return False
    age = dt.date.fromisoformat(doc["evaluation_date"]) - dt.date.fromisoformat(labs["date"])
    return age.days <= 7


# --- properties -------------------------------------------------------------------------------------------------------
@examples(60)
@given(doc=VALID_PATIENTS)
def test_output_validates_one_decision_per_therapy(rulebase: Any, doc: dict[str, Any]) -> None:
    result = rulebase.evaluate(doc)
    out = result.to_dict()
    errors = sorted(validator("decision").iter_errors(out), key=str)
    assert not errors, [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]]
    assert [d["therapy"] for d in out["decisions"]] == list(THERAPIES)
    assert len({a["id"] for a in out["advisories"]}) == len(out["advisories"]), "advisories are de-duplicated by id"
    assert out["missing_data"] == sorted(set(out["missing_data"]))
    json.dumps(out, allow_nan=False)


@examples(30)
@given(doc=VALID_PATIENTS, seed=st.integers(0, 2**32 - 1))
def test_field_order_does_not_matter(rulebase: Any, doc: dict[str, Any], seed: int) -> None:
    shuffled = reorder(doc, random.Random(seed))
    assert rulebase.evaluate(shuffled).to_json() == rulebase.evaluate(doc).to_json()


CELL_UNITS = ("10^9/L", "10^3/uL", "/uL")


@examples(30)
@given(doc=synth_patients(missing_fraction=0.0), plt=st.integers(0, 500), wbc=st.integers(0, 200),
       anc=st.integers(0, 150), hb_tenths=st.integers(40, 180), ca_mg_dl_tenths=st.integers(60, 140),
       units=st.tuples(st.sampled_from(CELL_UNITS), st.sampled_from(CELL_UNITS), st.sampled_from(CELL_UNITS)))
def test_equivalent_units_give_the_same_decisions(rulebase: Any, doc: dict[str, Any], plt: int, wbc: int, anc: int,
                                                 hb_tenths: int, ca_mg_dl_tenths: int,
                                                 units: tuple[str, str, str]) -> None:
    """Platelets ×10⁹/L ↔ ×10³/µL ↔ /µL (×1000), Hb g/dL ↔ g/L (×10), calcium mg/dL ↔ mmol/L (×0.2495, exact to 6 dp).

    Calcium is given as corrected, with an explicit lower limit: by design (derive.py, "the brief's mg/dL form") an
    uncorrected mg/dL calcium is corrected with the mg/dL formula and the default lower limit is 8.4 mg/dL when the
    calcium is in mg/dL (2.0958 mmol/L, not 2.10), so those two paths are not unit-invariant in the 4th decimal.
    """
    # Canonical forms: cell counts in ×10⁹/L with values that are whole numbers of /µL (wbc, anc in tenths).
    canonical = copy.deepcopy(doc)
    c = canonical["labs"]
    c["platelets"] = {"value": plt, "unit": "10^9/L"}
    c["wbc"] = {"value": wbc / 10, "unit": "10^9/L"}
    c["anc"] = {"value": anc / 10, "unit": "10^9/L"}
    c["haemoglobin"] = {"value": hb_tenths / 10, "unit": "g/dL"}
    c["calcium"] = {"value": ca_mg_dl_tenths / 10, "unit": "mg/dL", "corrected": True}
    c["calcium_lln"] = {"value": 2.10, "unit": "mmol/L"}

    other = copy.deepcopy(canonical)
    o = other["labs"]
    for name, unit in zip(("platelets", "wbc", "anc"), units, strict=True):
        value = c[name]["value"]
        o[name] = {"value": round(value * 1000) if unit == "/uL" else value, "unit": unit}
    o["haemoglobin"] = {"value": hb_tenths, "unit": "g/L"}
    o["calcium"] = {"value": convert(ca_mg_dl_tenths / 10, "mg/dL", "calcium", "mmol/L"), "unit": "mmol/L",
                    "corrected": True}
    first, second = rulebase.evaluate(canonical), rulebase.evaluate(other)
    assert answer(first) == answer(second)
    assert first.to_dict()["normalised"] == second.to_dict()["normalised"]


@examples(30)
@given(doc=VALID_PATIENTS, sites=st.lists(st.text(min_size=1, max_size=30), max_size=4),
       alp=st.one_of(st.none(), st.integers(0, 5000)), psa=st.one_of(st.none(), st.floats(0, 5000)),
       psa_unit=st.sampled_from(["ng/mL", "ug/L"]), weight=st.one_of(st.none(), st.floats(1, 400)))
def test_irrelevant_fields_do_not_change_decisions(rulebase: Any, doc: dict[str, Any], sites: list[str],
                                                  alp: int | None, psa: float | None, psa_unit: str,
                                                  weight: float | None) -> None:
    base = copy.deepcopy(doc)
    base.setdefault("treatment_history", {})["ebrt"] = []  # painful-site text only matters against EBRT sites
    changed = copy.deepcopy(base)
    if isinstance(changed.get("pain"), dict):
        changed["pain"]["painful_sites"] = sites or None
    if isinstance(changed.get("labs"), dict):
        changed["labs"]["alp"] = None if alp is None else {"value": alp, "unit": "U/L"}
        changed["labs"]["psa"] = None if psa is None else {"value": psa, "unit": psa_unit}
    changed["demographics"]["weight_kg"] = weight
    assert decisions_of(rulebase.evaluate(changed)) == decisions_of(rulebase.evaluate(base))
    assert rulebase.evaluate(changed).missing_data == rulebase.evaluate(base).missing_data


@examples(40)
@given(doc=VALID_PATIENTS, low=st.integers(0, 400), rise=st.integers(1, 400), unit=st.sampled_from(CELL_UNITS),
       fresh=st.booleans())
def test_more_platelets_never_contraindicate(rulebase: Any, doc: dict[str, Any], low: int, rise: int,
                                            unit: str, fresh: bool) -> None:
    assume(isinstance(doc.get("labs"), dict))
    if fresh:  # labs of the evaluation day, so the counts are current and the haematology rules can fire
        doc["labs"]["date"] = doc["evaluation_date"]

    def with_platelets(value: int) -> dict[str, Any]:
        out = copy.deepcopy(doc)
        out["labs"]["platelets"] = {"value": value * 1000 if unit == "/uL" else value, "unit": unit}
        return out

    before = rulebase.evaluate(with_platelets(low))
    after = rulebase.evaluate(with_platelets(low + rise))
    for therapy in RADIONUCLIDES:
        was, now = before.decision(therapy), after.decision(therapy)
        if was.status in ("eligible", "recommended"):
            assert now.status != "contraindicated", (therapy, low, low + rise, now.reasons)
        added = (set(now.reasons) - set(was.reasons)) & HAEMATOLOGY_RULES
        assert not added, (therapy, low, low + rise, was.reasons, now.reasons)


@examples(20)
@given(doc=VALID_PATIENTS)
def test_same_input_same_bytes(rulebase: Any, doc: dict[str, Any]) -> None:
    first = rulebase.evaluate(copy.deepcopy(doc))
    second = rulebase.evaluate(json.loads(json.dumps(doc)))
    assert first.to_json().encode() == second.to_json().encode()
    assert json.dumps(first.graph.to_dict(), sort_keys=True) == json.dumps(second.graph.to_dict(), sort_keys=True)


def test_generators_reach_the_interesting_cases(rulebase: Any) -> None:
    """The strategies are not vacuous: current labs and several statuses per radionuclide occur."""
    docs = [patient_at(i, seed=7, bad_fraction=0.0, missing_fraction=0.15).document for i in range(40)]
    assert sum(labs_current(d) for d in docs) >= 10
    statuses = {rulebase.evaluate(d).decision("sr89").status for d in docs}
    assert len(statuses) >= 3, statuses
