"""The explanation as plain data: conditions, rules, changes, data to collect, one block per therapy.

Every class here is a small dataclass with ``to_dict()``; the JSON form is checked by
``kb/schemas/explanation.schema.json``. Nothing in this module evaluates anything: :mod:`radiopal.explain.build`
fills it from a :class:`~radiopal.result.Result`, and :mod:`~radiopal.explain.text` / :mod:`~radiopal.explain.html`
render it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Three-valued results, as the condition language names them (radiopal.tri.Tri values).
MET, NOT_MET, UNKNOWN = "met", "not_met", "unknown"
SCHEMA_VERSION = "1.0"


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


@dataclass
class ConditionExplanation:
    """One node of a rule's condition tree, evaluated in three values, with what the patient has.

    ``kind`` is ``all`` / ``any`` / ``not`` / ``exists`` / ``entry`` (one entry of a list fact inside ``exists``) /
    ``compare`` / ``requirement`` (a fact a data-requirement rule needs).
    """

    id: str
    kind: str
    text: str
    result: str
    children: list[ConditionExplanation] = field(default_factory=list)
    subject: str | None = None  # fact | field | days_since | days_since_field | status_of
    name: str | None = None
    op: str | None = None
    threshold: str | None = None
    threshold_value: Any = None
    value: str | None = None
    value_raw: Any = None
    date: str | None = None
    given_as: str | None = None
    source: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)  # FHIR resources the value was mapped from (--fhir input)
    missing: list[str] = field(default_factory=list)
    flips_on: str | None = None
    note: str | None = None
    unverified_fact: bool = False
    threshold_name: str | None = None  # the named threshold (thresholds.yaml) the comparison used
    threshold_citation: str | None = None  # its clinical rule, verification tag and sources
    unverified_threshold: bool = False  # the named threshold is tagged U
    decisive: bool = False  # a leaf that gives the rule its result (why it fired, or why it did not)

    def walk(self) -> list[ConditionExplanation]:
        """This node and every node below it, depth first."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "text": self.text,
            "result": self.result,
            "subject": self.subject,
            "name": self.name,
            "op": self.op,
            "threshold": self.threshold,
            "threshold_value": self.threshold_value,
            "threshold_name": self.threshold_name,
            "threshold_citation": self.threshold_citation,
            "value": self.value,
            "value_raw": self.value_raw,
            "date": self.date,
            "given_as": self.given_as,
            "flips_on": self.flips_on,
            "note": self.note,
        }
        data = _drop_none(data)
        if self.source:
            data["source"] = list(self.source)
        if self.resources:
            data["resources"] = list(self.resources)
        if self.missing:
            data["missing"] = list(self.missing)
        if self.unverified_fact:
            data["unverified_fact"] = True
        if self.unverified_threshold:
            data["unverified_threshold"] = True
        if self.decisive:
            data["decisive"] = True
        if self.children:
            data["children"] = [c.to_dict() for c in self.children]
        return data


