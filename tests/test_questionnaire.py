"""FHIR Questionnaire out, QuestionnaireResponse in (issue #14 item 5): the missing fields of one patient as an SDC-style
Questionnaire generated from the patient schema, and the answers applied before the evaluation — as strictly as any
contract document, with an error naming the linkId for a bad answer."""

from __future__ import annotations

import copy
import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

import radiopal
from conftest import REPO, SHARED
from radiopal.cli import main
from radiopal.errors import InputError
from radiopal.fhir.questionnaire import apply_answers, build_questionnaire

DEMO = REPO / "examples" / "patient-mcrpc.yaml"
SYNTHEA = SHARED / "fhir-real" / "synthea"


def _demo_without(*paths: str) -> dict[str, Any]:
    doc = json.loads(json.dumps(yaml.safe_load(DEMO.read_text(encoding="utf-8")), default=str))
    for path in paths:
        *parents, leaf = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        del node[leaf]
    return doc


def _response(*answers: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "QuestionnaireResponse", "status": "completed",
            "questionnaire": "http://radiopal.example/fhir/Questionnaire/missing-data",
            "item": [{"linkId": link, "answer": [value]} for link, value in answers]}


@pytest.fixture(scope="module")
def rulebase() -> Any:
    return radiopal.load_rulebase()


def test_the_questionnaire_asks_for_each_missing_field_with_its_type_units_and_what_it_decides(rulebase: Any):
    result = rulebase.evaluate(_demo_without("labs.platelets", "pain.distribution", "bone_disease.bone_scan"))
    questionnaire = build_questionnaire(result)
    items = {i["linkId"]: i for i in questionnaire["item"]}
    assert set(items) == set(result.missing_data)
    platelets = items["labs.platelets"]
    assert platelets["type"] == "quantity"
    units = [e["valueCoding"]["display"] for e in platelets["extension"]]
    assert units == ["10^9/L", "10^3/uL", "/uL"]  # the patient schema's units for platelets
    assert "Strontium-89" in platelets["item"][0]["text"]  # help names a therapy waiting for it
    distribution = items["pain.distribution"]
    assert distribution["type"] == "choice"
    assert [o["valueCoding"]["code"] for o in distribution["answerOption"]] == ["none", "localized", "multifocal"]
    assert items["bone_disease.bone_scan.uptake_at_painful_sites"]["type"] == "boolean"


def test_answering_the_platelets_lets_sr89_be_decided(rulebase: Any):
    document = _demo_without("labs.platelets")
    assert rulebase.evaluate(document).decision("sr89").status == "insufficient_data"
    answered = apply_answers(document, _response(
        ("labs.platelets", {"valueQuantity": {"value": 150, "unit": "10^9/L", "system": "http://unitsofmeasure.org",
                                              "code": "10*9/L"}})))
    assert answered["labs"]["platelets"] == {"value": 150, "unit": "10^9/L"}
    decision = rulebase.evaluate(answered).decision("sr89")
    assert decision.status == "eligible"  # as the complete demo patient (ELIG-SR-01)


@pytest.mark.parametrize(("link", "value", "expected"), [
    ("labs.platelets", {"valueQuantity": {"value": 150, "code": "mmol/L"}}, "unit"),
    ("labs.platelets", {"valueBoolean": True}, "valueQuantity"),
    ("pain.distribution", {"valueCoding": {"code": "diffuse"}}, "pain.distribution"),
    ("bone_disease.lesion_count", {"valueInteger": -3}, "lesion_count"),
    ("labs.date", {"valueDate": "2025-02-30"}, "date"),
    ("no.such.field", {"valueString": "x"}, "not a field"),
])
def test_a_bad_answer_is_refused_naming_its_field(rulebase: Any, link: str, value: dict[str, Any], expected: str):
    with pytest.raises(InputError) as caught:
        rulebase.evaluate(apply_answers(_demo_without("labs.platelets"), _response((link, value))))
    text = str(caught.value) + " ".join(str(p.path) for p in caught.value.problems)
    assert expected in text and (link.split(".")[-1] in text or "no.such.field" in text)


