"""The CDS Hooks service on real charts (issue #15 item 6), against a real uvicorn server on 127.0.0.1.

* FHIR data about another patient than ``context.patientId`` is refused with HTTP 400 naming both ids, no card, and
  a ``refusal`` record in the audit log (the hash chain still verifies);
* a patient with no recorded malignancy gets HTTP 200 and ``{"cards": []}``, audited as evaluated-with-no-cards.

Real records come from the Synthea bundles of ``../shared/fhir-real/synthea`` (skipped when that folder is absent);
the rest uses the project's own ``examples/fhir`` bundles.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import REPO, SHARED
from radiopal.audit import AuditLog
from radiopal.service.sandbox import ehr_bundle, patient_resource, prefetch_for
from test_service import (
    ORDER_CHECK,
    PATIENT_VIEW,
    draft,
    example_bundle,
    hook_body,
    med_request,
    running,
    service_settings,
    templates_of,
)

SYNTHEA = SHARED / "fhir-real" / "synthea"
needs_synthea = pytest.mark.skipif(
    not SYNTHEA.is_dir() and not os.environ.get("CI"),
    reason="../shared/fhir-real/synthea (real Synthea bundles) is not beside this checkout",
)
#: Metastatic prostate cancer (SNOMED CT 314994000), and a patient with no cancer at all.
METASTATIC = "Ad303241n_Pulido_7694b55e-b670-44a5-b426-c56027e97986.json.gz"
NO_CANCER = "Jacob_Larson_0b324782-31d1-4659-89ab-58e075d6e61f.json.gz"


def synthea(name: str) -> dict[str, Any]:
    """A Synthea bundle as an EHR's searches return it (``Type/id`` references)."""
    with gzip.open(SYNTHEA / name, "rt", encoding="utf-8") as handle:
        return ehr_bundle(json.load(handle))


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """An unauthenticated server with the shipped rule base, counting to 2006-06-01 (the metastatic patient alive)."""
    settings = service_settings(tmp_path_factory.mktemp("real"), REPO / "rules", "2006-06-01", no_auth=True)
    with running(settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def current(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """An unauthenticated server with the shipped rule base, counting to 2025-06-02 (after the examples' dates)."""
    settings = service_settings(tmp_path_factory.mktemp("current"), REPO / "rules", "2025-06-02", no_auth=True)
    with running(settings) as srv:
        yield srv


def view(base: str, chart: dict[str, Any], patient_id: str) -> httpx.Response:
    """A patient-view call for ``patient_id`` whose prefetch the EHR answers from ``chart``."""
    return httpx.post(f"{base}/cds-services/{PATIENT_VIEW}",
                      json=hook_body("patient-view", patient_id, prefetch_for(chart, templates_of(base))))


def assert_no_cards_audited(app: Any, patient_id: str) -> None:
    record = last_record(app)
    assert record.kind == "evaluation" and record.patient_id == patient_id
    assert record.context["outcome"] == "evaluated-with-no-cards" and record.context["cards"] == []
    assert "no recorded malignancy" in record.context["no_cards_reason"]
    assert app.state.radiopal.audit.verify().ok


def last_record(app: Any) -> Any:
    audit: AuditLog = app.state.radiopal.audit
    [newest] = audit.recent(limit=1)
    return audit.get(newest.record_id)


def assert_refused(response: httpx.Response, context_id: str, other: str | None) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "patient-mismatch" and "cards" not in body
    assert repr(context_id) in body["message"]
    if other is not None:
        assert f"Patient/{other}" in body["message"]
    return body


def assert_refusal_audited(app: Any, context_id: str, others: list[str], hook: str) -> None:
    record = last_record(app)
    assert record.kind == "refusal" and record.patient_id == context_id
    assert record.context["reason"] == "patient-mismatch" and record.context["hook"] == hook
    assert record.context["contextPatientId"] == context_id and record.context["otherPatients"] == others
    assert record.decisions is None  # nothing was evaluated
    assert app.state.radiopal.audit.verify().ok


@needs_synthea
def test_a_real_synthea_prefetch_for_another_patient_is_refused_and_audited(shipped: tuple[str, Any]) -> None:
    base, app = shipped
    chart = synthea(METASTATIC)
    other = patient_resource(chart)["id"]
    opened = patient_resource(synthea(NO_CANCER))["id"]  # the chart the clinician has open
    before = len(app.state.radiopal.audit.recent(limit=1000))
    response = view(base, chart, opened)
    body = assert_refused(response, opened, other)
    # Every resource of the other chart is named as not this patient's (Patient.id and each subject), not only one.
    assert len(body["details"]) == 20 and body["details"][0]["path"] == "prefetch.patient.id"
    assert all(d["patient"] == other for d in body["details"])
    assert_refusal_audited(app, opened, [other], "patient-view")
    assert len(app.state.radiopal.audit.recent(limit=1000)) == before + 1  # one refusal, no evaluation record


def test_the_right_patient_with_one_observation_of_another_is_refused(shipped: tuple[str, Any]) -> None:
    base, app = shipped
    prefetch = prefetch_for(example_bundle("V05"), templates_of(base))
    stray = copy.deepcopy(prefetch["observations"]["entry"][0])
    stray["resource"]["id"] = "plt-of-someone-else"
    stray["resource"]["subject"] = {"reference": "https://ehr.example/fhir/Patient/V08/_history/2"}
    prefetch["observations"]["entry"].append(stray)
    n = len(prefetch["observations"]["entry"]) - 1
    response = httpx.post(f"{base}/cds-services/{PATIENT_VIEW}", json=hook_body("patient-view", "V05", prefetch))
    body = assert_refused(response, "V05", "V08")
    assert body["details"] == [{"path": f"prefetch.observations.entry[{n}].resource.subject.reference",
                                "patient": "V08", "reason": "subject 'https://ehr.example/fhir/Patient/V08/_history/2'"
                                                            " is another patient"}]
    assert_refusal_audited(app, "V05", ["V08"], "patient-view")


@pytest.mark.parametrize(("subject", "reason"), [
    (None, "Observation names no patient (subject.reference is missing)"),
    ({"reference": "Group/ward-3"}, "subject 'Group/ward-3' is not a reference to a Patient radiopal can resolve"),
    ({"reference": "urn:uuid:6f1c0e55-0000-4000-8000-000000000000"}, "is not a reference to a Patient"),
    ({"display": "Mr V05"}, "Observation names no patient"),
])
def test_a_resource_that_cannot_be_shown_to_be_this_patients_is_refused(shipped: tuple[str, Any], subject: Any,
                                                                        reason: str) -> None:
    base, app = shipped
    prefetch = prefetch_for(example_bundle("V05"), templates_of(base))
    resource = prefetch["observations"]["entry"][0]["resource"] = copy.deepcopy(
        prefetch["observations"]["entry"][0]["resource"])
    if subject is None:
        del resource["subject"]
    else:
        resource["subject"] = subject
    response = httpx.post(f"{base}/cds-services/{PATIENT_VIEW}", json=hook_body("patient-view", "V05", prefetch))
    body = assert_refused(response, "V05", None)
    assert len(body["details"]) == 1 and reason in body["details"][0]["reason"]
    assert body["details"][0]["patient"] is None
    assert_refusal_audited(app, "V05", [], "patient-view")


def test_an_order_for_another_patient_is_refused_before_anything_else(shipped: tuple[str, Any]) -> None:
    base, app = shipped
    prefetch = prefetch_for(example_bundle("V05"), templates_of(base))
    orders = draft(med_request("ra", "V08", atc="V10XX03"))  # radium-223 for V08, in V05's chart
    response = httpx.post(f"{base}/cds-services/{ORDER_CHECK}",
                          json=hook_body("order-sign", "V05", prefetch, draftOrders=orders))
    body = assert_refused(response, "V05", "V08")
    assert body["details"][0]["path"] == "context.draftOrders.entry[0].resource.subject.reference"
    assert_refusal_audited(app, "V05", ["V08"], "order-sign")


def test_urn_uuid_subjects_resolve_through_the_patients_full_url(current: tuple[str, Any]) -> None:
    """A prefetch Bundle whose subjects are the Patient entry's urn:uuid fullUrl is this patient's: not refused."""
    base, _app = current
    prefetch = prefetch_for(example_bundle("V05"), templates_of(base))
    url = "urn:uuid:0b0c8f7e-5d1e-4c55-9a43-3b9d2f1f0005"
    patient = prefetch.pop("patient")
    entries = [{"fullUrl": url, "resource": patient}]
    for entry in prefetch["observations"]["entry"]:
        resource = {**entry["resource"], "subject": {"reference": url}}
        entries.append({"fullUrl": entry["fullUrl"], "resource": resource})
    prefetch["patient"] = None  # answered by the Bundle below instead
    prefetch["observations"] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    response = httpx.post(f"{base}/cds-services/{PATIENT_VIEW}", json=hook_body("patient-view", "V05", prefetch))
    assert response.status_code == 200, response.text
    assert len(response.json()["cards"]) == 1


@needs_synthea
def test_a_real_patient_with_no_cancer_gets_no_card_and_the_evaluation_is_audited(shipped: tuple[str, Any]) -> None:
    base, app = shipped
    chart = synthea(NO_CANCER)
    pid = patient_resource(chart)["id"]
    response = view(base, chart, pid)
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}
    assert_no_cards_audited(app, pid)
    # It was evaluated, and the evaluation says what is missing (contract §A): no decision was made up.
    assert "primary_tumour.site" in last_record(app).decisions["missing_data"]


@needs_synthea
def test_the_real_metastatic_prostate_patient_gets_a_card(shipped: tuple[str, Any]) -> None:
    """The same path with a recorded cancer does show a card: the empty answer above is about the patient."""
    base, app = shipped
    chart = synthea(METASTATIC)
    pid = patient_resource(chart)["id"]
    response = view(base, chart, pid)
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    record = last_record(app)
    assert record.context["outcome"] == "evaluated-with-cards" and record.context["cards"][0]["uuid"] == card["uuid"]


def test_a_chart_with_labs_and_no_cancer_gets_no_card(current: tuple[str, Any]) -> None:
    """The project's own example chart with its cancer Conditions and bone findings taken out: labs only."""
    base, app = current
    chart = example_bundle("V05")
    chart["entry"] = [e for e in chart["entry"] if e["resource"]["resourceType"] == "Patient" or any(
        c.get("system") == "http://loinc.org" for c in e["resource"].get("code", {}).get("coding", []))]
    response = view(base, chart, "V05")
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}
    assert_no_cards_audited(app, "V05")


def test_the_refusal_record_reads_in_the_audit_cli(shipped: tuple[str, Any], capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    from radiopal.cli import main

    base, app = shipped
    prefetch = prefetch_for(example_bundle("V05"), templates_of(base))
    assert httpx.post(f"{base}/cds-services/{PATIENT_VIEW}",
                      json=hook_body("patient-view", "V06", prefetch)).status_code == 400
    record = last_record(app)
    assert main(["audit", "show", record.record_id, "--db", app.state.radiopal.audit.target]) == 0
    out = capsys.readouterr().out
    assert "refusal" in out and "patient-mismatch" in out and '"V05"' in out
