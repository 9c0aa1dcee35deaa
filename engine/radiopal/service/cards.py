"""CDS Hooks cards from a radiopal result: the patient-view summary card and the order-check cards.

A card says what to do, in the EHR's words (issue-14 rules, which an EHR can show as they are):

* ``indicator``: ``critical`` only for an urgent advisory (spinal cord compression); ``warning`` for a drafted order
  that is contraindicated or must wait, or that lacks the data to decide it; ``info`` otherwise;
* ``summary`` (at most 140 characters): the leading option(s) in words;
* ``detail`` (at most 1,500 characters of Markdown): the action summary (:mod:`radiopal.explain.summary`), not rule
  dumps — the page and the report have the rest;
* ``source``: the decisive rule's primary guideline or label, with a short label and its web address (the rule id as
  a ``topic`` Coding);
* ``suggestions`` where the hook allows one (replace a contraindicated drafted radionuclide by an eligible one, or
  remove a draft that must wait), ``overrideReasons``, and ``links`` to radiopal's page (supply the missing facts)
  and report.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import DISCLAIMER, __version__

__all__ = [
    "DETAIL_LIMIT",
    "OVERRIDE_REASONS",
    "OVERRIDE_SYSTEM",
    "RULE_SYSTEM",
    "SUMMARY_LIMIT",
    "DraftOrder",
    "RuleRef",
    "TherapyView",
    "indicator_for",
    "order_cards",
    "page_url",
    "patient_view_card",
    "therapy_views",
]

SUMMARY_LIMIT = 140
DETAIL_LIMIT = 1500
SOURCE_LABEL_LIMIT = 60
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
#: What may replace a drafted order: a radionuclide for a radionuclide or a radionuclide protocol, and so on.
_FAMILY = {"radionuclide": "radionuclide", "radionuclide_chemotherapy": "radionuclide",
           "bone_health_agent": "bone_health_agent", "external_beam": "external_beam"}
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


def indicator_for(urgent: bool, drafted_statuses: Iterable[str] = ()) -> str:
    """``critical`` only for an urgent advisory; ``warning`` when a drafted order is contraindicated, must wait or
    lacks data; else ``info``."""
    if urgent:
        return "critical"
    if set(drafted_statuses) & {"contraindicated", "deferred", "insufficient_data"}:
        return "warning"
    return "info"


def fit(text: str, limit: int = SUMMARY_LIMIT - 1) -> str:
    """``text`` cut to ``limit`` characters at a word boundary, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:— ")
    return cut + "…"


def _source(result: Any, rule: Any | None) -> dict[str, Any]:
    """The decisive rule's primary guideline or label: its first source with a web address, with a short label."""
    source: dict[str, Any] = {"label": f"radiopal {__version__}"}
    if rule is None:
        return source
    references = result.rulebase.catalogue.references
    for key in rule.sources:
        ref = references.get(key)
        if ref is not None and ref.url and re.match(r"^https?://", ref.url):
            source = {"label": fit(ref.citation, SOURCE_LABEL_LIMIT), "url": ref.url}
            break
    source["topic"] = {"system": RULE_SYSTEM, "code": rule.id, "display": fit(f"{rule.key}: {rule.title}", 120)}
    return source


def _override_reasons() -> list[dict[str, str]]:
    return [{"system": OVERRIDE_SYSTEM, "code": code, "display": display} for code, display in OVERRIDE_REASONS]


def page_url(base_url: str, record_id: str) -> str:
    """The clinician page of an evaluation: the summary, and a form for the facts the record lacks."""
    return f"{base_url.rstrip('/')}/page/record/{record_id}"


def _links(report_url: str | None, page: str | None = None) -> list[dict[str, str]]:
    links = []
    if page:
        links.append({"label": "radiopal: supply missing facts and re-evaluate", "url": page, "type": "absolute"})
    if report_url:
        links.append({"label": "radiopal report: why and why not", "url": report_url, "type": "absolute"})
    return links


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
def _short(option: Any) -> str:
    return SHORT_NAMES.get(option.therapy, option.name.split(" (")[0])


