"""Version impact diff: what changed between two rule bases, and which patients' advice changes because of it.

``diff_rulebases(old, new, scenarios)`` compares rules by key (``id`` or ``id/variant``): added, removed and changed
(the fields that differ; changed thresholds side by side — fact, operator, old value → new value — matched by the
condition node id). It then runs each scenario (or plain patient document) against both rule bases and lists every
decision whose status, earliest date or dose changes, with the rules that decided it in each version, and the
advisories that appear or disappear. A report, not a check: the CLI exits 0 whether or not anything changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .conditions import AllOf, AnyOf, Compare, Condition, Exists, Not
from .errors import InputError, ScenarioError
from .lint.findings import display_path
from .patient.load import parse_patient
from .rulebase.model import Rule
from .rulebase.thresholds import ThresholdTable, usage
from .scenarios import scenario_paths
from .yamlio import load_document

__all__ = ["RuleChange", "RulebaseDiff", "diff_rulebases"]


@dataclass
class RuleChange:
    """One rule present in both versions whose definition differs."""

    key: str
    old: Rule
    new: Rule
    fields: list[str]
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    named: list[str] = field(default_factory=list)  # the named thresholds the rule uses (in either version)

    @property
    def written_alike(self) -> bool:
        """The rule's text is unchanged: its meaning changed through a named threshold only (whose file's version
        is what should be raised)."""
        return self.old.raw == self.new.raw

    @property
    def version_raised(self) -> bool:
        """Whether the rule's ``version`` went up with the change (it should)."""
        return self.new.version > self.old.version

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.key,
            "file": display_path(self.new.file),
            "line": self.new.line,
            "fields": self.fields,
            "version": {"old": self.old.version, "new": self.new.version},
            "version_raised": self.version_raised,
            "through_named_thresholds": self.written_alike,
            "thresholds": self.thresholds,
            "conditions": self.conditions,
        }


