"""The FastAPI application of the CDS Hooks service: routes, the body-size limit, JSON errors everywhere.

Endpoints:

* ``GET  /cds-services`` — discovery;
* ``POST /cds-services/{id}`` — a hook call (``{"cards": [...]}``);
* ``POST /cds-services/{id}/feedback`` — card feedback, stored in the audit log;
* ``GET  /reports/{record}`` — the HTML report of an evaluation (linked from the cards; the record id is a random
  UUID, and only evaluations made by this service are served);
* ``GET  /page/record/{record}`` — the clinician page of a card's evaluation (redirects to ``/page/{token}``);
  ``GET|POST /page/{token}`` — the page and its form (supply the missing facts, re-evaluate, see what changed);
  ``GET|POST /page`` — paste a patient document or FHIR Bundle (only without authentication, on loopback);
* ``GET  /launch?iss&launch`` and ``GET /callback?code&state`` — SMART App Launch (EHR launch, PKCE) into the page.

Every error is a JSON body ``{"error": code, "message": text}`` with the right status (400 malformed JSON or an invalid
request naming the field, 401 authentication, 404 unknown service, 412 missing prefetch, 413 body too large); an
unexpected failure is a 500 with the same shape and no traceback.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import InputError
from ..yamlio import check_depth
from .errors import ServiceError
from .hooks import CDSHooksService
from .page import ClinicianPages
from .settings import Settings
from .smart import SmartLauncher

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SETTINGS_ENV", "app_from_environment", "create_app", "settings_to_json"]

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())
#: How much of an oversized body is read (and thrown away) before answering 413, so that the client, still sending,
#: gets the answer instead of a reset connection. Beyond this the connection is simply closed after the 413.
DRAIN_LIMIT = 64 * 1024 * 1024


def _json_error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, whatever Content-Length says."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit()):
            await _json_error(400, {"error": "bad-request", "message": "invalid Content-Length"})(scope, receive, send)
            return
        chunks: list[bytes] = []
        total = 0
        more = True
        too_large = declared is not None and int(declared) > self.limit
        while more and not too_large:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            more = message.get("more_body", False)
            if total > self.limit:
                too_large = True
            else:
                chunks.append(chunk)
        if too_large:
            while more and total <= DRAIN_LIMIT:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                total += len(message.get("body", b""))
                more = message.get("more_body", False)
            response = _json_error(413, {"error": "payload-too-large",
                                         "message": f"the request body is larger than {self.limit} bytes"},
                                   headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise ServiceError(400, "bad-request", "the request body is empty; a JSON object is expected")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ServiceError(400, "bad-request", "the request body is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise ServiceError(400, "malformed-json",
                           f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise ServiceError(400, "bad-request", "the request body nests too deeply") from exc
    try:
        check_depth(data, "request body")
        # A \ud800-style escape decodes to a lone surrogate, which cannot be stored or hashed as UTF-8.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except InputError as exc:
        reason = exc.problems[0].message if exc.problems else str(exc)
        raise ServiceError(400, "bad-request", f"the request body cannot be used: {reason}") from exc
    except UnicodeEncodeError as exc:
        raise ServiceError(400, "bad-request", "the request body holds an invalid Unicode escape (a lone surrogate)") from exc
    return data


#: The environment variable that carries the settings to each worker process of ``radiopal serve --workers N``.
SETTINGS_ENV = "RADIOPAL_SERVE_SETTINGS"


def settings_to_json(settings: Settings) -> str:
    """The settings as JSON for the worker processes (a compiled rule base object is not carried: each loads it)."""
    import dataclasses

    data = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "rulebase"}
    return json.dumps(data)


def app_from_environment() -> FastAPI:
    """The app of one worker process of ``radiopal serve --workers N`` (uvicorn's factory)."""
    import os

    data = json.loads(os.environ[SETTINGS_ENV])
    for key in ("issuers", "fhir_servers"):
        data[key] = tuple(data.get(key) or ())
    return create_app(Settings(**data))


def create_app(settings: Settings) -> FastAPI:
    """Build the service (rule base, code table, prefetch templates, audit log, keys) and its FastAPI app.

    Raises :class:`radiopal.RadiopalError` for settings that would expose it without authentication.
    """
    settings.check()
    service = CDSHooksService(settings)
    app = FastAPI(title="radiopal CDS Hooks service", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.radiopal = service
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> Response:
        return _json_error(exc.status, exc.body(), exc.headers or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return _json_error(exc.status_code, {"error": code, "message": str(exc.detail)},
                           dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s: %r", request.method, request.url.path, exc, exc_info=exc)
        return _json_error(500, {"error": "internal-error",
                                 "message": "radiopal could not answer this request; the error is in the service log"})

    async def authenticate(request: Request) -> Any:
        return await run_in_threadpool(service.authenticate, request.headers.get("authorization"), request.url.path)

    @app.get("/cds-services")
    async def discovery(request: Request) -> Response:
        await authenticate(request)
        return JSONResponse(service.discovery())

    @app.post("/cds-services/{service_id}")
    async def call(service_id: str, request: Request) -> Response:
        claims = await authenticate(request)
        service.spec(service_id)
        body = await _read_json(request)
        return JSONResponse(await run_in_threadpool(service.call, service_id, body, claims))

    @app.post("/cds-services/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> Response:
        claims = await authenticate(request)
        service.spec(service_id)
        body = await _read_json(request)
        return JSONResponse(await run_in_threadpool(service.feedback, service_id, body, claims))

    pages = ClinicianPages(service.rulebase, settings.evaluation_date)
    app.state.pages = pages
    page_headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}

    def html(text: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(text, status_code=status, headers=page_headers)

    async def form_of(request: Request) -> dict[str, str]:
        from urllib.parse import parse_qsl

        raw = (await request.body()).decode("utf-8", errors="replace")
        return dict(parse_qsl(raw, keep_blank_values=True))

    def standalone_allowed() -> None:
        if not settings.no_auth:
            raise ServiceError(404, "not-found", "the standalone page is offered only without authentication (loopback)")

    @app.get("/page")
    async def page_start() -> Response:
        standalone_allowed()
        return html(pages.render_start())

    @app.post("/page")
    async def page_upload(request: Request) -> Response:
        standalone_allowed()
        text = (await form_of(request)).get("document", "")
        try:
            token = await run_in_threadpool(pages.from_text, text)
        except InputError as exc:
            lines = [str(p) for p in exc.problems] or [str(exc)]  # as the command line prints them
            return html(pages.render_start(error="; ".join(lines), text=text), 400)
        return RedirectResponse(f"/page/{token}", status_code=303, headers=page_headers)

    launcher = SmartLauncher(client_id=settings.smart_client_id, redirect_uri=service.url("/callback"),
                             templates=dict(service.templates), allowed=settings.fhir_servers,
                             timeout=settings.fhir_timeout, evaluate=service.evaluate_assembled)

    @app.get("/launch")
    async def smart_launch(iss: str = "", launch: str = "") -> Response:
        url = await run_in_threadpool(launcher.begin, iss, launch)
        return RedirectResponse(url, status_code=302, headers=page_headers)

    @app.get("/callback")
    async def smart_callback(code: str = "", state: str = "") -> Response:
        result = await run_in_threadpool(launcher.complete, code, state)
        return RedirectResponse(f"/page/{pages.from_result(result)}", status_code=303, headers=page_headers)

    @app.get("/page/record/{record_id}")
    async def page_from_card(record_id: str) -> Response:
        result = service.cached_result(record_id)
        if result is None:
            raise ServiceError(404, "not-found", "no evaluation with this id (it may have expired)")
        return RedirectResponse(f"/page/{pages.from_result(result)}", status_code=303, headers=page_headers)

    @app.get("/page/{token}")
    async def page_show(token: str) -> Response:
        if pages.state(token) is None:
            raise ServiceError(404, "not-found", "no page with this id (it may have expired)")
        return html(await run_in_threadpool(pages.render, token))

    @app.post("/page/{token}")
    async def page_submit(token: str, request: Request) -> Response:
        if pages.state(token) is None:
            raise ServiceError(404, "not-found", "no page with this id (it may have expired)")
        form = await form_of(request)
        new_token, errors = await run_in_threadpool(pages.submit, token, form)
        if new_token is None:
            return html(await run_in_threadpool(lambda: pages.render(token, errors=errors, values=form)), 400)
        return RedirectResponse(f"/page/{new_token}", status_code=303, headers=page_headers)

    @app.get("/reports/{record_id}")
    async def report(record_id: str) -> Response:
        page = await run_in_threadpool(service.report, record_id)
        if page is None:
            raise ServiceError(404, "not-found", "no report with this id")
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    return app
