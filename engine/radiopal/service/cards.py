"""CDS Hooks cards from a radiopal result: the patient-view summary card and the order-check cards.

A card says what radiopal decided and why, in the EHR's words: ``summary`` (under 140 characters), ``indicator``
(``critical`` when a therapy shown is contraindicated, ``warning`` when one is deferred, else ``info``), ``detail``
(GitHub-flavoured Markdown: why, why not, the earliest date, the data to collect), ``source`` (the rule base, the
citation URL of the rule that decided, and the rule id as a ``topic`` Coding), ``overrideReasons`` and a link to the
HTML report of the evaluation. The why and why-not text comes from :func:`radiopal.explain.explain`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import DISCLAIMER, __version__

__all__ = [
    "OVERRIDE_REASONS",
    "OVERRIDE_SYSTEM",
    "RULE_SYSTEM",
    "SUMMARY_LIMIT",
    "DraftOrder",
    "RuleRef",
    "TherapyView",
    "indicator_for",
    "order_cards",
    "patient_view_card",
    "therapy_views",
]

SUMMARY_LIMIT = 140
RULE_SYSTEM = "http://radiopal.example/fhir/CodeSystem/radiopal-rule"
OVERRIDE_SYSTEM = "http://radiopal.example/fhir/CodeSystem/radiopal-override-reason"
#: Why a clinician may go against a card; each becomes a Coding with a display (CDS Hooks ``overrideReasons``).
OVERRIDE_REASONS: tuple[tuple[str, str], ...] = (
    ("patient-preference", "Patient preference after informed discussion"),
    ("clinical-judgement", "Clinical judgement: expected benefit outweighs the risk"),
    ("mdt-decision", "Decision of the multidisciplinary tumour board"),
    ("ehr-data-incomplete", "Patient data in the EHR are incomplete or out of date"),
    ("already-addressed", "Already addressed, or another treatment is planned"),
)
PATIENT_VIEW_GROUPS = ("radionuclide", "radionuclide_chemotherapy", "bone_health_agent")
#: Short names for summaries (the catalogue names are long); any other therapy uses its catalogue name.
SHORT_NAMES = {
    "sr89": "Sr-89", "sm153": "Sm-153", "ra223": "Ra-223", "re186": "Re-186", "re188": "Re-188", "p32": "P-32",
    "sn117m": "Sn-117m", "ebrt_single_8gy": "EBRT 8 Gy × 1", "ebrt_multifraction": "multifraction EBRT",
    "sbrt": "SBRT", "hemibody_rt": "hemibody RT", "surgery_referral": "surgical referral",
    "cisplatin_sensitisation": "Sr-89 + cisplatin", "docetaxel_sm153": "docetaxel + Sm-153",
    "doxorubicin_sr89": "doxorubicin + Sr-89", "docetaxel_sr89": "docetaxel then Sr-89",
    "zoledronic_acid": "zoledronic acid", "pamidronate": "pamidronate", "ibandronate": "ibandronate",
    "clodronate": "clodronate", "denosumab": "denosumab",
}  # fmt: skip
INDICATORS = {"contraindicated": "critical", "deferred": "warning"}
# Inline Markdown only: `[` is escaped, so `(`/`)` can never form a link; block markers never start our lines.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


@dataclass(frozen=True)
class RuleRef:
    """A rule behind a decision, as a card shows it."""

    rule_id: str
    key: str
    title: str
    text: str
    sources: tuple[dict[str, Any], ...]  # {"key", "citation", "url"}
    findings: tuple[str, ...] = ()
    unverified: bool = False

    @property
    def url(self) -> str | None:
        """The URL of the first cited source that has one."""
        return next((s["url"] for s in self.sources if s.get("url")), None)


@dataclass(frozen=True)
class TherapyView:
    """One therapy's decision with its reasons, as the cards use it (a digest of its explanation)."""

    therapy: str
    name: str
    group: str
    status: str
    earliest_date: str | None = None
    date_unknown: bool = False
    dose_mg: float | None = None
    rules: tuple[RuleRef, ...] = ()
    changes: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unverified: bool = False

    @property
    def short(self) -> str:
        return SHORT_NAMES.get(self.therapy, self.name.split(" (")[0])