@dataclass
class RulebaseDiff:
    """The whole comparison, as data (``to_dict``) or text (``to_text``)."""

    old_path: str
    new_path: str
    old_version: str
    new_version: str
    identical: bool
    added: list[Rule] = field(default_factory=list)
    removed: list[Rule] = field(default_factory=list)
    changed: list[RuleChange] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    named_thresholds: list[dict[str, Any]] = field(default_factory=list)
    scenarios: int = 0
    decisions: list[dict[str, Any]] = field(default_factory=list)
    advisories: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        """Whether anything differs: rules, file versions, decisions or advisories."""
        return bool(self.added or self.removed or self.changed or self.files or self.named_thresholds
                    or self.decisions or self.advisories)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": {"rules": display_path(self.old_path), "version": self.old_version},
            "new": {"rules": display_path(self.new_path), "version": self.new_version},
            "changed": self.has_changes,
            "identical_rules": self.identical,
            "rules": {
                "added": [_rule_ref(r) for r in self.added],
                "removed": [_rule_ref(r) for r in self.removed],
                "changed": [c.to_dict() for c in self.changed],
            },
            "files": self.files,
            "thresholds": self.named_thresholds,
            "scenarios": self.scenarios,
            "decisions": self.decisions,
            "advisories": self.advisories,
            "errors": self.errors,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_text(self) -> str:
        """The report for people: ``no change``, or the rule changes and then the decision changes."""
        lines = [f"radiopal diff {display_path(self.old_path)} → {display_path(self.new_path)}"]
        if not self.has_changes and not self.errors:
            what = "identical rule bases" if self.identical else "rules differ only in form"
            tail = f"; {self.scenarios} scenarios, no decision changes" if self.scenarios else ""
            lines.append(f"no change ({what}{tail})")
            return "\n".join(lines) + "\n"
        if self.old_version != self.new_version:
            lines.append(f"rule base version: {self.old_version} → {self.new_version}")
        for f in self.files:
            lines.append(f"  file {f['area']}: {f['change']}")
        if self.named_thresholds:
            counts = {k: sum(1 for t in self.named_thresholds if (t["old"] is None, t["new"] is None) == v)
                      for k, v in (("added", (True, False)), ("removed", (False, True)), ("changed", (False, False)))}
            lines.append("named thresholds: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
            for t in self.named_thresholds:
                used = ", ".join(t["rules"]) or "no rule"
                lines.append(f"  {t['name']}: {t['old'] or '(none)'} → {t['new'] or '(none)'}   used by {used}")
        lines.append(f"rules: {len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed")
        for r in self.added:
            lines.append(f"  + {r.key}  {display_path(r.file)}:{r.line}  {r.title}")
        for r in self.removed:
            lines.append(f"  - {r.key}  {display_path(r.file)}:{r.line}  {r.title}")
        for c in self.changed:
            version = (f"version {c.old.version} → {c.new.version}" if c.version_raised
                       else f"through {', '.join(c.named)}" if c.written_alike
                       else f"version {c.new.version} NOT raised")
            lines.append(f"  ~ {c.key}  {display_path(c.new.file)}:{c.new.line}  ({version}): {', '.join(c.fields)}")
            for t in c.thresholds:
                lines.append(f"      {t['fact']}: {t['old']} → {t['new']}   [{t['node']}]")
            for cond in c.conditions:
                lines.append(f"      {cond['node']}: {cond['old'] or '(none)'} → {cond['new'] or '(none)'}")
        if self.scenarios:
            touched = len({d['scenario'] for d in self.decisions})
            lines.append(f"decisions: {len(self.decisions)} changed in {touched} of {self.scenarios} scenarios")
            for d in self.decisions:
                lines.append(f"  {d['patient_id']} ({display_path(d['scenario'])}) {d['therapy']}: "
                             f"{_decision_text(d['old'], d['new'])} → {_decision_text(d['new'], d['old'])}")
                lines.append(f"      old: {_responsible(d['old'])} | new: {_responsible(d['new'])}")
            for a in self.advisories:
                lines.append(f"  {a['patient_id']} ({display_path(a['scenario'])}) advisories: "
                             + "; ".join([*(f"+{x}" for x in a["added"]), *(f"-{x}" for x in a["removed"])]))
        for e in self.errors:
            lines.append(f"  error: {display_path(e['scenario'])}: {e['error']}")
        return "\n".join(lines) + "\n"


def _rule_ref(rule: Rule) -> dict[str, Any]:
    return {"rule": rule.key, "file": display_path(rule.file), "line": rule.line, "title": rule.title}


def _decision_text(d: dict[str, Any], other: dict[str, Any]) -> str:
    """``deferred from 2025-07-01, 3.5 mg``; a date or dose the other side has is shown as ``no date``/``no dose``."""
    text = d["status"]
    if d.get("earliest_date"):
        text += f" from {d['earliest_date']}"
    elif other.get("earliest_date"):
        text += ", no date"
    if d.get("dose_mg") is not None:
        text += f", {d['dose_mg']:g} mg"
    elif other.get("dose_mg") is not None:
        text += ", no dose"
    return text


def _responsible(d: dict[str, Any]) -> str:
    text = ", ".join(d["rules"]) or "no rule (default)"
    if d.get("dose_rules"):
        text += f"; dose: {', '.join(d['dose_rules'])}"
    return text


def _thresholds(old: Rule, new: Rule) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Changed comparisons, matched by condition node id: thresholds (same subject) and other condition edits."""
    def compares(rule: Rule) -> dict[str, Compare]:
        return {n.cid: n for n in rule.when.nodes() if isinstance(n, Compare)} if rule.when is not None else {}

    before, after = compares(old), compares(new)
    thresholds, conditions = [], []
    for cid in sorted(set(before) | set(after)):
        a, b = before.get(cid), after.get(cid)
        if a is not None and b is not None and (a.subject, a.name) == (b.subject, b.name):
            if (a.op, a.value) != (b.op, b.value):
                thresholds.append({"node": cid, "fact": a.name, "subject": a.subject,
                                   "old_op": a.op, "new_op": b.op,
                                   "old_value": _plain(a.written_value if a.written_value is not None else a.value),
                                   "new_value": _plain(b.written_value if b.written_value is not None else b.value),
                                   "old": f"{a.op} {a.threshold_text()}", "new": f"{b.op} {b.threshold_text()}"})
        elif a is None or b is None or a.describe() != b.describe():
            conditions.append({"node": cid, "old": a.describe() if a else None, "new": b.describe() if b else None})
    return thresholds, conditions


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _condition_meaning(node: Condition | None) -> Any:
    """A condition as the engines see it: numbers in the fact's unit, named thresholds replaced by their value."""
    if node is None:
        return None
    if isinstance(node, AnyOf):
        return ["any", [_condition_meaning(c) for c in node.children]]
    if isinstance(node, AllOf):
        return ["all", [_condition_meaning(c) for c in node.children]]
    if isinstance(node, Not):
        return ["not", _condition_meaning(node.child)]
    if isinstance(node, Exists):
        return ["exists", node.list_name, _condition_meaning(node.where)]
    assert isinstance(node, Compare)
    return [node.subject, node.name, node.op, _plain(node.value)]


def meaning(rule: Rule) -> dict[str, Any]:
    """What a rule says, whatever the spelling: its fields as written, but its conditions and its deferral as the
    engines use them. Two rules with the same meaning decide alike; naming a number (``threshold:``) that was
    written out, or writing ``6 wk`` for ``42`` days, is no change of meaning."""
    raw = dict(rule.raw) if isinstance(rule.raw, dict) else {}
    raw["when"] = _condition_meaning(rule.when)
    raw["requires"] = [[r.fact, _condition_meaning(r.when)] for r in rule.requires]
    then = dict(raw.get("then") or {})
    if rule.then.earliest_date is not None and isinstance(then.get("earliest_date"), dict):
        then["earliest_date"] = {**then["earliest_date"], "plus_days": rule.then.earliest_date.plus_days}
    raw["then"] = then
    return raw


def _rule_diff(old: Rule, new: Rule) -> RuleChange | None:
    before, after = meaning(old), meaning(new)
    fields = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if not fields:
        return None
    thresholds, conditions = _thresholds(old, new)
    named = sorted(set(_named(old)) | set(_named(new)))
    return RuleChange(new.key, old, new, fields, thresholds, conditions, named)


def _named(rule: Rule) -> list[str]:
    return [name for name, rules in usage([rule]).items() if rules]


def _files(old: Any, new: Any) -> list[dict[str, Any]]:
    before = {f.area: f for f in old.loaded.files}
    after = {f.area: f for f in new.loaded.files}
    out = []
    for area in sorted(set(before) | set(after)):
        a, b = before.get(area), after.get(area)
        if a is None:
            assert b is not None
            out.append({"area": area, "change": f"added (version {b.version})"})
        elif b is None:
            out.append({"area": area, "change": "removed"})
        else:
            rules_changed = [meaning(r) for r in a.rules] != [meaning(r) for r in b.rules]
            if a.version != b.version:
                out.append({"area": area, "change": f"version {a.version} → {b.version}"})
            elif rules_changed:
                out.append({"area": area, "change": f"rules changed but the file version ({a.version}) was NOT raised"})
    return out


def _named_changes(old: ThresholdTable, new: ThresholdTable, new_rules: Iterable[Rule],
                   old_rules: Iterable[Rule]) -> list[dict[str, Any]]:
    """Named thresholds added, removed or changed (value, unit, tag or sources), with the rules that use each."""
    used = usage(new_rules)
    used_before = usage(old_rules)
    out = []
    for name in sorted(set(old.thresholds) | set(new.thresholds)):
        a, b = old.get(name), new.get(name)
        if a is not None and b is not None and (a.value, a.unit, a.verification, a.sources) == (
                b.value, b.unit, b.verification, b.sources):
            continue
        rules = used.get(name) or used_before.get(name) or []
        out.append({"name": name, "old": _threshold_text(a), "new": _threshold_text(b),
                    "rules": sorted({r.key for r in rules})})
    return out


def _threshold_text(threshold: Any) -> str | None:
    return None if threshold is None else f"{threshold.shown()} [{threshold.verification}]"


def _load_patient(path: Path) -> Any:
    """A scenario (its ``expected`` block ignored) or a plain patient document."""
    located = load_document(path, kind="scenario or patient document")
    data = located.data
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "expected"}
    return parse_patient(data, source=located.source)


