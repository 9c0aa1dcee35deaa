"""Real FHIR R4 records (``../shared/fhir-real``): radiopal answers instead of refusing.

The HL7 R4 specification's own examples and whole-life Synthea patients were written by people who never heard of
radiopal. Every file must evaluate (exit 0, contract-valid output with the values it could not use as warnings), or
be refused only as invalid FHIR (no Patient, several Patients and none chosen) with the element named. Expected
values are read from the bundles here, independently of the mapper.

The folder is not part of a user's clone: the tests skip without it, and fail under ``.ci/run`` where it must be.
"""

from __future__ import annotations

import collections
import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fhir.resources.R4B", reason="FHIR tests need the fhir extra: pip install 'radiopal[fhir]'")

from conftest import SHARED
from radiopal import schemacheck
from radiopal.api import evaluate_fhir
from radiopal.errors import InputError
from radiopal.fhir import bundle_to_document

REAL = SHARED / "fhir-real"
HL7 = sorted((REAL / "hl7-r4").glob("*.json.gz"))
SYNTHEA = sorted((REAL / "synthea").glob("*.json.gz"))
needs_real = pytest.mark.skipif(  # under .ci/run (RADIOPAL_TESTS_REQUIRE_ALL=1) the skip is a failure (conftest)
    not REAL.is_dir(),
    reason="../shared/fhir-real (HL7 examples and Synthea bundles) is not beside this checkout",
)
pytestmark = needs_real

#: The Synthea patient with metastatic prostate cancer (SNOMED CT 314994000).
PROSTATE = "Ad303241n_Pulido_7694b55e-b670-44a5-b426-c56027e97986.json.gz"
#: Days each Synthea bundle is evaluated on: before most records, mid-life, and after the last one.
DATES = ("1995-06-30", "2005-01-01", "2021-01-01")
LOINC = "http://loinc.org"


@pytest.fixture(scope="session")
def real() -> dict[str, Any]:
    """Every real file, parsed once per session (the Synthea bundles are 0.5–3 MB)."""
    if not REAL.is_dir():
        pytest.fail(f"{REAL} is missing (CI must have ../shared beside the checkout)")
    return {p.name: json.loads(gzip.decompress(p.read_bytes())) for p in [*HL7, *SYNTHEA]}


def _references(resource: Any) -> collections.Counter[str]:
    """Patient references (subject / patient) anywhere in a resource or Bundle."""
    found: collections.Counter[str] = collections.Counter()
    stack = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in ("subject", "patient"):
                ref = node.get(key)
                if isinstance(ref, dict) and isinstance(ref.get("reference"), str) \
                        and ("Patient/" in ref["reference"] or ref["reference"].startswith("urn:uuid:")):
                    found[ref["reference"]] += 1
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def with_patient(resource: dict[str, Any]) -> dict[str, Any]:
    """The example as a Bundle holding a Patient: a Bundle as it is when it has one; otherwise the Patient its
    resources refer to (by their most common patient reference) is added, as an EHR's Bundle would carry it."""
    if resource.get("resourceType") == "Bundle":
        bundle = dict(resource)
    else:
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": resource}]}
    entries = list(bundle.get("entry") or [])
    if any(isinstance(e, dict) and (e.get("resource") or {}).get("resourceType") == "Patient" for e in entries):
        return bundle
    refs = _references(resource)
    ref = refs.most_common(1)[0][0] if refs else "Patient/example"
    if ref.startswith("urn:uuid:"):
        entry = {"fullUrl": ref, "resource": {"resourceType": "Patient", "id": "wrapped"}}
    else:
        entry = {"fullUrl": ref, "resource": {"resourceType": "Patient", "id": ref.rsplit("Patient/", 1)[1]}}
    bundle["entry"] = [entry, *entries]
    return bundle


def patient_ids(bundle: dict[str, Any]) -> list[str]:
    """Ids of the Patients of a Bundle that are unique in it (a Patient without one cannot be chosen)."""
    ids = [(e.get("resource") or {}).get("id") for e in bundle.get("entry") or []
           if (e.get("resource") or {}).get("resourceType") == "Patient"]
    return [i for i in ids if i and ids.count(i) == 1]


