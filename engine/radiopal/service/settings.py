"""Settings of the CDS Hooks service, and the start-up checks that keep an unauthenticated server on loopback."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..errors import Problem, RadiopalError

__all__ = ["DEFAULT_MAX_BODY", "Settings", "is_loopback"]

DEFAULT_MAX_BODY = 1024 * 1024


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``) or ``localhost``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Settings:
    """How the service runs.

    ``base_url`` is the public URL of the service as the EHR calls it (JWT ``aud`` is ``{base_url}/cds-services/{id}``
    and report links start with it); by default ``http://{host}:{port}``. Authentication needs ``jwks`` (a JWKS URL
    or file) and ``issuers``; ``no_auth`` is allowed on a loopback host only. ``evaluation_date`` fixes the day
    intervals are counted to (for tests and replays); by default it is today's date. ``rulebase`` is a compiled
    rule base to use instead of loading ``rules``. ``fhir_servers``, when given, are the only FHIR server base URLs
    missing prefetch is fetched from (each request limited to ``fhir_timeout`` seconds).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    rules: str | None = None
    audit_db: str | None = None
    jwks: str | None = None
    issuers: tuple[str, ...] = ()
    no_auth: bool = False
    base_url: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    evaluation_date: str | None = None
    fhir_timeout: float = 10.0
    fhir_servers: tuple[str, ...] = ()
    rulebase: Any = field(default=None, repr=False)
    #: The evaluation path when ``rules`` are loaded: "experta" (the engine of record) or "compiled".
    engine: str = "experta"
    #: The client id radiopal presents in a SMART App Launch (registered with the EHR).
    smart_client_id: str = "radiopal"

    @property
    def public_url(self) -> str:
        """The base URL without a trailing slash."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (self.base_url or f"http://{host}:{self.port}").rstrip("/")

    def today(self) -> str:
        """The evaluation date of a call: the fixed one, or today's date."""
        return self.evaluation_date or dt.date.today().isoformat()

    def check(self) -> None:
        """Refuse settings that would expose the service without authentication (raises, exit code 2)."""
        problems = []
        if self.no_auth:
            if not is_loopback(self.host):
                problems.append(Problem(
                    f"--no-auth is only allowed on a loopback address, not {self.host}",
                    hint="bind to 127.0.0.1, or give --jwks URL|FILE and --issuer ISS"))
        elif not self.jwks or not self.issuers:
            what = "a non-loopback address" if not is_loopback(self.host) else self.host
            problems.append(Problem(
                f"refusing to serve on {what} without authentication: give --jwks URL|FILE and --issuer ISS"
                + ("" if not is_loopback(self.host) else " (or --no-auth, allowed on loopback only)")))
        for server in self.fhir_servers:
            parts = urlsplit(server)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                problems.append(Problem(f"--fhir-server {server!r} is not an http(s) base URL"))
        if not 0 < self.fhir_timeout <= 300:
            problems.append(Problem(f"--fhir-timeout {self.fhir_timeout} is outside 0–300 seconds"))
        if self.max_body_bytes < 1024:
            problems.append(Problem(f"the body limit {self.max_body_bytes} is below 1024 bytes"))
        if self.evaluation_date is not None:
            try:
                dt.date.fromisoformat(self.evaluation_date)
            except ValueError:
                problems.append(Problem(f"evaluation date {self.evaluation_date!r} is not YYYY-MM-DD"))
        if problems:
            raise RadiopalError(f"cannot start the service: {problems[0].message}", problems)