def _decision(d: Any, result: Any) -> dict[str, Any]:
    """A decision as data, with the rules behind its status and (when it has one) behind its dose."""
    rules = sorted({f.compiled.rule.key for f in d.deciding})
    dose_rules = sorted({f.compiled.rule.key for f in result.firings
                         if f.therapy == d.therapy and d.dose_mg is not None and f.compiled.rule.then.dose_mg == d.dose_mg})
    return {"status": d.status, "earliest_date": d.earliest_date.isoformat() if d.earliest_date else None,
            "dose_mg": d.dose_mg, "rules": rules, "dose_rules": dose_rules}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["status"], a["earliest_date"], a["dose_mg"]) == (b["status"], b["earliest_date"], b["dose_mg"])


def diff_rulebases(old: Any, new: Any, scenarios: Iterable[str | Path] = ()) -> RulebaseDiff:
    """Compare two compiled rule bases (``radiopal.load_rulebase``) and their decisions on ``scenarios``."""
    old_rules = {r.key: r for r in old.rules}
    new_rules = {r.key: r for r in new.rules}
    report = RulebaseDiff(str(old.folder), str(new.folder), old.version, new.version, old.digest == new.digest)
    report.added = [r for k, r in new_rules.items() if k not in old_rules]
    report.removed = [r for k, r in old_rules.items() if k not in new_rules]
    report.changed = [c for k in new_rules if k in old_rules
                      if (c := _rule_diff(old_rules[k], new_rules[k])) is not None]
    report.files = _files(old, new)
    report.named_thresholds = _named_changes(old.loaded.thresholds, new.loaded.thresholds, new.rules, old.rules)
    if report.named_thresholds:
        a, b = old.loaded.thresholds, new.loaded.thresholds
        change = (f"version {a.version} → {b.version}" if a.version != b.version
                  else f"numbers changed but the file version ({b.version}) was NOT raised")
        report.files.append({"area": "thresholds", "change": change})
    for path in scenario_paths(scenarios):
        try:
            patient = _load_patient(path)
        except (InputError, ScenarioError) as exc:
            report.errors.append({"scenario": str(path), "error": "; ".join(exc.lines())})
            continue
        report.scenarios += 1
        if report.identical:
            continue  # the same rules decide the same way: nothing to run
        before, after = old.evaluate(patient), new.evaluate(patient)
        for d_old, d_new in zip(before.decisions, after.decisions, strict=True):
            a, b = _decision(d_old, before), _decision(d_new, after)
            if not _same(a, b):
                report.decisions.append({"scenario": str(path), "patient_id": patient.patient_id,
                                         "therapy": d_new.therapy, "old": a, "new": b})
        adv_old = {x.id for x in before.advisories}
        adv_new = {x.id for x in after.advisories}
        if adv_old != adv_new:
            report.advisories.append({"scenario": str(path), "patient_id": patient.patient_id,
                                      "added": sorted(adv_new - adv_old), "removed": sorted(adv_old - adv_new)})
    return report
