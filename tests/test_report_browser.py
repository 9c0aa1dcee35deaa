"""The HTML explanation report in a real browser: headless Debian Chromium driven by Playwright.

A deferred therapy is opened by keyboard; its why-not text, the patient values and the earliest date must then be
visible. Every network request is blocked and recorded: the report must not attempt any. Screenshots are saved in the
test's temporary folder and copied to ``out/test-artifacts/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import radiopal
from conftest import BASE_PATIENT, REPO, SM153_INDICATION, VIGNETTES, needs_shared, rule_items, write_rulebase
from radiopal.explain import explain, render_html

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium; "
                                                "`make sysdeps` does it)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

RULES = """
area: test-browser
title: Tiny rule base for the browser test
version: "0.0.1"
rules:
""" + rule_items(SM153_INDICATION) + """\
  - id: SEQ-01
    title: Myelosuppressive chemotherapy washout
    summary: Wait 28 days after the last myelosuppressive chemotherapy before a radionuclide.
    version: 1
    strength: moderate
    verification: U
    unverified: the 28-day washout is a rule-base derivation
    sources: [quadramet_eu_smpc, rulebase_derived]
    therapies: [sm153]
    when:
      exists: chemotherapy
      where:
        all:
          - {field: myelosuppressive, op: "==", value: true}
          - {days_since_field: last_dose_date, op: "<", value: 28}
    then:
      status: deferred
      earliest_date: {of: chemotherapy, field: last_dose_date, plus_days: 28}
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HTML report for a patient whose Sm-153 is deferred: docetaxel 14 days before 2025-06-02."""
    folder = tmp_path_factory.mktemp("browser")
    rulebase = radiopal.load_rulebase(write_rulebase(folder / "rules", RULES))
    patient = {**BASE_PATIENT, "treatment_history": {
        **BASE_PATIENT["treatment_history"],
        "chemotherapy": [{"agent": "docetaxel", "class": "taxane", "myelosuppressive": True,
                          "last_dose_date": "2025-05-19", "ongoing": False}],
    }}
    result = rulebase.evaluate(patient)
    assert result.decision("sm153").status == "deferred"
    path = folder / "report.html"
    path.write_text(render_html(explain(result), result), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Page:
    """A page whose every non-file request is aborted and recorded."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=True)
        self.page = self.context.new_page()
        self.blocked: list[str] = []
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.route("**/*", self._route)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith("file://"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def open(self, path: Path) -> Any:
        self.page.goto(path.as_uri())
        return self.page

    def assert_offline(self) -> None:
        assert self.blocked == [], f"the report tried to load {self.blocked}"
        assert all(url.startswith(("file://", "data:")) for url in self.requests), self.requests


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    handle = Page(browser)
    yield handle
    handle.context.close()


def _save(page: Any, locator: Any, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    (locator or page).screenshot(path=str(shot), **({} if locator else {"full_page": True}))
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, ARTIFACTS / name)
    except OSError:  # a read-only checkout still passes; the screenshot is in the test's tmp folder
        pass
    return shot


def test_a_deferred_therapy_opens_by_keyboard_and_shows_why_not_the_values_and_the_date(report, page, tmp_path):
    p = page.open(report)
    therapy = p.locator("#t-sm153")
    why_not = p.locator("#t-sm153 .why-not")
    assert therapy.evaluate("d => d.open") is False
    assert not why_not.is_visible()
    assert p.locator("#disclaimer").is_visible()

    for _ in range(300):  # reach the therapy with the keyboard alone
        p.keyboard.press("Tab")
        if p.evaluate("() => document.activeElement && document.activeElement.matches('#t-sm153 > summary')"):
            break
    else:
        pytest.fail("the Sm-153 summary cannot be reached with Tab")
    p.keyboard.press("Enter")

    assert therapy.evaluate("d => d.open") is True
    assert why_not.is_visible()
    text = why_not.inner_text()
    assert "Why not recommended or eligible?" in text and "Blocked by SEQ-01" in text
    assert "now 14 days" in text and "< 28 days" in text
    change = p.locator("#t-sm153 .what-would-change")
    assert change.is_visible() and "2025-06-16" in change.inner_text()
    assert p.locator("#t-sm153 .u-mark").first.is_visible()
    summary = p.locator("#t-sm153 > summary").inner_text()
    assert "deferred" in summary and "2025-06-16" in summary

    shot = _save(p, therapy, tmp_path, "report-sm153-deferred.png")
    assert shot.stat().st_size > 10_000
    _save(p, None, tmp_path, "report-full-page.png")
    page.assert_offline()


def test_the_summary_table_links_open_the_therapy_and_expand_all_opens_everything(report, page):
    p = page.open(report)
    p.click('a[href="#t-sr89"]')
    assert p.locator("#t-sr89").evaluate("d => d.open") is True
    p.click("#expand-all")
    assert p.evaluate("() => [...document.querySelectorAll('details.therapy')].every(d => d.open)")
    p.click("#collapse-all")
    assert p.evaluate("() => [...document.querySelectorAll('details.therapy')].every(d => !d.open)")
    page.assert_offline()


def test_printing_shows_every_therapy_expanded(report, page, tmp_path):
    p = page.open(report)
    p.emulate_media(media="print")
    assert p.locator("#t-sm153 .why-not").is_visible()
    assert p.locator("#t-sm153 .what-would-change").is_visible()
    assert not p.locator("#expand-all").is_visible()
    pdf = tmp_path / "report.pdf"
    p.pdf(path=str(pdf))
    assert pdf.stat().st_size > 10_000
    page.assert_offline()


def test_the_report_works_without_javascript(report, browser):
    context = browser.new_context(java_script_enabled=False)
    try:
        p = context.new_page()
        p.goto(report.as_uri())
        assert not p.locator("#expand-all").is_visible()  # the JS-only controls stay hidden
        p.click("#t-sm153 > summary")
        assert p.locator("#t-sm153 .why-not").is_visible()
    finally:
        context.close()


def _shipped_report(folder: Path, document: dict[str, Any], name: str) -> Path:
    result = radiopal.load_rulebase().evaluate(document)
    path = folder / name
    path.write_text(render_html(explain(result), result), encoding="utf-8")
    return path


def _demo_document() -> dict[str, Any]:
    import json

    import yaml

    text = (REPO / "examples" / "patient-mcrpc.yaml").read_text(encoding="utf-8")
    return json.loads(json.dumps(yaml.safe_load(text), default=str))


def _no_horizontal_scroll(p: Any) -> None:
    overflow = p.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert overflow[0] <= overflow[1], f"the page scrolls sideways at 390 px: {overflow[0]} px wide"


def test_the_demo_report_reads_at_390_px_without_sideways_scrolling(browser, tmp_path):
    report = _shipped_report(tmp_path, _demo_document(), "demo.html")
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        p = context.new_page()
        p.goto(report.as_uri())
        _no_horizontal_scroll(p)
        p.click("#expand-all")  # the reasoning graphs and condition trees too
        _no_horizontal_scroll(p)
        p.click("#collapse-all")
        # The action summary comes right after the title and disclaimer: Ra-223 is recommended for the demo patient.
        give = p.locator("#action .give").first
        assert give.is_visible() and "Radium-223" in give.inner_text()
        _save(p, None, tmp_path, "report-demo-390px.png")
    finally:
        context.close()


@needs_shared
def test_an_urgent_advisory_comes_before_the_action_summary_and_stands_out(browser, tmp_path):
    from conftest import vignette_document

    # V08: suspected spinal cord compression -> ADV-SCC-URGENT (brief: emergency, before any bone-targeted therapy).
    report = _shipped_report(tmp_path, vignette_document(VIGNETTES / "V08.yaml"), "v08.html")
    for width, name in ((390, "report-v08-390px.png"), (1280, "report-v08-desktop.png")):
        context = browser.new_context(viewport={"width": width, "height": 900})
        try:
            p = context.new_page()
            p.goto(report.as_uri())
            urgent = p.locator('.urgent[data-advisory="ADV-SCC-URGENT"]')
            assert urgent.is_visible() and "URGENT" in urgent.inner_text()
            order = p.evaluate("""() => {
                const u = document.querySelector('.urgent'), a = document.querySelector('#action');
                const first = document.querySelector('main').querySelector('.urgent, #action, #summary, #therapies');
                return [!!(u.compareDocumentPosition(a) & Node.DOCUMENT_POSITION_FOLLOWING), first === u,
                        u.getBoundingClientRect().top < a.getBoundingClientRect().top];
            }""")
            assert order == [True, True, True]
            colours = urgent.evaluate("e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).borderTopWidth]")
            assert colours[0] not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)") and colours[1] != "0px"
            if width == 390:
                _no_horizontal_scroll(p)
            _save(p, None, tmp_path, name)
        finally:
            context.close()