@dataclass
class RuleExplanation:
    """One rule of the rule base as it applies to one therapy: fired or not, with its conditions and provenance.

    ``role`` says why it is shown: ``deciding`` (proposed the final status), ``indication`` (a positive rule that
    fired), ``overridden`` (proposed a weaker status), ``blocking`` (a fired rule that keeps the therapy from being
    eligible), ``would_enable`` (a positive rule that did not fire) or ``unresolved`` (could not be judged).
    """

    key: str
    rule_id: str
    variant: str | None
    title: str
    text: str
    strength: str
    verification: str
    unverified: bool
    sources: list[str]
    status: str | None
    fired: bool
    result: str
    role: str
    location: str
    kind: str = "condition"  # condition | requirement (a data-requirement rule: fires when required data are missing)
    phase: int = 1
    unverified_note: str | None = None
    overridden_by: str | None = None
    overridden_by_rules: list[str] = field(default_factory=list)
    earliest_date: str | None = None
    earliest_date_rule: str | None = None
    date_unknown: bool = False
    missing: list[str] = field(default_factory=list)
    advisories: list[str] = field(default_factory=list)
    conditions: ConditionExplanation | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "rule_id": self.rule_id,
            "variant": self.variant,
            "title": self.title,
            "text": self.text,
            "strength": self.strength,
            "verification": self.verification,
            "unverified": self.unverified,
            "unverified_note": self.unverified_note,
            "sources": list(self.sources),
            "status": self.status,
            "fired": self.fired,
            "result": self.result,
            "role": self.role,
            "kind": self.kind,
            "phase": self.phase,
            "location": self.location,
            "overridden_by": self.overridden_by,
            "earliest_date": self.earliest_date,
            "earliest_date_rule": self.earliest_date_rule,
        }
        data = _drop_none(data)
        data["status"] = self.status
        if self.overridden_by_rules:
            data["overridden_by_rules"] = list(self.overridden_by_rules)
        if self.date_unknown:
            data["date_unknown"] = True
        if self.missing:
            data["missing"] = list(self.missing)
        if self.advisories:
            data["advisories"] = list(self.advisories)
        if self.conditions is not None:
            data["conditions"] = self.conditions.to_dict()
        return data


@dataclass
class Change:
    """Something that would change the decision: a date, a threshold to reach, or data to supply.

    ``kind``: ``earliest_date`` (a deferral ends), ``date`` (a ``days_since`` comparison flips), ``threshold`` (a
    number must reach a value), ``collect`` (a missing field to supply). ``purpose``: ``lift`` (remove a block),
    ``enable`` (let a positive rule fire) or ``decide`` (let the therapy be judged at all).
    """

    kind: str
    purpose: str
    text: str
    rules: list[str]
    date: str | None = None
    fact: str | None = None
    threshold: str | None = None
    current: str | None = None
    paths: list[str] = field(default_factory=list)
    unverified: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = _drop_none({
            "kind": self.kind,
            "purpose": self.purpose,
            "text": self.text,
            "rules": list(self.rules),
            "date": self.date,
            "fact": self.fact,
            "threshold": self.threshold,
            "current": self.current,
        })
        if self.paths:
            data["paths"] = list(self.paths)
        if self.unverified:
            data["unverified"] = True
        return data


@dataclass
class DataItem:
    """A field of the patient document to supply: which facts read it and which rules wait on it."""

    path: str
    facts: list[str]
    rules: list[str]
    required: bool

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "facts": list(self.facts), "rules": list(self.rules), "required": self.required}


@dataclass
class AdvisoryNote:
    """An advisory of the output, as shown beside a therapy (or for the patient)."""

    id: str
    rule: str
    text: str
    therapy: str | None = None
    unverified: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "rule": self.rule, "text": self.text}
        if self.therapy:
            data["therapy"] = self.therapy
        if self.unverified:
            data["unverified"] = True
        return data


@dataclass
class ReferenceNote:
    """A reference cited by a rule shown in the explanation (kb/references.yaml)."""

    key: str
    citation: str
    url: str | None
    number: int | None = None
    read: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = _drop_none({"key": self.key, "number": self.number, "citation": self.citation, "read": self.read})
        data["url"] = self.url
        return data


@dataclass
class Why:
    """Why a therapy has its status: the deciding rules (and indication rules), and the rules that lost."""

    summary: str
    default: bool
    rules: list[RuleExplanation] = field(default_factory=list)
    overridden: list[RuleExplanation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "default": self.default,
            "rules": [r.to_dict() for r in self.rules],
            "overridden": [r.to_dict() for r in self.overridden],
        }


@dataclass
class WhyNot:
    """Why a therapy is not recommended (or not eligible): what blocks it, and what did not let it through."""

    question: str
    summary: str
    blocking: list[RuleExplanation] = field(default_factory=list)
    would_enable: list[RuleExplanation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "summary": self.summary,
            "blocking": [r.to_dict() for r in self.blocking],
            "would_enable": [r.to_dict() for r in self.would_enable],
        }


