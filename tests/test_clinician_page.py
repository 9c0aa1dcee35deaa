"""The clinician page of ``radiopal serve`` (issue #14 item 4): the action summary, a form for every missing field
generated from the patient schema, re-evaluation on submit with what changed, bad values shown next to their field
(nothing evaluated with them, the rest of the form kept) — over HTTP against a real uvicorn server on 127.0.0.1, and
in headless Chromium (Playwright, offline): fill the missing platelets → Sr-89 leaves insufficient_data; the urgent
advisory above the summary; no horizontal scroll at 390 px; keyboard-only completion.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from conftest import REPO, VIGNETTES, needs_shared
from radiopal.service.app import create_app
from radiopal.service.settings import Settings

DEMO = REPO / "examples" / "patient-mcrpc.yaml"
ARTIFACTS = REPO / "out" / "test-artifacts"
CHROMIUM = shutil.which("chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(tmp: Path) -> Iterator[str]:
    settings = Settings(host="127.0.0.1", port=_free_port(), no_auth=True, audit_db=str(tmp / "audit.db"),
                        evaluation_date="2025-09-15")
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.radiopal.audit.dispose()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _server(tmp_path_factory.mktemp("page")) as url:
        yield url


def _demo_without_platelets() -> str:
    doc = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    del doc["labs"]["platelets"]
    return yaml.safe_dump(doc, sort_keys=False)


def _status(html: str, therapy: str) -> str:
    match = re.search(rf'data-therapy="{therapy}" data-status="([a-z_]+)"', html)
    assert match, therapy
    return match.group(1)


def _upload(client: httpx.Client, base: str, text: str) -> httpx.Response:
    return client.post(f"{base}/page", data={"document": text}, follow_redirects=True)


def test_the_page_shows_the_summary_and_a_control_for_each_missing_field(base: str):
    with httpx.Client() as client:
        page = _upload(client, base, _demo_without_platelets())
    assert page.status_code == 200
    html = page.text
    assert "Action summary" in html and _status(html, "sr89") == "insufficient_data"
    assert 'data-field="labs.platelets"' in html
    assert re.search(r'<select name="labs.platelets.unit"[^>]*>.*10\^9/L.*/uL', html, re.S)
    assert "Needed to decide" in html and "Strontium-89" in html
    assert "not a prescriber" in html or "not a prescription" in html.lower() or "decision support" in html.lower()
    assert "<script" not in html and "http" not in re.sub(r'href="/[^"]*"|action="/[^"]*"', "", html).replace(
        "http-equiv", "")


def test_supplying_the_platelets_re_evaluates_and_shows_what_changed(base: str):
    with httpx.Client() as client:
        page = _upload(client, base, _demo_without_platelets())
        action = re.search(r'<form method="post" action="(/page/[^"]+)"', page.text).group(1)
        after = client.post(f"{base}{action}", data={"labs.platelets": "162", "labs.platelets.unit": "10^9/L"},
                            follow_redirects=True)
    assert after.status_code == 200
    # The complete demo patient: Sr-89 eligible (ELIG-SR-01), Ra-223 recommended (ELIG-RA-12).
    assert _status(after.text, "sr89") == "eligible" and _status(after.text, "ra223") == "recommended"
    assert "What changed" in after.text and re.search(r"insufficient_data → <strong>eligible</strong>", after.text)


@pytest.mark.parametrize(("value", "unit", "words"), [
    ("-5", "10^9/L", "labs.platelets"),       # impossible number
    ("many", "10^9/L", "labs.platelets"),     # not a number
    ("150", "g/L", "unit"),                   # a unit platelets are never given in
])
def test_a_bad_value_is_shown_beside_its_field_and_nothing_is_evaluated(base: str, value: str, unit: str, words: str):
    with httpx.Client() as client:
        page = _upload(client, base, _demo_without_platelets())
        action = re.search(r'<form method="post" action="(/page/[^"]+)"', page.text).group(1)
        form = {"labs.platelets": value, "labs.platelets.unit": unit, "pain.score_nrs": ""}
        after = client.post(f"{base}{action}", data=form, follow_redirects=True)
    assert after.status_code == 400
    field = re.search(r'<div class="field invalid">(.*?)</div>\s*</div>', after.text, re.S)
    assert field and 'data-field="labs.platelets"' in field.group(1) and words in field.group(1)
    assert f'value="{value}"' in after.text  # the rest of the form (and this value) kept
    assert _status(after.text, "sr89") == "insufficient_data"  # nothing evaluated with the bad value


def test_a_bad_document_is_refused_on_the_start_page_with_the_cli_message(base: str):
    with httpx.Client() as client:
        page = _upload(client, base, "schema_version: '1.0'\npatient_id: X\nevaluation_date: 2025-13-40\n")
    assert page.status_code == 400 and "evaluation_date" in page.text


def test_an_unknown_page_is_404_and_the_standalone_page_needs_no_auth_mode(base: str, tmp_path: Path):
    assert httpx.get(f"{base}/page/not-a-token").status_code == 404
    from cryptography.hazmat.primitives.asymmetric import rsa
    from fastapi.testclient import TestClient
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": "k1", "alg": "RS384", "use": "sig"}
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    settings = Settings(host="127.0.0.1", port=_free_port(), jwks=str(tmp_path / "jwks.json"),
                        issuers=("https://ehr.example",), audit_db=str(tmp_path / "a.db"))

    with TestClient(create_app(settings)) as client:
        assert client.get("/page").status_code == 404


# --- in the browser ------------------------------------------------------------------------------------------------
browser = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless", "--disable-gpu"])
        yield b
        b.close()


def _page(chromium: Any, width: int) -> Any:
    context = chromium.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    outside: list[str] = []
    page.route(re.compile(r"^(?!http://127\.0\.0\.1).*"), lambda route: (outside.append(route.request.url),
                                                                         route.abort()))
    page.outside = outside
    return page


@browser
def test_in_the_browser_filling_the_platelets_by_keyboard_decides_sr89(base: str, chromium: Any, tmp_path: Path):
    page = _page(chromium, 390)
    page.goto(f"{base}/page")
    page.locator("#document").fill(_demo_without_platelets())
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_selector('[data-therapy="sr89"][data-status="insufficient_data"]')
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(tmp_path / "page-390.png"), full_page=True)
    # Keyboard only: focus the platelets field, type, then Tab to the button and Enter.
    page.locator('[data-field="labs.platelets"]').focus()
    page.keyboard.type("162")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.tagName") == "BUTTON":
            break
    page.keyboard.press("Enter")
    page.wait_for_selector('[data-therapy="sr89"][data-status="eligible"]')
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(tmp_path / "page-390-after.png"), full_page=True)
    assert page.outside == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for png in tmp_path.glob("*.png"):
        shutil.copy(png, ARTIFACTS / png.name)


@browser
@needs_shared
def test_in_the_browser_the_urgent_advisory_is_above_the_summary(base: str, chromium: Any):
    v08 = yaml.safe_load((VIGNETTES / "V08.yaml").read_text(encoding="utf-8"))
    v08.pop("expected", None)
    page = _page(chromium, 1280)
    page.goto(f"{base}/page")
    page.locator("#document").fill(yaml.safe_dump(copy.deepcopy(v08), sort_keys=False))
    page.locator("button[type=submit]").click()
    urgent = page.locator('[data-advisory="ADV-SCC-URGENT"]')
    urgent.wait_for()
    summary_top = page.locator("#summary").bounding_box()["y"]
    assert urgent.bounding_box()["y"] < summary_top
    assert page.outside == []


# --- SMART App Launch (EHR launch, PKCE) against the simulated EHR ----------------------------------------------------
def test_an_ehr_launch_with_pkce_opens_the_page_for_the_launch_patient(tmp_path: Path):
    from conftest import http_server
    from radiopal.service.sandbox import smart_ehr_handler

    bundle = json.loads((REPO / "examples" / "fhir" / "V05.bundle.json").read_text(encoding="utf-8"))
    ehr_handler = smart_ehr_handler(bundle)
    with http_server(ehr_handler) as ehr:
        iss = f"{ehr}/fhir"
        settings = Settings(host="127.0.0.1", port=_free_port(), no_auth=True, audit_db=str(tmp_path / "a.db"),
                            evaluation_date="2025-06-02", fhir_servers=(iss,))
        app = create_app(settings)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning",
                                               lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        base = f"http://127.0.0.1:{settings.port}"
        try:
            with httpx.Client(follow_redirects=False) as browser:
                to_ehr = browser.get(f"{base}/launch", params={"iss": iss, "launch": "xyz"})
                assert to_ehr.status_code == 302
                authorize = httpx.URL(to_ehr.headers["location"])
                assert authorize.params["code_challenge_method"] == "S256" and authorize.params["aud"] == iss
                assert len(authorize.params["code_challenge"]) == 43  # base64url of a SHA-256, no padding
                back = browser.get(str(authorize))  # the EHR approves and sends the browser back
                assert back.status_code == 302 and back.headers["location"].startswith(f"{base}/callback?")
                to_page = browser.get(back.headers["location"])
                assert to_page.status_code == 303
                page = browser.get(base + to_page.headers["location"])
            assert page.status_code == 200 and ehr_handler.issued and not ehr_handler.refused
            patient_id = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
            assert f"Patient {patient_id}" in page.text
            # The same decisions as the bundle evaluated directly (contract twin of vignette V05).
            direct = radiopal_status(bundle)
            for therapy, status in direct.items():
                assert f'data-therapy="{therapy}" data-status="{status}"' in page.text
            # A state is used once, and an iss not on the --fhir-server list is refused before any request.
            replay = httpx.get(f"{base}/callback", params={"code": "x", "state": authorize.params["state"]})
            assert replay.status_code == 400
            other = httpx.get(f"{base}/launch", params={"iss": "https://evil.example/fhir", "launch": "1"})
            assert other.status_code == 400 and "fhir-server" in other.text
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            app.state.radiopal.audit.dispose()


def radiopal_status(bundle: dict[str, Any]) -> dict[str, str]:
    from radiopal.api import evaluate_fhir

    result = evaluate_fhir(copy.deepcopy(bundle), evaluation_date="2025-06-02")
    return {d.therapy: d.status for d in result.decisions}