def _card_summary(summary: Any) -> str:
    """The leading option(s) in words, urgent first: ``Give Ra-223 (or Sr-89, Sm-153); zoledronic acid or denosumab``."""
    parts = [f"URGENT: {a.id.removeprefix('ADV-').replace('-URGENT', '').replace('SCC', 'cord compression')}"
             for a in summary.urgent]
    give = []
    for group in summary.give:
        text = " or ".join(_short(o) + (f" {o.dose_mg:g} mg" if o.dose_mg is not None else "") for o in group.options)
        if group.alternatives:
            text += " (or " + ", ".join(_short(o) for o in group.alternatives) + ")"
        give.append(text)
    if give:
        parts.append("Give " + "; ".join(give))
    elif summary.alternatives:
        parts.append("Options: " + "; ".join(" or ".join(_short(o) for o in g.options) for g in summary.alternatives))
    if summary.wait:
        parts.append("wait: " + ", ".join(_short(w.option) + (f" to {w.until}" if w.until else " (open)")
                                          for w in summary.wait))
    if summary.cannot_decide:
        parts.append(f"{len(summary.cannot_decide)} fact(s) needed")
    return fit("; ".join(parts) if parts else "Bone metastases: no option indicated now")


def _summary_markdown(summary: Any, result: Any) -> str:
    """The action summary as Markdown, within DETAIL_LIMIT: the record's warnings and the footer always fit; the
    summary is cut at a line when it must be (the page and the report have everything)."""
    short = {t.name: SHORT_NAMES.get(t.id, t.name) for t in result.rulebase.catalogue.therapies}
    lines: list[str] = []
    for a in summary.urgent:
        lines += [f"**URGENT — {md(a.text)}**{' [U]' if a.unverified else ''}", ""]

    def section(title: str, items: list[str]) -> None:
        if items:
            lines.extend([f"**{title}**", *items, ""])

    def names(options: Any) -> str:
        return md(" or ".join(o.label() for o in options))

    section("Give", [f"- {md(g.choice + ': ') if g.choice else ''}{names(g.options)}"
                     + (f" (alternatives: {md(', '.join(o.label() for o in g.alternatives))})" if g.alternatives else "")
                     for g in summary.give])
    section("Alternatives", [f"- {md(g.choice + ': ') if g.choice else ''}{names(g.options)}" for g in summary.alternatives])
    section("Wait", [f"- {md(w.option.label())}: {md(w.when())}" for w in summary.wait])
    section("Do not give", [f"- {md(b.option.name)}: {md(b.why)}" for b in summary.do_not_give])
    section("Cannot decide yet — supply", [
        f"- {md(n.path)}" + (f" → {md(', '.join(short.get(u, u) for u in n.unlocks))}" if n.unlocks else "")
        for n in summary.cannot_decide])
    tail: list[str] = []
    warnings = result.warnings
    if warnings:  # values of the record that could not be used (that field is unknown): the clinician must see them
        tail = ["", "**Record warnings** (a value not used leaves its field unknown)"]
        tail += [f"- {md(w['source'])} {md(w['element'])}: {md(fit(w['message'], 160))}" for w in warnings[:3]]
        if len(warnings) > 3:
            tail.append(f"- … and {len(warnings) - 3} more (see the page)")
    tail += ["", f"_radiopal {__version__}: decision support, not a prescription. [U] = unverified._"]
    end = "\n".join(tail)
    text = "\n".join(lines).rstrip()
    room = DETAIL_LIMIT - len(end) - 1
    if len(text) > room:
        text = text[: room - 45].rsplit("\n", 1)[0] + "\n- … (the rest is on radiopal's page)"
    return text + "\n" + end


def _decisive_rule(result: Any, summary: Any) -> Any | None:
    """The rule a card cites: the urgent advisory's, else the leading option's, else a block's or a wait's."""
    if summary.urgent:
        return summary.urgent[0].firings[0].compiled.rule
    for therapy in [o.therapy for g in summary.give for o in g.options] + \
            [o.therapy for g in summary.alternatives for o in g.options] + \
            [b.option.therapy for b in summary.do_not_give] + [w.option.therapy for w in summary.wait]:
        decision = result.decision(therapy)
        if decision.deciding:
            return decision.deciding[0].compiled.rule
    return None


def patient_view_card(result: Any, views: Mapping[str, TherapyView] | None = None, *, report_url: str | None = None,
                      page: str | None = None) -> dict[str, Any]:
    """The one card of ``patient-view``: the action summary. ``views`` is accepted for compatibility and unused."""
    from ..explain.summary import action_summary

    summary = action_summary(result)
    return {
        "uuid": str(uuid.uuid4()),
        "summary": _card_summary(summary),
        "indicator": indicator_for(bool(summary.urgent)),
        "detail": _summary_markdown(summary, result),
        "source": _source(result, _decisive_rule(result, summary)),
        "overrideReasons": _override_reasons(),
        "links": _links(report_url, page),
    }