@dataclass
class TherapyExplanation:
    """Everything about one therapy's decision: why, why not, what would change it, and data to collect."""

    therapy: str
    name: str
    group: str
    status: str
    headline: str
    why: Why
    why_not: WhyNot | None
    earliest_date: str | None = None
    date_unknown: bool = False
    dose_mg: float | None = None
    reasons: list[str] = field(default_factory=list)
    unverified: bool = False
    dose_reasons: list[str] = field(default_factory=list)
    dose_text: str | None = None  # the dose rule in words, with the value it read ("BHA-02/b …: crcl 55 mL/min")
    dose_unverified: bool = False
    open_wait: str | None = None  # a deferral with no end date: what it waits for ("until docetaxel stops, then 28 days")
    what_would_change: list[Change] = field(default_factory=list)
    data_to_collect: list[DataItem] = field(default_factory=list)
    unresolved: list[RuleExplanation] = field(default_factory=list)
    advisories: list[AdvisoryNote] = field(default_factory=list)

    def rules(self) -> list[RuleExplanation]:
        """Every rule shown for this therapy (why, overridden, why-not, unresolved)."""
        out = [*self.why.rules, *self.why.overridden]
        if self.why_not is not None:
            out += [*self.why_not.blocking, *self.why_not.would_enable]
        return out + list(self.unresolved)

    def to_dict(self) -> dict[str, Any]:
        return {
            "therapy": self.therapy,
            "name": self.name,
            "group": self.group,
            "status": self.status,
            "earliest_date": self.earliest_date,
            "date_unknown": self.date_unknown,
            "dose_mg": self.dose_mg,
            "reasons": list(self.reasons),
            "unverified": self.unverified,
            "dose_reasons": list(self.dose_reasons),
            "dose_text": self.dose_text,
            "dose_unverified": self.dose_unverified,
            "open_wait": self.open_wait,
            "headline": self.headline,
            "why": self.why.to_dict(),
            "why_not": self.why_not.to_dict() if self.why_not is not None else None,
            "what_would_change": [c.to_dict() for c in self.what_would_change],
            "data_to_collect": [d.to_dict() for d in self.data_to_collect],
            "unresolved": [r.to_dict() for r in self.unresolved],
            "advisories": [a.to_dict() for a in self.advisories],
        }


@dataclass
class Explanation:
    """The explanation of one evaluation: one :class:`TherapyExplanation` per therapy asked for."""

    patient_id: str
    evaluation_date: str
    rulebase_version: str
    rulebase_hash: str
    radiopal_version: str
    disclaimer: str
    therapies: list[TherapyExplanation]
    therapy_filter: str | None = None
    missing_data: list[str] = field(default_factory=list)
    advisories: list[AdvisoryNote] = field(default_factory=list)
    references: list[ReferenceNote] = field(default_factory=list)
    #: Values of a FHIR record that could not be used (contract §D ``warnings``), and where the date came from.
    warnings: list[dict[str, str]] = field(default_factory=list)
    evaluation_date_from: str | None = None

    def therapy(self, therapy_id: str) -> TherapyExplanation:
        """The explanation of one therapy id (KeyError when it is not in this explanation)."""
        for t in self.therapies:
            if t.therapy == therapy_id:
                return t
        raise KeyError(therapy_id)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, ready for JSON; follows ``kb/schemas/explanation.schema.json``."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "radiopal-explanation",
            "patient_id": self.patient_id,
            "evaluation_date": self.evaluation_date,
            "rulebase": {"version": self.rulebase_version, "hash": self.rulebase_hash},
            "radiopal_version": self.radiopal_version,
            "disclaimer": self.disclaimer,
            "therapy_filter": self.therapy_filter,
            "therapies": [t.to_dict() for t in self.therapies],
            "missing_data": list(self.missing_data),
            "advisories": [a.to_dict() for a in self.advisories],
            "references": [r.to_dict() for r in self.references],
            "warnings": [dict(w) for w in self.warnings],
            "evaluation_date_from": self.evaluation_date_from,
        }
