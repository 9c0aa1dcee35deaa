"""Unit normalisation (DATA-01), corrected calcium (DATA-02), current labs (DATA-04) and unknowns as facts."""

from __future__ import annotations

import pytest

from radiopal.patient import build_facts, parse_patient
from radiopal.patient.units import convert


@pytest.mark.parametrize(
    ("value", "unit", "quantity", "expected"),
    [
        (95000, "/uL", "cell_count", 95.0),  # brief DATA-01 example
        (100000, "/uL", "cell_count", 100.0),  # exactly on a threshold stays on it
        (210, "10^3/uL", "cell_count", 210.0),
        (124, "g/L", "haemoglobin", 12.4),
        (7.7, "mmol/L", "haemoglobin", round(7.7 * 1.611, 6)),
        (9.4, "mg/dL", "calcium", round(9.4 * 0.2495, 6)),
        (88.4, "umol/L", "creatinine", 1.0),
        (4.0, "g/dL", "albumin", 40.0),
    ],
)
def test_conversions_reproduce_the_brief_factors(value, unit, quantity, expected):
    assert convert(value, unit, quantity) == pytest.approx(expected, abs=1e-6)


def facts(doc):
    return build_facts(parse_patient(doc))


def test_uncorrected_calcium_is_corrected_with_albumin(patient):
    patient["labs"]["calcium"] = {"value": 2.0, "unit": "mmol/L", "corrected": False}
    patient["labs"]["albumin"] = {"value": 3.0, "unit": "g/dL"}
    table = facts(patient)
    assert table["ca_corr"].value == pytest.approx(2.0 + 0.02 * (40 - 30))
    assert table["hypocalcaemia"].value is False


def test_uncorrected_calcium_without_albumin_is_unknown_and_names_albumin(patient):
    patient["labs"]["calcium"] = {"value": 2.0, "unit": "mmol/L", "corrected": False}
    table = facts(patient)
    assert not table["ca_corr"].known
    assert table["ca_corr"].missing == ("labs.albumin",)
    assert not table["hypocalcaemia"].known


def test_hypocalcaemia_uses_the_lab_lower_limit_when_given(patient):
    patient["labs"]["calcium"] = {"value": 2.15, "unit": "mmol/L", "corrected": True}
    assert facts(patient)["hypocalcaemia"].value is False  # default LLN 2.10
    patient["labs"]["calcium_lln"] = {"value": 8.8, "unit": "mg/dL"}  # 2.1956 mmol/L
    assert facts(patient)["hypocalcaemia"].value is True


def test_an_absent_optional_boolean_defaults_to_false_but_a_required_one_is_unknown(patient):
    del patient["bone_disease"]["bone_scan"]["superscan"]
    del patient["bone_disease"]["visceral_metastases"]
    table = facts(patient)
    assert table["superscan"].known and table["superscan"].value is False
    assert not table["visceral_metastases"].known
    assert table["visceral_metastases"].missing == ("bone_disease.visceral_metastases",)


def test_null_counts_as_absent(patient):
    patient["bone_disease"]["bone_scan"]["uptake_at_painful_sites"] = None
    assert not facts(patient)["uptake_at_painful_sites"].known


def test_a_woman_without_pregnancy_status_is_unknown_but_a_man_is_not_pregnant(patient):
    assert facts(patient)["pregnant"].value is False
    patient["demographics"]["sex"] = "female"
    assert not facts(patient)["pregnant"].known


def test_the_anc_stands_in_for_an_absent_wbc(patient):
    del patient["labs"]["wbc"]
    table = facts(patient)
    assert table["wbc_or_anc_current"].value == 3.9
    assert "ANC" in table["wbc_or_anc_current"].note


def test_labs_exactly_seven_days_old_are_current_and_eight_are_not(patient):
    patient["labs"]["date"] = "2025-05-26"
    assert facts(patient)["plt_current"].known
    patient["labs"]["date"] = "2025-05-25"
    table = facts(patient)
    assert not table["plt_current"].known and table["plt"].known


def test_myeloma_implies_a_radiosensitive_histology(patient):
    patient["primary_tumour"] = {"site": "myeloma"}
    assert facts(patient)["radiosensitive_histology"].value is True


def test_recent_myelosuppressive_chemotherapy_uses_42_days_for_nitrosoureas(patient):
    patient["treatment_history"]["chemotherapy"] = [
        {"agent": "lomustine", "class": "nitrosourea", "myelosuppressive": True, "last_dose_date": "2025-04-22",
         "ongoing": False}
    ]  # 41 days before 2025-06-02
    assert facts(patient)["recent_myelosuppressive_chemo"].value is True
    patient["treatment_history"]["chemotherapy"][0]["last_dose_date"] = "2025-04-21"  # 42 days
    assert facts(patient)["recent_myelosuppressive_chemo"].value is False


def test_calcium_exactly_on_the_default_limit_is_not_low_in_either_unit(patient):
    patient["labs"]["calcium"] = {"value": 2.10, "unit": "mmol/L", "corrected": True}
    assert facts(patient)["hypocalcaemia"].value is False
    patient["labs"]["calcium"] = {"value": 8.4, "unit": "mg/dL", "corrected": True}
    assert facts(patient)["hypocalcaemia"].value is False
    patient["labs"]["calcium"] = {"value": 8.3, "unit": "mg/dL", "corrected": True}
    assert facts(patient)["hypocalcaemia"].value is True


def test_uncorrected_calcium_in_mg_dl_is_corrected_in_mg_dl(patient):
    patient["labs"]["calcium"] = {"value": 8.0, "unit": "mg/dL", "corrected": False}
    patient["labs"]["albumin"] = {"value": 3.5, "unit": "g/dL"}  # 8.0 + 0.8 × 0.5 = 8.4 mg/dL: on the limit
    table = facts(patient)
    assert table["ca_corr"].value == pytest.approx(8.4 * 0.2495, abs=1e-6)
    assert table["hypocalcaemia"].value is False