@dataclass(frozen=True)
class DraftOrder:
    """A drafted order (``MedicationRequest/x``, ``ServiceRequest/y``) and the radiopal therapies it is for."""

    ref: str
    therapies: tuple[str, ...]
    text: str = ""


def therapy_views(result: Any, therapies: Iterable[str] | None = None) -> dict[str, TherapyView]:
    """A :class:`TherapyView` per therapy of ``result`` (or only ``therapies``), from :func:`radiopal.explain.explain`."""
    from ..explain import explain

    wanted = set(therapies) if therapies is not None else None
    # One therapy at a time is cheaper than all of them for the one or two therapies an order names.
    explanations = [explain(result)] if wanted is None else [explain(result, t) for t in sorted(wanted)]
    views = {}
    for explanation in explanations:
        references = {r.key: {"key": r.key, "citation": r.citation, "url": r.url} for r in explanation.references}
        views.update({t.therapy: _view_from_explanation(t, references) for t in explanation.therapies})
    return views


def _view_from_explanation(t: Any, references: Mapping[str, dict[str, Any]]) -> TherapyView:
    rules = []
    for r in t.why.rules:
        sources = tuple(references.get(k, {"key": k, "citation": k, "url": None}) for k in r.sources)
        findings = tuple(_findings(r.conditions)) if r.conditions is not None else ()
        if not findings and r.missing:
            findings = (f"missing: {', '.join(r.missing)}",)
        rules.append(RuleRef(r.rule_id, r.key, r.title, r.text, sources, findings, r.unverified))
    return TherapyView(
        therapy=t.therapy, name=t.name, group=t.group, status=t.status, earliest_date=t.earliest_date,
        date_unknown=t.date_unknown, dose_mg=t.dose_mg, rules=tuple(rules),
        changes=tuple(c.text for c in t.what_would_change if c.kind != "earliest_date"),
        missing=tuple(d.path for d in t.data_to_collect),
        unverified=t.unverified,
    )


def _findings(node: Any) -> Iterable[str]:
    """The met comparisons of a condition tree, with the values observed (what made the rule fire)."""
    children = getattr(node, "children", None) or []
    if node.result != "met":
        return
    if not children:
        value = getattr(node, "value", None)
        yield f"{node.text} (patient: {value})" if value not in (None, "") else str(node.text)
        return
    for child in children:
        yield from _findings(child)


# --- building blocks -----------------------------------------------------------------------------------------------
def md(text: object) -> str:
    """Text with Markdown's special characters escaped (names and values come from the patient record)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def indicator_for(statuses: Iterable[str]) -> str:
    """``critical`` if any status is contraindicated, ``warning`` if any is deferred, else ``info``."""
    found = set(statuses)
    for status in ("contraindicated", "deferred"):
        if status in found:
            return INDICATORS[status]
    return "info"


def fit(text: str, limit: int = SUMMARY_LIMIT - 1) -> str:
    """``text`` cut to ``limit`` characters at a word boundary, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:— ")
    return cut + "…"


def _source(result: Any, rule: RuleRef | None) -> dict[str, Any]:
    source: dict[str, Any] = {"label": f"radiopal {__version__} · rule base {result.rulebase.version}"}
    if rule is not None:
        if rule.url:
            source["url"] = rule.url
        source["topic"] = {"system": RULE_SYSTEM, "code": rule.rule_id, "display": f"{rule.key}: {rule.title}"}
    return source


def _override_reasons() -> list[dict[str, str]]:
    return [{"system": OVERRIDE_SYSTEM, "code": code, "display": display} for code, display in OVERRIDE_REASONS]


def _links(report_url: str | None) -> list[dict[str, str]]:
    if not report_url:
        return []
    return [{"label": "radiopal report: why and why not", "url": report_url, "type": "absolute"}]


