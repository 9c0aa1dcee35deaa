"""The CDS Hooks service against a real uvicorn server on 127.0.0.1: discovery, both hooks, errors, JWT, feedback.

The servers use a small fixture rule base written here (washout deferral, cord-compression and platelet
contraindications, two positive rules), so the expected cards do not move while the shipped rule base grows. One test
runs the shipped rule base and checks the cards against the engine's own decisions. Every HTTP peer (the JWKS
server, the fake FHIR server) is a local server on 127.0.0.1 started by these tests.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from conftest import REPO, JSONHandler, http_server, write_rulebase
from radiopal.audit import AuditLog
from radiopal.cli import main
from radiopal.service import Settings, create_app
from radiopal.service.cards import DETAIL_LIMIT, SUMMARY_LIMIT, indicator_for
from radiopal.service.sandbox import discover_templates, ehr_bundle, free_port, patient_resource, prefetch_for, search

EXAMPLES = REPO / "examples" / "fhir"
ISSUER = "https://ehr.example"
PATIENT_VIEW = "radiopal-patient-view"
ORDER_CHECK = "radiopal-order-check"
ATC = "http://www.whocc.no/atc"

FIXTURE_RULES = """
area: service-fixture
title: CDS Hooks service test fixture
version: "test-1"
rules:
  - id: SEQ-01
    variant: fixture
    title: Washout after myelosuppressive chemotherapy
    summary: Wait 28 days after the last myelosuppressive chemotherapy dose before a bone-seeking beta-emitter.
    version: 1
    strength: strong
    verification: V-sec
    sources: [quadramet_eu_smpc, holland_frei]
    therapies: [sr89, sm153]
    when:
      exists: chemotherapy
      where:
        all:
          - {field: myelosuppressive, op: "==", value: true}
          - {days_since_field: last_dose_date, op: "<", value: 28}
    then:
      status: deferred
      earliest_date: {of: chemotherapy, field: last_dose_date, plus_days: 28}
  - id: ELIG-GEN-05
    variant: fixture
    title: Spinal cord compression needs local treatment first
    summary: Established spinal cord compression is treated locally before any radionuclide.
    version: 1
    strength: strong
    verification: V
    sources: [snm_bone_pain]
    therapies: [sr89, sm153, ra223]
    when: {fact: cord_compression, op: "==", value: established}
    then: {status: contraindicated, advisories: [ADV-SCC-URGENT]}
  - id: ELIG-GEN-10
    variant: fixture
    title: Platelets below the floor for a beta-emitter
    version: 1
    strength: strong
    verification: V
    sources: [snm_bone_pain]
    therapies: [sr89, sm153]
    when: {fact: plt_current, op: "<", value: 100, unit: "10^9/L"}
    then: {status: contraindicated}
  - id: ELIG-RA-01
    variant: fixture
    title: Ra-223 for castration-resistant prostate cancer with bone metastases
    version: 1
    strength: strong
    verification: V
    sources: [xofigo_uspi, alsympca]
    therapies: [ra223]
    when:
      all:
        - {fact: site, op: "==", value: prostate}
        - {fact: castration_resistant, op: "==", value: true}
    then: {status: recommended}
  - id: BHA-01
    variant: fixture
    title: Bone-health agent for bone metastases of a solid tumour
    version: 1
    strength: strong
    verification: V
    sources: [xgeva_eu_smpc]
    therapies: [denosumab, zoledronic_acid]
    when: {fact: site, op: in, value: [breast, prostate, lung]}
    then: {status: eligible}
"""


# --- local servers ---------------------------------------------------------------------------------------------
@contextmanager
def running(settings: Settings) -> Iterator[tuple[str, Any]]:
    """Run the service on uvicorn in a background thread; yields its base URL and the app."""
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield settings.public_url, app
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.radiopal.audit.dispose()


def service_settings(tmp: Path, rules: Path, day: str, **extra: Any) -> Settings:
    port = free_port()
    extra.setdefault("audit_db", str(tmp / f"audit-{port}.db"))
    return Settings(host="127.0.0.1", port=port, rules=str(rules), evaluation_date=day, **extra)


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rulebase(tmp_path_factory.mktemp("service-rules"), FIXTURE_RULES)


@pytest.fixture(scope="module")
def march(tmp_path_factory: pytest.TempPathFactory, rules: Path) -> Iterator[tuple[str, Any]]:
    """An unauthenticated server counting to 2025-03-17 (V05's evaluation date)."""
    with running(service_settings(tmp_path_factory.mktemp("march"), rules, "2025-03-17", no_auth=True)) as srv:
        yield srv


@pytest.fixture(scope="module")
def june(tmp_path_factory: pytest.TempPathFactory, rules: Path) -> Iterator[tuple[str, Any]]:
    """An unauthenticated server counting to 2025-06-02 (V08's evaluation date)."""
    with running(service_settings(tmp_path_factory.mktemp("june"), rules, "2025-06-02", no_auth=True)) as srv:
        yield srv


# --- FHIR data as an EHR would send it -------------------------------------------------------------------------
def example_bundle(name: str) -> dict[str, Any]:
    """``examples/fhir/{name}.bundle.json`` as an EHR's searches return it (Type/id references)."""
    return ehr_bundle(json.loads((EXAMPLES / f"{name}.bundle.json").read_text(encoding="utf-8")))


def templates_of(base: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    return discover_templates(base, PATIENT_VIEW, headers=headers)


def hook_body(hook: str, patient: str, prefetch: dict[str, Any] | None, **context: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()),
                            "context": {"userId": "Practitioner/p1", "patientId": patient, **context}}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def draft(*orders: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in orders]}


