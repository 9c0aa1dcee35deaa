"""A simulated EHR for tests, demos and load tests: turns a FHIR Bundle into the prefetch answers and search results
an EHR would give a CDS Hooks service.

Give it one patient's record as a FHIR Bundle (``examples/fhir/V05.bundle.json``, say) and it answers like an EHR:

* :func:`ehr_bundle` rewrites the Bundle's ``urn:uuid:`` references to ``Type/id`` ones, as an EHR's searches return
  them;
* :func:`search` gives the searchset Bundle an EHR answers to one prefetch query (Observations filtered by the
  template's code list), with ``fullUrl``\\ s on :data:`FHIR_BASE`;
* :func:`prefetch_for` fills in a service's prefetch templates (``patient``: the Patient resource, every other key:
  the answer to its search);
* :func:`discover_templates` reads a running service's prefetch templates from its discovery endpoint;
* :func:`free_port` finds a free loopback port to run the service under test on.

The Bundle is taken to hold one patient: searches do not filter by ``patient=``. Importing this module has no side
effects and imports neither the engine nor an HTTP client (:func:`discover_templates` imports httpx when called).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

__all__ = [
    "FHIR_BASE",
    "discover_templates",
    "ehr_bundle",
    "free_port",
    "patient_resource",
    "prefetch_for",
    "search",
]

#: The simulated EHR's FHIR base URL: search results carry ``fullUrl`` = ``{FHIR_BASE}/{Type}/{id}``.
FHIR_BASE = "https://ehr.example/fhir"


def ehr_bundle(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """``bundle`` with its ``urn:uuid:`` references turned into ``Type/id`` ones, as an EHR's searches return them.

    A reference to an entry's ``fullUrl`` becomes that entry's ``resourceType/id``; any other reference (a contained
    ``#id``, one outside the Bundle) is kept. Returns a new structure: ``bundle`` itself is not changed.
    """
    urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}

    def fix(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: (urls.get(v, v) if k == "reference" else fix(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return fix(bundle)


def patient_resource(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """The first Patient resource of ``bundle`` (what an EHR answers to ``Patient/{{context.patientId}}``)."""
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            return entry["resource"]
    raise LookupError("the bundle has no Patient resource")


def search(bundle: Mapping[str, Any], template: str) -> dict[str, Any]:
    """The searchset Bundle an EHR answers to one prefetch query (``Type?param=...``) over ``bundle``.

    Resources of the query's type are returned; with a ``code`` parameter (a comma-separated list of
    ``system|code`` tokens) only those with a coding in that list. Other parameters (``patient``, ``_include``) are
    not applied. The entries hold ``bundle``'s own resource objects, not copies.
    """
    kind, _, query = template.partition("?")
    params = parse_qs(query)
    codes = set(params["code"][0].split(",")) if "code" in params else None
    entries = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] != kind:
            continue
        codings = resource.get("code", {}).get("coding", [])
        if codes is not None and not any(f"{c.get('system')}|{c.get('code')}" in codes for c in codings):
            continue
        entries.append({"fullUrl": f"{FHIR_BASE}/{kind}/{resource['id']}", "resource": resource})
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


def prefetch_for(bundle: Mapping[str, Any], templates: Mapping[str, str]) -> dict[str, Any]:
    """The ``prefetch`` object of a hook request: each template key answered from ``bundle``.

    The key ``patient`` gets the Patient resource; every other key the searchset Bundle of its query (:func:`search`).
    """
    out: dict[str, Any] = {}
    for key, template in templates.items():
        out[key] = patient_resource(bundle) if key == "patient" else search(bundle, template)
    return out


def discover_templates(base: str, service_id: str, *, headers: Mapping[str, str] | None = None,
                       timeout: float = 10.0) -> dict[str, str]:
    """The prefetch templates of service ``service_id``, from the discovery endpoint ``{base}/cds-services``.

    ``headers`` go with the request (an ``Authorization`` header for a service that wants a JWT).
    """
    import httpx

    response = httpx.get(f"{base}/cds-services", headers=headers, timeout=timeout)
    response.raise_for_status()
    services = response.json()["services"]
    return dict(next(s["prefetch"] for s in services if s["id"] == service_id))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