def check_output(result: Any) -> dict[str, Any]:
    """The decision JSON of a result, valid against kb/schemas/decision.schema.json; every warning well-formed."""
    out = json.loads(result.to_json())
    assert schemacheck.problems(out, "decision") == []
    for warning in out["warnings"]:
        assert set(warning) == {"source", "element", "message"} and all(warning.values())
    return out


# --- the HL7 R4 examples -------------------------------------------------------------------------------------------
def test_the_real_data_is_there() -> None:
    assert len(HL7) >= 250 and len(SYNTHEA) >= 15


@pytest.mark.parametrize("name", [p.name for p in HL7])
def test_each_hl7_example_evaluates_or_is_refused_only_for_its_patients(name: str, real: dict[str, Any]) -> None:
    bundle = with_patient(real[name])
    ids = patient_ids(bundle)
    try:
        check_output(evaluate_fhir(bundle, evaluation_date="2020-01-01"))
    except InputError as exc:
        # The one refusal a valid R4 Bundle may get: several Patients and none chosen, with their ids listed.
        (problem,) = exc.problems
        assert "Patient resources" in problem.message and "--patient" in problem.message, problem
        assert problem.path.startswith("entry[")
        assert ids, "a Bundle of several Patients none of which has an id of its own"
        for pid in ids:
            out = check_output(evaluate_fhir(bundle, evaluation_date="2020-01-01", patient=pid))
            assert out["patient_id"] == pid


def test_the_hl7_examples_with_real_world_shapes_are_read(real: dict[str, Any]) -> None:
    """Shapes the issue names, in HL7 examples: a body weight in [lb_av], gender other or unknown."""
    weight = bundle_to_document(with_patient(real["observation-example.json.gz"]), evaluation_date="2020-01-01")
    raw = real["observation-example.json.gz"]["valueQuantity"]
    assert raw["code"] == "[lb_av]"
    assert weight.document["demographics"]["weight_kg"] == pytest.approx(float(raw["value"]) * 0.45359237, abs=1e-6)
    genders = {n: r.get("gender") for n, r in real.items() if r.get("resourceType") == "Patient"}
    odd = next(n for n, g in genders.items() if g in ("other", "unknown"))
    mapped = bundle_to_document(with_patient(real[odd]), evaluation_date="2020-01-01")
    assert "sex" not in mapped.document.get("demographics", {})
    assert any(w.element == "Patient.gender" for w in mapped.warnings)


def test_an_egfr_split_into_race_based_components_is_left_unknown_with_a_warning(real: dict[str, Any]) -> None:
    mapped = bundle_to_document(with_patient(real["observation-example-f205-egfr.json.gz"]),
                                evaluation_date="2020-01-01")
    assert "creatinine_clearance" not in mapped.document.get("labs", {})
    (warning,) = [w for w in mapped.warnings if w.element == "Observation.component"]
    assert warning.source == "Observation/f205" and "components radiopal does not read" in warning.message


# --- the Synthea patients ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("date", DATES)
@pytest.mark.parametrize("name", [p.name for p in SYNTHEA])
def test_each_synthea_patient_evaluates_on_each_date(name: str, date: str, real: dict[str, Any]) -> None:
    out = check_output(evaluate_fhir(real[name], evaluation_date=date))
    assert out["evaluation_date"] == date
    assert len(out["decisions"]) == 21


def _latest(bundle: dict[str, Any], code: str, on: str) -> dict[str, Any]:
    """The valueQuantity of the latest final Observation with this LOINC code on or before ``on`` (read directly)."""
    found = []
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] != "Observation" or res.get("status") != "final":
            continue
        if any(c.get("system") == LOINC and c.get("code") == code for c in res["code"]["coding"]) \
                and res["effectiveDateTime"][:10] <= on:
            found.append((res["effectiveDateTime"], res["valueQuantity"]))
    return max(found, key=lambda f: f[0])[1]


