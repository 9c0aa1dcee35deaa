"""FHIR R4 Bundle → contract §A patient document (radiopal.fhir)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fhir.resources.R4B", reason="FHIR tests need the fhir extra: pip install 'radiopal[fhir]'")

from radiopal.errors import InputError, RulebaseError
from radiopal.fhir import (
    RADIOPAL_SYSTEM,
    bundle_to_document,
    contract_field_paths,
    default_code_table_path,
    load_code_table,
)
from radiopal.resources import kb_dir
from radiopal.yamlio import load_document

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "fhir"
BUNDLES = sorted(EXAMPLES.glob("*.bundle.json"))
VIGNETTES = REPO.parent / "shared" / "vignettes"

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ATC = "http://www.whocc.no/atc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
EXT = "http://radiopal.example/fhir/StructureDefinition/"


# ------------------------------------------------------------------------------------------------ builders


def bundle(*resources: dict[str, Any], timestamp: str | None = "2025-06-02T08:00:00Z",
           patient: dict[str, Any] | None = None) -> dict[str, Any]:
    """A collection Bundle: a Patient P1 (male, born 1954-03-01) first, then ``resources``."""
    pat = patient if patient is not None else {"resourceType": "Patient", "id": "P1", "gender": "male",
                                               "birthDate": "1954-03-01"}
    entries = [{"fullUrl": "urn:uuid:patient-p1", "resource": pat}]
    for i, res in enumerate(resources):
        entries.append({"fullUrl": f"urn:uuid:res-{i}-{res.get('id', 'x')}", "resource": res})
    out: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    if timestamp:
        out["timestamp"] = timestamp
    return out


def lab(rid: str, code: str, value: Any, ucum: str, when: str = "2025-05-30", status: str = "final",
        **extra: Any) -> dict[str, Any]:
    """A LOINC-coded lab Observation with a UCUM valueQuantity."""
    return {"resourceType": "Observation", "id": rid, "status": status,
            "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": "Patient/P1"},
            "effectiveDateTime": when, "valueQuantity": {"value": value, "unit": ucum, "system": UCUM, "code": ucum},
            **extra}


def flag(rid: str, code: str, value: dict[str, Any], when: str | None = "2025-06-01") -> dict[str, Any]:
    """A radiopal-coded Observation."""
    res = {"resourceType": "Observation", "id": rid, "status": "final",
           "code": {"coding": [{"system": RADIOPAL_SYSTEM, "code": code}]}, **value}
    if when:
        res["effectiveDateTime"] = when
    return res


def condition(rid: str, system: str, code: str, clinical: str | None = "active") -> dict[str, Any]:
    """A Condition with one coding."""
    res: dict[str, Any] = {"resourceType": "Condition", "id": rid, "code": {"coding": [{"system": system, "code": code}]},
                           "subject": {"reference": "Patient/P1"}}
    if clinical:
        res["clinicalStatus"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                             "code": clinical}]}
    return res


def statement(rid: str, concept: dict[str, Any], status: str = "active", start: str = "2024-01-01",
              end: str | None = None, **extra: Any) -> dict[str, Any]:
    """A MedicationStatement with a medicationCodeableConcept."""
    period = {"start": start, **({"end": end} if end else {})}
    return {"resourceType": "MedicationStatement", "id": rid, "status": status, "medicationCodeableConcept": concept,
            "subject": {"reference": "Patient/P1"}, "effectivePeriod": period, **extra}


def administration(rid: str, concept: dict[str, Any], when: str, **extra: Any) -> dict[str, Any]:
    """A completed MedicationAdministration."""
    return {"resourceType": "MedicationAdministration", "id": rid, "status": "completed",
            "medicationCodeableConcept": concept, "subject": {"reference": "Patient/P1"}, "effectiveDateTime": when,
            **extra}


def problems(excinfo: pytest.ExceptionInfo[InputError]) -> dict[str, str]:
    """Problem path → message of a raised InputError."""
    return {p.path: p.message for p in excinfo.value.problems}


def warned(mapped: Any) -> dict[str, str]:
    """Warning path (in the Bundle) → message of a mapping."""
    return {w.path: w.message for w in mapped.warnings}


# ------------------------------------------------------------------------------------------------ examples


def test_there_are_example_bundles_for_at_least_four_vignettes() -> None:
    names = {p.name.split(".")[0] for p in BUNDLES}
    assert {"V01", "V05", "V19"} <= names
    assert len(names) >= 4


@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: p.name.split(".")[0])
def test_each_example_bundle_maps_to_the_patient_document_beside_it(path: Path) -> None:
    expected = load_document(path.with_name(path.name.replace(".bundle.json", ".patient.yaml"))).data
    mapped = bundle_to_document(path)
    assert mapped.document == expected
    assert list(mapped.document)[:3] == ["schema_version", "patient_id", "evaluation_date"]


@pytest.mark.parametrize("path", BUNDLES, ids=lambda p: p.name.split(".")[0])
def test_each_mapped_example_passes_the_patient_schema(path: Path) -> None:
    import jsonschema

    schema_file = kb_dir() / "schemas" / "patient.schema.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(bundle_to_document(path).document)]
    assert errors == []


@pytest.mark.skipif(not VIGNETTES.is_dir(), reason="../shared/vignettes is not beside this checkout")
@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.patient.yaml")), ids=lambda p: p.name.split(".")[0])
def test_each_patient_copy_equals_its_vignette_except_the_declared_unit_edits(path: Path) -> None:
    vid = path.name.split(".")[0]
    vignette = load_document(VIGNETTES / f"{vid}.yaml").data
    vignette.pop("expected")
    copy_doc = load_document(path).data
    edited = "EDITED" in path.read_text(encoding="utf-8").split("schema_version")[0]
    if not edited:
        assert copy_doc == vignette
        return
    # Only lab value/unit pairs may differ, and only where the header says so.
    for key in set(vignette) | set(copy_doc):
        if key != "labs":
            assert copy_doc.get(key) == vignette.get(key), key
    for name, value in vignette["labs"].items():
        if isinstance(value, dict) and copy_doc["labs"][name] != value:
            assert set(copy_doc["labs"][name]) == set(value) == {"value", "unit"}, name
        else:
            assert copy_doc["labs"][name] == value, name


def test_the_example_bundles_exercise_every_cell_count_unit() -> None:
    units = set()
    for path in BUNDLES:
        for entry in json.loads(path.read_text(encoding="utf-8"))["entry"]:
            quantity = entry["resource"].get("valueQuantity")
            if quantity:
                units.add(quantity["code"])
    assert {"10*9/L", "10*3/uL", "/uL", "{cells}/uL", "g/dL", "g/L", "mg/dL", "mL/min/{1.73_m2}"} <= units


# ------------------------------------------------------------------------------------------------ units


@pytest.mark.parametrize(
    ("loinc", "ucum", "value", "field", "expected"),
    [
        ("777-3", "10*9/L", 210, "platelets", {"value": 210, "unit": "10^9/L"}),
        ("777-3", "10*3/uL", 210, "platelets", {"value": 210, "unit": "10^3/uL"}),
        ("777-3", "/uL", 210000, "platelets", {"value": 210000, "unit": "/uL"}),
        ("26515-7", "{cells}/uL", 95000, "platelets", {"value": 95000, "unit": "/uL"}),
        ("6690-2", "10*3/uL", 6.1, "wbc", {"value": 6.1, "unit": "10^3/uL"}),
        ("26464-8", "10*9/L", 6.1, "wbc", {"value": 6.1, "unit": "10^9/L"}),
        ("751-8", "/uL", 3900, "anc", {"value": 3900, "unit": "/uL"}),
        ("718-7", "g/dL", 12.1, "haemoglobin", {"value": 12.1, "unit": "g/dL"}),
        ("718-7", "g/L", 121, "haemoglobin", {"value": 121, "unit": "g/L"}),
        ("718-7", "mmol/L", 7.5, "haemoglobin", {"value": 7.5, "unit": "mmol/L"}),
        ("2160-0", "mg/dL", 0.9, "serum_creatinine", {"value": 0.9, "unit": "mg/dL"}),
        ("14682-9", "umol/L", 80, "serum_creatinine", {"value": 80, "unit": "umol/L"}),
        ("35591-7", "mL/min", 78, "creatinine_clearance", {"value": 78, "unit": "mL/min", "method": "cockcroft_gault"}),
        ("98979-8", "mL/min/{1.73_m2}", 64, "creatinine_clearance", {"value": 64, "unit": "mL/min", "method": "egfr"}),
        ("62238-1", "mL/min/{1.73_m2}", 64, "creatinine_clearance", {"value": 64, "unit": "mL/min", "method": "egfr"}),
        ("33914-3", "mL/min/{1.73_m2}", 64, "creatinine_clearance", {"value": 64, "unit": "mL/min", "method": "egfr"}),
        ("17861-6", "mg/dL", 9.2, "calcium", {"value": 9.2, "unit": "mg/dL", "corrected": False}),
        ("2000-8", "mmol/L", 2.3, "calcium", {"value": 2.3, "unit": "mmol/L", "corrected": False}),
        ("29265-6", "mmol/L", 2.35, "calcium", {"value": 2.35, "unit": "mmol/L", "corrected": True}),
        ("46099-8", "mg/dL", 9.3, "calcium", {"value": 9.3, "unit": "mg/dL", "corrected": True}),
        ("1751-7", "g/L", 40, "albumin", {"value": 40, "unit": "g/L"}),
        ("1751-7", "g/dL", 4.0, "albumin", {"value": 4.0, "unit": "g/dL"}),
        ("6768-6", "U/L", 180, "alp", {"value": 180, "unit": "U/L"}),
        ("2857-1", "ng/mL", 45, "psa", {"value": 45, "unit": "ng/mL"}),
    ],
)
def test_each_ucum_unit_maps_to_the_contract_unit_without_conversion(
    loinc: str, ucum: str, value: Any, field: str, expected: dict[str, Any]
) -> None:
    doc = bundle_to_document(bundle(lab("o1", loinc, value, ucum))).document
    assert doc["labs"][field] == expected
    assert doc["labs"]["date"] == "2025-05-30"


def test_calcium_reference_range_low_becomes_the_calcium_lower_limit() -> None:
    ca = lab("ca", "29265-6", 2.35, "mmol/L", referenceRange=[
        {"low": {"value": 2.15, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}}])
    doc = bundle_to_document(bundle(ca)).document
    assert doc["labs"]["calcium_lln"] == {"value": 2.15, "unit": "mmol/L"}


def test_another_ucum_unit_of_the_same_dimension_is_converted_with_pint() -> None:
    mapped = bundle_to_document(bundle(lab("ok", "718-7", 12, "g/dL"), lab("mega", "777-3", 210000, "10*6/L")))
    assert mapped.document["labs"]["platelets"] == {"value": 210, "unit": "10^9/L"}  # 210 000 × 10⁶/L
    assert "converted" in mapped.provenance["labs.platelets"]["unit"]


def test_a_unit_that_cannot_be_converted_leaves_only_that_field_unknown_with_a_warning() -> None:
    mapped = bundle_to_document(bundle(lab("ok", "718-7", 12, "g/dL"), lab("bad", "777-3", 210, "mg/dL")))
    assert "platelets" not in mapped.document["labs"]
    assert mapped.document["labs"]["haemoglobin"] == {"value": 12, "unit": "g/dL"}
    message = warned(mapped)["entry[2].resource.valueQuantity"]
    assert "labs.platelets is left unknown" in message and "mg/dL" in message and "10*9/L" in message
    (warning,) = [w for w in mapped.warnings if w.path == "entry[2].resource.valueQuantity"]
    assert warning.to_dict() == {"source": "Observation/bad", "element": "Observation.valueQuantity",
                                 "message": message}


def test_a_quantity_in_another_unit_system_is_read_by_its_unit_text_or_left_unknown() -> None:
    obs = lab("o1", "777-3", 210, "10*9/L")
    obs["valueQuantity"]["system"] = "http://example.org/units"
    obs["valueQuantity"]["unit"] = "x10*9/L"
    assert bundle_to_document(bundle(obs)).document["labs"]["platelets"] == {"value": 210, "unit": "10^9/L"}
    obs["valueQuantity"]["unit"] = "thousands"
    mapped = bundle_to_document(bundle(obs))
    assert "labs" not in mapped.document
    assert "not UCUM" in warned(mapped)["entry[1].resource.valueQuantity"]


def test_a_result_reported_as_a_bound_is_left_out_with_a_warning() -> None:
    obs = lab("o1", "98979-8", 90, "mL/min/{1.73_m2}")
    obs["valueQuantity"]["comparator"] = ">"
    mapped = bundle_to_document(bundle(obs))
    assert "labs" not in mapped.document
    assert any("bound" in w.message for w in mapped.warnings)


def test_a_value_of_the_wrong_type_leaves_the_field_unknown_with_a_warning() -> None:
    ecog = {"resourceType": "Observation", "id": "e", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "89247-1"}]}, "valueString": "one"}
    mapped = bundle_to_document(bundle(ecog))
    assert "performance" not in mapped.document
    assert "valueInteger" in warned(mapped)["entry[1].resource.valueString"]


def test_an_answer_outside_the_contract_enumeration_leaves_the_field_unknown_listing_the_answers() -> None:
    obs = flag("p", "bone-pattern", {"valueCodeableConcept": {"coding": [{"system": RADIOPAL_SYSTEM, "code": "lytic"}]}})
    mapped = bundle_to_document(bundle(obs))
    assert "bone_disease" not in mapped.document
    assert "osteoblastic" in warned(mapped)["entry[1].resource.valueCodeableConcept.coding"]


def test_a_decimal_where_an_integer_is_expected_is_rounded_with_a_warning() -> None:
    pain = lab("pain", "72514-3", 2.5, "{score}")
    mapped = bundle_to_document(bundle(pain))
    assert mapped.document["pain"]["score_nrs"] == 3  # half up
    assert "rounded to 3" in warned(mapped)["entry[1].resource.valueQuantity.value"]


def test_only_the_latest_result_is_judged_an_unusable_older_one_is_skipped_silently() -> None:
    old = lab("old", "777-3", 210, "mg/dL", "2025-05-01")
    new = lab("new", "777-3", 190, "10*9/L", "2025-05-30")
    mapped = bundle_to_document(bundle(old, new))
    assert mapped.document["labs"]["platelets"] == {"value": 190, "unit": "10^9/L"}
    assert mapped.warnings == ()


def test_an_unusable_latest_result_leaves_the_field_unknown_rather_than_falling_back() -> None:
    old = lab("old", "777-3", 190, "10*9/L", "2025-05-01")
    new = lab("new", "777-3", 210, "mg/dL", "2025-05-30")
    mapped = bundle_to_document(bundle(old, new))
    assert "platelets" not in mapped.document.get("labs", {})


def test_a_data_absent_reason_on_the_latest_result_leaves_the_field_unknown() -> None:
    old = lab("old", "718-7", 12, "g/dL", "2025-05-01")
    new = lab("new", "718-7", 0, "g/dL", "2025-05-30")
    del new["valueQuantity"]
    new["dataAbsentReason"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                           "code": "error"}], "text": "haemolysed"}
    mapped = bundle_to_document(bundle(old, new))
    assert "haemoglobin" not in mapped.document.get("labs", {})
    assert "haemolysed" in warned(mapped)["entry[2].resource.dataAbsentReason"]


def test_a_value_in_a_component_feeds_its_field() -> None:
    panel = {"resourceType": "Observation", "id": "renal", "status": "final",
             "code": {"coding": [{"system": LOINC, "code": "24362-6"}]}, "effectiveDateTime": "2025-05-30",
             "component": [{"code": {"coding": [{"system": LOINC, "code": "33914-3"}]},
                            "valueQuantity": {"value": 55, "unit": "mL/min/{1.73_m2}", "system": UCUM,
                                              "code": "mL/min/{1.73_m2}"}}]}
    mapped = bundle_to_document(bundle(panel))
    assert mapped.document["labs"]["creatinine_clearance"] == {"value": 55, "unit": "mL/min", "method": "egfr"}
    assert mapped.provenance["labs.creatinine_clearance"]["element"] == "component.0"


def test_a_weight_in_pounds_is_converted_to_kilograms() -> None:
    weight = lab("w", "29463-7", 185, "[lb_av]")
    assert bundle_to_document(bundle(weight)).document["demographics"]["weight_kg"] == pytest.approx(83.914588)


@pytest.mark.parametrize(("text", "expected"), [("K/uL", {"value": 210, "unit": "10^3/uL"}),
                                                ("x10*9/L", {"value": 210, "unit": "10^9/L"})])
def test_a_quantity_with_only_an_unambiguous_unit_text_is_read(text: str, expected: dict[str, Any]) -> None:
    obs = lab("o1", "777-3", 210, "10*9/L")
    obs["valueQuantity"] = {"value": 210, "unit": text}
    assert bundle_to_document(bundle(obs)).document["labs"]["platelets"] == expected


# ------------------------------------------------------------------------------------------------ latest result


def test_the_latest_final_result_wins_over_an_older_one_and_over_a_later_preliminary_one() -> None:
    raw = bundle(
        lab("old", "777-3", 150, "10*9/L", "2025-05-01"),
        lab("new", "777-3", 210, "10*9/L", "2025-05-30T08:00:00+02:00"),
        lab("prelim", "777-3", 90, "10*9/L", "2025-06-01", status="preliminary"),
    )
    mapped = bundle_to_document(raw)
    assert mapped.document["labs"]["platelets"] == {"value": 210, "unit": "10^9/L"}
    assert mapped.document["labs"]["date"] == "2025-05-30"
    assert mapped.provenance["labs.platelets"]["resource"] == "Observation/new"
    reasons = {i["resource"]: i["reason"] for i in mapped.ignored}
    assert "preliminary" in reasons["Observation/prelim"]
    assert "superseded" in reasons["Observation/old"]


@pytest.mark.parametrize("status", ["amended", "corrected"])
def test_amended_and_corrected_results_count_like_final_ones(status: str) -> None:
    raw = bundle(lab("a", "777-3", 150, "10*9/L", "2025-05-01"), lab("b", "777-3", 170, "10*9/L", "2025-05-02",
                                                                     status=status))
    assert bundle_to_document(raw).document["labs"]["platelets"]["value"] == 170


def test_effective_period_end_and_then_issued_order_the_results() -> None:
    by_period = lab("p", "718-7", 11.0, "g/dL")
    del by_period["effectiveDateTime"]
    by_period["effectivePeriod"] = {"start": "2025-05-01", "end": "2025-05-31"}
    older = lab("d", "718-7", 12.0, "g/dL", "2025-05-30")
    assert bundle_to_document(bundle(older, by_period)).document["labs"]["haemoglobin"]["value"] == 11.0
    first = lab("i1", "718-7", 10.0, "g/dL", "2025-05-30", issued="2025-05-30T10:00:00Z")
    second = lab("i2", "718-7", 10.5, "g/dL", "2025-05-30", issued="2025-05-30T12:00:00Z")
    assert bundle_to_document(bundle(second, first)).document["labs"]["haemoglobin"]["value"] == 10.5


def test_two_results_with_the_same_time_that_disagree_leave_the_field_unknown() -> None:
    raw = bundle(lab("a", "777-3", 150, "10*9/L"), lab("b", "26515-7", 190, "10*9/L"))
    mapped = bundle_to_document(raw)
    assert "labs" not in mapped.document
    assert any("disagree" in m for m in warned(mapped).values())


def test_a_corrected_calcium_wins_over_a_total_calcium_taken_at_the_same_time() -> None:
    raw = bundle(lab("tot", "2000-8", 2.20, "mmol/L"), lab("corr", "29265-6", 2.35, "mmol/L"))
    assert bundle_to_document(raw).document["labs"]["calcium"] == {"value": 2.35, "unit": "mmol/L", "corrected": True}


def test_egfr_is_used_only_when_there_is_no_cockcroft_gault_clearance() -> None:
    egfr = lab("egfr", "98979-8", 55, "mL/min/{1.73_m2}", "2025-06-01")
    crcl = lab("crcl", "35591-7", 48, "mL/min", "2025-05-30")
    assert bundle_to_document(bundle(egfr, crcl)).document["labs"]["creatinine_clearance"] == {
        "value": 48, "unit": "mL/min", "method": "cockcroft_gault"}
    assert bundle_to_document(bundle(egfr)).document["labs"]["creatinine_clearance"]["method"] == "egfr"


def test_labs_date_is_the_oldest_blood_count_date_so_an_old_count_never_passes_as_current() -> None:
    mapped = bundle_to_document(bundle(lab("p", "777-3", 210, "10*9/L", "2025-04-01"),
                                       lab("h", "718-7", 12, "g/dL", "2025-05-30")))
    assert mapped.document["labs"]["date"] == "2025-04-01"
    assert any("labs.haemoglobin 2025-05-30" in w.message for w in mapped.warnings)


def test_labs_date_follows_the_counts_not_a_later_calcium() -> None:
    mapped = bundle_to_document(bundle(lab("p", "777-3", 210, "10*9/L", "2025-05-28"),
                                       lab("c", "29265-6", 2.3, "mmol/L", "2025-05-31")))
    assert mapped.document["labs"]["date"] == "2025-05-28"


# ------------------------------------------------------------------------------------------------ invalid input


def test_an_invalid_r4_resource_is_an_input_error_listing_element_paths() -> None:
    raw = bundle(lab("o1", "777-3", "abc", "10*9/L"))
    with pytest.raises(InputError) as excinfo:
        bundle_to_document(raw)
    assert "entry[1].resource.valueQuantity.value" in problems(excinfo)
    assert all(p.path for p in excinfo.value.problems)


def test_an_r4_condition_without_clinical_status_is_valid_because_the_r4b_model_is_used() -> None:
    raw = bundle(condition("c", ICD10, "C61", clinical=None))
    assert bundle_to_document(raw).document["primary_tumour"]["site"] == "prostate"


def test_an_unknown_resource_type_is_an_input_error_at_its_resource_type() -> None:
    with pytest.raises(InputError) as excinfo:
        bundle_to_document(bundle({"resourceType": "Widget", "id": "w"}))
    assert "entry[1].resource.resourceType" in problems(excinfo)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"resourceType": "Patient", "id": "P1"}, "resourceType"),
        ({"type": "collection"}, "resourceType"),
        ([1, 2, 3], ""),
        ('{"resourceType": "Observation"}', "resourceType"),
        ("{not json", ""),
    ],
    ids=["patient", "no-resource-type", "list", "json-text-observation", "broken-json"],
)
def test_a_non_bundle_is_an_input_error(value: Any, path: str) -> None:
    with pytest.raises(InputError) as excinfo:
        bundle_to_document(value)
    assert excinfo.value.problems
    assert excinfo.value.problems[0].path == path


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        bundle_to_document(tmp_path / "nope.json")


def test_a_bundle_file_and_its_json_text_map_alike(tmp_path: Path) -> None:
    raw = bundle(lab("o1", "777-3", 210, "10*9/L"))
    path = tmp_path / "b.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    assert bundle_to_document(path).document == bundle_to_document(json.dumps(raw)).document


def test_a_bundle_without_a_patient_is_an_input_error() -> None:
    raw = bundle()
    raw["entry"] = []
    with pytest.raises(InputError) as excinfo:
        bundle_to_document(raw)
    assert "no Patient" in excinfo.value.problems[0].message


def test_a_resource_about_someone_else_never_reaches_the_document() -> None:
    obs = lab("o1", "777-3", 210, "10*9/L")
    obs["subject"] = {"reference": "Patient/SOMEONE-ELSE"}
    mapped = bundle_to_document(bundle(obs))
    assert "labs" not in mapped.document
    assert "not the patient" in warned(mapped)["entry[1].resource.subject.reference"]


def test_a_bundle_of_several_patients_needs_the_patient_chosen_and_maps_only_that_one() -> None:
    other = {"resourceType": "Patient", "id": "P2", "gender": "female", "birthDate": "1960-01-01"}
    mine = lab("mine", "777-3", 210, "10*9/L")
    theirs = lab("theirs", "777-3", 90, "10*9/L")
    theirs["subject"] = {"reference": "Patient/P2"}
    raw = bundle(other, mine, theirs)
    with pytest.raises(InputError) as excinfo:
        bundle_to_document(raw)
    assert "Patient/P1, Patient/P2" in excinfo.value.problems[0].message
    assert "--patient" in excinfo.value.problems[0].message
    mapped = bundle_to_document(raw, patient="P1")
    assert mapped.document["labs"]["platelets"]["value"] == 210
    mapped = bundle_to_document(raw, patient="P2")
    assert mapped.document["demographics"]["sex"] == "female"
    assert mapped.document["labs"]["platelets"]["value"] == 90
    with pytest.raises(InputError) as excinfo:
        bundle_to_document(raw, patient="P9")
    assert "no Patient has the id or identifier 'P9'" in excinfo.value.problems[0].message


def test_subjects_may_point_at_the_patient_by_full_url() -> None:
    obs = lab("o1", "777-3", 210, "10*9/L")
    obs["subject"] = {"reference": "urn:uuid:patient-p1"}
    assert bundle_to_document(bundle(obs)).document["labs"]["platelets"]["value"] == 210


# ------------------------------------------------------------------------------------------------ patient


def test_age_is_counted_in_whole_years_to_the_evaluation_date() -> None:
    assert bundle_to_document(bundle()).document["demographics"] == {"age_years": 71, "sex": "male"}
    assert bundle_to_document(bundle(), evaluation_date="2025-03-01").document["demographics"]["age_years"] == 71
    assert bundle_to_document(bundle(), evaluation_date="2025-02-28").document["demographics"]["age_years"] == 70


def test_the_evaluation_date_argument_overrides_the_bundle_timestamp() -> None:
    mapped = bundle_to_document(bundle(), evaluation_date="2025-01-15")
    assert mapped.document["evaluation_date"] == "2025-01-15"
    assert bundle_to_document(bundle()).document["evaluation_date"] == "2025-06-02"


def test_a_bundle_without_timestamp_is_evaluated_as_of_today_and_says_so() -> None:
    import datetime as dt

    mapped = bundle_to_document(bundle(timestamp=None), today=dt.date(2025, 7, 1))
    assert mapped.document["evaluation_date"] == "2025-07-01"
    assert mapped.evaluation_date_from == "today"
    assert "evaluated as of today, 2025-07-01" in warned(mapped)["timestamp"]
    given = bundle_to_document(bundle(timestamp=None), evaluation_date=dt.date(2025, 6, 2))
    assert (given.document["evaluation_date"], given.evaluation_date_from) == ("2025-06-02", "argument")
    assert bundle_to_document(bundle()).evaluation_date_from == "Bundle.timestamp"


def test_results_after_the_evaluation_date_are_not_known_on_it() -> None:
    raw = bundle(lab("may", "777-3", 150, "10*9/L", "2025-05-01"), lab("june", "777-3", 210, "10*9/L", "2025-06-10"))
    assert bundle_to_document(raw, evaluation_date="2025-05-15").document["labs"]["platelets"]["value"] == 150
    assert bundle_to_document(raw, evaluation_date="2025-06-15").document["labs"]["platelets"]["value"] == 210


@pytest.mark.parametrize("gender", ["other", "unknown"])
def test_a_gender_other_than_male_or_female_leaves_sex_unknown(gender: str) -> None:
    patient = {"resourceType": "Patient", "id": "P1", "gender": gender, "birthDate": "1954-03-01"}
    mapped = bundle_to_document(bundle(patient=patient))
    assert mapped.document["demographics"] == {"age_years": 71}
    assert "demographics.sex is left unknown" in warned(mapped)["entry[0].resource.gender"]


def test_a_birth_year_alone_leaves_the_age_unknown_when_it_is_ambiguous() -> None:
    patient = {"resourceType": "Patient", "id": "P1", "gender": "female", "birthDate": "1954"}
    mapped = bundle_to_document(bundle(patient=patient))
    assert "age_years" not in mapped.document["demographics"]
    assert "70 or 71" in warned(mapped)["entry[0].resource.birthDate"]


# ------------------------------------------------------------------------------------------------ provenance


def test_provenance_keeps_the_resource_id_and_the_full_url() -> None:
    mapped = bundle_to_document(bundle(lab("plt-42", "777-3", 210, "10*9/L")))
    source = mapped.provenance["labs.platelets"]
    assert source["resource"] == "Observation/plt-42"
    assert source["fullUrl"] == "urn:uuid:res-0-plt-42"
    assert source["code"] == f"{LOINC}|777-3"
    assert source["verified"] == "verified"
    assert mapped.provenance["patient_id"]["resource"] == "Patient/P1"
    assert mapped.provenance["labs.date"]["resource"] == "Observation/plt-42"


def test_provenance_of_an_example_bundle_points_at_its_entries() -> None:
    path = EXAMPLES / "V01.bundle.json"
    full_urls = {e["fullUrl"] for e in json.loads(path.read_text(encoding="utf-8"))["entry"]}
    mapped = bundle_to_document(path)
    for field, source in mapped.provenance.items():
        if source.get("fullUrl") is not None:
            assert source["fullUrl"] in full_urls, field


# ------------------------------------------------------------------------------------------------ medications


@pytest.mark.parametrize(
    ("concept", "matched", "agent"),
    [
        ({"coding": [{"system": ATC, "code": "L01CD02"}], "text": "something else"}, "atc", "docetaxel"),
        ({"coding": [{"system": RXNORM, "code": "72962"}]}, "rxnorm", "docetaxel"),
        ({"coding": [{"system": "http://example.org/local", "code": "X1"}], "text": "DOCEtaxel 75 mg/m²"}, "text",
         "docetaxel"),
        ({"coding": [{"system": "http://example.org/local", "code": "X1", "display": "Taxotere (docetaxel) IV"}]},
         "text", "docetaxel"),
    ],
    ids=["atc", "rxnorm", "text", "coding-display"],
)
def test_a_medication_is_matched_by_atc_by_rxnorm_or_by_text_and_the_path_is_logged(
    concept: dict[str, Any], matched: str, agent: str
) -> None:
    raw = bundle(statement("m", concept, status="completed", start="2024-09-01", end="2024-12-16"))
    mapped = bundle_to_document(raw)
    assert mapped.document["treatment_history"]["chemotherapy"] == [
        {"agent": agent, "class": "taxane", "myelosuppressive": True, "last_dose_date": "2024-12-16", "ongoing": False}]
    assert mapped.provenance["treatment_history.chemotherapy[0]"]["matched"] == matched
    assert mapped.provenance["treatment_history.chemotherapy[0]"]["resource"] == "MedicationStatement/m"


def test_atc_is_preferred_over_rxnorm_when_both_codings_name_the_agent() -> None:
    concept = {"coding": [{"system": RXNORM, "code": "77655"}, {"system": ATC, "code": "M05BA08"}]}
    mapped = bundle_to_document(bundle(statement("z", concept)))
    assert mapped.provenance["treatment_history.bone_health_agents[0]"]["matched"] == "atc"


def test_codings_that_name_two_different_agents_leave_the_drug_unknown_with_a_warning() -> None:
    concept = {"coding": [{"system": ATC, "code": "M05BA08"}, {"system": ATC, "code": "M05BX04"}]}
    mapped = bundle_to_document(bundle(statement("z", concept)))
    assert mapped.document["treatment_history"]["bone_health_agents"] == []
    assert "does not choose" in warned(mapped)["entry[1].resource.medicationCodeableConcept.coding"]


def test_lhrh_analogues_are_matched_by_atc_prefix() -> None:
    concept = {"coding": [{"system": ATC, "code": "L02AE03"}], "text": "Zoladex"}
    hormonal = bundle_to_document(bundle(statement("g", concept, start="2022-01-01"))).document["treatment_history"][
        "hormonal"]
    assert hormonal == [{"agent": "adt_lhrh", "start_date": "2022-01-01", "ongoing": True}]


def test_contained_and_bundle_medications_are_resolved_and_folded_into_one_entry() -> None:
    med = {"resourceType": "Medication", "id": "zol", "code": {"coding": [{"system": ATC, "code": "M05BA08"}]}}
    contained = {"resourceType": "MedicationAdministration", "id": "a1", "status": "completed",
                 "contained": [{"resourceType": "Medication", "id": "m", "code": {"text": "zoledronic acid 4 mg"}}],
                 "medicationReference": {"reference": "#m"}, "subject": {"reference": "Patient/P1"},
                 "effectiveDateTime": "2025-04-10"}
    referenced = {"resourceType": "MedicationAdministration", "id": "a2", "status": "completed",
                  "medicationReference": {"reference": "Medication/zol"}, "subject": {"reference": "Patient/P1"},
                  "effectiveDateTime": "2025-05-08"}
    ongoing = {"resourceType": "MedicationRequest", "id": "r", "status": "active", "intent": "order",
               "medicationReference": {"reference": "Medication/zol"}, "subject": {"reference": "Patient/P1"},
               "authoredOn": "2025-03-10"}
    mapped = bundle_to_document(bundle(med, contained, referenced, ongoing))
    assert mapped.document["treatment_history"]["bone_health_agents"] == [
        {"agent": "zoledronic_acid", "start_date": "2025-03-10", "last_dose_date": "2025-05-08", "ongoing": True}]
    sources = mapped.provenance["treatment_history.bone_health_agents[0]"]["sources"]
    assert {s["resource"] for s in sources} == {"MedicationAdministration/a1", "MedicationAdministration/a2",
                                                 "MedicationRequest/r"}


def test_a_stopped_hormonal_treatment_carries_its_end_date_and_best_response_is_read_from_the_extension() -> None:
    enza = statement("e", {"coding": [{"system": ATC, "code": "L02BB04"}]}, status="stopped", start="2023-03-01",
                     end="2025-04-14")
    doce = statement("d", {"text": "docetaxel"}, status="completed", start="2024-08-01", end="2024-12-16",
                     extension=[{"url": EXT + "best-response", "valueCode": "stable"}])
    history = bundle_to_document(bundle(enza, doce)).document["treatment_history"]
    assert history["hormonal"] == [{"agent": "enzalutamide", "start_date": "2023-03-01", "end_date": "2025-04-14",
                                    "ongoing": False}]
    assert history["chemotherapy"][0]["best_response"] == "stable"


def test_draft_orders_plans_and_not_taken_statements_are_ignored() -> None:
    concept = {"coding": [{"system": ATC, "code": "L02BX03"}]}
    plan = {"resourceType": "MedicationRequest", "id": "p", "status": "active", "intent": "plan",
            "medicationCodeableConcept": concept, "subject": {"reference": "Patient/P1"}}
    draft = {**plan, "id": "d", "status": "draft", "intent": "order"}
    not_taken = statement("n", concept, status="not-taken")
    mapped = bundle_to_document(bundle(plan, draft, not_taken))
    assert mapped.document["treatment_history"]["hormonal"] == []
    assert len(mapped.ignored) == 3


def test_a_bundle_without_medication_resources_leaves_hormonal_therapy_unknown() -> None:
    mapped = bundle_to_document(bundle())
    assert "hormonal" not in mapped.document["treatment_history"]
    assert mapped.document["treatment_history"]["chemotherapy"] == []
    assert mapped.warnings == ()  # nothing was unusable: missing_data names the field where a therapy needs it


def test_each_radionuclide_administration_is_one_entry_with_its_activity_in_mbq() -> None:
    ra = {"coding": [{"system": ATC, "code": "V10XX03"}]}
    doses = [administration(f"ra{i}", ra, day, dosage={"dose": {"value": 4.5, "unit": "mCi", "system": UCUM,
                                                                 "code": "mCi"}})
             for i, day in enumerate(["2025-03-03", "2025-03-31", "2025-04-28"])]
    duplicate = {"resourceType": "Procedure", "id": "proc", "status": "completed", "code": {"text": "Ra-223 injection"},
                 "subject": {"reference": "Patient/P1"}, "usedCode": [{"text": "Xofigo"}],
                 "performedDateTime": "2025-04-28",
                 "extension": [{"url": EXT + "pain-response", "valueBoolean": True}]}
    history = bundle_to_document(bundle(*doses, duplicate)).document["treatment_history"]
    assert history["radionuclides"] == [
        {"agent": "ra223", "date": "2025-03-03", "activity_MBq": 166.5},
        {"agent": "ra223", "date": "2025-03-31", "activity_MBq": 166.5},
        {"agent": "ra223", "date": "2025-04-28", "activity_MBq": 166.5, "response": True},
    ]


def test_an_ebrt_procedure_maps_date_site_dose_fractions_and_technique() -> None:
    proc = {"resourceType": "Procedure", "id": "rt", "status": "completed",
            "extension": [{"url": EXT + "ebrt-dose", "valueQuantity": {"value": 8, "unit": "Gy", "system": UCUM,
                                                                       "code": "Gy"}},
                          {"url": EXT + "ebrt-fractions", "valueInteger": 1}],
            "code": {"coding": [{"system": RADIOPAL_SYSTEM, "code": "ebrt-conventional"}]},
            "subject": {"reference": "Patient/P1"},
            "performedPeriod": {"start": "2024-09-10", "end": "2024-09-10"}, "bodySite": [{"text": "left femur"}]}
    sbrt = {**proc, "id": "sbrt", "extension": [], "bodySite": [{"coding": [{"system": SNOMED, "code": "1",
                                                                               "display": "T9 vertebra"}]}],
            "code": {"coding": [{"system": RADIOPAL_SYSTEM, "code": "ebrt-sbrt"}]},
            "performedPeriod": {"start": "2025-01-06", "end": "2025-01-10"}}
    mapped = bundle_to_document(bundle(sbrt, proc))
    assert mapped.document["treatment_history"]["ebrt"] == [
        {"date": "2024-09-10", "site": "left femur", "dose_Gy": 8, "fractions": 1, "technique": "conventional"},
        {"date": "2025-01-10", "site": "T9 vertebra", "technique": "sbrt"},
    ]
    assert mapped.provenance["treatment_history.ebrt[1]"]["resource"] == "Procedure/sbrt"


def test_a_phosphonate_allergy_becomes_a_hypersensitivity() -> None:
    allergy = {"resourceType": "AllergyIntolerance", "id": "al", "patient": {"reference": "Patient/P1"},
               "code": {"text": "Bisphosphonates (zoledronic acid) - rash"}}
    other = {**allergy, "id": "al2", "code": {"text": "Penicillin"}}
    refuted = {**allergy, "id": "al3", "code": {"text": "Iodine"}, "verificationStatus": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": "refuted"}]}}
    doc = bundle_to_document(bundle(allergy, other, refuted)).document
    assert doc["treatment_history"]["hypersensitivity"] == ["phosphonates", "penicillin"]


# ------------------------------------------------------------------------------------------------ conditions


@pytest.mark.parametrize(
    ("system", "code", "site"),
    [
        (ICD10, "C61", "prostate"), (ICD10CM, "C50.911", "breast"), (ICD10, "C34.1", "lung"),
        (ICD10, "C64", "renal"), (ICD10CM, "C65.1", "renal"), (ICD10, "C73", "thyroid"), (ICD10, "C90.0", "myeloma"),
        (ICD10, "C18.7", "other"), (SNOMED, "399068003", "prostate"), (SNOMED, "254837009", "breast"),
        (SNOMED, "93880001", "lung"),
    ],
)
def test_the_primary_site_comes_from_icd10_or_snomed_by_prefix(system: str, code: str, site: str) -> None:
    assert bundle_to_document(bundle(condition("c", system, code))).document["primary_tumour"]["site"] == site


def test_secondary_neoplasms_and_resolved_conditions_do_not_set_the_primary_site() -> None:
    raw = bundle(condition("mets", ICD10CM, "C79.51"), condition("liver", ICD10, "C78.7"),
                 condition("old", ICD10, "C50.9", clinical="resolved"))
    mapped = bundle_to_document(raw)
    assert "primary_tumour" not in mapped.document
    assert mapped.provenance["bone_disease"]["resource"] == "Condition/mets"


def test_a_specific_primary_site_wins_over_other_but_two_specific_sites_leave_it_unknown() -> None:
    doc = bundle_to_document(bundle(condition("a", ICD10, "C80.1"), condition("b", ICD10, "C61"))).document
    assert doc["primary_tumour"]["site"] == "prostate"
    mapped = bundle_to_document(bundle(condition("a", ICD10, "C50.9"), condition("b", ICD10, "C61")))
    assert "primary_tumour" not in mapped.document
    assert any("more than one primary tumour site" in w.message for w in mapped.warnings)


def test_cord_compression_and_pathological_fracture_conditions_set_their_fields() -> None:
    doc = bundle_to_document(bundle(condition("scc", ICD10CM, "G95.20"), condition("fx", ICD10, "M84.58"))).document
    assert doc["bone_disease"] == {"spinal_cord_compression": "established", "pathological_fracture": True}


def test_a_condition_that_contradicts_an_observation_leaves_the_field_unknown() -> None:
    none = flag("scc-obs", "cord-compression", {"valueCodeableConcept": {"coding": [{"system": RADIOPAL_SYSTEM,
                                                                                      "code": "none"}]}})
    mapped = bundle_to_document(bundle(none, condition("scc", ICD10, "G95.2")))
    assert "spinal_cord_compression" not in mapped.document.get("bone_disease", {})
    assert any("does not choose" in w.message for w in mapped.warnings)


# ------------------------------------------------------------------------------------------------ radiopal codes


def test_radiopal_coded_observations_fill_the_fields_without_a_standard_code() -> None:
    raw = bundle(
        flag("uptake", "bone-scan-uptake", {"valueBoolean": True}, "2025-05-20"),
        flag("dental", "dental-exam-done", {"valueBoolean": True}, "2025-04-10"),
        flag("sites", "painful-sites", {"component": [
            {"code": {"coding": [{"system": RADIOPAL_SYSTEM, "code": "painful-site"}]}, "valueString": "pelvis"},
            {"code": {"coding": [{"system": RADIOPAL_SYSTEM, "code": "painful-site"}]}, "valueString": "ribs"}]}),
        flag("le", "life-expectancy-weeks", {"valueQuantity": {"value": 26, "unit": "wk", "system": UCUM,
                                                               "code": "wk"}}),
        flag("re186", "availability-re186", {"valueBoolean": True}),
        flag("region", "regulatory-region", {"valueCodeableConcept": {"coding": [{"system": RADIOPAL_SYSTEM,
                                                                                  "code": "US"}]}}),
    )
    doc = bundle_to_document(raw).document
    assert doc["bone_disease"]["bone_scan"] == {"date": "2025-05-20", "uptake_at_painful_sites": True}
    assert doc["dental"] == {"exam_done": True, "exam_date": "2025-04-10"}
    assert doc["pain"]["painful_sites"] == ["pelvis", "ribs"]
    assert doc["performance"]["life_expectancy_weeks"] == 26
    assert doc["context"] == {"regulatory_region": "US", "availability": {"re186": True}}


def test_the_radiopal_codesystem_is_a_valid_r4_codesystem_that_agrees_with_the_code_table() -> None:
    from fhir.resources.R4B.codesystem import CodeSystem

    raw = json.loads((kb_dir() / "fhir" / "radiopal-codesystem.json").read_text(encoding="utf-8"))
    system = CodeSystem.model_validate(raw)
    assert system.url == RADIOPAL_SYSTEM
    defined = {c.code for c in system.concept or ()}
    table = load_code_table()
    used = {r.code for rows in table.rows.values() for r in rows if r.system == "radiopal"}
    answers = {a for spec in table.fields.values() for a in spec.answers}
    assert used | answers | {"painful-site"} == defined
    assert system.count == len(defined)


def test_every_contract_field_is_reachable_from_fhir() -> None:
    table = load_code_table()
    reachable = {"schema_version", "patient_id", "evaluation_date", "demographics.age_years", "demographics.sex",
                 "primary_tumour.site", "labs.date", "treatment_history.chemotherapy",
                 "treatment_history.radionuclides", "treatment_history.ebrt", "treatment_history.bone_health_agents",
                 "treatment_history.hormonal", "treatment_history.hypersensitivity"}
    for row in table.rows["observations"]:
        spec = table.fields[row.maps_to]
        reachable |= {spec.path, *(p for p in (spec.date_to, spec.reference_low_to) if p)}
    assert set(contract_field_paths()) - reachable == set()


def test_every_code_table_row_names_its_source_and_verification_level() -> None:
    table = load_code_table()
    for rows in table.rows.values():
        for row in rows:
            assert row.source and row.verified in {"verified", "secondary", "unverified"}, row.where()


def test_a_broken_code_table_is_a_rulebase_error_naming_the_row(tmp_path: Path) -> None:
    text = default_code_table_path().read_text(encoding="utf-8")
    broken = tmp_path / "codes.yaml"
    broken.write_text(text.replace("maps_to: labs.platelets,", "maps_to: labs.plates,", 1), encoding="utf-8")
    with pytest.raises(RulebaseError) as excinfo:
        load_code_table(broken)
    assert excinfo.value.problems[0].path.endswith(".maps_to")


def test_mapping_does_not_modify_the_input_dict() -> None:
    raw = bundle(lab("o1", "777-3", 210, "10*9/L"))
    before = copy.deepcopy(raw)
    bundle_to_document(raw)
    assert raw == before


# ------------------------------------------------------------------------------------------------ real-world shapes


def _order(rid: str, concept: dict[str, Any], status: str = "stopped", **dates: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order",
            "medicationCodeableConcept": concept, "subject": {"reference": "Patient/P1"}, **dates}


DOCETAXEL = {"coding": [{"system": RXNORM, "code": "1790099", "display": "1 ML DOCEtaxel 20 MG/ML Injection"}]}


def test_a_chemotherapy_known_only_from_its_order_takes_the_order_date_and_says_where_it_came_from() -> None:
    mapped = bundle_to_document(bundle(_order("o1", DOCETAXEL, authoredOn="2025-05-10")))
    (entry,) = mapped.document["treatment_history"]["chemotherapy"]
    assert entry == {"agent": "docetaxel", "class": "taxane", "myelosuppressive": True,
                     "last_dose_date": "2025-05-10", "ongoing": False}
    assert mapped.provenance["treatment_history.chemotherapy[0]"]["date_from"].startswith(
        "MedicationRequest.authoredOn, the order date")


def test_the_latest_dose_evidence_wins_an_order_written_after_the_last_administration_included() -> None:
    raw = bundle(_order("o1", DOCETAXEL, authoredOn="2025-05-10"),
                 administration("a1", DOCETAXEL, "2025-05-03"))
    mapped = bundle_to_document(raw)
    assert mapped.document["treatment_history"]["chemotherapy"][0]["last_dose_date"] == "2025-05-10"
    raw = bundle(_order("o1", DOCETAXEL, authoredOn="2025-04-01"), administration("a1", DOCETAXEL, "2025-05-03"))
    mapped = bundle_to_document(raw)
    assert mapped.document["treatment_history"]["chemotherapy"][0]["last_dose_date"] == "2025-05-03"
    assert "MedicationAdministration.effectiveDateTime" in mapped.provenance["treatment_history.chemotherapy[0]"][
        "date_from"]


def test_a_chemotherapy_order_without_any_date_is_left_out_with_a_warning_and_the_document_stays_valid() -> None:
    from radiopal.patient import parse_patient

    mapped = bundle_to_document(bundle(_order("o1", DOCETAXEL)))
    assert mapped.document["treatment_history"]["chemotherapy"] == []
    assert any("no date of any dose" in w.message for w in mapped.warnings)
    assert parse_patient(mapped.document).patient_id == "P1"


def test_a_course_running_past_the_evaluation_date_was_ongoing_on_it() -> None:
    raw = bundle(statement("g", {"coding": [{"system": ATC, "code": "L02AE03"}]}, status="completed",
                           start="2024-01-01", end="2025-12-31"))
    hormonal = bundle_to_document(raw).document["treatment_history"]["hormonal"]
    assert hormonal == [{"agent": "adt_lhrh", "start_date": "2024-01-01", "ongoing": True}]


def test_snomed_and_icd10cm_codes_name_the_site_and_the_castration_status() -> None:
    doc = bundle_to_document(bundle(condition("c", SNOMED, "314994000"), condition("z", ICD10CM, "Z19.2"))).document
    assert doc["primary_tumour"] == {"site": "prostate", "castration_resistant": True}
    doc = bundle_to_document(bundle(condition("c", SNOMED, "254637007"))).document
    assert doc["primary_tumour"] == {"site": "lung"}
    doc = bundle_to_document(bundle(condition("m", ICD10CM, "C79.51"), condition("c", ICD10CM, "C61"))).document
    assert doc["primary_tumour"] == {"site": "prostate"}


def test_a_condition_abated_after_the_evaluation_date_was_current_on_it() -> None:
    cancer = condition("c", SNOMED, "254637007", clinical="resolved")
    cancer["onsetDateTime"] = "2020-01-01"
    cancer["abatementDateTime"] = "2025-12-01"
    assert bundle_to_document(bundle(cancer)).document["primary_tumour"] == {"site": "lung"}
    assert "primary_tumour" not in bundle_to_document(bundle(cancer), evaluation_date="2019-06-01").document
    cancer["abatementDateTime"] = "2025-01-01"
    assert "primary_tumour" not in bundle_to_document(bundle(cancer)).document


def test_the_warnings_reach_the_decision_json() -> None:
    from radiopal.api import evaluate_fhir

    patient = {"resourceType": "Patient", "id": "P1", "gender": "other", "birthDate": "1954-03-01"}
    out = json.loads(evaluate_fhir(bundle(patient=patient)).to_json())
    assert out["warnings"] == [{"source": "Patient/P1", "element": "Patient.gender",
                                "message": "demographics.sex is left unknown: gender 'other' is not male or female"}]
    assert "demographics.sex" in out["missing_data"]
    assert {d["status"] for d in out["decisions"]} <= {"insufficient_data", "not_indicated"}


def test_the_warnings_reach_the_cds_card_detail() -> None:
    pytest.importorskip("starlette", reason="the CDS Hooks service needs the service extra")
    from radiopal.api import evaluate_fhir
    from radiopal.service.cards import patient_view_card, therapy_views

    pain = lab("pain", "72514-3", 2.95, "{score}")
    result = evaluate_fhir(bundle(condition("c", ICD10, "C61"), pain))
    detail = patient_view_card(result, therapy_views(result))["detail"]
    assert "**Record warnings**" in detail
    line = next(x for x in detail.splitlines() if "Observation/pain" in x)
    assert "Observation.valueQuantity.value" in line and "2.95" in line and "rounded to 3" in line