def test_the_cli_writes_the_questionnaire_and_takes_the_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    patient = tmp_path / "p.json"
    patient.write_text(json.dumps(_demo_without("labs.platelets")), encoding="utf-8")
    assert main(["questionnaire", str(patient), "-o", str(tmp_path / "q.json")]) == 0
    questionnaire = json.loads((tmp_path / "q.json").read_text(encoding="utf-8"))
    assert questionnaire["resourceType"] == "Questionnaire"
    qr = tmp_path / "qr.json"
    qr.write_text(json.dumps(_response(("labs.platelets", {"valueQuantity": {"value": 150, "code": "10*9/L"}}))),
                  encoding="utf-8")
    assert main(["recommend", str(patient), "--answers", str(qr)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert next(d for d in out["decisions"] if d["therapy"] == "sr89")["status"] == "eligible"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_response(("labs.platelets", {"valueQuantity": {"value": 150, "code": "g/L"}}))),
                   encoding="utf-8")
    assert main(["recommend", str(patient), "--answers", str(bad)]) == 2
    assert "labs.platelets" in capsys.readouterr().err


def test_answers_complete_a_real_fhir_record(rulebase: Any):
    """The metastatic-prostate Synthea record (SNOMED 314994000) lacks the bone-disease picture that records keep
    in free text and images; answering the questionnaire supplies it, and the answers are traced to the response."""
    if not SYNTHEA.is_dir():
        pytest.skip("../shared/fhir-real is not beside this checkout")
    from radiopal.api import evaluate_fhir

    bundle = next(SYNTHEA.glob("Ad303241n_Pulido_*.json.gz"))
    data = json.loads(gzip.decompress(bundle.read_bytes()))
    result = evaluate_fhir(copy.deepcopy(data), rulebase, evaluation_date="2020-01-01")
    links = {i["linkId"] for i in build_questionnaire(result)["item"]}
    assert {"pain.distribution", "bone_disease.bone_scan.uptake_at_painful_sites"} <= links
    answers = _response(("pain.distribution", {"valueCoding": {"code": "multifocal"}}),
                        ("bone_disease.bone_scan.uptake_at_painful_sites", {"valueBoolean": True}))
    answered = evaluate_fhir(copy.deepcopy(data), rulebase, evaluation_date="2020-01-01", answers=answers)
    assert "pain.distribution" not in answered.missing_data
    assert "bone_disease.bone_scan.uptake_at_painful_sites" not in answered.missing_data
    assert answered.extra["provenance"]["pain.distribution"]["resource"] == "QuestionnaireResponse"


def test_the_cds_service_takes_the_answers_in_an_optional_prefetch_key(tmp_path: Path):
    """A patient-view call whose prefetch carries a completed QuestionnaireResponse (key ``answers``, offered in the
    discovery document, never required) is evaluated with the answers; one about another patient is refused."""
    from fastapi.testclient import TestClient

    from radiopal.service.app import create_app
    from radiopal.service.sandbox import ehr_bundle, prefetch_for
    from radiopal.service.settings import Settings

    bundle = ehr_bundle(json.loads((REPO / "examples" / "fhir" / "V05.bundle.json").read_text(encoding="utf-8")))
    # The chart lacks the platelet count: drop every platelet Observation (LOINC 777-3 / 26515-7).
    bundle["entry"] = [e for e in bundle["entry"] if not any(
        c.get("code") in ("777-3", "26515-7") for c in (e["resource"].get("code") or {}).get("coding", []))]
    patient_id = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    settings = Settings(host="127.0.0.1", port=8089, no_auth=True, audit_db=str(tmp_path / "a.db"),
                        evaluation_date="2025-06-02")
    with TestClient(create_app(settings)) as client:
        templates = client.get("/cds-services").json()["services"][0]["prefetch"]
        assert templates["answers"].startswith("QuestionnaireResponse?subject={{context.patientId}}")
        service = client.app.state.radiopal

        def call(answers: Any) -> Any:
            prefetch = {k: v for k, v in prefetch_for(bundle, templates).items() if k != "answers"}
            if answers is not None:
                prefetch["answers"] = answers
            body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "prefetch": prefetch,
                    "context": {"patientId": patient_id, "userId": "Practitioner/1"}}
            response = client.post("/cds-services/radiopal-patient-view", json=body)
            return response, (next(reversed(service._results.values())) if response.status_code == 200 else None)

        plain, before = call(None)  # no answers key: still answered (the key is optional)
        assert plain.status_code == 200 and "labs.platelets" in before.missing_data
        qr = {**_response(("labs.platelets", {"valueQuantity": {"value": 180, "code": "10*9/L"}})),
              "subject": {"reference": f"Patient/{patient_id}"}, "authored": "2025-06-02"}
        answered, after = call({"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": qr}]})
        assert answered.status_code == 200 and "labs.platelets" not in after.missing_data
        assert after.facts.value("plt") == 180
        other = {**qr, "subject": {"reference": "Patient/someone-else"}}
        refused, _ = call(other)
        assert refused.status_code == 400 and refused.json()["error"] == "patient-mismatch"