# --- order-select / order-sign -------------------------------------------------------------------------------------
def order_cards(result: Any, views: Mapping[str, TherapyView], orders: Iterable[DraftOrder], *,
                report_url: str | None = None, page: str | None = None) -> list[dict[str, Any]]:
    """One card per drafted order whose therapy is contraindicated, must wait, or lacks the data to decide it; none
    for an order that is fine now."""
    from ..explain.summary import action_summary

    summary = action_summary(result)
    alternatives = [o for g in (*summary.give, *summary.alternatives) for o in (*g.options, *g.alternatives)]
    cards = []
    for order in orders:
        candidates = [views[t] for t in order.therapies if t in views]
        if not candidates or any(v.status in ("recommended", "eligible", "not_indicated") for v in candidates):
            continue  # not a therapy radiopal decides on, or (one reading of) the order is fine now
        rank = {"contraindicated": 0, "deferred": 1, "insufficient_data": 2}
        view = min(candidates, key=lambda v: rank.get(v.status, 3))
        cards.append(_order_card(result, summary, view, order, alternatives, report_url, page))
    return cards


def _order_card(result: Any, summary: Any, view: TherapyView, order: DraftOrder, alternatives: list[Any],
                report_url: str | None, page: str | None) -> dict[str, Any]:
    decision = result.decision(view.therapy)
    rule = decision.deciding[0].compiled.rule if decision.deciding else None
    if view.status == "insufficient_data":
        needed = list(decision.missing_data) or list(view.missing)
        head = f"{view.short} order: data needed — {', '.join(needed)}"
        lines = [f"**{md(view.name)}: cannot be decided — supply {md(', '.join(needed))}**", "",
                 "Blood counts for a radionuclide must be at most 7 days old (DATA-04)." if any(
                     p.startswith("labs") for p in needed) else ""]
    else:
        head = f"{view.short} order: {_status_phrase(view)}" + (f" — {rule.title}" if rule else "")
        lines = [f"**{md(view.name)}: {md(_status_phrase(view))}**{' [U]' if view.unverified else ''}", ""]
        block = next((b for b in summary.do_not_give if b.option.therapy == view.therapy), None)
        wait = next((w for w in summary.wait if w.option.therapy == view.therapy), None)
        if block is not None:
            lines.append(f"Why: {md(block.why)} [{md(', '.join(block.rules))}]")
        if wait is not None:
            lines.append(f"When: {md(wait.when())}")
    lines = [f"Drafted order: {md(order.ref)}" + (f" ({md(order.text)})" if order.text else ""), "", *lines]
    family = _FAMILY.get(view.group, view.group)
    same_kind = [o for o in alternatives if o.therapy != view.therapy and
                 _FAMILY.get(result.rulebase.catalogue.therapy(o.therapy).group, "") == family]
    if same_kind:
        lines += ["", "**Instead:** " + md(", ".join(o.label() for o in same_kind))]
    for a in summary.urgent:
        lines = [f"**URGENT — {md(a.text)}**", "", *lines]
    text = "\n".join(lines)
    footer = f"\n\n_radiopal {__version__}: decision support, not a prescription._"
    if len(text) + len(footer) > DETAIL_LIMIT:
        text = text[: DETAIL_LIMIT - len(footer) - 2] + "…"
    suggestions = []
    if view.status == "contraindicated" and same_kind:
        best = same_kind[0]
        suggestions.append({
            "label": fit(f"Replace the {view.short} order by {_short(best)}", 80),
            "uuid": str(uuid.uuid4()),
            "isRecommended": True,
            "actions": [
                {"type": "delete", "description": f"Remove the draft order {order.ref} ({view.status})",
                 "resourceId": [order.ref]},
                {"type": "create", "description": f"Draft {best.name} instead ({best.status})",
                 "resource": {"resourceType": "MedicationRequest", "status": "draft", "intent": "proposal",
                              "subject": {"reference": f"Patient/{result.patient.patient_id}"},
                              "medicationCodeableConcept": {"text": best.name}}},
            ],
        })
    if view.status in ("contraindicated", "deferred"):
        suggestions.append({
            "label": f"Remove the draft {view.short} order",
            "uuid": str(uuid.uuid4()),
            "isRecommended": view.status == "contraindicated" and not same_kind,
            "actions": [{"type": "delete", "description": f"Remove the draft order {order.ref} ({view.status})",
                         "resourceId": [order.ref]}],
        })
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": fit(head),
        "indicator": indicator_for(bool(summary.urgent), [view.status]),
        "detail": text + footer,
        "source": _source(result, rule),
        "overrideReasons": _override_reasons(),
        "links": _links(report_url, page),
    }
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    return card
