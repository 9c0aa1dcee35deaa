"""The explanation as ONE self-contained HTML audit report: no network access, works without JavaScript.

The action summary comes first (urgent advisories above it), then every therapy's why / why not / what would change it.
Rendered from Jinja2 templates shipped in the package (``templates/report.html.j2`` and its macros, CSS and script),
with autoescaping on: every value from the patient document or the rule base is escaped; only the cleaned Graphviz SVG
is inserted as markup. Inline CSS, a few lines of inline JavaScript (expand/collapse all, open everything before
printing, open the therapy a link points to), inline SVG reasoning graphs (Graphviz ``dot``; without it the DOT text and
how to install it). A Content-Security-Policy forbids every external load.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from ..graph import render_svg
from .build import STATUS_WORDS
from .model import MET, NOT_MET, UNKNOWN, Explanation

if TYPE_CHECKING:
    from ..result import Result

_SYMBOL = {MET: "✓", NOT_MET: "✗", UNKNOWN: "?"}
_WORD = {MET: "met", NOT_MET: "not met", UNKNOWN: "unknown"}
LEAVES = ("compare", "requirement", "exists")
GRAPHVIZ_HINT = ("Graphviz's dot program is not installed, so the reasoning graph is shown as DOT text. Install it "
                 "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; Windows: the installer from "
                 "the Graphviz project) and run the command again to get the picture.")
U_TITLE = "Rests on an unverified [U] fact: check it against the full source before relying on it"
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
       "base-uri 'none'; form-action 'none'")


@dataclass(frozen=True)
class Picture:
    """A therapy's reasoning graph: inline SVG (markup) or, without Graphviz, the DOT text."""

    svg: Any = None  # markupsafe.Markup
    dot: str = ""


@cache
def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("radiopal.explain", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.globals.update(status_words=STATUS_WORDS, u_title=U_TITLE, symbols=_SYMBOL, words=_WORD, leaves=LEAVES,
                       met=MET, unknown=UNKNOWN, graphviz_hint=GRAPHVIZ_HINT)
    env.tests["http_url"] = lambda url: bool(re.match(r"^https?://", str(url)))
    return env


def render_html(explanation: Explanation, result: Result | None = None, *, graphs: bool = True) -> str:
    """Render ``explanation`` as one self-contained HTML file.

    With ``result``, the action summary (:func:`radiopal.explain.summary.action_summary`) comes first, urgent
    advisories above it; with ``graphs`` too, each therapy gets its reasoning graph: ``result.graph.subgraph(therapy)``,
    rendered to inline SVG by Graphviz's ``dot`` — or, without ``dot``, the DOT text and how to install Graphviz.
    """
    from .summary import action_summary

    e = explanation
    pictures = _graphs(e, result) if result is not None and graphs else {}
    summary = action_summary(result) if result is not None else None
    return _environment().get_template("report.html.j2").render(
        e=e, summary=summary, pictures=pictures, single=len(e.therapies) == 1, csp=CSP)


# --- graphs ----------------------------------------------------------------------------------------------------------


def _graphs(e: Explanation, result: Result) -> dict[str, Picture]:
    """One figure per therapy: inline SVG when ``dot`` is installed, else the DOT text and how to get Graphviz."""
    graph = result.graph
    sources: dict[str, str] = {}
    for t in e.therapies:
        sub = graph.subgraph(t.therapy)
        if len(sub.nodes) <= 1:
            continue
        title = f"radiopal — {t.therapy}: {STATUS_WORDS.get(t.status, t.status)} (patient {e.patient_id}, {e.evaluation_date})"
        sources[t.therapy] = sub.to_dot(title)
    if not sources:
        return {}
    if shutil.which("dot") is None:
        return {k: Picture(dot=v) for k, v in sources.items()}
    with ThreadPoolExecutor(max_workers=min(8, len(sources))) as pool:
        svgs = dict(zip(sources, pool.map(render_svg, sources.values()), strict=True))
    return {k: (_svg_picture(k, svg) if svg else Picture(dot=sources[k])) for k, svg in svgs.items()}


def _svg_picture(therapy: str, svg: str) -> Picture:
    from markupsafe import Markup, escape

    label = f"Reasoning graph for {therapy}: input values, facts, rules (with verification and sources) and the decision"
    svg = _clean_svg(svg).replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1)
    return Picture(svg=Markup(svg))  # Graphviz's own output, cleaned of declarations; every label in it was escaped


_XML_DECL = re.compile(r"<\?xml[^>]*\?>\s*")
_DOCTYPE = re.compile(r"<!DOCTYPE[^>[]*(\[[^]]*\])?>\s*", re.IGNORECASE)
_COMMENT = re.compile(r"<!--.*?-->\s*", re.DOTALL)


def _clean_svg(svg: str) -> str:
    """Graphviz SVG made fit to inline: no XML declaration, DOCTYPE (it names a remote DTD) or comments."""
    svg = _XML_DECL.sub("", svg)
    svg = _DOCTYPE.sub("", svg)
    svg = _COMMENT.sub("", svg)
    return svg.strip()


def iter_resource_urls(document: str) -> Iterable[str]:
    """Every URL the document would *load* (src, link href, CSS url()/@import, object/embed data, xlink:href).

    Anchors (``<a href>``) are links a reader may follow, not loads. Used by the tests to prove the report is offline.
    """
    patterns = (
        r"""\bsrc\s*=\s*["']?([^"'\s>]+)""",
        r"""<link\b[^>]*\bhref\s*=\s*["']?([^"'\s>]+)""",
        r"""url\(\s*["']?([^"')\s]+)""",
        r"""@import\s+["']([^"']+)""",
        r"""\bdata\s*=\s*["']([^"']+)""",
        r"""xlink:href\s*=\s*["']([^"']+)""",
        r"""<image\b[^>]*\bhref\s*=\s*["']([^"']+)""",
    )
    for pattern in patterns:
        yield from re.findall(pattern, document, flags=re.IGNORECASE)
