"""Parse → validate → type-check: rule files (YAML) into the rule model, with every authoring error located.

Stages, each with its own errors (all :class:`~radiopal.errors.RulebaseError` with file:line:column problems):
  1. parse     safe YAML with positions (radiopal.yamlio)
  2. validate  the rule-file JSON Schema (kb/schemas/rulefile.schema.json)
  3. type-check facts, fields, operators, values, units, therapies, advisories and source keys against the
               vocabulary and catalogue, with a did-you-mean for unknown names
Compilation to experta is a separate stage (radiopal.rulebase.compile).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import schemacheck
from ..catalogue import Catalogue, load_catalogue
from ..conditions import (
    ALL_OPS,
    COMPARATORS,
    ORDER_OPS,
    PRESENCE_OPS,
    THERAPY_PLACEHOLDER,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Exists,
    Not,
)
from ..errors import InputError, Problem, RulebaseError
from ..patient.units import convert, quantities
from ..suggest import hint_for
from ..vocabulary import FactSpec, FieldSpec, Vocabulary, load_vocabulary
from ..yamlio import SourceMap, dotted, load_document
from .model import STATUSES, Advisory, Conclusion, DateSpec, Requirement, Rule, RuleFile


@dataclass
class LoadedRules:
    """Every rule of a rule-base folder, type-checked, with the vocabulary extended by its derived facts."""

    files: tuple[RuleFile, ...]
    rules: tuple[Rule, ...]
    vocabulary: Vocabulary
    catalogue: Catalogue
    folder: str


def rule_files(folder: str | Path) -> list[Path]:
    """The rule files of a folder (``*.yaml``, sorted), or the file itself."""
    path = Path(folder)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise RulebaseError(f"{folder}: no such rule folder", [Problem("no such rule file or folder", file=str(folder))])
    return sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_rules(
    folder: str | Path, *, vocabulary: Vocabulary | None = None, catalogue: Catalogue | None = None
) -> LoadedRules:
    """Load, validate and type-check every rule file of ``folder``; raise RulebaseError listing all problems."""
    vocab = vocabulary or load_vocabulary()
    cat = catalogue or load_catalogue()
    problems: list[Problem] = []
    parsed: list[tuple[Path, dict[str, Any], SourceMap]] = []
    files = rule_files(folder)
    if not files:
        raise RulebaseError(f"{folder}: no rule files (*.yaml)", [Problem("no rule files (*.yaml)", file=str(folder))])
    for path in files:
        try:
            located = load_document(path, kind="rule file")
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        found = schemacheck.problems(located.data, "rulefile", source=located.source)
        if found:
            problems.extend(_with_rule_ids(found, located.data))
            continue
        parsed.append((path, located.data, located.source))
    # Derived facts of every file are known to every file.
    derived: dict[str, FactSpec] = {}
    for path, data, source in parsed:
        for name, spec in (data.get("derived_facts") or {}).items():
            line, col = source.where(("derived_facts", name))
            if name in vocab or name in derived:
                problems.append(Problem(f"derived fact {name!r} is already defined", file=str(path), line=line,
                                        column=col, path=f"derived_facts.{name}"))
                continue
            derived[name] = FactSpec(name, "boolean", spec.get("description", ""), derived_by=str(path))
    full_vocab = vocab.with_derived(derived)
    checker = _Checker(full_vocab, cat)
    rule_files_out = []
    all_rules: list[Rule] = []
    for path, data, source in parsed:
        rules = []
        for i, raw in enumerate(data["rules"]):
            rule = checker.rule(raw, ("rules", i), str(path), source, data["area"])
            if rule is not None:
                rules.append(rule)
        problems.extend(checker.take())
        rule_files_out.append(RuleFile(str(path), data["area"], data["version"], data.get("title", ""), tuple(rules),
                                       {k: v.get("description", "") for k, v in (data.get("derived_facts") or {}).items()}))
        all_rules.extend(rules)
    problems.extend(_duplicates(all_rules))
    problems.extend(_derivation_problems(all_rules, derived))
    if problems:
        raise RulebaseError(f"{folder}: rule base has {len(problems)} problem(s)", problems)
    return LoadedRules(tuple(rule_files_out), tuple(all_rules), full_vocab, cat, str(folder))


def _with_rule_ids(problems: Iterable[Problem], data: Any) -> list[Problem]:
    out = []
    for p in problems:
        rule_id = ""
        if p.path.startswith("rules[") and isinstance(data, dict):
            try:
                index = int(p.path[len("rules["):p.path.index("]")])
                rule_id = str(data["rules"][index].get("id", ""))
            except (ValueError, IndexError, KeyError, AttributeError, TypeError):
                rule_id = ""
        out.append(Problem(p.message, path=p.path, file=p.file, line=p.line, column=p.column, rule_id=rule_id,
                           hint=p.hint))
    return out


def _duplicates(rules: list[Rule]) -> list[Problem]:
    seen: dict[str, Rule] = {}
    out = []
    for rule in rules:
        if rule.key in seen:
            first = seen[rule.key]
            out.append(Problem(f"duplicate rule id {rule.key!r} (first defined at {first.location()})",
                               file=rule.file, line=rule.line, rule_id=rule.id,
                               hint="give one of them a `variant` if both encode the same brief rule"))
        else:
            seen[rule.key] = rule
    return out


def _derivation_problems(rules: list[Rule], derived: dict[str, FactSpec]) -> list[Problem]:
    out = []
    by_fact: dict[str, list[Rule]] = {}
    for rule in rules:
        if rule.then.derive:
            by_fact.setdefault(rule.then.derive, []).append(rule)
    for name, spec in derived.items():
        makers = by_fact.get(name, [])
        if len(makers) != 1:
            what = "no rule derives it" if not makers else f"{len(makers)} rules derive it: " + ", ".join(
                r.key for r in makers)
            out.append(Problem(f"derived fact {name!r}: {what}; expected exactly one", file=spec.derived_by or ""))
    return out


class _Checker:
    """Builds rule objects from validated YAML while type-checking them; collects problems."""

    def __init__(self, vocabulary: Vocabulary, catalogue: Catalogue) -> None:
        self.vocab = vocabulary
        self.cat = catalogue
        self.problems: list[Problem] = []
        self.file = ""
        self.source = SourceMap()
        self.rule_id = ""

    def take(self) -> list[Problem]:
        out, self.problems = self.problems, []
        return out

    def problem(self, path: tuple[Any, ...], message: str, hint: str = "") -> None:
        line, col = self.source.where(path)
        self.problems.append(Problem(message, path=dotted(path), file=self.file, line=line, column=col,
                                     rule_id=self.rule_id, hint=hint))

    # --- rules ---------------------------------------------------------------------------------------------------
    def rule(self, raw: dict[str, Any], path: tuple[Any, ...], file: str, source: SourceMap, area: str) -> Rule | None:
        self.file, self.source, self.rule_id = file, source, raw["id"]
        before = len(self.problems)
        therapies = tuple(raw.get("therapies", ()))
        for i, therapy in enumerate(therapies):
            if therapy not in self.cat.therapy_ids:
                self.problem((*path, "therapies", i), f"unknown therapy {therapy!r}",
                             hint_for(therapy, self.cat.therapy_ids))
        for i, key in enumerate(raw["sources"]):
            if key not in self.cat.references:
                self.problem((*path, "sources", i), f"unknown source key {key!r} (not in kb/references.yaml)",
                             hint_for(key, self.cat.references))
        when = self.condition(raw["when"], (*path, "when"), None) if "when" in raw else None
        requires = tuple(self.requirement(r, (*path, "requires", i)) for i, r in enumerate(raw.get("requires", ())))
        then = self.conclusion(raw["then"], (*path, "then"), when, therapies)
        if then.status and not therapies:
            self.problem((*path, "then", "status"), "a rule that concludes a status must name its therapies")
        if then.derive and (therapies or then.status):
            self.problem((*path, "then", "derive"), "a rule that derives a fact concludes nothing else")
        if then.derive and when is None:
            self.problem((*path, "then", "derive"), "a rule that derives a fact needs a `when` condition")
        if requires and when is not None:
            self.problem((*path, "requires"), "a data-requirement rule has `requires` instead of `when`, not both")
        if when is None and not requires and not then.derive:
            self.problem(path, "a rule needs a `when` condition (or `requires` for a data-requirement rule)")
        if when is not None and when.statuses() and then.status:
            for therapy in therapies:
                if therapy in when.statuses():
                    self.problem((*path, "when"), f"rule reads the status of {therapy!r} and concludes on it")
        if len(self.problems) > before:
            return None
        line, _ = source.where(path)
        return Rule(
            id=raw["id"], title=raw["title"], version=raw["version"], strength=raw["strength"],
            verification=raw["verification"], sources=tuple(raw["sources"]), then=then, therapies=therapies,
            when=when, requires=requires, variant=raw.get("variant", ""), summary=raw.get("summary", ""),
            unverified=raw.get("unverified", ""), note=raw.get("note", ""), file=file, line=line, area=area, raw=raw,
        )

    def requirement(self, raw: Any, path: tuple[Any, ...]) -> Requirement:
        if isinstance(raw, str):
            self.fact_spec(raw, path)
            return Requirement(raw)
        self.fact_spec(raw["fact"], (*path, "fact"))
        when = self.condition(raw["when"], (*path, "when"), None) if "when" in raw else None
        return Requirement(raw["fact"], when)

    def conclusion(self, raw: dict[str, Any], path: tuple[Any, ...], when: Condition | None,
                   therapies: tuple[str, ...]) -> Conclusion:
        advisories = []
        for i, item in enumerate(raw.get("advisories", ())):
            adv = Advisory(item) if isinstance(item, str) else Advisory(item["id"], item.get("text"))
            if adv.id not in self.cat.advisories:
                self.problem((*path, "advisories", i), f"unknown advisory {adv.id!r}",
                             hint_for(adv.id, self.cat.advisories))
            advisories.append(adv)
        date = None
        if "earliest_date" in raw:
            date = self.date_spec(raw["earliest_date"], (*path, "earliest_date"), when)
            if raw.get("status") != "deferred":
                self.problem((*path, "earliest_date"), "earliest_date goes with status: deferred")
        if "dose_mg" in raw and not therapies:
            self.problem((*path, "dose_mg"), "a dose needs the therapies it applies to")
        derive = raw.get("derive")
        if derive is not None:
            spec = self.vocab.facts.get(derive)
            if spec is None or not spec.derived_by:
                self.problem((*path, "derive"), f"{derive!r} is not declared in derived_facts",
                             hint_for(derive, [n for n, s in self.vocab.facts.items() if s.derived_by]))
        return Conclusion(raw.get("status"), date, raw.get("dose_mg"), tuple(advisories), derive, raw.get("info"))

    def date_spec(self, raw: dict[str, Any], path: tuple[Any, ...], when: Condition | None) -> DateSpec:
        has_fact, has_of = "fact" in raw, "of" in raw
        if has_fact == has_of:
            self.problem(path, "earliest_date needs either `fact` (a date fact) or `of` + `field` (list entries)")
            return DateSpec(raw.get("plus_days", 0))
        if has_fact:
            spec = self.fact_spec(raw["fact"], (*path, "fact"))
            if spec is not None and spec.type != "date":
                self.problem((*path, "fact"), f"{raw['fact']!r} is a {spec.type}, expected a date fact")
            return DateSpec(raw["plus_days"], fact=raw["fact"])
        list_spec = self.fact_spec(raw["of"], (*path, "of"))
        field_name = raw.get("field")
        if list_spec is not None:
            if list_spec.type != "list":
                self.problem((*path, "of"), f"{raw['of']!r} is not a list fact")
            elif field_name not in list_spec.fields or list_spec.fields[field_name].type != "date":
                self.problem((*path, "field"), f"{field_name!r} is not a date field of {raw['of']}",
                             hint_for(str(field_name), list_spec.fields))
            exists = [n for n in (when.nodes() if when else ()) if isinstance(n, Exists) and n.list_name == raw["of"]]
            if not exists:
                self.problem((*path, "of"), f"the condition has no `exists: {raw['of']}` to take entries from")
        none_if = None
        if "none_if" in raw and list_spec is not None and list_spec.type == "list":
            none_if = self.condition(raw["none_if"], (*path, "none_if"), list_spec)
        return DateSpec(raw["plus_days"], of=raw["of"], field=field_name, none_if=none_if)

    # --- conditions ----------------------------------------------------------------------------------------------
    def fact_spec(self, name: str, path: tuple[Any, ...]) -> FactSpec | None:
        spec = self.vocab.facts.get(name)
        if spec is None:
            self.problem(path, f"unknown fact {name!r}", hint_for(name, self.vocab.facts))
        return spec

    def condition(self, raw: dict[str, Any], path: tuple[Any, ...], item: FactSpec | None) -> Condition:
        cid = dotted(path[path.index("when"):] if "when" in path else path[-1:])
        line, _ = self.source.where(path)
        if "all" in raw or "any" in raw:
            key = "all" if "all" in raw else "any"
            children = [self.condition(c, (*path, key, i), item) for i, c in enumerate(raw[key])]
            return (AllOf if key == "all" else AnyOf)(children, cid=cid, line=line)
        if "not" in raw:
            return Not(self.condition(raw["not"], (*path, "not"), item), cid=cid, line=line)
        if "exists" in raw:
            spec = self.fact_spec(raw["exists"], (*path, "exists"))
            if spec is not None and spec.type != "list":
                self.problem((*path, "exists"), f"{raw['exists']!r} is a {spec.type}, expected a list fact")
                spec = None
            where = self.condition(raw["where"], (*path, "where"), spec)
            return Exists(raw["exists"], where, cid=cid, line=line)
        return self.comparison(raw, path, item, cid, line)

    def comparison(self, raw: dict[str, Any], path: tuple[Any, ...], item: FactSpec | None, cid: str,
                   line: int) -> Condition:
        subject = next(k for k in ("fact", "field", "days_since", "days_since_field", "status_of") if k in raw)
        name, op = raw[subject], raw["op"]
        value = raw.get("value")
        unit = raw.get("unit")
        node = Compare(subject, name, op, value, unit, value, cid=cid, line=line)
        if op not in ALL_OPS:
            self.problem((*path, "op"), f"unknown operator {op!r}", hint_for(str(op), ALL_OPS))
            return node
        if subject == "status_of":
            self._check_status_value(name, op, value, path)
            return node
        kind, values = self._subject_type(subject, name, path, item)
        if kind is None:
            return node
        if op in PRESENCE_OPS:
            if "value" in raw:
                self.problem((*path, "value"), f"operator {op!r} takes no value")
            return node
        if "value" not in raw:
            self.problem(path, f"operator {op!r} needs a value")
            return node
        if op in ORDER_OPS and kind not in ("number", "integer", "days"):
            self.problem((*path, "op"), f"{op!r} compares numbers, but {name!r} is a {kind}")
        elif op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                self.problem((*path, "value"), f"{op!r} needs a non-empty list of values")
            else:
                for i, v in enumerate(value):
                    self._check_scalar(kind, values, v, (*path, "value", i), name)
                node.value = tuple(value)
        elif op == "contains":
            if kind not in ("string_list", "list"):
                self.problem((*path, "op"), f"'contains' needs a list fact, but {name!r} is a {kind}")
        elif op in COMPARATORS:
            self._check_scalar(kind, values, value, (*path, "value"), name)
        if unit is not None:
            node.value = self._convert_unit(subject, name, value, unit, path, kind)
        return node

    def _subject_type(self, subject: str, name: str, path: tuple[Any, ...],
                      item: FactSpec | None) -> tuple[str | None, tuple[str, ...]]:
        if subject in ("field", "days_since_field"):
            if item is None:
                self.problem((*path, subject), f"`{subject}` is only allowed inside `exists ... where`")
                return None, ()
            field_spec: FieldSpec | None = item.fields.get(name)
            if field_spec is None:
                self.problem((*path, subject), f"unknown field {name!r} of {item.name}", hint_for(name, item.fields))
                return None, ()
            if subject == "days_since_field":
                if field_spec.type != "date":
                    self.problem((*path, subject), f"{name!r} is a {field_spec.type}, expected a date field")
                    return None, ()
                return "days", ()
            return field_spec.type, field_spec.values
        spec = self.fact_spec(name, (*path, subject))
        if spec is None:
            return None, ()
        if subject == "days_since":
            if spec.type != "date":
                self.problem((*path, subject), f"{name!r} is a {spec.type}, expected a date fact")
                return None, ()
            return "days", ()
        if spec.type == "list":
            self.problem((*path, subject), f"{name!r} is a list; use `exists: {name}` with `where`")
            return None, ()
        return spec.type, spec.values

    def _check_scalar(self, kind: str, values: tuple[str, ...], value: Any, path: tuple[Any, ...], name: str) -> None:
        if value == THERAPY_PLACEHOLDER:
            if kind not in ("enum", "string"):
                self.problem(path, f"{THERAPY_PLACEHOLDER} compares with a therapy id; {name!r} is a {kind}")
            return
        ok = {
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, (int, float)) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "days": isinstance(value, int) and not isinstance(value, bool),
            "enum": isinstance(value, str) and value in values,
            "string": isinstance(value, str),
            "date": False,
        }.get(kind, True)
        if ok:
            return
        if kind == "enum":
            self.problem(path, f"{value!r} is not a value of {name!r}; expected one of {', '.join(values)}",
                         hint_for(str(value), values))
        elif kind == "date":
            self.problem(path, f"{name!r} is a date; compare it with `days_since`")
        else:
            self.problem(path, f"{value!r} does not fit {name!r}, which is a {kind}")

    def _check_status_value(self, therapy: str, op: str, value: Any, path: tuple[Any, ...]) -> None:
        if therapy not in self.cat.therapy_ids:
            self.problem((*path, "status_of"), f"unknown therapy {therapy!r}", hint_for(therapy, self.cat.therapy_ids))
        items = value if isinstance(value, list) else [value]
        if op in ("in", "not_in") and not isinstance(value, list):
            self.problem((*path, "value"), f"{op!r} needs a list of statuses")
        for i, v in enumerate(items):
            if v not in STATUSES:
                self.problem((*path, "value", i) if isinstance(value, list) else (*path, "value"),
                             f"{v!r} is not a status", hint_for(str(v), STATUSES))

    def _convert_unit(self, subject: str, name: str, value: Any, unit: str, path: tuple[Any, ...], kind: str) -> Any:
        spec = self.vocab.facts.get(name) if subject == "fact" else None
        if spec is None or kind not in ("number", "integer") or not spec.unit:
            self.problem((*path, "unit"), f"{name!r} has no unit; remove `unit`")
            return value
        if unit == spec.unit:
            return value
        for quantity in quantities().values():
            if spec.unit in quantity.units and unit in quantity.units:
                try:
                    if isinstance(value, list):
                        return tuple(convert(v, unit, quantity.name, spec.unit) for v in value)
                    return convert(value, unit, quantity.name, spec.unit)
                except (KeyError, TypeError):
                    break
        allowed = sorted({u for q in quantities().values() if spec.unit in q.units for u in q.units})
        self.problem((*path, "unit"), f"unit {unit!r} does not fit {name!r} (measured in {spec.unit})",
                     f"expected one of {', '.join(allowed)}" if allowed else "")
        return value
