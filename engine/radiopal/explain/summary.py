"""The action summary: what a clinician reads first — urgent advisories, then what to give, what else fits, what must
wait (and until when), what must not be given (one line why), what cannot be decided yet (and which data would
decide it), and the key values used.

One model, rendered by the text output, the HTML report, the CDS card and the clinician page. It is built from a
:class:`~radiopal.result.Result` alone and evaluates nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..resolve import AdvisoryOut, Decision
from ..result import Result, condition_lines, display

__all__ = ["ActionSummary", "Block", "DataNeed", "KeyValue", "Option", "OptionGroup", "Wait", "action_summary",
           "open_wait_text", "render_summary_text"]

#: Groups of which one therapy is given at a time, and how the summary names the choice.
CHOOSE_ONE: dict[str, str] = {
    "radionuclide": "one radionuclide",
    "bone_health_agent": "one bone-health agent",
    "external_beam": "one external-beam schedule",
}
#: External-beam therapies that are schedules of one local treatment (hemibody RT is a different treatment).
_SCHEDULES = frozenset({"ebrt_single_8gy", "ebrt_multifraction", "sbrt"})
LABS_MAX_AGE_DAYS = 7  # DATA-04: the window the radionuclides apply (the key values say whether labs are inside it)


@dataclass(frozen=True)
class Option:
    """One therapy as the summary shows it."""

    therapy: str
    name: str
    status: str
    reasons: tuple[str, ...]
    dose_mg: float | None = None
    dose_reasons: tuple[str, ...] = ()
    unverified: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"therapy": self.therapy, "name": self.name, "status": self.status, "reasons": list(self.reasons),
                "dose_mg": self.dose_mg, "dose_reasons": list(self.dose_reasons), "unverified": self.unverified}

    def label(self) -> str:
        """``zoledronic acid 3.5 mg [U]``."""
        text = self.name + (f" {self.dose_mg:g} mg" if self.dose_mg is not None else "")
        return text + (" [U]" if self.unverified else "")


@dataclass(frozen=True)
class OptionGroup:
    """Options of one kind: ``choice`` names what one is chosen from (``one radionuclide``), or is empty."""

    choice: str
    options: tuple[Option, ...]
    alternatives: tuple[Option, ...] = ()  # eligible options of the same choice, beside recommended ones

    def to_dict(self) -> dict[str, Any]:
        return {"choice": self.choice or None, "options": [o.to_dict() for o in self.options],
                "alternatives": [o.to_dict() for o in self.alternatives]}


@dataclass(frozen=True)
class Wait:
    """A deferred therapy: until a date, or open (``until docetaxel stops, then 28 days``)."""

    option: Option
    until: str | None
    open_text: str | None
    rules: tuple[str, ...]

    def when(self) -> str:
        return f"from {self.until}" if self.until else f"open: {self.open_text}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.option.to_dict(), "until": self.until, "open": self.open_text, "rules": list(self.rules)}


@dataclass(frozen=True)
class Block:
    """A contraindicated therapy and, in one line, why."""

    option: Option
    why: str
    rules: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**self.option.to_dict(), "why": self.why, "rules": list(self.rules)}


@dataclass(frozen=True)
class DataNeed:
    """One missing field, once, with the therapies it would let radiopal decide."""

    path: str
    unlocks: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "unlocks": list(self.unlocks)}


@dataclass(frozen=True)
class KeyValue:
    """A value the rules used, with its date and whether it is fresh enough (labs: ≤ 7 days for radionuclides)."""

    label: str
    value: str
    date: str | None = None
    freshness: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "value": self.value, "date": self.date, "freshness": self.freshness}


@dataclass(frozen=True)
class ActionSummary:
    """What to do, in the order a clinician needs it."""

    patient_id: str
    evaluation_date: str
    urgent: tuple[AdvisoryOut, ...]
    give: tuple[OptionGroup, ...]
    alternatives: tuple[OptionGroup, ...]
    wait: tuple[Wait, ...]
    do_not_give: tuple[Block, ...]
    cannot_decide: tuple[DataNeed, ...]
    key_values: tuple[KeyValue, ...]
    other_advisories: tuple[AdvisoryOut, ...] = field(default=())
    warnings: tuple[Mapping[str, str], ...] = ()

    def leading(self) -> list[Option]:
        """The options a short summary names first: the recommended ones, else the eligible ones."""
        groups = self.give or self.alternatives
        return [o for g in groups for o in g.options]

    def to_dict(self) -> dict[str, Any]:
        def adv(a: AdvisoryOut) -> dict[str, Any]:
            return {"id": a.id, "severity": a.severity, "rule": a.rule, "text": a.text, "unverified": a.unverified}

        return {"patient_id": self.patient_id, "evaluation_date": self.evaluation_date,
                "urgent": [adv(a) for a in self.urgent], "give": [g.to_dict() for g in self.give],
                "alternatives": [g.to_dict() for g in self.alternatives], "wait": [w.to_dict() for w in self.wait],
                "do_not_give": [b.to_dict() for b in self.do_not_give],
                "cannot_decide": [n.to_dict() for n in self.cannot_decide],
                "key_values": [k.to_dict() for k in self.key_values],
                "advisories": [adv(a) for a in self.other_advisories], "warnings": [dict(w) for w in self.warnings]}


def action_summary(result: Result) -> ActionSummary:
    """The action summary of one evaluation."""
    catalogue = result.rulebase.catalogue
    names = {t.id: t.name for t in catalogue.therapies}
    groups = {t.id: t.group for t in catalogue.therapies}
    options = {d.therapy: _option(d, names[d.therapy]) for d in result.decisions}
    by_status: dict[str, list[Decision]] = {}
    for d in result.decisions:
        by_status.setdefault(d.status, []).append(d)

    recommended = [options[d.therapy] for d in by_status.get("recommended", [])]
    eligible = [options[d.therapy] for d in by_status.get("eligible", [])]
    give, alternatives = _groups(recommended, eligible, groups)
    wait = tuple(_wait(d, options[d.therapy], result) for d in by_status.get("deferred", []))
    blocks = tuple(_block(d, options[d.therapy]) for d in by_status.get("contraindicated", []))
    undecided = [d for d in result.decisions if d.status == "insufficient_data"]
    needs: dict[str, list[str]] = {}
    for d in undecided:
        for path in d.missing_data:
            needs.setdefault(path, []).append(names[d.therapy])
    for path in result.missing_data:  # §13.7 also lists data of therapies whose gate passed
        needs.setdefault(path, [])
    urgent = tuple(a for a in result.advisories if a.severity == "urgent")
    others = tuple(a for a in result.advisories if a.severity != "urgent")
    return ActionSummary(
        patient_id=result.patient.patient_id,
        evaluation_date=result.patient.evaluation_date.isoformat(),
        urgent=urgent, give=give, alternatives=alternatives, wait=wait, do_not_give=blocks,
        cannot_decide=tuple(DataNeed(path, tuple(unlocks)) for path, unlocks in sorted(needs.items())),
        key_values=_key_values(result), other_advisories=others,
        warnings=tuple(getattr(result, "warnings", ()) or ()),
    )


def _option(d: Decision, name: str) -> Option:
    return Option(d.therapy, name, d.status, tuple(d.reasons), d.dose_mg, d.dose_reasons, d.unverified)


def _choice(therapy: str, groups: Mapping[str, str]) -> str:
    group = groups[therapy]
    if group == "external_beam" and therapy not in _SCHEDULES:
        return ""
    return CHOOSE_ONE.get(group, "")


def _groups(recommended: list[Option], eligible: list[Option],
            groups: Mapping[str, str]) -> tuple[tuple[OptionGroup, ...], tuple[OptionGroup, ...]]:
    """Recommended options by choice (with the eligible ones of the same choice as alternatives); then the eligible
    options whose choice has nothing recommended."""
    taken: set[str] = set()
    give = _grouped(recommended, groups, taken, alternatives=eligible)
    rest = _grouped(eligible, groups, taken)
    return tuple(give), tuple(rest)


def _grouped(options: list[Option], groups: Mapping[str, str], taken: set[str],
             alternatives: list[Option] | None = None) -> list[OptionGroup]:
    """``options`` by choice, each choice once across calls (``taken``); the ``alternatives`` of the same choice
    ride along. An option of no choice stands alone."""
    out: list[OptionGroup] = []
    for option in options:
        choice = _choice(option.therapy, groups)
        if not choice:
            out.append(OptionGroup("", (option,)))
            continue
        if choice in taken:
            continue
        taken.add(choice)
        same = tuple(o for o in options if _choice(o.therapy, groups) == choice)
        alts = tuple(o for o in alternatives or () if _choice(o.therapy, groups) == choice)
        out.append(OptionGroup(choice, same, alts))
    return out


def _wait(d: Decision, option: Option, result: Result) -> Wait:
    rules = tuple(sorted({f.rule_id for f in d.deciding}))
    if d.earliest_date is not None:
        return Wait(option, d.earliest_date.isoformat(), None, rules)
    return Wait(option, None, open_wait_text(d, result), rules)


def open_wait_text(d: Decision, result: Result) -> str:
    """What an open deferral waits for: ``until docetaxel stops, then 28 days`` — never a date that is no end date."""
    for firing in d.deciding:
        spec = firing.compiled.rule.then.earliest_date
        if spec is not None and spec.of:
            history = (result.patient.data.get("treatment_history") or {}).get(spec.of) or []
            ongoing = sorted({str(e.get("agent")) for e in history if isinstance(e, Mapping) and e.get("ongoing")})
            what = " and ".join(ongoing) if ongoing else f"the ongoing {spec.of} entry"
            return f"until {what} stops, then {spec.plus_days} days ({firing.rule_id})"
    titles = sorted({f.compiled.rule.title for f in d.deciding})
    return "until " + "; ".join(t[0].lower() + t[1:] for t in titles) + " no longer applies (" + ", ".join(
        sorted({f.rule_id for f in d.deciding})) + ")"


def _block(d: Decision, option: Option) -> Block:
    """One line: the deciding rule's title and the comparisons that were met, with the patient's values."""
    firing = min(d.deciding, key=lambda f: (f.rule_id, f.compiled.rule.variant))
    rule = firing.compiled.rule
    met = [c for c in condition_lines(firing) if c["result"] == "met" and c.get("observed") not in (None, "")]
    detail = "; ".join(f"{c['test']} (patient: {c['observed']})" for c in met[:2])
    why = rule.title + (f" — {detail}" if detail else "")
    return Block(option, why, tuple(sorted({f.rule_id for f in d.deciding})))


def _key_values(result: Result) -> tuple[KeyValue, ...]:
    facts = result.facts
    labs = result.patient.data.get("labs") or {}
    labs_date = labs.get("date") if isinstance(labs, Mapping) else None
    evaluation = result.patient.evaluation_date
    freshness = None
    if labs_date:
        age = (evaluation - dt.date.fromisoformat(str(labs_date))).days
        freshness = (f"{age} day(s) old: current" if age <= LABS_MAX_AGE_DAYS
                     else f"{age} days old: too old for the radionuclides (> {LABS_MAX_AGE_DAYS} days)")
    out: list[KeyValue] = []
    for label, name, unit in (("platelets", "plt", "10^9/L"), ("WBC", "wbc", "10^9/L"), ("ANC", "anc", "10^9/L"),
                              ("haemoglobin", "hb", "g/dL")):
        fact = facts.get(name)
        if fact is not None and fact.known:
            out.append(KeyValue(label, _short(fact.value, unit), str(labs_date) if labs_date else None, freshness))
    for label, name, unit in (("creatinine clearance", "crcl", "mL/min"), ("corrected calcium", "ca_corr", "mmol/L")):
        fact = facts.get(name)
        if fact is not None and fact.known:
            out.append(KeyValue(label, _short(fact.value, unit), str(labs_date) if labs_date else None))
    last = _last_myelosuppressive(result.patient.data, evaluation)
    if last is not None:
        out.append(last)
    return tuple(out)


def _short(value: float, unit: str) -> str:
    """Three significant figures, as a clinician reads a lab value (2.35 mmol/L, 162 10^9/L)."""
    return display(float(f"{value:.3g}"), unit)


def _last_myelosuppressive(data: Mapping[str, Any], evaluation: dt.date) -> KeyValue | None:
    """Days since the last myelosuppressive therapy: chemotherapy flagged myelosuppressive, or a radionuclide."""
    history = data.get("treatment_history") or {}
    events: list[tuple[dt.date, str, bool]] = []
    for entry in history.get("chemotherapy") or []:
        if isinstance(entry, Mapping) and entry.get("myelosuppressive"):
            when = entry.get("last_dose_date")
            if when:
                events.append((dt.date.fromisoformat(str(when)), str(entry.get("agent")), bool(entry.get("ongoing"))))
    for entry in history.get("radionuclides") or []:
        if isinstance(entry, Mapping) and entry.get("date"):
            events.append((dt.date.fromisoformat(str(entry["date"])), str(entry.get("agent")), False))
    if not events:
        return None
    when, agent, ongoing = max(events)
    value = f"{(evaluation - when).days} days ({agent})" + (", still ongoing" if ongoing else "")
    return KeyValue("since the last myelosuppressive therapy", value, when.isoformat())


def render_summary_text(summary: ActionSummary) -> list[str]:
    """The action summary as terminal lines (urgent first)."""
    lines: list[str] = []
    for a in summary.urgent:
        lines += [f"!! URGENT — {a.id}{' [U]' if a.unverified else ''} ({a.rule}): {a.text}", ""]
    lines.append("Action summary")
    if summary.give:
        lines.append("  Give")
        for g in summary.give:
            lines.append("    • " + _group_text(g))
            if g.alternatives:
                lines.append("        alternatives: " + ", ".join(o.label() for o in g.alternatives))
    if summary.alternatives:
        lines.append("  Alternatives (eligible)")
        lines += ["    • " + _group_text(g) for g in summary.alternatives]
    if summary.wait:
        lines.append("  Wait")
        lines += [f"    • {w.option.label()}: {w.when()}" + (f" [{', '.join(w.rules)}]" if w.until else "")
                  for w in summary.wait]
    if summary.do_not_give:
        lines.append("  Do not give")
        lines += [f"    • {b.option.name}: {b.why} [{', '.join(b.rules)}]" for b in summary.do_not_give]
    if summary.cannot_decide:
        lines.append("  Cannot decide yet — supply")
        lines += [f"    • {n.path}" + (f" → would decide {', '.join(n.unlocks)}" if n.unlocks else "")
                  for n in summary.cannot_decide]
    if summary.key_values:
        lines.append("  Key values used")
        for k in summary.key_values:
            when = f" ({k.date}" + (f", {k.freshness}" if k.freshness else "") + ")" if k.date else ""
            lines.append(f"    {k.label}: {k.value}{when}")
    return lines


def _group_text(group: OptionGroup) -> str:
    names = " or ".join(f"{o.label()} [{', '.join(o.reasons + o.dose_reasons)}]" for o in group.options)
    return f"{group.choice}: {names}" if group.choice else names