def _status_phrase(view: TherapyView) -> str:
    if view.status == "deferred":
        if view.earliest_date:
            return f"deferred until {view.earliest_date}"
        return "deferred (date not computable yet)" if view.date_unknown else "deferred"
    phrase = view.status.replace("_", " ")
    if view.dose_mg is not None and view.status in ("recommended", "eligible"):
        phrase += f", {view.dose_mg:g} mg"
    return phrase


def _rule_lines(view: TherapyView, *, indent: str = "") -> list[str]:
    lines = []
    for rule in view.rules:
        mark = " [U]" if rule.unverified else ""
        text = f" — {md(rule.text)}" if rule.text and rule.text != rule.title else ""
        lines.append(f"{indent}- **{md(rule.key)}**{mark} {md(rule.title)}{text}")
        lines += [f"{indent}  - {md(f)}" for f in rule.findings]
        cited = [f"[{md(s['citation'])}]({s['url']})" if s.get("url") else md(s["citation"]) for s in rule.sources]
        if cited:
            lines.append(f"{indent}  - Source: " + "; ".join(cited))
    return lines


def _footer(result: Any) -> list[str]:
    lines = []
    warnings = result.warnings
    if warnings:  # values of the record that could not be used (that field is unknown): the clinician must see them
        lines = ["", "**Record warnings** (a value not used leaves its field unknown)", ""]
        lines += [f"- {md(w['source'])} {md(w['element'])}: {md(w['message'])}" for w in warnings[:MAX_WARNINGS]]
        if len(warnings) > MAX_WARNINGS:
            lines.append(f"- … and {len(warnings) - MAX_WARNINGS} more (see the report)")
    lines += ["", f"_radiopal {__version__}, rule base {md(result.rulebase.version)}, evaluated "
                  f"{result.patient.evaluation_date.isoformat()}. [U] = rests on an unverified fact. {md(DISCLAIMER)}_"]
    return lines


#: Warnings listed in a card's detail; the rest are counted (the full list is in the report and the audit log).
MAX_WARNINGS = 10


# --- patient-view --------------------------------------------------------------------------------------------------
def patient_view_card(result: Any, views: Mapping[str, TherapyView], *, report_url: str | None = None) -> dict[str, Any]:
    """The one summary card of ``patient-view``: radionuclide and bone-health options by status."""
    shown = [views[d.therapy] for d in result.decisions if views[d.therapy].group in PATIENT_VIEW_GROUPS]
    by_status: dict[str, list[TherapyView]] = {}
    for view in shown:
        by_status.setdefault(view.status, []).append(view)
    ok = by_status.get("recommended", []) + by_status.get("eligible", [])
    deferred = by_status.get("deferred", [])
    contra = by_status.get("contraindicated", [])
    data = by_status.get("insufficient_data", [])

    parts = []
    if ok:
        parts.append("options: " + ", ".join(v.short for v in ok))
    if deferred:
        parts.append("deferred: " + ", ".join(v.short + (f" (to {v.earliest_date})" if v.earliest_date else "")
                                             for v in deferred))
    if contra:
        parts.append("contraindicated: " + ", ".join(v.short for v in contra))
    if data:
        parts.append(f"{len(data)} need data")
    summary = "Bone mets — " + "; ".join(parts) if parts else "Bone mets — no radionuclide or bone-health option indicated"
    if len(summary) >= SUMMARY_LIMIT:
        dates = sorted(v.earliest_date for v in deferred if v.earliest_date)
        counts = [f"{len(ok)} option(s)" if ok else "", f"{len(deferred)} deferred" + (f" (from {dates[0]})" if dates
                                                                                       else "") if deferred else "",
                  f"{len(contra)} contraindicated" if contra else "", f"{len(data)} need data" if data else ""]
        summary = "Bone mets — radionuclides/bone-health: " + ", ".join(c for c in counts if c)

    lines = ["**Radionuclide and bone-health options**"]
    sections = (
        ("Recommended / eligible", ok), ("Deferred", deferred), ("Contraindicated", contra),
        ("Cannot be judged yet (data missing)", data),
    )
    for title, views_in in sections:
        if not views_in:
            continue
        lines += ["", f"**{title}**", ""]
        for view in views_in:
            mark = " [U]" if view.unverified else ""
            lines.append(f"- **{md(view.name)}** — {md(_status_phrase(view))}{mark}")
            if view.status == "insufficient_data" and view.missing:
                lines.append(f"  - Needs: {md(', '.join(view.missing))}")
            else:
                lines += _rule_lines(view, indent="  ")
    not_indicated = [v.short for v in shown if v.status == "not_indicated"]
    if not_indicated:
        lines += ["", f"Not indicated: {md(', '.join(not_indicated))}."]
    shown_ids = {v.therapy for v in shown}
    advisories = [a for a in result.advisories if a.therapy is None or a.therapy in shown_ids]
    if advisories:
        lines += ["", "**Advisories**", ""]
        lines += [f"- {md(a.id)}{' [U]' if a.unverified else ''}: {md(a.text)}" for a in advisories]
    lines += _footer(result)

    deciding = next((r for group in (contra, deferred, ok) for v in group for r in v.rules), None)
    return {
        "uuid": str(uuid.uuid4()),
        "summary": fit(summary),
        "indicator": indicator_for(v.status for v in shown),
        "detail": "\n".join(lines),
        "source": _source(result, deciding),
        "overrideReasons": _override_reasons(),
        "links": _links(report_url),
    }


