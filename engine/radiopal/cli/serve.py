"""``radiopal serve``: run the CDS Hooks service on uvicorn.

Authentication is on unless ``--no-auth`` is given, and ``--no-auth`` is refused unless the server listens on a
loopback address; a server on any other address without ``--jwks`` and ``--issuer`` refuses to start (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import add_engine_option, add_rules_option


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "serve", help="run the CDS Hooks service (patient-view, order-select, order-sign)",
        description="Serve radiopal as a CDS Hooks 2.0 service. Client JWTs (RS384/ES384) are verified against "
                    "--jwks and --issuer; --no-auth is allowed on a loopback address only. Every evaluation is "
                    "recorded in the audit log.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    add_rules_option(parser)
    add_engine_option(parser)
    parser.add_argument("--audit-db", metavar="PATH",
                        help="audit log: SQLite file or SQLAlchemy URL (default $RADIOPAL_AUDIT_DB or radiopal-audit.db)")
    parser.add_argument("--jwks", metavar="URL|FILE", help="JSON Web Key Set of the EHR(s): an https URL or a file")
    parser.add_argument("--issuer", metavar="ISS", nargs="+", action="extend", default=[],
                        help="allowed JWT issuer(s) (iss); repeatable")
    parser.add_argument("--no-auth", action="store_true",
                        help="accept calls without a JWT (only on a loopback address; for local testing)")
    parser.add_argument("--base-url", metavar="URL",
                        help="public URL of the service as the EHR calls it; the JWT aud is "
                             "{base-url}/cds-services/{id} (default http://HOST:PORT)")
    parser.add_argument("--fhir-server", metavar="URL", nargs="+", action="extend", default=[],
                        help="FHIR server base URL(s) the service may fetch missing prefetch from; repeatable. "
                             "Without it any https server the EHR names (http on loopback) is used")
    parser.add_argument("--fhir-timeout", metavar="SECONDS", type=float, default=10.0,
                        help="time limit of each request to the FHIR server (default 10)")
    parser.add_argument("--max-body", metavar="BYTES", type=int, default=1024 * 1024,
                        help="largest request body accepted (default 1048576; larger → HTTP 413)")
    parser.add_argument("--evaluation-date", metavar="YYYY-MM-DD",
                        help="count intervals to this date instead of today (testing and replays only)")
    parser.add_argument("--workers", metavar="N", type=int, default=1,
                        help="worker processes (default 1); they share the audit log and the JWT replay protection")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                        help="uvicorn log level (default info)")
    parser.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> Any:
    """The service settings for the command-line arguments, checked (raises with exit code 2)."""
    from ..service.settings import Settings

    settings = Settings(host=args.host, port=args.port, rules=args.rules, audit_db=args.audit_db, jwks=args.jwks,
                        issuers=tuple(args.issuer), no_auth=args.no_auth, base_url=args.base_url,
                        max_body_bytes=args.max_body, evaluation_date=args.evaluation_date,
                        fhir_servers=tuple(args.fhir_server), fhir_timeout=args.fhir_timeout,
                        engine=args.engine)
    settings.check()
    return settings


def run(args: argparse.Namespace) -> int:
    from ..extras import require

    require("radiopal serve", "fastapi", "uvicorn", "httpx", "jwt", "cryptography", "sqlalchemy", "fhir.resources")
    from ..lintgate import lint_gate

    lint_gate(args.rules, allow_errors=args.allow_lint_errors)  # a rule base that fails lint is not served by accident
    settings = settings_from(args)
    if settings.no_auth:
        print(f"radiopal serve: WARNING: authentication is OFF (--no-auth); listening on loopback {settings.host} "
              "only. Do not forward this port.", file=sys.stderr, flush=True)
    import uvicorn

    from ..service.app import create_app

    if args.workers > 1:
        import os

        from ..audit import AuditLog, default_audit_db
        from ..service.app import SETTINGS_ENV, settings_to_json

        # Open the audit log once here: its tables exist before the workers start, and a database that cannot be
        # reached is one clear error now, not a traceback from every worker that uvicorn restarts for ever.
        AuditLog(settings.audit_db or default_audit_db()).dispose()

        # Each worker process builds its own app from these settings (no secrets: keys are read from --jwks).
        os.environ[SETTINGS_ENV] = settings_to_json(settings)
        print(f"radiopal serve: CDS Hooks discovery at {settings.public_url}/cds-services; {args.workers} worker "
              "processes", file=sys.stderr, flush=True)
        uvicorn.run("radiopal.service.app:app_from_environment", factory=True, workers=args.workers,
                    host=settings.host, port=settings.port, log_level=args.log_level, server_header=False)
        return 0
    app = create_app(settings)
    print(f"radiopal serve: CDS Hooks discovery at {settings.public_url}/cds-services; audit log "
          f"{app.state.radiopal.audit.target}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, server_header=False)
    return 0
