"""The simulated EHR (``radiopal.service.sandbox``) on the example FHIR Bundles of ``examples/fhir/``."""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import REPO, JSONHandler, http_server
from radiopal.service.sandbox import (
    FHIR_BASE,
    discover_templates,
    ehr_bundle,
    free_port,
    patient_resource,
    prefetch_for,
    search,
)

EXAMPLES = REPO / "examples" / "fhir"
PLATELETS = "http://loinc.org|777-3"
WHITE_CELLS = "http://loinc.org|6690-2"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.bundle.json").read_text(encoding="utf-8"))


def references(node: Any) -> list[str]:
    """Every ``reference`` value in ``node``, in document order."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "reference"] + [r for v in node.values() for r in references(v)]
    if isinstance(node, list):
        return [r for v in node for r in references(v)]
    return []


def resource(bundle: dict[str, Any], kind: str, rid: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"]
                if e["resource"]["resourceType"] == kind and e["resource"]["id"] == rid)


# --- ehr_bundle: urn:uuid references -> Type/id ----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name.removesuffix(".bundle.json") for p in EXAMPLES.glob("*.bundle.json")))
def test_every_urn_uuid_reference_to_an_entry_becomes_type_slash_id(name: str) -> None:
    original = example(name)
    assert any(r.startswith("urn:uuid:") for r in references(original))  # there is something to rewrite
    rewritten = ehr_bundle(original)
    assert not any(r.startswith("urn:uuid:") for r in references(rewritten))
    # Every subject points at the bundle's Patient, now by Type/id.
    subjects = {e["resource"]["subject"]["reference"] for e in rewritten["entry"] if "subject" in e["resource"]}
    assert subjects == {f"Patient/{name}"}
    # Only references change: entries, their order and their fullUrls stay as they were.
    assert [e["fullUrl"] for e in rewritten["entry"]] == [e["fullUrl"] for e in original["entry"]]
    assert len(references(rewritten)) == len(references(original))


def test_a_reference_to_another_resource_of_the_bundle_is_rewritten_too() -> None:
    original = example("V16")
    zoledronate = resource(original, "MedicationAdministration", "zoledronic-acid-last")
    medication_url = next(e["fullUrl"] for e in original["entry"] if e["resource"]["resourceType"] == "Medication")
    assert zoledronate["medicationReference"] == {"reference": medication_url}
    rewritten = resource(ehr_bundle(original), "MedicationAdministration", "zoledronic-acid-last")
    assert rewritten["medicationReference"] == {"reference": "Medication/zol-med"}


def test_a_reference_that_is_not_an_entry_is_kept_and_the_input_is_not_changed() -> None:
    original = example("V01")
    before = copy.deepcopy(original)
    rewritten = ehr_bundle(original)
    assert original == before
    assert references(rewritten).count("#dmab") == references(original).count("#dmab") == 2  # contained
    assert references(rewritten).count("Patient/V01") == sum(r.startswith("urn:uuid:") for r in references(original))


# --- search: the searchset Bundle of one prefetch query ---------------------------------------------------------------
def test_search_filters_observations_by_the_code_list_of_the_template() -> None:
    bundle = ehr_bundle(example("V01"))
    answer = search(bundle, f"Observation?patient={{{{context.patientId}}}}&code={PLATELETS},{WHITE_CELLS}")
    assert answer["resourceType"] == "Bundle" and answer["type"] == "searchset"
    assert [e["resource"]["id"] for e in answer["entry"]] == ["plt-old", "plt", "plt-prelim", "wbc"]
    assert answer["total"] == 4
    assert [e["fullUrl"] for e in answer["entry"]] == [f"{FHIR_BASE}/Observation/{rid}"
                                                       for rid in ("plt-old", "plt", "plt-prelim", "wbc")]
    assert answer["entry"][1]["resource"] is resource(bundle, "Observation", "plt")  # the bundle's own resource
    assert answer["entry"][1]["resource"]["subject"] == {"reference": "Patient/V01"}


def test_a_code_matches_only_with_its_system() -> None:
    bundle = ehr_bundle(example("V05"))
    assert [e["resource"]["id"] for e in search(bundle, f"Observation?patient=V05&code={PLATELETS}")["entry"]] == ["plt"]
    assert search(bundle, "Observation?patient=V05&code=http://snomed.info/sct|777-3") == {
        "resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}


def test_a_search_without_a_code_list_returns_every_resource_of_its_type() -> None:
    bundle = ehr_bundle(example("V05"))
    conditions = search(bundle, "Condition?patient=V05")
    assert [e["resource"]["id"] for e in conditions["entry"]] == ["dx-breast", "dx-bone-mets"]
    assert conditions["total"] == 2
    medications = search(bundle, "MedicationAdministration?patient=V05&_include=MedicationAdministration:medication")
    assert medications["total"] == 4
    assert {e["resource"]["resourceType"] for e in medications["entry"]} == {"MedicationAdministration"}
    assert search(bundle, "Procedure?patient=V05")["total"] == 0  # V05 has no Procedure


# --- prefetch_for and patient_resource -------------------------------------------------------------------------------
def test_prefetch_answers_patient_with_the_resource_and_every_other_key_with_its_search() -> None:
    bundle = ehr_bundle(example("V08"))
    templates = {"patient": "Patient/{{context.patientId}}",
                 "observations": f"Observation?patient={{{{context.patientId}}}}&code={WHITE_CELLS}",
                 "conditions": "Condition?patient={{context.patientId}}"}
    prefetch = prefetch_for(bundle, templates)
    assert list(prefetch) == ["patient", "observations", "conditions"]
    assert prefetch["patient"] is patient_resource(bundle)
    assert prefetch["patient"]["resourceType"] == "Patient" and prefetch["patient"]["id"] == "V08"
    assert [e["resource"]["id"] for e in prefetch["observations"]["entry"]] == ["wbc"]
    assert prefetch["conditions"] == search(bundle, templates["conditions"])


def test_a_bundle_without_a_patient_has_no_patient_resource() -> None:
    bundle = example("V05")
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Patient"]
    with pytest.raises(LookupError, match="no Patient"):
        patient_resource(bundle)


# --- discovery and ports ------------------------------------------------------------------------------------------------
DISCOVERY = {"services": [
    {"id": "other", "hook": "order-sign", "prefetch": {"patient": "Patient/{{context.patientId}}"}},
    {"id": "radiopal-patient-view", "hook": "patient-view",
     "prefetch": {"patient": "Patient/{{context.patientId}}", "conditions": "Condition?patient={{context.patientId}}"}},
]}


@pytest.fixture
def discovery_server() -> Iterator[tuple[str, list[str | None]]]:
    """A local discovery endpoint serving DISCOVERY; yields its base URL and the Authorization headers it saw."""
    seen: list[str | None] = []

    class Discovery(JSONHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            seen.append(self.headers.get("Authorization"))
            if self.path == "/cds-services":
                self.send_json(DISCOVERY)
            else:
                self.send_json({"error": "not-found"}, status=404)

    with http_server(Discovery) as base:
        yield base, seen


def test_discover_templates_reads_the_named_service_from_discovery(discovery_server: tuple[str, list[str | None]]) -> None:
    base, seen = discovery_server
    templates = discover_templates(base, "radiopal-patient-view", headers={"Authorization": "Bearer t"})
    assert templates == DISCOVERY["services"][1]["prefetch"]
    assert seen == ["Bearer t"]
    assert discover_templates(base, "other") == {"patient": "Patient/{{context.patientId}}"}


def test_free_port_is_a_loopback_port_that_can_be_bound() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_importing_the_sandbox_imports_neither_an_http_client_nor_the_engine() -> None:
    code = ("import sys, radiopal.service.sandbox; "
            "print(sorted(m for m in ('httpx', 'fastapi', 'radiopal.api', 'radiopal.fhir') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