@pytest.mark.parametrize("date", ["2005-01-01", "2021-01-01"])
def test_the_metastatic_prostate_patient_maps_his_latest_cbc_creatinine_and_calcium(
        date: str, real: dict[str, Any]) -> None:
    bundle = real[PROSTATE]
    mapped = bundle_to_document(bundle, evaluation_date=date)
    labs = mapped.document["labs"]
    expected = {  # field: (LOINC, contract unit for the UCUM code the bundle uses)
        "platelets": ("777-3", {"10*3/uL": "10^3/uL"}),
        "wbc": ("6690-2", {"10*3/uL": "10^3/uL"}),
        "haemoglobin": ("718-7", {"g/dL": "g/dL"}),
        "serum_creatinine": ("38483-4", {"mg/dL": "mg/dL"}),
        "calcium": ("49765-1", {"mg/dL": "mg/dL"}),
    }
    for field, (code, units) in expected.items():
        raw = _latest(bundle, code, date)
        assert labs[field]["value"] == pytest.approx(float(raw["value"])), field
        assert labs[field]["unit"] == units[raw["code"]], field
    assert labs["calcium"]["corrected"] is False  # total calcium: the engine corrects it with the albumin
    assert mapped.document["primary_tumour"]["site"] == "prostate"  # SNOMED CT 126906006 / 314994000 only
    assert mapped.document["demographics"]["sex"] == "male"
    counts = [labs[f] for f in ("platelets", "wbc", "haemoglobin")]
    assert all(isinstance(c["value"], (int, float)) for c in counts)


def test_a_cancer_not_yet_diagnosed_on_the_evaluation_date_is_not_known(real: dict[str, Any]) -> None:
    onset = min(e["resource"]["onsetDateTime"][:10] for e in real[PROSTATE]["entry"]
                if e["resource"]["resourceType"] == "Condition"
                and e["resource"]["code"]["coding"][0]["code"] == "314994000")
    before = bundle_to_document(real[PROSTATE], evaluation_date="2000-01-01")
    assert onset > "2000-01-01" and "primary_tumour" not in before.document
    out = check_output(evaluate_fhir(real[PROSTATE], evaluation_date="2000-01-01"))
    assert "primary_tumour.site" in out["missing_data"]


def test_the_synthea_decimal_pain_scores_are_rounded_with_a_warning(real: dict[str, Any]) -> None:
    mapped = bundle_to_document(real[PROSTATE], evaluation_date="2021-01-01")
    (warning,) = [w for w in mapped.warnings if "pain.score_nrs" in w.message]
    assert warning.element == "Observation.valueQuantity.value" and "rounded to" in warning.message
    assert isinstance(mapped.document["pain"]["score_nrs"], int)


def test_a_synthea_chemotherapy_known_only_from_its_order_uses_the_order_date_and_says_so(
        real: dict[str, Any]) -> None:
    found = None
    for name in (p.name for p in SYNTHEA):
        for date in DATES:
            mapped = bundle_to_document(real[name], evaluation_date=date)
            if mapped.document.get("treatment_history", {}).get("chemotherapy"):
                found = mapped
                break
        if found:
            break
    if found is None:
        pytest.skip("no Synthea bundle here orders a chemotherapy radiopal knows")
    source = found.provenance["treatment_history.chemotherapy[0]"]
    assert "authoredOn" in source["date_from"] or "effective" in source["date_from"]


# --- the command line ----------------------------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "radiopal", *args], capture_output=True, text=True, timeout=300,
                          check=False)


def test_the_cli_evaluates_a_synthea_bundle_with_a_bom_on_a_given_day_and_says_where_the_day_came_from(
        real: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "pulido.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(real[PROSTATE]).encode("utf-8"))
    run = _cli("recommend", "--fhir", str(path), "--evaluation-date", "2005-01-01")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["evaluation_date"] == "2005-01-01" and out["warnings"]
    run = _cli("explain", "--fhir", str(path), "--therapy", "ra223")
    assert run.returncode == 0, run.stderr
    assert "no Bundle.timestamp: evaluated as of today" in run.stdout
    assert "from today" in run.stderr


def test_the_cli_names_the_patients_of_a_bundle_of_several_and_evaluates_the_one_chosen(
        real: dict[str, Any], tmp_path: Path) -> None:
    name = next(n for n, r in real.items() if r.get("resourceType") == "Bundle" and len(patient_ids(r)) >= 2)
    path = tmp_path / "several.json"
    path.write_text(json.dumps(real[name]), encoding="utf-8")
    run = _cli("recommend", "--fhir", str(path), "--evaluation-date", "2020-01-01")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    first = patient_ids(real[name])[0]
    assert f"Patient/{first}" in run.stderr and "--patient" in run.stderr
    run = _cli("recommend", "--fhir", str(path), "--evaluation-date", "2020-01-01", "--patient", first)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["patient_id"] == first