def med_request(rid: str, patient: str, *, atc: str | None = None, text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {}
    if atc:
        concept["coding"] = [{"system": ATC, "code": atc}]
    if text:
        concept["text"] = text
    return {"resourceType": "MedicationRequest", "id": rid, "status": "draft", "intent": "order",
            "subject": {"reference": f"Patient/{patient}"}, "medicationCodeableConcept": concept}


def patient_view(base: str, name: str, headers: dict[str, str] | None = None) -> httpx.Response:
    bundle = example_bundle(name)
    return httpx.post(f"{base}/cds-services/{PATIENT_VIEW}", headers=headers,
                      json=hook_body("patient-view", name, prefetch_for(bundle, templates_of(base, headers))))


def assert_card_shape(card: dict[str, Any]) -> None:
    """What an EHR can show as it is (issue #14): bounded summary and detail, a short source label with an absolute
    address, every link absolute and inside radiopal."""
    assert len(card["summary"]) <= SUMMARY_LIMIT
    assert len(card["detail"]) <= DETAIL_LIMIT
    assert card["indicator"] in ("info", "warning", "critical")
    assert 0 < len(card["source"]["label"]) <= 60
    assert "url" not in card["source"] or card["source"]["url"].startswith(("https://", "http://"))
    assert card["overrideReasons"] and all(r["display"] and r["code"] for r in card["overrideReasons"])
    assert all(link["type"] == "absolute" and link["url"].startswith("http") for link in card["links"])
    assert "../" not in card["detail"] and "shared" not in card["detail"]
    uuid.UUID(card["uuid"])


def link_to(card: dict[str, Any], kind: str) -> str:
    """The card's link to radiopal's ``page`` or ``reports``."""
    return next(link["url"] for link in card["links"] if f"/{kind}/" in link["url"])


# --- discovery ---------------------------------------------------------------------------------------------------
def test_discovery_lists_the_services_with_prefetch_derived_from_the_rules(march: tuple[str, Any]) -> None:
    base, _app = march
    response = httpx.get(f"{base}/cds-services")
    assert response.status_code == 200
    services = {s["id"]: s for s in response.json()["services"]}
    assert services[PATIENT_VIEW]["hook"] == "patient-view"
    assert services[ORDER_CHECK]["hook"] == "order-sign"
    assert services["radiopal-order-select"]["hook"] == "order-select"
    prefetch = services[PATIENT_VIEW]["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    # The fixture rules read cord compression, platelets (current: so also the lab date), chemotherapy, site.
    observations = prefetch["observations"]
    assert observations.startswith("Observation?patient={{context.patientId}}&code=")
    assert "http://loinc.org|777-3" in observations
    assert "http://radiopal.example/fhir/CodeSystem/radiopal|cord-compression" in observations
    assert "http://loinc.org|718-7" in observations  # labs.date is the date of every blood count
    assert "http://loinc.org|72514-3" not in observations  # pain score: no fixture rule reads it
    assert prefetch["conditions"] == "Condition?patient={{context.patientId}}"
    assert prefetch["medicationAdministrations"].startswith("MedicationAdministration?patient=")
    assert "procedures" not in prefetch and "allergies" not in prefetch
    assert all(s["description"] and s["title"] for s in services.values())


# --- patient-view ------------------------------------------------------------------------------------------------
def test_patient_view_shows_the_washout_deferral_with_its_date(march: tuple[str, Any]) -> None:
    base, _app = march
    response = patient_view(base, "V05")
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert_card_shape(card)
    # patient-view drafts no order and nothing is urgent: info (issue #14), whatever waits.
    assert card["indicator"] == "info"
    assert "Sm-153 to 2025-03-31" in card["summary"] and "denosumab" in card["summary"]
    detail = card["detail"]
    assert "**Wait**" in detail and "from 2025-03-31" in detail
    assert "SEQ-01/fixture" not in detail  # the action summary, not rule dumps
    assert card["source"]["url"].startswith("http") and card["source"]["topic"]["system"] == \
        "http://radiopal.example/fhir/CodeSystem/radiopal-rule"
    report = httpx.get(link_to(card, "reports"))
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "V05" in report.text and "sm153" in report.text.lower()
    page = httpx.get(link_to(card, "page"), follow_redirects=True)
    assert page.status_code == 200 and 'data-therapy="sm153" data-status="deferred"' in page.text


def test_patient_view_with_a_contraindication_is_critical(june: tuple[str, Any]) -> None:
    base, _app = june
    response = patient_view(base, "V08")
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert_card_shape(card)
    # Critical because of the urgent advisory (spinal cord compression), and only for that.
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("URGENT")
    assert card["detail"].startswith("**URGENT")
    assert "**Do not give**" in card["detail"] and "Spinal cord compression" in card["detail"]
    assert card["source"]["topic"]["code"] == "ELIG-GEN-05"  # the rule that emitted the urgent advisory


def test_patient_view_without_a_deferral_or_contraindication_is_info(june: tuple[str, Any]) -> None:
    base, _app = june
    [card] = patient_view(base, "V01").json()["cards"]
    assert_card_shape(card)
    assert card["indicator"] == "info"
    assert "Ra-223" in card["summary"] and card["summary"].startswith(("Give", "Options"))


@pytest.mark.parametrize(("value", "code", "blocked"), [
    (180, "10*9/L", False), (180, "10*3/uL", False), (180000, "/uL", False),
    (90, "10*9/L", True), (90000, "/uL", True),
])
def test_platelet_units_give_the_same_card_end_to_end(march: tuple[str, Any], value: float, code: str,
                                                      blocked: bool) -> None:
    base, _app = march
    bundle = example_bundle("V05")
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Observation" and res["id"] == "plt":
            res["valueQuantity"].update({"value": value, "code": code, "unit": code})
    body = hook_body("patient-view", "V05", prefetch_for(bundle, templates_of(base)))
    [card] = httpx.post(f"{base}/cds-services/{PATIENT_VIEW}", json=body).json()["cards"]
    assert card["indicator"] == "info"  # nothing urgent, no drafted order
    # The fixture's ELIG-GEN-10 floor: platelets below it block the beta-emitters, in any unit.
    assert ("**Do not give**" in card["detail"]) is blocked


# --- order-select / order-sign -----------------------------------------------------------------------------------
def test_order_sign_of_a_deferred_therapy_gets_a_warning_card_with_the_date(march: tuple[str, Any]) -> None:
    base, _app = march
    bundle = example_bundle("V05")
    orders = draft(med_request("d1", "V05", atc="V10BX02", text="Quadramet 37 MBq/kg"))
    body = hook_body("order-sign", "V05", prefetch_for(bundle, templates_of(base)), draftOrders=orders)
    response = httpx.post(f"{base}/cds-services/{ORDER_CHECK}", json=body)
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert_card_shape(card)
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Sm-153 order: deferred until 2025-03-31")
    assert "When: from 2025-03-31" in card["detail"]
    assert "MedicationRequest/d1" in card["detail"]
    assert card["selectionBehavior"] == "at-most-one"
    [suggestion] = card["suggestions"]
    assert suggestion["actions"] == [{"type": "delete", "resourceId": ["MedicationRequest/d1"],
                                      "description": "Remove the draft order MedicationRequest/d1 (deferred)"}]


def test_order_sign_of_a_contraindicated_therapy_gets_a_critical_card(june: tuple[str, Any]) -> None:
    base, _app = june
    orders = draft(med_request("x1", "V08", text="Xofigo (radium-223 dichloride) 55 kBq/kg"))
    body = hook_body("order-sign", "V08", prefetch_for(example_bundle("V08"), templates_of(base)), draftOrders=orders)
    [card] = httpx.post(f"{base}/cds-services/{ORDER_CHECK}", json=body).json()["cards"]
    assert_card_shape(card)
    assert card["indicator"] == "critical"  # the urgent advisory (cord compression) is on this patient
    assert card["summary"] == "Ra-223 order: contraindicated — Spinal cord compression needs local treatment first"
    assert card["suggestions"][0]["isRecommended"] is True
    assert card["source"]["topic"]["code"] == "ELIG-GEN-05"


def test_orders_that_are_fine_or_not_radiopal_therapies_get_no_card(march: tuple[str, Any]) -> None:
    base, _app = march
    orders = draft(med_request("a", "V05", atc="M05BX04"),  # denosumab: eligible
                   med_request("b", "V05", atc="L01CD02"),  # docetaxel: not a therapy radiopal decides on
                   {"resourceType": "ServiceRequest", "id": "c", "status": "draft", "intent": "order",
                    "subject": {"reference": "Patient/V05"}, "code": {"text": "CT chest"}})
    body = hook_body("order-sign", "V05", prefetch_for(example_bundle("V05"), templates_of(base)), draftOrders=orders)
    response = httpx.post(f"{base}/cds-services/{ORDER_CHECK}", json=body)
    assert response.status_code == 200 and response.json() == {"cards": []}


def test_an_order_radiopal_does_not_decide_on_needs_no_prefetch(march: tuple[str, Any]) -> None:
    base, app = march
    before = len(app.state.radiopal.audit.recent(limit=1000))
    body = hook_body("order-sign", "V05", None, draftOrders=draft(med_request("b", "V05", atc="L01CD02")))
    response = httpx.post(f"{base}/cds-services/{ORDER_CHECK}", json=body)
    assert response.status_code == 200 and response.json() == {"cards": []}
    assert len(app.state.radiopal.audit.recent(limit=1000)) == before  # nothing was evaluated


def test_order_select_checks_the_selected_orders_only(march: tuple[str, Any]) -> None:
    base, _app = march
    orders = draft(med_request("sm", "V05", atc="V10BX02"), med_request("sr", "V05", text="Metastron"))
    pre = prefetch_for(example_bundle("V05"), templates_of(base))
    body = hook_body("order-select", "V05", pre, draftOrders=orders, selections=["MedicationRequest/sr"])
    for service in ("radiopal-order-select", ORDER_CHECK):
        [card] = httpx.post(f"{base}/cds-services/{service}", json=body).json()["cards"]
        assert card["summary"].startswith("Sr-89 order: deferred")


# --- prefetch: 412 and fetching from fhirServer --------------------------------------------------------------------
def test_missing_prefetch_without_a_fhir_server_is_412(march: tuple[str, Any]) -> None:
    base, _app = march
    pre = prefetch_for(example_bundle("V05"), templates_of(base))
    del pre["observations"]
    response = httpx.post(f"{base}/cds-services/{PATIENT_VIEW}", json=hook_body("patient-view", "V05", pre))
    assert response.status_code == 412
    assert response.json()["error"] == "prefetch-missing" and "observations" in response.json()["message"]
    nothing = httpx.post(f"{base}/cds-services/{PATIENT_VIEW}", json=hook_body("patient-view", "V05", None))
    assert nothing.status_code == 412


def test_missing_prefetch_is_fetched_from_the_fhir_server(march: tuple[str, Any]) -> None:
    base, _app = march
    bundle = example_bundle("V05")
    seen: list[tuple[str, str | None]] = []

    class FakeFHIR(JSONHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            seen.append((self.path, self.headers.get("Authorization")))
            parts = urlsplit(self.path)
            path = parts.path.removeprefix("/fhir/")
            if path == "Patient/V05":
                payload: dict[str, Any] = patient_resource(bundle)
            else:
                payload = search(bundle, f"{path}?{parts.query}")
                if path == "Observation" and "page=2" not in parts.query:  # two pages: follow `next`
                    payload["entry"] = payload["entry"][:3]
                    payload["link"] = [{"relation": "next", "url": f"{server}/fhir/{path}?{parts.query}&page=2"}]
                elif path == "Observation":
                    payload["entry"] = payload["entry"][3:]
            self.send_json(payload, content_type="application/fhir+json")

    with http_server(FakeFHIR) as server:
        pre = prefetch_for(bundle, templates_of(base))
        partial = {"patient": pre["patient"]}  # the client answered one key only
        body = hook_body("patient-view", "V05", partial)
        body.update(fhirServer=f"{server}/fhir", fhirAuthorization={"access_token": "tok-123", "token_type": "Bearer",
                                                                     "expires_in": 300, "scope": "patient/*.read",
                                                                     "subject": "radiopal"})
        response = httpx.post(f"{base}/cds-services/{PATIENT_VIEW}", json=body)
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["indicator"] == "info" and "Sm-153 to 2025-03-31" in card["summary"]
    assert not any(p.startswith("/fhir/Patient") for p, _ in seen)  # answered in the prefetch
    assert any("page=2" in p for p, _ in seen)
    assert {auth for _, auth in seen} == {"Bearer tok-123"}


# --- errors ------------------------------------------------------------------------------------------------------
def test_malformed_json_is_400_with_a_message(march: tuple[str, Any]) -> None:
    base, _app = march
    response = httpx.post(f"{base}/cds-services/{PATIENT_VIEW}", content=b'{"hook": "patient-view",',
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "malformed-json" and "line 1 column" in body["message"]
    assert "Traceback" not in response.text


def test_a_body_over_the_limit_is_413(march: tuple[str, Any]) -> None:
    base, _app = march
    big = b'{"hook": "patient-view", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    response = httpx.post(f"{base}/cds-services/{PATIENT_VIEW}", content=big,
                          headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 413
    assert response.json()["error"] == "payload-too-large"


def test_an_unknown_service_is_404(march: tuple[str, Any]) -> None:
    base, _app = march
    for path in ("/cds-services/no-such-service", "/cds-services/no-such-service/feedback"):
        response = httpx.post(f"{base}{path}", json=hook_body("patient-view", "V05", None))
        assert response.status_code == 404 and response.json()["error"] == "not-found"
    assert httpx.get(f"{base}/reports/{uuid.uuid4()}").status_code == 404
    assert httpx.get(f"{base}/reports/1").status_code == 404  # record numbers are not report ids


def test_invalid_r4_in_the_prefetch_is_400_naming_the_element(march: tuple[str, Any]) -> None:
    base, _app = march
    pre = prefetch_for(example_bundle("V05"), templates_of(base))
    obs = pre["observations"]["entry"]
    index = next(i for i, e in enumerate(obs) if e["resource"]["id"] == "plt")
    obs[index]["resource"]["valueQuantity"]["value"] = "one hundred"
    response = httpx.post(f"{base}/cds-services/{PATIENT_VIEW}", json=hook_body("patient-view", "V05", pre))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid-fhir"
    assert f"prefetch.observations.entry[{index}].resource.valueQuantity.value" in body["message"]


@pytest.mark.parametrize(("change", "message"), [
    ({"hook": "order-sign"}, "this service answers patient-view"),
    ({"hookInstance": None}, "hookInstance: required"),
    ({"context": {"userId": "Practitioner/p1"}}, "context.patientId: required"),
    ({"prefetch": []}, "prefetch: must be an object"),
    ({"context": {"patientId": "V05"}}, "context.userId: required"),  # CDS Hooks: userId is REQUIRED
    ({"context": {"patientId": "V05", "userId": {"id": "p1"}}}, "context.userId: required (a string"),
    ({"context": {"patientId": "V05", "userId": "Practitioner/" + "x" * 300}}, "at most 256 characters"),
    ({"context": {"patientId": "V05", "userId": "Practitioner/p1", "encounterId": 7}}, "context.encounterId: must be"),
])
def test_an_invalid_request_is_400_naming_the_field(march: tuple[str, Any], change: dict[str, Any],
                                                    message: str) -> None:
    base, _app = march
    body = hook_body("patient-view", "V05", {})
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    response = httpx.post(f"{base}/cds-services/{PATIENT_VIEW}", json=body)
    assert response.status_code == 400 and message in response.json()["message"]


def test_invalid_draft_orders_are_400_naming_the_element(march: tuple[str, Any]) -> None:
    base, _app = march
    orders = draft({**med_request("d", "V05", atc="V10BX02"), "authoredOn": "last tuesday"})
    body = hook_body("order-sign", "V05", prefetch_for(example_bundle("V05"), templates_of(base)), draftOrders=orders)
    response = httpx.post(f"{base}/cds-services/{ORDER_CHECK}", json=body)
    assert response.status_code == 400 and "context.draftOrders.entry[0].resource.authoredOn" in response.json()["message"]


def test_an_unexpected_failure_is_a_json_500_without_a_traceback(march: tuple[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    base, app = march

    def boom(*_args: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(app.state.radiopal, "discovery", boom)
    response = httpx.get(f"{base}/cds-services")
    assert response.status_code == 500
    assert response.json()["error"] == "internal-error"
    assert "secret" not in response.text and "Traceback" not in response.text


# --- audit and feedback ------------------------------------------------------------------------------------------
def test_every_call_is_audited_and_feedback_is_stored(march: tuple[str, Any]) -> None:
    base, app = march
    [card] = patient_view(base, "V05").json()["cards"]
    audit: AuditLog = app.state.radiopal.audit
    record_id = link_to(card, "reports").rsplit("/", 1)[1]
    record = audit.get(record_id)
    assert record is not None and record.kind == "evaluation" and record.patient_id == "V05"
    assert record.caller == "cds-hooks:no-auth" and record.context["hook"] == "patient-view"
    assert record.context["cards"][0]["uuid"] == card["uuid"]
    assert record.context["provenance"]["labs.platelets"]["resource"] == "Observation/plt"
    graph_inputs = {n["id"]: n for n in record.graph["nodes"] if n["kind"] == "input"}
    [chemo] = graph_inputs["input:treatment_history.chemotherapy"]["provenance"]  # what the washout rule used
    assert chemo["resource"] == "MedicationAdministration/docetaxel-cycle-3"
    assert chemo["fullUrl"] == "https://ehr.example/fhir/MedicationAdministration/docetaxel-cycle-3"

    reason = card["overrideReasons"][1]
    feedback = {"feedback": [
        {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2025-03-17T10:00:00Z",
         "overrideReason": {"reason": reason, "userComment": "tumour board decided"}},
        {"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": "2025-03-17T10:01:00Z",
         "acceptedSuggestions": [{"id": "s1"}]},
    ]}
    response = httpx.post(f"{base}/cds-services/{PATIENT_VIEW}/feedback", json=feedback)
    assert response.status_code == 200
    recorded = response.json()["recorded"]
    assert recorded[0]["evaluation_record"] == record_id and recorded[1]["evaluation_record"] is None
    stored = audit.get(recorded[0]["record"])
    assert stored.kind == "feedback" and stored.context["known_card"] is True
    assert stored.context["feedback"]["overrideReason"] == {"reason": reason, "userComment": "tumour board decided"}
    assert audit.verify().ok

    bad = httpx.post(f"{base}/cds-services/{PATIENT_VIEW}/feedback", json={"feedback": [{"card": "x"}]})
    assert bad.status_code == 400 and "feedback[0].outcome" in bad.json()["message"]


def test_a_report_outlives_the_result_cache(march: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    base, app = march
    [card] = patient_view(base, "V05").json()["cards"]
    monkeypatch.setattr(app.state.radiopal, "_results", {})  # as after a restart
    report = httpx.get(link_to(card, "reports"))
    assert report.status_code == 200
    assert "patient   V05" in report.text and "SEQ-01" in report.text and "deferred" in report.text


# --- authentication ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {"rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec": ec.generate_private_key(ec.SECP384R1()),
            "rogue": rsa.generate_private_key(public_exponent=65537, key_size=2048)}


@pytest.fixture(scope="module")
def jwks_url(keys: dict[str, Any]) -> Iterator[str]:
    """A JWKS endpoint on 127.0.0.1 publishing the public RS384 (kid rsa-1) and ES384 (kid ec-1) keys."""
    rsa_jwk = json.loads(RSAAlgorithm.to_jwk(keys["rsa"].public_key()))
    ec_jwk = json.loads(ECAlgorithm.to_jwk(keys["ec"].public_key()))
    jwks = json.dumps({"keys": [{**rsa_jwk, "kid": "rsa-1", "use": "sig", "alg": "RS384"},
                                {**ec_jwk, "kid": "ec-1", "use": "sig", "alg": "ES384"}]}).encode()

    class JWKS(JSONHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            self.send_json(jwks)

    with http_server(JWKS) as jwks_base:
        yield f"{jwks_base}/jwks.json"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, rules: Path, jwks_url: str) -> Iterator[str]:
    settings = service_settings(tmp_path_factory.mktemp("secured"), rules, "2025-03-17",
                                jwks=jwks_url, issuers=(ISSUER, "https://other-ehr.example"))
    with running(settings) as (base, _app):
        yield base


def bearer(key: Any, alg: str, aud: str, *, kid: str | None = "rsa-1", iss: str = ISSUER, exp: float = 300,
           **claims: Any) -> dict[str, str]:
    now = int(time.time())
    payload = {"iss": iss, "aud": aud, "iat": now, "exp": now + exp, "jti": str(uuid.uuid4()), **claims}
    headers = {"typ": "JWT"}
    if kid is not None:
        headers["kid"] = kid
    return {"Authorization": f"Bearer {jwt.encode(payload, key, algorithm=alg, headers=headers)}"}


def test_a_valid_rs384_or_es384_jwt_is_accepted(secured: str, keys: dict[str, Any]) -> None:
    url = f"{secured}/cds-services"
    assert httpx.get(url, headers=bearer(keys["rsa"], "RS384", url)).status_code == 200
    assert httpx.get(url, headers=bearer(keys["ec"], "ES384", url, kid="ec-1")).status_code == 200
    service_url = f"{secured}/cds-services/{PATIENT_VIEW}"
    bundle = example_bundle("V05")
    templates = templates_of(secured, bearer(keys["rsa"], "RS384", url))
    body = hook_body("patient-view", "V05", prefetch_for(bundle, templates))
    response = httpx.post(service_url, json=body, headers=bearer(keys["ec"], "ES384", service_url, kid="ec-1",
                                                                iss="https://other-ehr.example"))
    assert response.status_code == 200, response.text
    assert response.json()["cards"][0]["indicator"] == "info"


@pytest.mark.parametrize("case", ["missing", "wrong-audience", "other-endpoint", "expired", "bad-signature", "hs256",
                                  "unknown-issuer", "no-kid", "unknown-kid", "not-a-jwt", "no-jti", "key-type"])
def test_an_invalid_jwt_is_401(secured: str, keys: dict[str, Any], case: str) -> None:
    url = f"{secured}/cds-services"
    headers: dict[str, str] = {
        "missing": lambda: {},
        "wrong-audience": lambda: bearer(keys["rsa"], "RS384", "https://cds.example/cds-services"),
        "other-endpoint": lambda: bearer(keys["rsa"], "RS384", f"{secured}/cds-services/{PATIENT_VIEW}"),
        "expired": lambda: bearer(keys["rsa"], "RS384", url, exp=-600),
        "bad-signature": lambda: bearer(keys["rogue"], "RS384", url),
        "hs256": lambda: bearer("a-shared-secret-of-32-bytes-length!", "HS256", url),
        "unknown-issuer": lambda: bearer(keys["rsa"], "RS384", url, iss="https://evil.example"),
        "no-kid": lambda: bearer(keys["rsa"], "RS384", url, kid=None),
        "unknown-kid": lambda: bearer(keys["rsa"], "RS384", url, kid="nope"),
        "not-a-jwt": lambda: {"Authorization": "Bearer not.a.jwt"},
        "no-jti": lambda: {"Authorization": "Bearer " + jwt.encode(
            {"iss": ISSUER, "aud": url, "exp": int(time.time()) + 300}, keys["rsa"], algorithm="RS384",
            headers={"kid": "rsa-1"})},
        "key-type": lambda: bearer(keys["ec"], "ES384", url, kid="rsa-1"),
    }[case]()
    response = httpx.get(url, headers=headers)
    assert response.status_code == 401, (case, response.text)
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_replayed_jwt_is_401(secured: str, keys: dict[str, Any]) -> None:
    url = f"{secured}/cds-services"
    headers = bearer(keys["rsa"], "RS384", url)
    assert httpx.get(url, headers=headers).status_code == 200
    replay = httpx.get(url, headers=headers)
    assert replay.status_code == 401 and "replay" in replay.json()["message"]


def test_a_jwt_replayed_to_another_service_process_sharing_the_audit_log_is_401(
        tmp_path: Path, rules: Path, jwks_url: str, keys: dict[str, Any]) -> None:
    # Two services behind one public URL (as behind a load balancer), one audit database: what one accepted, the
    # other must refuse. Each has its own in-memory replay cache, so only the shared log can catch this.
    public = "https://radiopal.example"
    shared = str(tmp_path / "shared-audit.db")
    first = service_settings(tmp_path, rules, "2025-03-17", jwks=jwks_url, issuers=(ISSUER,), base_url=public,
                             audit_db=shared)
    second = service_settings(tmp_path, rules, "2025-03-17", jwks=jwks_url, issuers=(ISSUER,), base_url=public,
                              audit_db=shared)
    headers = bearer(keys["rsa"], "RS384", f"{public}/cds-services")
    with running(first), running(second):
        assert httpx.get(f"http://127.0.0.1:{first.port}/cds-services", headers=headers).status_code == 200
        replay = httpx.get(f"http://127.0.0.1:{second.port}/cds-services", headers=headers)
        fresh = httpx.get(f"http://127.0.0.1:{second.port}/cds-services",
                          headers=bearer(keys["rsa"], "RS384", f"{public}/cds-services"))
    assert replay.status_code == 401 and "replay" in replay.json()["message"]
    assert fresh.status_code == 200


def check_expired_ids_renew(log: AuditLog) -> None:
    """An expired JWT id may be used again and is then remembered anew; ids are per issuer (any backend)."""
    now = time.time()
    assert log.claim_token_id(ISSUER, "abc", now - 1)  # first use, already expired
    assert log.claim_token_id(ISSUER, "abc", now + 300)  # expired entries do not block
    assert not log.claim_token_id(ISSUER, "abc", now + 300)  # now remembered
    assert log.claim_token_id("https://other-ehr.example", "abc", now + 300)  # per issuer
    log.dispose()


def test_an_expired_jwt_id_may_be_used_again_and_is_then_remembered_anew(tmp_path: Path) -> None:
    check_expired_ids_renew(AuditLog(tmp_path / "audit.db"))


def test_the_service_answers_nothing_but_401_without_a_jwt(secured: str) -> None:
    body = hook_body("patient-view", "V05", {})
    assert httpx.post(f"{secured}/cds-services/{PATIENT_VIEW}", json=body).status_code == 401
    feedback = {"feedback": [{"card": "x", "outcome": "accepted", "outcomeTimestamp": "2025-01-01T00:00:00Z"}]}
    assert httpx.post(f"{secured}/cds-services/{PATIENT_VIEW}/feedback", json=feedback).status_code == 401


# --- the serve command -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["--host", "0.0.0.0"], ["--host", "0.0.0.0", "--no-auth"],
                                  ["--host", "192.168.1.10", "--jwks", "keys.json"], ["--host", "127.0.0.1"]])
def test_serve_refuses_to_start_without_authentication_off_loopback(argv: list[str],
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert "radiopal: error:" in err and ("--jwks" in err or "loopback" in err)


def test_serve_with_no_auth_on_loopback_says_so_and_starts_uvicorn(rules: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    started: dict[str, Any] = {}

    def fake_run(app: Any, **options: Any) -> None:  # what uvicorn.run would serve, without blocking the test
        started.update(options, app=app)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    assert main(["serve", "--no-auth", "--port", "8123", "--rules", str(rules), "--audit-db",
                 str(tmp_path / "a.db")]) == 0
    err = capsys.readouterr().err
    assert "authentication is OFF (--no-auth)" in err and "loopback 127.0.0.1" in err
    assert started["host"] == "127.0.0.1" and started["port"] == 8123
    assert started["app"].state.radiopal.authenticator is None


# --- the shipped rule base ---------------------------------------------------------------------------------------
def test_cards_agree_with_the_engine_on_the_shipped_rule_base(tmp_path: Path) -> None:
    from radiopal.api import default_rulebase, evaluate_fhir
    from radiopal.service.cards import PATIENT_VIEW_GROUPS

    rulebase = default_rulebase()
    for name in ("V05", "V08"):
        bundle = example_bundle(name)
        day = bundle["timestamp"][:10]
        expected = evaluate_fhir(copy.deepcopy(bundle), rulebase)
        shown = [d for d in expected.decisions
                 if rulebase.catalogue.therapy(d.therapy).group in PATIENT_VIEW_GROUPS]
        settings = Settings(port=free_port(), audit_db=str(tmp_path / f"{name}.db"), evaluation_date=day,
                            no_auth=True, rulebase=rulebase)
        with running(settings) as (base, _app):
            response = patient_view(base, name)
        assert response.status_code == 200, response.text
        [card] = response.json()["cards"]
        urgent = any(a.severity == "urgent" for a in expected.advisories)
        assert card["indicator"] == indicator_for(urgent), name
        assert_card_shape(card)
        for d in shown:
            if d.status == "deferred" and d.earliest_date:
                assert d.earliest_date.isoformat() in card["detail"], (name, d.therapy)


# --- fhirServer allow-list (--fhir-server) ----------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "listed"), [
    ("https://ehr.example.org/fhir", True),
    ("https://ehr.example.org/fhir/", True),
    ("https://ehr.example.org/fhir/r4", True),
    ("https://ehr.example.org/fhirplus", False),  # a prefix of the path segment is not the same base
    ("https://ehr.example.org:8443/fhir", False),
    ("http://ehr.example.org/fhir", False),
    ("https://evil.example.org/fhir", False),
    ("https://ehr.example.org.evil.net/fhir", False),
])
def test_the_fhir_server_allow_list_matches_whole_base_urls(url: str, listed: bool) -> None:
    from radiopal.service.prefetch import _listed

    assert _listed(url, ("https://ehr.example.org/fhir",)) is listed


def test_a_fhir_server_off_the_allow_list_is_refused_before_any_request() -> None:
    from radiopal.service.errors import ServiceError
    from radiopal.service.prefetch import fetch_missing

    port = free_port()  # nothing listens there: a request would fail with "could not be reached" instead
    with pytest.raises(ServiceError) as info:
        fetch_missing(f"http://127.0.0.1:{port}/fhir", None, {"patient": "Patient/{{context.patientId}}"},
                      ["patient"], {"patientId": "V05"}, allowed=("https://ehr.example.org/fhir",))
    assert info.value.status == 412 and "--fhir-server" in str(info.value)


def test_serve_refuses_a_fhir_server_that_is_not_a_base_url(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--no-auth", "--fhir-server", "ftp://files.example.org/fhir"])
    assert code == 2
    assert "--fhir-server 'ftp://files.example.org/fhir' is not an http(s) base URL" in capsys.readouterr().err
