"""The explanation as ONE self-contained HTML audit report: no network access, works without JavaScript.

Inline CSS, a few lines of inline JavaScript (expand/collapse all, open everything before printing, open the therapy a
link points to), inline SVG reasoning graphs (Graphviz ``dot``; without it the DOT text and how to install it). A
Content-Security-Policy forbids every external load. Every piece of text is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..graph import render_svg
from .build import STATUS_WORDS
from .model import (
    MET,
    NOT_MET,
    UNKNOWN,
    ConditionExplanation,
    Explanation,
    RuleExplanation,
    TherapyExplanation,
)

if TYPE_CHECKING:
    from ..result import Result

_SYMBOL = {MET: "✓", NOT_MET: "✗", UNKNOWN: "?"}
_WORD = {MET: "met", NOT_MET: "not met", UNKNOWN: "unknown"}
LEAVES = ("compare", "requirement", "exists")
GRAPHVIZ_HINT = ("Graphviz's dot program is not installed, so the reasoning graph is shown as DOT text. Install it "
                 "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; Windows: the installer from "
                 "the Graphviz project) and run the command again to get the picture.")
U_TITLE = "Rests on an unverified [U] fact: check it against the full source before relying on it"

CSS = """
:root { --ink:#1a1a1a; --muted:#555; --line:#d0d0d0; --focus:#1f4e9c; --u:#8e0152; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1200px; padding: 0 1rem 2rem; background: #fff; }
h1 { font-size: 1.5rem; margin: 1rem 0 .5rem; } h2 { font-size: 1.25rem; margin: 1.5rem 0 .5rem; }
h3 { font-size: 1.05rem; margin: 1rem 0 .25rem; } h4 { font-size: .95rem; margin: .25rem 0; }
a { color: #1f4e9c; } :focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.skip { position: absolute; left: -999px; } .skip:focus { left: 1rem; top: .5rem; background: #fff; padding: .25rem .5rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; margin: .5rem 0; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.disclaimer { border: 2px solid #b35806; background: #fff7ec; padding: .6rem .8rem; border-radius: 4px; }
.legend { color: var(--muted); font-size: .9rem; }
.chip { display: inline-block; padding: .05rem .5rem; border-radius: 999px; font-weight: 600; font-size: .85rem;
        border: 1px solid rgba(0,0,0,.2); white-space: nowrap; }
.st-recommended { background: #1b7837; color: #fff; } .st-eligible { background: #d9f0d3; color: #124116; }
.st-deferred { background: #fee0b6; color: #6b3106; } .st-contraindicated { background: #b2182b; color: #fff; }
.st-not_indicated { background: #e6e6e6; color: #2b2b2b; } .st-insufficient_data { background: #dadaeb; color: #3f007d; }
.st-none { background: #f5f5f5; color: #333; }
.u-mark { display: inline-block; font-weight: 700; color: var(--u); border: 1px solid var(--u); border-radius: 3px;
          padding: 0 .25rem; font-size: .8rem; background: #fde0ef; }
table.summary { border-collapse: collapse; width: 100%; }
table.summary th, table.summary td { border-bottom: 1px solid var(--line); padding: .3rem .5rem; text-align: left;
                                     vertical-align: top; }
table.summary thead th { border-bottom: 2px solid #999; } table.summary small { color: var(--muted); }
table.summary tr > :first-child { border-left: 6px solid transparent; }
table.summary tr.row-recommended > :first-child { border-left-color: #1b7837; }
table.summary tr.row-eligible > :first-child { border-left-color: #5aae61; }
table.summary tr.row-deferred > :first-child { border-left-color: #e08214; }
table.summary tr.row-contraindicated > :first-child { border-left-color: #b2182b; }
table.summary tr.row-not_indicated > :first-child { border-left-color: #878787; }
table.summary tr.row-insufficient_data > :first-child { border-left-color: #8073ac; }
details.therapy { border: 1px solid var(--line); border-left-width: 6px; border-radius: 4px; margin: .5rem 0;
                  padding: 0 .75rem; }
details.therapy.row-recommended { border-left-color: #1b7837; } details.therapy.row-eligible { border-left-color: #5aae61; }
details.therapy.row-deferred { border-left-color: #e08214; } details.therapy.row-contraindicated { border-left-color: #b2182b; }
details.therapy.row-not_indicated { border-left-color: #878787; }
details.therapy.row-insufficient_data { border-left-color: #8073ac; }
details.therapy > summary { cursor: pointer; padding: .5rem 0; font-size: 1rem; }
details.therapy[open] > summary { border-bottom: 1px solid var(--line); margin-bottom: .5rem; }
.rule { border: 1px solid #e3e3e3; border-radius: 4px; padding: .4rem .6rem; margin: .4rem 0; background: #fcfcfc; }
.rule.unverified { border-color: var(--u); } .rule .rmeta { color: var(--muted); font-size: .85rem; margin: .1rem 0; }
.rule .rtext { margin: .2rem 0; } .rid { font-family: ui-monospace, Menlo, Consolas, monospace; }
ul.cond, ul.leaves { list-style: none; padding-left: 1.1rem; margin: .2rem 0; }
ul.cond > li, ul.leaves > li { margin: .1rem 0; }
.res { display: inline-block; min-width: 5.5rem; font-weight: 600; }
.r-met > .res { color: #1b6b2f; } .r-not_met > .res { color: #a50f15; } .r-unknown > .res { color: #8a5a00; }
.val { font-weight: 600; }
ul.cond li.decisive { background: #f3f6fb; box-shadow: inset 3px 0 0 #1f4e9c; padding-left: .3rem; }
.src, .note { color: var(--muted); font-size: .85rem; }
.flip, .date { font-weight: 600; color: #6b3106; }
ul.changes li, ul.collect li { margin: .15rem 0; }
figure.graph { margin: .5rem 0; overflow: auto; border: 1px solid #eee; padding: .25rem; }
figure.graph svg { max-width: 100%; height: auto; }
pre.dot { white-space: pre-wrap; font-size: .75rem; max-height: 20rem; overflow: auto; background: #f7f7f7; padding: .5rem; }
.controls button { font: inherit; padding: .2rem .7rem; margin-right: .4rem; }
footer { margin-top: 2rem; border-top: 1px solid var(--line); padding-top: .5rem; color: var(--muted); font-size: .9rem; }
@media print {
  .controls, .skip { display: none !important; }
  body { max-width: none; font-size: 11pt; }
  details::details-content { content-visibility: visible; display: block; }
  details > summary { list-style: none; }
  details.therapy { break-inside: auto; }
  a { color: inherit; text-decoration: none; }
  .chip, .u-mark, table.summary tr > :first-child, details.therapy { -webkit-print-color-adjust: exact;
                                                                     print-color-adjust: exact; }
}
"""

SCRIPT = """
(function () {
  var all = function () { return Array.prototype.slice.call(document.querySelectorAll('details')); };
  var controls = document.getElementById('controls');
  if (controls) { controls.hidden = false; }
  var expand = document.getElementById('expand-all'), collapse = document.getElementById('collapse-all');
  if (expand) { expand.addEventListener('click', function () { all().forEach(function (d) { d.open = true; }); }); }
  if (collapse) { collapse.addEventListener('click', function () { all().forEach(function (d) { d.open = false; }); }); }
  var reopened = [];
  window.addEventListener('beforeprint', function () {
    reopened = all().filter(function (d) { return !d.open; });
    reopened.forEach(function (d) { d.open = true; });
  });
  window.addEventListener('afterprint', function () { reopened.forEach(function (d) { d.open = false; }); reopened = []; });
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id ? document.getElementById(id) : null;
    if (el && el.tagName === 'DETAILS') { el.open = true; }
  }
  window.addEventListener('hashchange', openTarget);
  openTarget();
})();
"""

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
       "base-uri 'none'; form-action 'none'")


def esc(text: object) -> str:
    """Escape any value for HTML text or an attribute value."""
    return html.escape(str(text), quote=True)


def render_html(explanation: Explanation, result: Result | None = None, *, graphs: bool = True) -> str:
    """Render ``explanation`` as one self-contained HTML file.

    With ``result`` (and ``graphs``), each therapy gets its reasoning graph: ``result.graph.subgraph(therapy)``,
    rendered to inline SVG by Graphviz's ``dot`` — or, without ``dot``, the DOT text and how to install Graphviz.
    """
    e = explanation
    pictures = _graphs(e, result) if result is not None and graphs else {}
    single = len(e.therapies) == 1
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="generator" content="radiopal ' + esc(e.radiopal_version) + '">',
        f"<title>radiopal explanation — patient {esc(e.patient_id)} ({esc(e.evaluation_date)})</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        '<a class="skip" href="#summary">Skip to the summary</a>',
        "<header>",
        f"<h1>radiopal — why, why not and what would change it: patient {esc(e.patient_id)}</h1>",
        '<dl class="meta">',
        f"<dt>Patient</dt><dd>{esc(e.patient_id)}</dd>",
        f"<dt>Evaluation date</dt><dd><time>{esc(e.evaluation_date)}</time></dd>",
        f"<dt>Rule base</dt><dd>{esc(e.rulebase_version)}</dd>",
        f"<dt>Rule-base hash</dt><dd><code>{esc(e.rulebase_hash)}</code></dd>",
        f"<dt>radiopal</dt><dd>{esc(e.radiopal_version)}</dd>",
    ]
    if e.therapy_filter:
        out.append(f"<dt>Therapy</dt><dd>{esc(e.therapy_filter)}</dd>")
    out += [
        "</dl>",
        f'<p class="disclaimer" role="note" id="disclaimer"><strong>Decision support, not a prescription.</strong> '
        f"{esc(e.disclaimer)}</p>",
        '<p class="legend">Status: ' + " ".join(_chip(s) for s in STATUS_WORDS) + ". Conditions: ✓ met, ✗ not met, "
        "? unknown (data missing); a blue bar marks the conditions that decided a rule. " + _u_mark()
        + " rests on an unverified fact or rule.</p>",
        '<div class="controls" id="controls" hidden><button type="button" id="expand-all">Expand all</button>'
        '<button type="button" id="collapse-all">Collapse all</button></div>',
        "</header>",
        "<main>",
        _summary_table(e),
        '<section id="therapies" aria-labelledby="therapies-h">',
        '<h2 id="therapies-h">Therapies</h2>',
        '<p class="legend">Open a therapy (click, or Tab to it and press Enter or Space) to see why, why not and what '
        "would change it.</p>",
    ]
    for t in e.therapies:
        out.append(_therapy(t, pictures.get(t.therapy), open_=single))
    out.append("</section>")
    if e.advisories:
        out += ['<section id="advisories" aria-labelledby="advisories-h"><h2 id="advisories-h">Advisories</h2><ul>']
        for a in e.advisories:
            who = f" — {esc(a.therapy)}" if a.therapy else ""
            out.append(f"<li><strong>{esc(a.id)}</strong>{_u_mark() if a.unverified else ''}{who} "
                       f"(<span class=\"rid\">{esc(a.rule)}</span>): {esc(a.text)}</li>")
        out.append("</ul></section>")
    out.append('<section id="missing" aria-labelledby="missing-h"><h2 id="missing-h">Missing data</h2>')
    if e.missing_data:
        out.append("<p>Required fields absent or out of date for this patient (contract §A.4):</p><ul>"
                   + "".join(f"<li><code>{esc(p)}</code></li>" for p in e.missing_data) + "</ul>")
    else:
        out.append("<p>No required field is missing.</p>")
    out.append("</section>")
    if e.warnings:
        out.append('<section id="warnings" aria-labelledby="warnings-h"><h2 id="warnings-h">Record warnings'
                   "</h2><p>Values of the FHIR record radiopal could not use; each field named is unknown.</p><ul>"
                   + "".join(f"<li><code>{esc(w['source'])}</code> <code>{esc(w['element'])}</code>: "
                             f"{esc(w['message'])}</li>" for w in e.warnings) + "</ul></section>")
    out.append(_references(e))
    out += [
        "</main>",
        f'<footer><p>{esc(e.disclaimer)}</p><p>Generated by radiopal {esc(e.radiopal_version)} from rule base '
        f"{esc(e.rulebase_version)} ({esc(e.rulebase_hash)}).</p></footer>",
        f"<script>{SCRIPT}</script>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(out)


# --- pieces ----------------------------------------------------------------------------------------------------------


def _chip(status: str | None) -> str:
    if not status:
        return '<span class="chip st-none">information</span>'
    return f'<span class="chip st-{esc(status)}">{esc(STATUS_WORDS.get(status, status))}</span>'


def _u_mark(note: str = "") -> str:
    title = U_TITLE + (f": {note}" if note else "")
    return f' <span class="u-mark" title="{esc(title)}">[U]</span>'


def _summary_table(e: Explanation) -> str:
    rows = [
        '<section id="summary" aria-labelledby="summary-h">',
        '<h2 id="summary-h">Summary</h2>',
        '<table class="summary">',
        "<caption class=\"legend\">One decision per therapy; the status word is shown as text as well as colour.</caption>",
        '<thead><tr><th scope="col">Therapy</th><th scope="col">Status</th><th scope="col">Earliest date / dose</th>'
        '<th scope="col">In short</th><th scope="col">Rules</th></tr></thead>',
        "<tbody>",
    ]
    for t in e.therapies:
        when = f"<time>{esc(t.earliest_date)}</time>" if t.earliest_date else (
            f"{t.dose_mg:g} mg" if t.dose_mg is not None else ("date unknown" if t.date_unknown else ""))
        reasons = ", ".join(f'<span class="rid">{esc(r)}</span>' for r in t.reasons) or "(no rule proposes it)"
        rows.append(
            f'<tr class="row-{esc(t.status)}"><th scope="row"><a href="#t-{esc(t.therapy)}">{esc(t.therapy)}</a><br>'
            f"<small>{esc(t.name)}</small></th><td>{_chip(t.status)}{_u_mark() if t.unverified else ''}</td>"
            f"<td>{when}</td><td>{esc(t.headline)}</td><td>{reasons}</td></tr>"
        )
    rows += ["</tbody></table>", "</section>"]
    return "\n".join(rows)


def _therapy(t: TherapyExplanation, picture: str | None, *, open_: bool) -> str:
    mark = _u_mark() if t.unverified else ""
    out = [
        f'<details class="therapy row-{esc(t.status)}" id="t-{esc(t.therapy)}"{" open" if open_ else ""}>',
        f"<summary>{_chip(t.status)} <strong>{esc(t.therapy)}</strong> — {esc(t.name)}: {esc(t.headline)}{mark}</summary>",
        '<div class="body">',
        f'<section class="why" aria-label="Why {esc(t.therapy)} is {esc(STATUS_WORDS.get(t.status, t.status))}">',
        "<h3>Why</h3>",
        f'<p class="why-summary">{esc(t.why.summary)}</p>' if t.why.summary else "",
    ]
    out += [_rule(r, full=True) for r in t.why.rules]
    if t.why.overridden:
        out.append("<h4>Overridden by a stronger status</h4>")
        out += [_rule(r, full=True) for r in t.why.overridden]
    out.append("</section>")
    if t.why_not is not None:
        out += [f'<section class="why-not" aria-label="Why not, {esc(t.therapy)}">', f"<h3>{esc(t.why_not.question)}</h3>",
                f'<p class="why-not-summary">{esc(t.why_not.summary)}</p>']
        if t.why_not.blocking:
            out.append("<h4>Blocking rules that fired</h4>")
            for r in t.why_not.blocking:
                if r.kind == "requirement":
                    out.append(_rule(r, full=False, label="Data missing:"))
                else:
                    out.append(_rule(r, full=False, label="The conditions that made it fire:"))
        if t.why_not.would_enable:
            target = "recommended" if t.status == "eligible" else "eligible or recommended"
            out.append(f"<h4>Rules that would make it {esc(target)} (did not fire)</h4>")
            out += [_rule(r, full=False, label="Conditions not met or unknown:")
                    for r in t.why_not.would_enable]
        out.append("</section>")
    out += ['<section class="what-would-change">', "<h3>What would change it</h3>"]
    if t.what_would_change:
        out.append('<ul class="changes">')
        for c in t.what_would_change:
            date = f' <time class="date">{esc(c.date)}</time>' if c.date and c.date not in c.text else ""
            out.append(f'<li class="change-{esc(c.kind)}">{esc(c.text)}{date}{_u_mark() if c.unverified else ""}</li>')
        out.append("</ul>")
    else:
        out.append("<p>Nothing computable: no date, threshold or missing field would change this decision.</p>")
    out.append("</section>")
    if t.data_to_collect:
        out += ['<section class="collect-data">', "<h3>Data to collect</h3>", '<ul class="collect">']
        for d in t.data_to_collect:
            need = "required" if d.required else "lets a rule be judged"
            facts = f" ({esc(', '.join(d.facts))})" if d.facts else ""
            out.append(f"<li><code>{esc(d.path)}</code> — {need}{facts}; rules: "
                       + ", ".join(f'<span class="rid">{esc(r)}</span>' for r in d.rules) + "</li>")
        out += ["</ul>", "</section>"]
    if t.unresolved:
        out += ['<section class="unresolved">', "<h3>Could not be judged (data missing)</h3>"]
        out += [_rule(r, full=False, label="Unknown:") for r in t.unresolved]
        out.append("</section>")
    if t.advisories:
        out += ['<section class="therapy-advisories">', "<h3>Advisories</h3>", "<ul>"]
        out += [f"<li><strong>{esc(a.id)}</strong>{_u_mark() if a.unverified else ''} "
                f'(<span class="rid">{esc(a.rule)}</span>): {esc(a.text)}</li>' for a in t.advisories]
        out += ["</ul>", "</section>"]
    out += ['<section class="graph-section">', "<h3>Reasoning graph</h3>", picture or
            "<p>No rule fired for this therapy: its graph has only the decision.</p>", "</section>"]
    out += ["</div>", "</details>"]
    return "\n".join(x for x in out if x)


def _rule(r: RuleExplanation, *, full: bool, keep: tuple[str, ...] = (), label: str = "") -> str:
    classes = f"rule role-{esc(r.role)}" + (" unverified" if r.unverified else "")
    sources = ", ".join(f'<a href="#ref-{esc(k)}">{esc(k)}</a>' for k in r.sources)
    out = [
        f'<article class="{classes}">',
        f'<h4><span class="rid">{esc(r.key)}</span>{_u_mark(r.unverified_note or "") if r.unverified else ""} → '
        f"{_chip(r.status)}{' (fired)' if r.fired else ' (did not fire)'}</h4>",
        f'<p class="rtext">{esc(r.text)}</p>',
        f'<p class="rmeta">{esc(r.title)} · strength {esc(r.strength)} · verification [{esc(r.verification)}] · '
        f"sources: {sources} · <span class=\"src\">{esc(r.location)}</span></p>",
    ]
    if r.unverified and r.unverified_note:
        out.append(f'<p class="rmeta">{_u_mark()} unverified: {esc(r.unverified_note)}</p>')
    if r.overridden_by:
        by = f" ({esc(', '.join(r.overridden_by_rules))})" if r.overridden_by_rules else ""
        out.append(f'<p class="rmeta">Overridden by {_chip(r.overridden_by)}{by}: a stronger status wins (brief §13).</p>')
    if r.earliest_date:
        how = f" ({esc(r.earliest_date_rule)})" if r.earliest_date_rule else ""
        out.append(f'<p>Earliest date from this rule: <time class="date">{esc(r.earliest_date)}</time>{how}</p>')
    elif r.date_unknown:
        out.append("<p>Earliest date: cannot be computed yet.</p>")
    if r.missing:
        out.append("<p>Missing: " + ", ".join(f"<code>{esc(p)}</code>" for p in r.missing) + "</p>")
    if r.conditions is not None:
        if full:
            out.append(f'<ul class="cond">{_tree(r.conditions)}</ul>')
        else:
            leaves = [n for n in r.conditions.walk() if n.decisive and (not keep or n.result in keep)]
            if label:
                out.append(f"<p>{esc(label)}</p>")
            out.append('<ul class="leaves">' + ("".join(f"<li class=\"r-{esc(n.result)}\">{_leaf(n)}</li>"
                                                        for n in leaves) or "<li>(none)</li>") + "</ul>")
    out.append("</article>")
    return "\n".join(out)


def _tree(n: ConditionExplanation) -> str:
    children = f'<ul class="cond">{"".join(_tree(c) for c in n.children)}</ul>' if n.children else ""
    decisive = " decisive" if n.decisive else ""
    return f'<li class="r-{esc(n.result)}{decisive}">{_leaf(n)}{children}</li>'


def _leaf(n: ConditionExplanation) -> str:
    parts = [f'<span class="res">{_SYMBOL[n.result]} {_WORD[n.result]}</span> {esc(n.text)}']
    if n.kind in LEAVES:
        if n.value is not None:
            parts.append(f' — now <span class="val">{esc(n.value)}</span>')
        if n.given_as:
            parts.append(f' <span class="note">(given as {esc(n.given_as)})</span>')
        if n.source and n.kind != "exists":
            parts.append(' <span class="src">[' + ", ".join(esc(s) for s in n.source) + "]</span>")
        if n.resources:
            parts.append(' <span class="src">(FHIR ' + ", ".join(esc(r) for r in n.resources) + ")</span>")
        if n.flips_on:
            parts.append(f'; <span class="flip">becomes {"not met" if n.result == MET else "met"} on '
                         f"<time>{esc(n.flips_on)}</time></span>")
        if n.result == UNKNOWN and n.missing:
            parts.append("; supply " + ", ".join(f"<code>{esc(p)}</code>" for p in n.missing))
        if n.note:
            parts.append(f' <span class="note">({esc(n.note)})</span>')
        if n.unverified_fact:
            parts.append(_u_mark("the fact's definition is unverified"))
    return "".join(parts)


def _references(e: Explanation) -> str:
    out = ['<section id="references" aria-labelledby="references-h">', '<h2 id="references-h">References cited</h2>']
    if not e.references:
        out.append("<p>No rule shown here cites a reference.</p></section>")
        return "\n".join(out)
    out.append('<ul class="references">')
    for r in e.references:
        number = f"[{r.number}] " if r.number is not None else ""
        url = ""
        if r.url and re.match(r"^https?://", r.url):
            # A link the reader may follow; nothing is loaded from it (the page's CSP forbids every fetch).
            url = f' — <a href="{esc(r.url)}" rel="noreferrer noopener">{esc(r.url)}</a>'
        elif r.url:
            url = f" — <code>{esc(r.url)}</code>"
        read = f' <span class="note">(read: {esc(r.read)})</span>' if r.read else ""
        unverified = _u_mark() if "[U]" in (r.citation + (r.read or "")) else ""
        out.append(f'<li id="ref-{esc(r.key)}"><span class="rid">{esc(r.key)}</span>: {number}{esc(r.citation)}'
                   f"{url}{read}{unverified}</li>")
    out += ["</ul>", "</section>"]
    return "\n".join(out)


# --- graphs ----------------------------------------------------------------------------------------------------------


def _graphs(e: Explanation, result: Result) -> dict[str, str]:
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
        return {k: _dot_figure(k, v) for k, v in sources.items()}
    with ThreadPoolExecutor(max_workers=min(8, len(sources))) as pool:
        svgs = dict(zip(sources, pool.map(render_svg, sources.values()), strict=True))
    return {k: (_svg_figure(k, svg) if svg else _dot_figure(k, sources[k])) for k, svg in svgs.items()}


def _svg_figure(therapy: str, svg: str) -> str:
    svg = _clean_svg(svg)
    label = f"Reasoning graph for {therapy}: input values, facts, rules (with verification and sources) and the decision"
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{esc(label)}" ', 1)
    return (f'<figure class="graph">{svg}<figcaption>Input values (blue) → facts → rules (border coloured by the status '
            f"they propose; dashed = overridden) → decision (filled by status). Edge labels give each test and its "
            f"result.</figcaption></figure>")


def _dot_figure(therapy: str, dot: str) -> str:
    return (f'<figure class="graph"><p>{esc(GRAPHVIZ_HINT)}</p><pre class="dot" aria-label="DOT source of the reasoning '
            f'graph for {esc(therapy)}">{esc(dot)}</pre></figure>')


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
