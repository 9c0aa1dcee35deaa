"""The cohort summary: counts gathered batch by batch, rendered as one self-contained HTML page.

The page holds: the under-use finding first (patients for whom a radionuclide — sr89, sm153, ra223, re186, re188,
p32 — is recommended or eligible while none is in their treatment history; then the same for bone-health agents),
status counts per therapy, deferrals by reason and by the month they end, the most common missing data, the input
errors, the rule-base version and the decision-support disclaimer. Charts are PNG images drawn with matplotlib's Agg
canvas and embedded as base64 ``data:`` URIs; the page references nothing outside itself.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .evaluate import BONE_HEALTH_AGENTS, RADIONUCLIDES

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Summary"]

STATUSES: Final = ("recommended", "eligible", "deferred", "insufficient_data", "contraindicated", "not_indicated")
STATUS_COLOURS: Final = {"recommended": "#1b7837", "eligible": "#7fbf7b", "deferred": "#f1a340",
                         "insufficient_data": "#998ec3", "contraindicated": "#d73027", "not_indicated": "#bababa"}
LISTED: Final = 100  # patients listed by name in each under-use table (all of them are in underuse.csv)
TOP: Final = 20


@dataclass
class _Underuse:
    """Patients of one under-use group: how many, per candidate agent, per primary site, and the first few."""

    patients: int = 0
    by_agent: Counter[str] = field(default_factory=Counter)
    by_site: Counter[str] = field(default_factory=Counter)
    listed: list[tuple[str, str, str, str]] = field(default_factory=list)


@dataclass
class Summary:
    """Aggregates for the summary page; feed it with :meth:`add_batch`, then :meth:`render`.

    ``therapy_order`` is the catalogue order of the therapies; ``deferral_rules`` the ids of the rules that conclude
    ``deferred`` (a row's reasons also name the indication rules, which are not why it was deferred).
    """

    therapy_order: tuple[str, ...]
    deferral_rules: frozenset[str] = frozenset()
    status_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    deferral_reasons: Counter[str] = field(default_factory=Counter)
    deferral_months: Counter[str] = field(default_factory=Counter)
    deferral_open: int = 0
    deferral_by_therapy: Counter[str] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)
    patients_with_missing: int = 0
    patients: int = 0
    errors: int = 0
    error_messages: Counter[str] = field(default_factory=Counter)
    radionuclide: _Underuse = field(default_factory=_Underuse)
    bone_health: _Underuse = field(default_factory=_Underuse)
    candidates_radionuclide: int = 0
    candidates_bone_health: int = 0

    def add_batch(self, therapies: pa.Table, patients: pa.Table, errors: list[dict[str, Any]]) -> None:
        """Count one batch's rows (columns as in :mod:`radiopal.cohort.outputs`)."""
        cols = therapies.select(["therapy", "status", "earliest_date", "reasons"]).to_pydict()
        for therapy, status, earliest, reasons in zip(cols["therapy"], cols["status"], cols["earliest_date"],
                                                      cols["reasons"], strict=True):
            self.status_counts[(therapy, status)] += 1
            if status == "deferred":
                self.deferral_by_therapy[therapy] += 1
                # reasons also list the indication rules; a deferral's reason is a rule that concludes "deferred"
                causes = [r for r in (reasons or "").split(";") if r and r in self.deferral_rules]
                self.deferral_reasons.update(causes or ["(no deferring rule named)"])
                if earliest is None:
                    self.deferral_open += 1
                else:
                    self.deferral_months[earliest.strftime("%Y-%m")] += 1
        pcols = patients.to_pydict()
        self.patients += patients.num_rows
        for i in range(patients.num_rows):
            missing = pcols["missing_data"][i]
            if missing:
                self.patients_with_missing += 1
                self.missing.update(missing.split(";"))
            if pcols["candidate_radionuclides"][i]:
                self.candidates_radionuclide += 1
            if pcols["candidate_bone_health_agents"][i]:
                self.candidates_bone_health += 1
            for flag, column, group in (("radionuclide_underuse", "candidate_radionuclides", self.radionuclide),
                                        ("bone_health_underuse", "candidate_bone_health_agents", self.bone_health)):
                if not pcols[flag][i]:
                    continue
                agents = pcols[column][i].split(";")
                site = pcols["primary_site"][i] or "unknown"
                group.patients += 1
                group.by_agent.update(agents)
                group.by_site[site] += 1
                if len(group.listed) < LISTED:
                    day = pcols["evaluation_date"][i]
                    group.listed.append((pcols["patient_id"][i], site, day.isoformat() if day else "",
                                         ", ".join(agents)))
        self.errors += len(errors)
        for entry in errors:
            problems = entry.get("problems") or []
            first = problems[0] if problems else entry.get("message", "")
            self.error_messages[_strip_location(str(first), str(entry.get("source", "")))] += 1

    # -- rendering ----------------------------------------------------------------------------------------------

    def render(self, *, title: str, facts: list[tuple[str, str]], rulebase_version: str, rulebase_digest: str,
               disclaimer: str) -> str:
        """The whole page as HTML text."""
        out = [_HEAD.format(title=_e(title)), f"<h1>{_e(title)}</h1>", "<table class='facts'>"]
        out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts]
        out.append("</table>")
        out.append(f"<p class='disclaimer'><strong>Decision support, not a prescription.</strong> {_e(disclaimer)}</p>")
        out += self._underuse_section("radionuclides", "Under-use: radionuclide", "a radionuclide (" +
                                      ", ".join(RADIONUCLIDES) + ")", "radionuclides", self.radionuclide,
                                      self.candidates_radionuclide, headline=True)
        out += self._underuse_section("bone-health-agents", "Under-use: bone-health agent", "a bone-health agent (" +
                                      ", ".join(BONE_HEALTH_AGENTS) + ")", "bone_health_agents", self.bone_health,
                                      self.candidates_bone_health, headline=False)
        out += self._status_section()
        out += self._deferral_section()
        out += self._missing_section()
        out += self._error_section()
        out.append("<footer>")
        out.append(f"<p>Rule base <code>{_e(rulebase_version)}</code> (<code>{_e(rulebase_digest)}</code>).</p>")
        out.append(f"<p class='disclaimer'>{_e(disclaimer)}</p>")
        out.append("</footer></body></html>\n")
        return "\n".join(out)

    def _underuse_section(self, slug: str, heading: str, what: str, history: str, group: _Underuse,
                          candidates: int, *, headline: bool) -> list[str]:
        share = f"({100 * group.patients / self.patients:.1f} % of the {self.patients:,} evaluated patients)" \
            if self.patients else ""
        out = [f"<section id='underuse-{slug}'>", f"<h2>{_e(heading)}</h2>",
               f"<p class='{'headline' if headline else 'finding'}'><strong>{group.patients:,}</strong> patient(s) "
               f"{share} have {_e(what)} <em>recommended or eligible</em> and none recorded in "
               f"<code>treatment_history.{_e(history)}</code>. {candidates:,} patient(s) have at least one such agent "
               "recommended or eligible, whatever their history.</p>"]
        agents = sorted(group.by_agent.items(), key=lambda kv: (-kv[1], kv[0]))
        if agents:
            out.append(_img(_bar_chart([a for a, _ in agents], [n for _, n in agents], "patients", "#1b7837"),
                            f"{heading} by candidate agent"))
        out.append(_table(["candidate agent", "patients"], [(a, f"{n:,}") for a, n in agents]))
        sites = sorted(group.by_site.items(), key=lambda kv: (-kv[1], kv[0]))
        out.append(_table(["primary site", "patients"], [(s, f"{n:,}") for s, n in sites]))
        shown = len(group.listed)
        out.append(f"<p>The first {shown:,} of {group.patients:,} in input order (all of them in "
                   "<code>underuse.csv</code>):</p>")
        out.append(_table(["patient", "primary site", "evaluated", "recommended or eligible"], group.listed,
                          table_id=f"underuse-{slug}-table"))
        out.append("</section>")
        return out

    def _status_section(self) -> list[str]:
        therapies = [t for t in self.therapy_order if any(self.status_counts[(t, s)] for s in STATUSES)]
        extra = sorted({t for t, _ in self.status_counts} - set(therapies))
        therapies += extra
        out = ["<section id='status-counts'>", "<h2>Status counts per therapy</h2>"]
        if therapies:
            out.append(_img(_stacked_chart(therapies, self.status_counts), "status counts per therapy"))
        rows = [(t, *(f"{self.status_counts[(t, s)]:,}" for s in STATUSES)) for t in therapies]
        out.append(_table(["therapy", *STATUSES], rows, table_id="status-table"))
        out.append("</section>")
        return out

    def _deferral_section(self) -> list[str]:
        total = sum(self.deferral_by_therapy.values())
        out = ["<section id='deferrals'>", "<h2>Deferrals</h2>",
               f"<p>{total:,} deferred decision(s); {self.deferral_open:,} without a computable end date.</p>"]
        months = sorted(self.deferral_months.items())
        if months:
            out.append(_img(_bar_chart([m for m, _ in months], [n for _, n in months], "deferred decisions",
                                       "#f1a340", horizontal=False), "deferrals by the month they end"))
        month_rows = [(m, f"{n:,}") for m, n in months]
        if self.deferral_open:
            month_rows.append(("no computable date", f"{self.deferral_open:,}"))
        out.append("<h3>By the month they end</h3>")
        out.append(_table(["earliest date (month)", "deferred decisions"], month_rows, table_id="deferral-months"))
        out.append("<h3>By reason (rule id)</h3>")
        reasons = sorted(self.deferral_reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        out.append(_table(["rule", "deferred decisions"], [(r, f"{n:,}") for r, n in reasons],
                          table_id="deferral-reasons"))
        out.append("<h3>By therapy</h3>")
        by_therapy = sorted(self.deferral_by_therapy.items(), key=lambda kv: (-kv[1], kv[0]))
        out.append(_table(["therapy", "deferred"], [(t, f"{n:,}") for t, n in by_therapy]))
        out.append("</section>")
        return out

    def _missing_section(self) -> list[str]:
        out = ["<section id='missing-data'>", "<h2>Most common missing data</h2>",
               f"<p>{self.patients_with_missing:,} of {self.patients:,} evaluated patient(s) lack data a decision "
               "needs (contract §A.4; stale labs count as missing for the radionuclides).</p>"]
        top = sorted(self.missing.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
        if top:
            out.append(_img(_bar_chart([p for p, _ in top], [n for _, n in top], "patients", "#998ec3"),
                            "most common missing data"))
        out.append(_table(["field", "patients"], [(p, f"{n:,}") for p, n in top], table_id="missing-table"))
        out.append("</section>")
        return out

    def _error_section(self) -> list[str]:
        out = ["<section id='errors'>", "<h2>Records that could not be evaluated</h2>",
               f"<p>{self.errors:,} record(s); each is listed with its source and line in <code>errors.jsonl</code>."
               "</p>"]
        top = sorted(self.error_messages.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
        out.append(_table(["problem", "records"], [(m, f"{n:,}") for m, n in top], table_id="error-table"))
        out.append("</section>")
        return out


# ------------------------------------------------------------------------------------------------ helpers


_HEAD: Final = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; line-height: 1.4; }}
table {{ border-collapse: collapse; margin: 0.6em 0 1.2em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; font-size: 0.92em; }}
td:not(:first-child) {{ font-variant-numeric: tabular-nums; }}
th {{ background: #f2f2f2; }}
.facts th {{ width: 14em; }}
.headline {{ font-size: 1.25em; background: #eef7ee; border-left: 6px solid #1b7837; padding: 0.6em 1em; }}
.finding {{ background: #f6f6f6; border-left: 6px solid #7fbf7b; padding: 0.5em 1em; }}
.disclaimer {{ background: #fff7e6; border: 1px solid #f1a340; padding: 0.5em 1em; }}
img {{ max-width: 100%; height: auto; }}
footer {{ margin-top: 3em; border-top: 1px solid #ccc; font-size: 0.9em; }}
</style></head><body>"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[tuple[Any, ...]] | list[tuple[str, ...]], table_id: str = "") -> str:
    attr = f" id='{_e(table_id)}'" if table_id else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"


def _figure(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=96)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _bar_chart(labels: list[str], values: list[int], xlabel: str, colour: str, *, horizontal: bool = True) -> bytes:
    if horizontal:
        figure, axes = _figure(8, 0.8 + 0.3 * len(labels))
        axes.barh(range(len(labels)), values, color=colour)
        axes.set_yticks(range(len(labels)), labels)
        axes.invert_yaxis()
        axes.set_xlabel(xlabel)
    else:
        figure, axes = _figure(max(6.0, 0.35 * len(labels) + 2), 3.6)
        axes.bar(range(len(labels)), values, color=colour)
        axes.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
        axes.set_xlim(-0.5 - max(0, 6 - len(labels)) / 2, len(labels) - 0.5 + max(0, 6 - len(labels)) / 2)
        axes.set_ylabel(xlabel)
    return _png(figure)


def _stacked_chart(therapies: list[str], counts: Counter[tuple[str, str]]) -> bytes:
    figure, axes = _figure(9, 1.0 + 0.32 * len(therapies))
    left = [0] * len(therapies)
    for status in STATUSES:
        widths = [counts[(t, status)] for t in therapies]
        axes.barh(range(len(therapies)), widths, left=left, color=STATUS_COLOURS[status], label=status)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    axes.set_yticks(range(len(therapies)), therapies)
    axes.invert_yaxis()
    axes.set_xlabel("patients")
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize="small", frameon=False)
    return _png(figure)


def _strip_location(text: str, source: str) -> str:
    """A problem line without its per-record location, so equal problems group together."""
    if source and text.startswith(source):
        text = text[len(source):]
        while text[:1] in (":", " ") or text[:1].isdigit():
            text = text[1:]
    return text.strip() or "(no message)"