# --- order-select / order-sign -------------------------------------------------------------------------------------
def order_cards(result: Any, views: Mapping[str, TherapyView], orders: Iterable[DraftOrder], *,
                report_url: str | None = None) -> list[dict[str, Any]]:
    """One card per drafted order whose therapy is deferred or contraindicated now (none for the others)."""
    cards = []
    catalogue = result.rulebase.catalogue
    options = [f"{SHORT_NAMES.get(d.therapy, catalogue.therapy(d.therapy).name)} ({d.status})"
               for d in result.decisions if d.status in ("recommended", "eligible")]
    for order in orders:
        candidates = [views[t] for t in order.therapies if t in views]
        if not candidates or any(v.status not in INDICATORS for v in candidates):
            continue  # not a therapy radiopal decides on, or (one reading of) the order is fine now
        view = min(candidates, key=lambda v: v.status != "contraindicated")
        cards.append(_order_card(result, view, order, options, report_url))
    return cards


def _order_card(result: Any, view: TherapyView, order: DraftOrder, options: list[str],
                report_url: str | None) -> dict[str, Any]:
    rule = view.rules[0] if view.rules else None
    summary = f"{view.short} order: {_status_phrase(view)}" + (f" — {rule.title}" if rule else "")
    lines = [f"**{md(view.name)}: {md(_status_phrase(view))}**{' [U]' if view.unverified else ''}",
             "", f"Drafted order: {md(order.ref)}" + (f" ({md(order.text)})" if order.text else ""), "", "**Why**", ""]
    lines += _rule_lines(view) or ["- (no rule recorded)"]
    if view.status == "deferred":
        when = (f"**{view.earliest_date}**" if view.earliest_date else
                "not computable yet (for example, chemotherapy still ongoing)")
        lines += ["", f"**Earliest date:** {when}"]
    if view.changes:
        lines += ["", "**What would change it**", ""] + [f"- {md(c)}" for c in view.changes]
    if options:
        lines += ["", "**Options now:** " + md(", ".join(options))]
    lines += _footer(result)
    suggestion = {
        "label": f"Remove the draft {view.short} order",
        "uuid": str(uuid.uuid4()),
        "isRecommended": view.status == "contraindicated",
        "actions": [{"type": "delete", "description": f"Remove the draft order {order.ref} ({view.status})",
                     "resourceId": order.ref}],
    }
    return {
        "uuid": str(uuid.uuid4()),
        "summary": fit(summary),
        "indicator": INDICATORS[view.status],
        "detail": "\n".join(lines),
        "source": _source(result, rule),
        "suggestions": [suggestion],
        "selectionBehavior": "at-most-one",
        "overrideReasons": _override_reasons(),
        "links": _links(report_url),
    }
