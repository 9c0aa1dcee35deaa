"""Build an :class:`~radiopal.explain.model.Explanation` from a :class:`~radiopal.result.Result`.

Explanations are built on demand, after the run: nothing here is on the evaluate path. Rules that fired are shown
with the outcome the engine recorded; rules that did not fire are evaluated again, in three values, against the
final facts (derived facts included) and the final statuses.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import DISCLAIMER, __version__
from ..conditions import PRESENCE_OPS, THERAPY_PLACEHOLDER, AllOf, AnyOf, Compare, Condition, Env, Exists, Not, Outcome
from ..errors import InputError, Problem
from ..result import display
from ..rulebase.model import POSITIVE, Rule
from ..suggest import hint_for
from ..tri import Tri, all_of
from .model import (
    MET,
    NOT_MET,
    UNKNOWN,
    AdvisoryNote,
    Change,
    ConditionExplanation,
    DataItem,
    Explanation,
    ReferenceNote,
    RuleExplanation,
    TherapyExplanation,
    Why,
    WhyNot,
)

if TYPE_CHECKING:
    from ..catalogue import Catalogue
    from ..resolve import Decision
    from ..result import Result
    from ..run import Firing

OP_SYMBOLS = {
    "<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "=", "!=": "≠",
    "in": "∈", "not_in": "∉", "contains": "contains", "known": "is known", "unknown": "is unknown",
}  # fmt: skip
NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}
ORDER = ("<", "<=", ">", ">=")
STATUS_WORDS = {
    "recommended": "recommended",
    "eligible": "eligible",
    "deferred": "deferred",
    "contraindicated": "contraindicated",
    "not_indicated": "not indicated",
    "insufficient_data": "insufficient data",
}
_UNIT_TEXT = {"10^9/L": "×10⁹/L", "10^3/uL": "×10³/µL", "/uL": "/µL", "1": "", "a": "years", "wk": "weeks"}


def pretty_unit(unit: str | None) -> str:
    """A unit as a clinician writes it (``10^9/L`` → ``×10⁹/L``; dimensionless → empty)."""
    if not unit:
        return ""
    return _UNIT_TEXT.get(unit, unit.replace("uL", "µL"))


def show(value: Any, unit: str | None = None) -> str:
    """A value with its unit, for reading (dates ISO, booleans yes/no, sets in braces)."""
    if isinstance(value, (tuple, list)) and value and not isinstance(value[0], Mapping):
        return "{" + ", ".join(show(v) for v in value) + "}"
    text = display(value)
    unit_text = pretty_unit(unit)
    if value is None or not unit_text:
        return text
    return f"{text} {unit_text}"


def check_therapy(catalogue: Catalogue, therapy: str) -> None:
    """Raise :class:`InputError` naming every known therapy id when ``therapy`` is not one of them."""
    ids = catalogue.therapy_ids
    if therapy in ids:
        return
    known = ", ".join(ids)
    raise InputError(
        f"unknown therapy {therapy!r}; known therapy ids: {known}",
        [Problem(f"unknown therapy {therapy!r}; known therapy ids: {known}", path="--therapy",
                 hint=hint_for(therapy, ids))],
    )


def explain(result: Result, therapy: str | None = None) -> Explanation:
    """Explain the decisions of ``result``: every therapy, or only ``therapy``.

    For each therapy: *why* (the deciding and indication rules with the values they used against their thresholds,
    and the rules overridden by a stronger status), *why not* (the blocking rules with their met conditions, and the
    positive rules that did not fire with their failed or unknown conditions), *what would change it* (the earliest
    date, the thresholds to reach, the dates a ``days_since`` test flips, the data to supply) and the data to collect.
    Anything resting on a rule tagged ``[U]`` is marked ``unverified``.

    Raises :class:`radiopal.InputError` (listing the known ids) when ``therapy`` is not a therapy id.
    """
    builder = _Builder(result)
    if therapy is not None:
        check_therapy(builder.catalogue, therapy)
    therapies = [builder.therapy(d) for d in result.decisions if therapy is None or d.therapy == therapy]
    wanted = {t.therapy for t in therapies}
    advisories = [
        AdvisoryNote(a.id, a.rule, a.text, a.therapy, a.unverified)
        for a in result.advisories
        if therapy is None or any(f.therapy in wanted for f in a.firings)
    ]
    return Explanation(
        patient_id=result.patient.patient_id,
        evaluation_date=result.patient.evaluation_date.isoformat(),
        rulebase_version=result.rulebase.version,
        rulebase_hash=result.rulebase.digest,
        radiopal_version=__version__,
        disclaimer=DISCLAIMER,
        therapies=therapies,
        therapy_filter=therapy,
        missing_data=list(result.missing_data),
        advisories=advisories,
        references=builder.references(),
        warnings=list(result.warnings),
        evaluation_date_from=result.extra.get("evaluation_date_from"),
    )


class _Builder:
    """Holds what every part of one explanation needs: facts, statuses, rules per therapy, citations seen."""

    def __init__(self, result: Result) -> None:
        self.result = result
        rulebase = result.rulebase
        self.vocab = rulebase.vocabulary
        self.catalogue: Catalogue = rulebase.catalogue
        self.thresholds = rulebase.thresholds
        self.facts = result.facts.facts
        self.evaluation_date: dt.date = result.patient.evaluation_date
        self.statuses = {d.therapy: d.status for d in result.decisions}
        self.rules_for: dict[str, list[Rule]] = {}
        self.derived_by: dict[str, str] = {}
        self.order = {rule.key: i for i, rule in enumerate(rulebase.rules)}
        for rule in rulebase.rules:
            for t in rule.therapies:
                self.rules_for.setdefault(t, []).append(rule)
            if rule.then.derive:
                self.derived_by[rule.then.derive] = rule.key
        self.firing_for: dict[tuple[str, str], Firing] = {}
        for firing in result.firings:
            if firing.therapy:
                self.firing_for[(firing.compiled.rule.key, firing.therapy)] = firing
        self.cited: dict[str, None] = {}
        self.provenance: Mapping[str, Any] = result.extra.get("provenance") or {}
        self._resources: dict[str, list[str]] | None = None

    # --- one therapy ---------------------------------------------------------------------------------------------
    def therapy(self, decision: Decision) -> TherapyExplanation:
        t = decision.therapy
        info = self.catalogue.therapy(t)
        status = decision.status
        deciding = self.sorted(decision.deciding)
        indication = self.sorted(decision.indication)
        overridden_firings = self.sorted(decision.overridden)
        deciding_keys = [f.compiled.rule.key for f in deciding]
        shown: set[int] = set()
        why_rules = []
        for f in deciding:
            why_rules.append(self.rule(f.compiled.rule, t, "deciding", f))
            shown.add(id(f))
        for f in indication:
            if id(f) in shown:
                continue
            item = self.rule(f.compiled.rule, t, "indication", f)
            item.overridden_by, item.overridden_by_rules = status, deciding_keys
            why_rules.append(item)
            shown.add(id(f))
        overridden = []
        for f in overridden_firings:
            if id(f) in shown:
                continue
            item = self.rule(f.compiled.rule, t, "overridden", f)
            item.overridden_by, item.overridden_by_rules = status, deciding_keys
            overridden.append(item)

        fired_keys = {f.compiled.rule.key for f in (*decision.deciding, *decision.indication, *decision.overridden)}
        candidates = [r for r in self.rules_for.get(t, []) if r.then.status and r.key not in fired_keys]
        positive_wanted = POSITIVE if status not in POSITIVE else ({"recommended"} if status == "eligible" else set())
        would_enable = [self.rule(r, t, "would_enable") for r in candidates if r.then.status in positive_wanted]
        unresolved = [
            item for item in (self.rule(r, t, "unresolved") for r in candidates
                              if r.then.status not in POSITIVE and not r.requires)
            if item.result == UNKNOWN and _collectable(item)
        ]
        blocking = []
        if status not in POSITIVE:
            for f in self.sorted([*decision.deciding, *decision.overridden]):
                if f.compiled.rule.then.status not in POSITIVE:
                    blocking.append(self.rule(f.compiled.rule, t, "blocking", f))
        why_not = None
        if status != "recommended":
            why_not = WhyNot(
                question="Why not recommended?" if status == "eligible" else "Why not recommended or eligible?",
                summary=_why_not_summary(info.name, status, blocking, would_enable),
                blocking=blocking,
                would_enable=would_enable,
            )
        why = Why(_why_summary(info.name, decision, why_rules, would_enable), decision.is_default, why_rules, overridden)
        changes = self.changes(decision, blocking, would_enable, [*why_rules, *overridden])
        data = self.data_to_collect(decision, [*blocking, *why_rules, *overridden, *would_enable, *unresolved])
        advisories = [
            AdvisoryNote(a.id, self.sorted([f for f in a.firings if f.therapy == t])[0].compiled.rule.key, a.text, t,
                         a.unverified)
            for a in self.result.advisories
            if any(f.therapy == t for f in a.firings)
        ]
        return TherapyExplanation(
            therapy=t,
            name=info.name,
            group=info.group,
            status=status,
            headline=_headline(decision, data),
            why=why,
            why_not=why_not,
            earliest_date=decision.earliest_date.isoformat() if decision.earliest_date else None,
            date_unknown=decision.date_unknown,
            dose_mg=decision.dose_mg,
            reasons=list(decision.reasons),
            unverified=any(r.unverified for r in why_rules),
            dose_reasons=list(decision.dose_reasons),
            dose_text=_dose_text(decision),
            dose_unverified=decision.dose_unverified,
            open_wait=_open_wait(decision, self.result),
            what_would_change=changes,
            data_to_collect=data,
            unresolved=unresolved,
            advisories=advisories,
        )

    def sorted(self, firings: Iterable[Firing]) -> list[Firing]:
        """Firings in rule-base order (the engine's firing order is not part of the contract)."""
        return sorted(firings, key=lambda f: self.order.get(f.compiled.rule.key, len(self.order)))

    # --- one rule ------------------------------------------------------------------------------------------------
    def rule(self, rule: Rule, therapy: str, role: str, firing: Firing | None = None) -> RuleExplanation:
        """A rule as it applies to ``therapy``; ``firing`` when it fired (its recorded outcome is used)."""
        firing = firing if firing is not None else self.firing_for.get((rule.key, therapy))
        for key in rule.sources:
            self.cited.setdefault(key, None)
        missing: list[str] = []
        if rule.requires:
            conditions = self.requirements(rule, therapy)
            result = MET if firing is not None else NOT_MET
            if firing is not None:
                missing = list(firing.missing_paths)
        elif rule.when is not None:
            outcome = firing.outcome if firing is not None and firing.outcome is not None else None
            if outcome is None:
                outcome = rule.when.explain(self.env(therapy))
            conditions = self.node(outcome, therapy)
            result = conditions.result
        else:  # pragma: no cover - the loader requires `when` or `requires` on every rule with a status
            conditions, result = None, UNKNOWN
        if conditions is not None:
            if role == "would_enable":
                decisive = [n for n, _ in blame(conditions, MET)]
            elif rule.requires:
                decisive = [n for n in conditions.children if n.result == UNKNOWN]
            else:
                decisive = reasons(conditions)
            for n in decisive:
                n.decisive = True
        return RuleExplanation(
            key=rule.key,
            rule_id=rule.id,
            variant=rule.variant or None,
            title=rule.title,
            text=(rule.summary or rule.title).strip(),
            strength=rule.strength,
            verification=rule.verification,
            unverified=rule.is_unverified,
            unverified_note=rule.unverified.strip() or None,
            sources=list(rule.sources),
            status=rule.then.status,
            fired=firing is not None,
            result=result,
            role=role,
            location=self.location(rule),
            kind="requirement" if rule.requires else "condition",
            phase=2 if rule.statuses() else 1,
            earliest_date=firing.earliest_date.isoformat() if firing is not None and firing.earliest_date else None,
            earliest_date_rule=_date_rule(rule),
            date_unknown=bool(firing is not None and firing.date_unknown),
            missing=missing,
            advisories=[a.id for a in rule.then.advisories],
            conditions=conditions,
        )

    def location(self, rule: Rule) -> str:
        """``rules/sequencing.yaml:12``: the rule file relative to the rule folder's parent, and the line."""
        shown = _shown_file(self.result.rulebase.folder, rule.file)
        return f"{shown}:{rule.line}" if rule.line else shown

    def env(self, therapy: str) -> Env:
        return Env(self.facts, self.evaluation_date, therapy, statuses=self.statuses)

    def requirements(self, rule: Rule, therapy: str) -> ConditionExplanation:
        """The facts a data-requirement rule needs, each met (known) or unknown (with the paths to supply)."""
        env = self.env(therapy)
        children = []
        for i, req in enumerate(rule.requires):
            applies = req.when.truth(env) if req.when is not None else Tri.TRUE
            if applies is Tri.FALSE:
                continue
            fact = self.facts.get(req.fact)
            spec = self.vocab.facts.get(req.fact)
            unit = spec.unit if spec is not None else None
            known = fact is not None and fact.known
            condition = f" (needed when {describe(req.when)})" if req.when is not None else ""
            children.append(self.with_resources(ConditionExplanation(
                id=f"requires[{i}]",
                kind="requirement",
                text=f"{req.fact} is known{condition}",
                result=MET if known else UNKNOWN,
                subject="fact",
                name=req.fact,
                op="known",
                value=show(fact.value, unit) if known and fact is not None else "unknown",
                value_raw=_json(fact.value) if known and fact is not None else None,
                source=list(fact.sources) if fact is not None else [],
                missing=list(fact.missing or (req.fact,)) if fact is not None and not known else
                ([] if known else [req.fact]),
                note=(fact.note or None) if fact is not None else None,
                unverified_fact=_unverified_fact(spec),
            )))
        result = all_of(Tri(c.result) for c in children).value
        return ConditionExplanation(id="requires", kind="all", text="the data this therapy needs are present",
                                    result=result, children=children)

    # --- condition trees -----------------------------------------------------------------------------------------
    def node(self, outcome: Outcome, therapy: str, item: Mapping[str, Any] | None = None,
             item_path: str = "", list_name: str = "") -> ConditionExplanation:
        """Turn one evaluated condition node (and its children) into plain data with the patient's values."""
        node = outcome.node
        result = outcome.value.value
        if isinstance(node, (AllOf, AnyOf)):
            kind = "any" if isinstance(node, AnyOf) else "all"
            children = [self.node(o, therapy, item, item_path, list_name) for o in outcome.children]
            text = "any of the following" if kind == "any" else "all of the following"
            return ConditionExplanation(node.cid, kind, text, result, children)
        if isinstance(node, Not):
            children = [self.node(o, therapy, item, item_path, list_name) for o in outcome.children]
            return ConditionExplanation(node.cid, "not", "not the following", result, children)
        if isinstance(node, Exists):
            return self.with_resources(self.exists(node, outcome, therapy))
        assert isinstance(node, Compare)
        return self.with_resources(self.compare(node, outcome, therapy, item, item_path, list_name))

    def with_resources(self, item: ConditionExplanation) -> ConditionExplanation:
        """Add the FHIR resources the node's document fields were mapped from (when the input was a Bundle)."""
        if not self.provenance:
            return item
        if self._resources is None:
            self._resources = _resources_by_path(self.provenance)
        found: dict[str, None] = {}
        for path in item.source:
            for resource in self._resources.get(path, ()):
                found.setdefault(resource, None)
        item.resources = list(found)
        return item

    def exists(self, node: Exists, outcome: Outcome, therapy: str) -> ConditionExplanation:
        fact = self.facts.get(node.list_name)
        known = fact is not None and fact.known
        base = fact.sources[0] if fact is not None and fact.sources else node.list_name
        entries: list[Mapping[str, Any]] = list(fact.value) if known and fact is not None else []
        children = []
        for i, (inner, entry) in enumerate(zip(outcome.children, entries, strict=False)):
            path = f"{base}[{i}]"
            where = self.node(inner, therapy, entry, path, node.list_name)
            children.append(ConditionExplanation(f"{node.cid}[{i}]", "entry",
                                                 f"{path}: {_entry_label(entry, self.evaluation_date)}",
                                                 inner.value.value, [where], source=[path]))
        missing = [_doc_path(p, node.list_name, base) for p in outcome.missing]
        if not known and not missing:
            missing = [base]
        count = len(entries)
        return ConditionExplanation(
            node.cid, "exists", f"some {node.list_name} entry meets the following", outcome.value.value, children,
            subject="fact", name=node.list_name,
            value=(f"{count} entr{'y' if count == 1 else 'ies'}" if known else "unknown"),
            source=[base], missing=missing,
        )

    def compare(self, node: Compare, outcome: Outcome, therapy: str, item: Mapping[str, Any] | None,
                item_path: str, list_name: str) -> ConditionExplanation:
        subject, op = node.subject, node.op
        on_fact = subject in ("fact", "days_since")
        fact = self.facts.get(node.name) if on_fact else None
        spec = self.vocab.facts.get(node.name) if on_fact else None
        unit = spec.unit if spec is not None and subject == "fact" else None
        result = outcome.value.value
        known = result != UNKNOWN if op not in PRESENCE_OPS else ((op == "known") == (result == MET))

        target = therapy if node.value == THERAPY_PLACEHOLDER else node.value
        threshold: str | None = None
        if op not in PRESENCE_OPS:
            if subject in ("days_since", "days_since_field"):
                threshold = f"{show(target)} days"
            else:
                threshold = show(target, unit)
                if node.unit and unit and node.unit != unit and node.written_value is not None:
                    threshold += f" (written {show(node.written_value, node.unit)})"

        label = {
            "days_since": f"days since {node.name}",
            "days_since_field": f"days since {node.name}",
            "status_of": f"status of {node.name}",
        }.get(subject, node.name)
        named = self.thresholds.get(node.threshold) if node.threshold else None
        if threshold is not None and named is not None:
            threshold += f" ({named.name})"
        text = f"{label} {OP_SYMBOLS.get(op, op)}" + (f" {threshold}" if threshold is not None else "")

        item_ = ConditionExplanation(node.cid, "compare", text, result, subject=subject, name=node.name, op=op,
                                     threshold=threshold, threshold_value=_json(target) if threshold else None,
                                     unverified_fact=_unverified_fact(spec))
        if named is not None:
            item_.threshold_name, item_.threshold_citation = named.name, named.citation
            item_.unverified_threshold = named.verification == "U"
            for key in named.sources:
                self.cited.setdefault(key, None)
        observed = outcome.observed
        if subject == "fact":
            if fact is not None:
                item_.source = list(fact.sources)
                item_.note = self._fact_note(fact.name, fact.note)
                item_.given_as = _given_as(fact.original, unit)
            if known and fact is not None:
                item_.value, item_.value_raw = show(fact.value, unit), _json(fact.value)
        elif subject == "days_since":
            if fact is not None:
                item_.source = list(fact.sources)
                item_.note = self._fact_note(fact.name, fact.note)
            if known and fact is not None:
                item_.date = fact.value.isoformat()
                item_.value, item_.value_raw = f"{observed} days (since {item_.date})", observed
                item_.flips_on = _flip_date(fact.value, op, target, result)
        elif subject in ("field", "days_since_field"):
            item_.source = [f"{item_path}.{node.name}"] if item_path else []
            if known and item is not None:
                raw = item.get(node.name)
                if subject == "days_since_field":
                    assert raw is not None, "a known days_since_field outcome read a date"
                    item_.date = raw.isoformat()
                    item_.value, item_.value_raw = f"{observed} days (since {item_.date})", observed
                    # An ongoing entry (chemotherapy still given) has no last dose yet: the day would move, so none.
                    item_.flips_on = None if item.get("ongoing") is True else _flip_date(raw, op, target, result)
                else:
                    item_.value, item_.value_raw = show(raw), _json(raw)
        else:  # status_of
            item_.source = [f"decision:{node.name}"]
            if known:
                item_.value, item_.value_raw = str(observed), observed
        if not known:
            item_.value = "unknown"
            # No missing path means the value does not exist rather than was not supplied (e.g. no Sm-153 in the
            # history): nothing to collect, and the note says why.
            missing = [_doc_path(p, list_name, item_path.rsplit("[", 1)[0]) for p in outcome.missing]
            if not missing and fact is not None:
                missing = list(fact.missing)
            item_.missing = missing
        return item_

    def _fact_note(self, name: str, note: str) -> str | None:
        if name in self.derived_by:
            return f"derived by rule {self.derived_by[name]}" + (f"; {note}" if note and "derived" not in note else "")
        return note or None

    # --- what would change it ------------------------------------------------------------------------------------
    def changes(self, decision: Decision, blocking: list[RuleExplanation], would_enable: list[RuleExplanation],
                why: list[RuleExplanation]) -> list[Change]:
        out: list[Change] = []
        seen: set[tuple[Any, ...]] = set()

        def add(change: Change) -> None:
            key = (change.kind, change.text)
            if key not in seen:
                seen.add(key)
                out.append(change)

        if decision.status == "deferred":
            dated = [r for r in why if r.status == "deferred" and r.role == "deciding"]
            keys = [r.key for r in dated if r.earliest_date or r.date_unknown] or [r.key for r in dated]
            unverified = any(r.unverified for r in dated)
            if decision.earliest_date is not None:
                add(Change("earliest_date", "lift", f"Deferred until {decision.earliest_date.isoformat()}: "
                           "the earliest date it can be reconsidered", keys, date=decision.earliest_date.isoformat(),
                           unverified=unverified))
            elif decision.date_unknown:
                add(Change("earliest_date", "lift", "No earliest date can be computed yet (for example, the "
                           "treatment that triggers the deferral is still ongoing)", keys, unverified=unverified))
        dated = [r for r in blocking if r.earliest_date]
        for r in dated:
            if len(dated) > 1 or decision.earliest_date is None or r.earliest_date != decision.earliest_date.isoformat():
                add(Change("earliest_date", "lift", f"{r.key} defers it until {r.earliest_date}", [r.key],
                           date=r.earliest_date, unverified=r.unverified))
        dates = {c.date for c in out if c.date}
        for r in blocking:
            if r.conditions is None or r.kind == "requirement":
                continue
            for c in _condition_changes(r, want=False, purpose="lift"):
                # An open deferral (e.g. chemotherapy still ongoing) has no end date: the day its condition would
                # flip counts from a date that will move, so it is not shown as if it ended the deferral.
                if c.kind == "date" and (c.date in dates or r.date_unknown):
                    continue
                add(c)
        for r in [*blocking, *why]:
            if r.missing and r.status == "insufficient_data":
                add(Change("collect", "decide", f"Supply {', '.join(r.missing)} ({r.key})", [r.key],
                           paths=list(r.missing), unverified=r.unverified))
        for r in would_enable:
            for c in _condition_changes(r, want=True, purpose="enable"):
                add(c)
        order = {"earliest_date": 0, "date": 1, "threshold": 2, "collect": 3}
        return sorted(out, key=lambda c: order.get(c.kind, 9))

    def data_to_collect(self, decision: Decision, rules: Iterable[RuleExplanation]) -> list[DataItem]:
        """Field paths to supply: required ones (data-requirement rules) first, then any unknown a rule waited on."""
        items: dict[str, DataItem] = {}

        def add(path: str, fact: str | None, rule: str, required: bool) -> None:
            item = items.setdefault(path, DataItem(path, [], [], required))
            item.required = item.required or required
            if fact and fact not in item.facts:
                item.facts.append(fact)
            if rule not in item.rules:
                item.rules.append(rule)

        for f in (*decision.deciding, *decision.overridden):
            for name in f.missing_facts:
                fact = self.facts.get(name)
                for path in (fact.missing if fact is not None and fact.missing else (name,)):
                    add(path, name, f.compiled.rule.key, True)
        for r in rules:
            if r.conditions is None:
                continue
            for n in r.conditions.walk():
                if n.result == UNKNOWN and n.kind in ("compare", "exists", "requirement") and n.missing:
                    for path in n.missing:
                        add(path, n.name, r.key, n.kind == "requirement" and r.fired)
        return sorted(items.values(), key=lambda d: (not d.required, d.path))

    def references(self) -> list[ReferenceNote]:
        out = []
        for key in self.cited:
            ref = self.catalogue.references.get(key)
            if ref is None:
                out.append(ReferenceNote(key, key, None))
                continue
            out.append(ReferenceNote(key, ref.citation, ref.url, ref.number, ref.read or None))
        return sorted(out, key=lambda r: (r.number is None, r.number or 0, r.key))


# --- helpers ---------------------------------------------------------------------------------------------------------


def describe(node: Condition) -> str:
    """A condition in the words of the explanation (``ongoing = yes``, ``sex = female``)."""
    if isinstance(node, AnyOf):
        return "any of (" + "; ".join(describe(c) for c in node.children) + ")"
    if isinstance(node, AllOf):
        return "all of (" + "; ".join(describe(c) for c in node.children) + ")"
    if isinstance(node, Not):
        return f"not ({describe(node.child)})"
    if isinstance(node, Exists):
        return f"some {node.list_name} entry with ({describe(node.where)})"
    if isinstance(node, Compare):
        label = {"days_since": f"days since {node.name}", "days_since_field": f"days since {node.name}",
                 "status_of": f"status of {node.name}"}.get(node.subject, node.name)
        if node.op in PRESENCE_OPS:
            return f"{label} {OP_SYMBOLS[node.op]}"
        days = " days" if node.subject in ("days_since", "days_since_field") else ""
        return f"{label} {OP_SYMBOLS.get(node.op, node.op)} {show(node.value)}{days}"
    return node.describe()


def blame(node: ConditionExplanation, want: str) -> list[tuple[ConditionExplanation, str]]:
    """The leaves that keep ``node`` from the result ``want`` (met or not_met), each with the result it would need.

    Descends only where the result differs from the one wanted; under ``not`` the wanted result flips. Children
    of an ``any`` that must become met, or of an ``all`` that must become not met, are alternatives.
    """
    if node.result == want:
        return []
    if node.kind in ("compare", "requirement"):
        return [(node, want)]
    if node.kind == "not":
        return [x for c in node.children for x in blame(c, NOT_MET if want == MET else MET)]
    if node.kind == "exists":
        if not node.children:
            return [(node, want)]
        return [x for entry in node.children for x in blame(entry.children[0], want)]
    return [x for c in node.children for x in blame(c, want)]


def reasons(node: ConditionExplanation) -> list[ConditionExplanation]:
    """The leaves that give ``node`` its actual result (met: what made it met; not met or unknown: what failed)."""
    if node.kind in ("compare", "requirement"):
        return [node]
    if node.kind in ("not", "entry"):
        return [x for c in node.children for x in reasons(c)]
    if node.kind == "exists" and not node.children:
        return [node]
    deciding_all = (node.kind == "all" and node.result == MET) or (node.kind == "any" and node.result == NOT_MET)
    if node.kind == "exists":
        deciding_all = node.result == NOT_MET
    children = node.children if deciding_all else [c for c in node.children if c.result == node.result]
    return [x for c in children for x in reasons(c)]


def _condition_changes(rule: RuleExplanation, *, want: bool, purpose: str) -> list[Change]:
    """What would turn ``rule``'s condition to ``want`` (True: met, so it fires; False: not met, so it lifts)."""
    out: list[Change] = []
    if rule.conditions is None:
        return out
    verb = f"needed for {rule.key} to fire" if want else f"to lift {rule.key}"
    missing: dict[str, None] = {}
    tests: list[str] = []
    for n, wanted in blame(rule.conditions, MET if want else NOT_MET):
        if n.result == UNKNOWN:
            if n.missing:
                missing.update(dict.fromkeys(n.missing))
                tests.append(n.text)
        elif n.subject in ("days_since", "days_since_field"):
            if n.flips_on:
                out.append(Change("date", purpose, f"On {n.flips_on} '{n.text}' becomes "
                                                   f"{'met' if wanted == MET else 'not met'} ({verb})",
                                  [rule.key], date=n.flips_on, fact=n.name, threshold=n.threshold, current=n.value,
                                  unverified=rule.unverified))
        elif n.op in ORDER and _is_number(n.value_raw) and n.threshold is not None:
            op = n.op if wanted == MET else NEGATED[n.op]
            where = f" ({', '.join(n.source)})" if n.source else ""
            out.append(Change("threshold", purpose,
                              f"{n.name}{where} {OP_SYMBOLS[op]} {n.threshold}, now {n.value} ({verb})",
                              [rule.key], fact=n.name, threshold=f"{OP_SYMBOLS[op]} {n.threshold}", current=n.value,
                              unverified=rule.unverified))
    if missing:
        out.append(Change("collect", purpose, f"Supply {', '.join(sorted(missing))} so that {rule.key} can be judged "
                                              f"({'; '.join(dict.fromkeys(tests))})", [rule.key],
                          paths=sorted(missing), unverified=rule.unverified))
    return out


def _collectable(rule: RuleExplanation) -> bool:
    """Whether some unknown condition of ``rule`` could be judged by supplying a field of the document."""
    return rule.conditions is not None and any(n.result == UNKNOWN and n.missing for n in rule.conditions.walk())


def _flip_date(start: dt.date, op: str, target: Any, result: str) -> str | None:
    """The date a ``days_since(start) op target`` test changes value by waiting, or None if waiting cannot."""
    if not isinstance(target, int) or isinstance(target, bool):
        return None
    if op in ("<", "<=") and result == MET:
        return (start + dt.timedelta(days=target + (1 if op == "<=" else 0))).isoformat()
    if op in (">", ">=") and result == NOT_MET:
        return (start + dt.timedelta(days=target + (1 if op == ">" else 0))).isoformat()
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unverified_fact(spec: Any) -> bool:
    """Whether the vocabulary marks the fact itself as resting on an unverified [U] formula or number."""
    return spec is not None and "[U" in (spec.description or "")


def _given_as(original: Any, unit: str | None) -> str | None:
    if isinstance(original, Mapping) and "value" in original and original.get("unit") and original["unit"] != unit:
        return f"{original['value']} {pretty_unit(str(original['unit'])) or original['unit']}"
    return None


def _doc_path(path: str, list_name: str, base: str) -> str:
    """``chemotherapy[0].ongoing`` → ``treatment_history.chemotherapy[0].ongoing`` (a path of the document)."""
    if list_name and base and path.startswith(list_name + "[") and not path.startswith(base):
        return base + path[len(list_name):]
    return path


def _entry_label(entry: Mapping[str, Any], evaluation_date: dt.date) -> str:
    """``docetaxel, class taxane, last_dose_date 2025-03-03 (14 days before the evaluation date), ...``."""
    parts = [show(v) for k, v in entry.items() if k == "agent" and v is not None]
    for k, v in entry.items():
        if k == "agent" or v is None:
            continue
        text = f"{k} {show(v)}"
        if isinstance(v, dt.date):
            days = (evaluation_date - v).days
            text += f" ({days} day{'' if days == 1 else 's'} before the evaluation date)"
        parts.append(text)
    return ", ".join(parts)


def _date_rule(rule: Rule) -> str | None:
    """How a deferral rule computes its earliest date, in words (``last_dose_date of the ... entry + 28 days``)."""
    spec = rule.then.earliest_date
    if spec is None:
        return None
    if spec.fact:
        return f"{spec.fact} + {spec.plus_days} days"
    text = f"{spec.field} of the matching {spec.of} entry + {spec.plus_days} days"
    if spec.none_if is not None:
        text += f"; no date while {describe(spec.none_if)}"
    return text


def _json(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _dose_text(decision: Decision) -> str | None:
    """The rule(s) that set the dose, with the values they read: ``BHA-02/b Zoledronic acid 3.5 mg … (crcl 55)``."""
    if decision.dose_mg is None or not decision.dosing:
        return None
    from ..result import condition_lines

    parts = []
    for firing in sorted(decision.dosing, key=lambda f: f.compiled.rule.key):
        rule = firing.compiled.rule
        seen = sorted({f"{c['fact']} {c['observed']}" for c in condition_lines(firing)
                       if c.get("fact") and c.get("observed") not in (None, "")})
        parts.append(f"{rule.key} {rule.title}" + (f" ({', '.join(seen)})" if seen else "")
                     + (" [U]" if rule.is_unverified else ""))
    return f"{decision.dose_mg:g} mg — " + "; ".join(parts)


def _open_wait(decision: Decision, result: Any) -> str | None:
    """For a deferral with no end date, what it waits for — never a date that is not an end date."""
    if decision.status != "deferred" or decision.earliest_date is not None:
        return None
    from .summary import open_wait_text

    return open_wait_text(decision, result)


def _headline(decision: Decision, data: list[DataItem]) -> str:
    status = decision.status
    if status == "deferred":
        if decision.earliest_date is not None:
            return f"Deferred until {decision.earliest_date.isoformat()}"
        return "Deferred (no earliest date can be computed yet)" if decision.date_unknown else "Deferred"
    if status == "insufficient_data":
        required = [d.path for d in data if d.required] or [d.path for d in data]
        return "Insufficient data" + (f": supply {', '.join(required)}" if required else "")
    if status == "not_indicated" and decision.is_default:
        return "Not indicated: no rule proposes it"
    text = STATUS_WORDS.get(status, status).capitalize()
    if decision.dose_mg is not None:
        text += f" ({decision.dose_mg:g} mg)"
    return text


def _why_summary(name: str, decision: Decision, rules: list[RuleExplanation], would_enable: list[RuleExplanation]) -> str:
    if decision.is_default:
        text = f"No rule proposes a status for {name}, so it is not indicated by default (brief §13.2)."
        if would_enable:
            text += " Its indication rules did not fire: " + ", ".join(r.key for r in would_enable) + "."
        else:
            text += " The rule base has no rule that would make it eligible or recommended."
        return text
    parts = [f"{r.text} ({r.key}{' [U]' if r.unverified else ''})" for r in rules if r.role == "deciding"]
    return " ".join(parts)


def _why_not_summary(name: str, status: str, blocking: list[RuleExplanation],
                     would_enable: list[RuleExplanation]) -> str:
    parts = []
    if blocking:
        parts.append("Blocked by " + "; ".join(
            f"{r.key}{' [U]' if r.unverified else ''} ({STATUS_WORDS.get(r.status or '', r.status)})" for r in blocking
        ) + ".")
    if would_enable:
        pieces = []
        for r in would_enable:
            nodes = [n for n in r.conditions.walk() if n.decisive] if r.conditions is not None else []
            failed = sum(1 for n in nodes if n.result == NOT_MET)
            unknown = sum(1 for n in nodes if n.result == UNKNOWN)
            detail = ", ".join(x for x in (f"{failed} not met" if failed else "", f"{unknown} unknown" if unknown
                                           else "") if x)
            pieces.append(f"{r.key}" + (f" ({detail})" if detail else ""))
        target = "recommended" if status == "eligible" else "eligible or recommended"
        parts.append(f"Rules that would make it {target} did not fire: " + "; ".join(pieces) + ".")
    elif not blocking:
        target = "recommended" if status == "eligible" else "eligible or recommended"
        parts.append(f"The rule base has no rule that would make {name} {target}.")
    return " ".join(parts)


@functools.lru_cache(maxsize=1024)
def _shown_file(folder: str, file: str) -> str:
    """A rule file as shown in explanations (resolving paths is a system call per rule: done once per file)."""
    try:
        return Path(file).resolve().relative_to(Path(folder).resolve().parent).as_posix()
    except ValueError:
        return Path(file).name


def _resources_by_path(provenance: Mapping[str, Any]) -> dict[str, list[str]]:
    """Document path → the resources mapped to it or to a field or entry below it (``labs`` → every lab's resource).

    Built once per explanation: a path's resources are those of every provenance key equal to it or starting with
    it followed by ``.`` or ``[``, in provenance order.
    """
    index: dict[str, dict[str, None]] = {}
    for key, where in provenance.items():
        if not (isinstance(where, Mapping) and where.get("resource")):
            continue
        resource = str(where["resource"])
        if where.get("date_from"):  # which element the date came from (an order's authoredOn is not a dose date)
            resource += f" (date from {where['date_from']})"
        prefixes = [key[:i] for i, ch in enumerate(key) if ch in ".["] + [key]
        for prefix in prefixes:
            index.setdefault(prefix, {}).setdefault(resource, None)
    return {path: list(resources) for path, resources in index.items()}
