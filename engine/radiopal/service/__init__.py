"""radiopal as a CDS Hooks 2.0 service (needs the ``service`` extra: FastAPI, uvicorn, httpx, PyJWT, SQLAlchemy).

Typical use::

    from radiopal.service import Settings, create_app
    app = create_app(Settings(jwks="https://ehr.example/jwks.json", issuers=("https://ehr.example",),
                              base_url="https://cds.example.org", audit_db="audit.db"))

or from the command line: ``radiopal serve --jwks URL --issuer ISS --base-url https://cds.example.org``.
Importing this package imports neither FastAPI nor the engine; :func:`create_app` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import Settings, is_loopback

__all__ = ["Settings", "create_app", "is_loopback"]

if TYPE_CHECKING:
    from .app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'radiopal.service' has no attribute {name!r}")
