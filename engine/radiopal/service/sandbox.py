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
* :func:`free_port` finds a free loopback port to run the service under test on;
* :func:`smart_ehr_handler` is an HTTP handler for a simulated EHR with SMART App Launch: its
  ``.well-known/smart-configuration``, an authorization endpoint that approves at once, a token endpoint that checks
  the PKCE verifier, and the FHIR reads and searches (bearer token required) over the Bundle.

The Bundle is taken to hold one patient: searches do not filter by ``patient=``. Importing this module has no side
effects and imports neither the engine nor an HTTP client (:func:`discover_templates` imports httpx when called).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qs

__all__ = [
    "FHIR_BASE",
    "discover_templates",
    "ehr_bundle",
    "free_port",
    "patient_resource",
    "prefetch_for",
    "search",
    "smart_ehr_handler",
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


def smart_ehr_handler(bundle: Mapping[str, Any]) -> type:
    """A ``http.server`` handler class: a simulated EHR serving ``bundle`` behind SMART App Launch (EHR launch, PKCE).

    ``/fhir/.well-known/smart-configuration``; ``/auth/authorize`` approves at once and redirects back with a code
    (only ``response_type=code`` with an S256 ``code_challenge``); ``/auth/token`` gives an access token and the
    Bundle's patient id only for the right ``code_verifier``; ``/fhir/Patient/{id}`` and ``/fhir/{Type}?…`` answer
    with a bearer token. Codes and tokens are used once / kept per handler class. ``handler.issued`` lists the token
    requests it accepted and ``handler.refused`` the ones it refused (for tests).
    """
    import hashlib
    import json
    import secrets
    from base64 import urlsafe_b64encode
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import urlencode, urlsplit

    ehr = ehr_bundle(bundle)
    patient = patient_resource(ehr)
    codes: dict[str, str] = {}
    tokens: set[str] = set()

    class SmartEhr(BaseHTTPRequestHandler):
        issued: ClassVar[list[str]] = []
        refused: ClassVar[list[str]] = []

        def log_message(self, *args: Any) -> None:  # quiet in tests
            return

        def _send(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            host = f"http://{self.headers.get('Host')}"
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/fhir/.well-known/smart-configuration":
                self._send(200, {"authorization_endpoint": f"{host}/auth/authorize",
                                 "token_endpoint": f"{host}/auth/token", "code_challenge_methods_supported": ["S256"],
                                 "capabilities": ["launch-ehr", "client-public", "context-ehr-patient"]})
            elif parts.path == "/auth/authorize":
                if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256" \
                        or not query.get("code_challenge") or not query.get("redirect_uri"):
                    self._send(400, {"error": "invalid_request"})
                    return
                code = secrets.token_urlsafe(12)
                codes[code] = query["code_challenge"]
                target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query.get("state", "")})
                self._send(302, headers={"Location": target})
            elif parts.path.startswith("/fhir/"):
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or auth[7:] not in tokens:
                    self._send(401, {"resourceType": "OperationOutcome"})
                    return
                rest = parts.path[len("/fhir/"):]
                if rest == f"Patient/{patient['id']}":
                    self._send(200, patient)
                else:
                    self._send(200, search(ehr, rest + ("?" + parts.query if parts.query else "")))
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/auth/token":
                self._send(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            challenge = codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            expected = urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if form.get("grant_type") != "authorization_code" or challenge is None or expected != challenge:
                SmartEhr.refused.append(form.get("code", ""))
                self._send(400, {"error": "invalid_grant"})
                return
            token = secrets.token_urlsafe(16)
            tokens.add(token)
            SmartEhr.issued.append(token)
            self._send(200, {"access_token": token, "token_type": "Bearer", "patient": patient["id"],
                             "scope": "launch openid fhirUser patient/*.read"})

    return SmartEhr
