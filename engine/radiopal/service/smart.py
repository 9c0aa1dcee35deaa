"""SMART App Launch (EHR launch, authorization code with PKCE) into the clinician page.

The EHR opens ``/launch?iss=<FHIR base>&launch=<opaque>``. radiopal reads ``{iss}/.well-known/smart-configuration``,
redirects the browser to the EHR's authorization endpoint (``response_type=code``, ``state``, ``aud=iss``,
``code_challenge`` with method ``S256``), and on ``/callback?code&state`` exchanges the code (with the
``code_verifier``) for an access token and the launch's ``patient``. It then reads the patient's record from the FHIR
server with its prefetch queries, evaluates it, and shows the clinician page.

Only FHIR servers the service may fetch from are accepted as ``iss`` (``--fhir-server``; https, or http on
loopback). Pending launches are kept in memory for ten minutes; a ``state`` is used once.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .errors import ServiceError
from .prefetch import _allowed_server, _listed, assemble_bundle, fetch_missing

__all__ = ["SmartLauncher", "pkce_challenge"]

PENDING_SECONDS = 600
SCOPE = "launch openid fhirUser patient/*.read"


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class _Pending:
    iss: str
    verifier: str
    token_endpoint: str
    created: float


class SmartLauncher:
    """Starts and completes EHR launches; ``evaluate(assembled)`` turns the fetched record into a result."""

    def __init__(self, *, client_id: str, redirect_uri: str, templates: dict[str, str], allowed: tuple[str, ...],
                 timeout: float, evaluate: Callable[[Any], Any]) -> None:
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.templates = templates
        self.allowed = allowed
        self.timeout = timeout
        self.evaluate = evaluate
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def _check_iss(self, iss: str) -> None:
        if not iss or not _allowed_server(iss):
            raise ServiceError(400, "bad-launch", "iss: an https FHIR base URL is required (http only on loopback)")
        if self.allowed and not _listed(iss, self.allowed):
            raise ServiceError(400, "bad-launch", f"iss {iss!r} is not a FHIR server this service may use (--fhir-server)")

    def begin(self, iss: str, launch: str) -> str:
        """The authorization URL to redirect the browser to."""
        import httpx

        self._check_iss(iss)
        if not launch:
            raise ServiceError(400, "bad-launch", "launch: required (the EHR's launch context)")
        try:
            response = httpx.get(iss.rstrip("/") + "/.well-known/smart-configuration", timeout=self.timeout,
                                 headers={"Accept": "application/json"}, follow_redirects=False)
            config = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            config = None
        if not isinstance(config, dict) or not config.get("authorization_endpoint") or not config.get("token_endpoint"):
            raise ServiceError(502, "smart-configuration",
                               "the FHIR server's .well-known/smart-configuration could not be read")
        if "S256" not in (config.get("code_challenge_methods_supported") or ["S256"]):
            raise ServiceError(502, "smart-configuration", "the EHR does not support PKCE S256")
        verifier = secrets.token_urlsafe(64)
        state = secrets.token_urlsafe(16)
        with self._lock:
            now = time.monotonic()
            self._pending = {k: v for k, v in self._pending.items() if now - v.created < PENDING_SECONDS}
            self._pending[state] = _Pending(iss, verifier, str(config["token_endpoint"]), now)
        query = urlencode({"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
                           "launch": launch, "scope": SCOPE, "state": state, "aud": iss,
                           "code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256"})
        endpoint = str(config["authorization_endpoint"])
        return endpoint + ("&" if "?" in endpoint else "?") + query

    def complete(self, code: str, state: str) -> Any:
        """Exchange the code, read the launch patient's record, evaluate it; returns the result."""
        import httpx

        with self._lock:
            pending = self._pending.pop(state, None)
        if pending is None or time.monotonic() - pending.created >= PENDING_SECONDS:
            raise ServiceError(400, "bad-launch", "state: unknown or expired launch (start again from the EHR)")
        if not code:
            raise ServiceError(400, "bad-launch", "code: required")
        try:
            response = httpx.post(pending.token_endpoint, timeout=self.timeout, follow_redirects=False, data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "client_id": self.client_id, "code_verifier": pending.verifier})
            token = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            token = None
        if not isinstance(token, dict) or not token.get("access_token") or not token.get("patient"):
            raise ServiceError(502, "smart-token", "the EHR's token endpoint gave no access token and patient")
        context = {"patientId": str(token["patient"])}
        prefetch = fetch_missing(pending.iss, {"access_token": token["access_token"]}, self.templates,
                                 list(self.templates), context, timeout=self.timeout, allowed=self.allowed)
        return self.evaluate(assemble_bundle(prefetch, self.templates, server=pending.iss))
