"""Parse → validate → type-check: rule files (YAML) into the rule model, with every authoring error located.

Stages, each with its own errors (all :class:`~radiopal.errors.RulebaseError` with file:line:column problems):
  1. parse     safe YAML with positions (radiopal.yamlio)
  2. validate  the rule-file JSON Schema (kb/schemas/rulefile.schema.json)
  3. type-check facts, fields, operators, values, units, therapies, advisories and source keys against the
               vocabulary and catalogue, with a did-you-mean for unknown names
Compilation to experta is a separate stage (radiopal.rulebase.compile).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

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
from ..drugs import load_drugs
from ..errors import InputError, Problem, RulebaseError
from ..patient.units import convert, quantities
from ..suggest import hint_for
from ..vocabulary import FactSpec, FieldSpec, Vocabulary, load_vocabulary
from ..yamlio import SourceMap, dotted, load_document, load_text
from .model import STATUSES, Advisory, Conclusion, DateSpec, Requirement, Rule, RuleFile
from .thresholds import DIMENSIONLESS, THRESHOLDS_FILE, Threshold, ThresholdTable, in_days, in_unit, load_thresholds

#: Rule files are hand-written and small (the largest shipped file is ~50 KB). A lower limit than the general one of
#: radiopal.yamlio keeps a pathological file from holding the loader (and lint) for minutes.
RULE_FILE_MAX_BYTES = 512 * 1024

#: The longest deferral a rule may give (``earliest_date.plus_days``): the brief's longest interval is months, and a
#: date beyond year 9999 cannot be computed at all.
MAX_PLUS_DAYS = 3650

#: The stages a problem can come from, in order (``collect_rules`` tags each problem with one).
STAGES = ("read", "schema", "thresholds", "type", "rulebase")


@dataclass
class LoadedRules:
    """Every rule of a rule-base folder, type-checked, with the vocabulary extended by its derived facts."""

    files: tuple[RuleFile, ...]
    rules: tuple[Rule, ...]
    vocabulary: Vocabulary
    catalogue: Catalogue
    folder: str
    sources: dict[str, SourceMap] = field(default_factory=dict, repr=False)
    rule_paths: dict[int, tuple[Any, ...]] = field(default_factory=dict, repr=False)
    thresholds: ThresholdTable = field(default_factory=ThresholdTable)

    def where(self, rule: Rule, *path: Any) -> tuple[int, int]:
        """Line and column of ``path`` inside ``rule`` (e.g. ``"when", "all", 1``) in its file; (0, 0) if unknown."""
        source = self.sources.get(rule.file)
        base = self.rule_paths.get(id(rule))
        if source is None or base is None:
            return (rule.line, 0)
        return source.where((*base, *path))


@dataclass(frozen=True)
class StagedProblem:
    """A problem, the loading stage that found it (one of :data:`STAGES`) and the key of its rule (if any)."""

    stage: str
    problem: Problem
    rule_key: str = ""


def rule_files(folder: str | Path) -> list[Path]:
    """The rule files of a folder (``*.yaml``, sorted, without the thresholds file), or the file itself."""
    path = Path(folder)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise RulebaseError(f"{folder}: no such rule folder", [Problem("no such rule file or folder", file=str(folder))])
    return sorted(p for p in path.iterdir()
                  if p.suffix in (".yaml", ".yml") and p.is_file() and p.name != THRESHOLDS_FILE)


def load_rules(
    folder: str | Path, *, vocabulary: Vocabulary | None = None, catalogue: Catalogue | None = None
) -> LoadedRules:
    """Load, validate and type-check every rule file of ``folder``; raise RulebaseError listing all problems."""
    loaded, staged = collect_rules(folder, vocabulary=vocabulary, catalogue=catalogue)
    if staged:
        problems = [s.problem for s in staged]
        if len(problems) == 1 and problems[0].message == "no rule files (*.yaml)":
            raise RulebaseError(f"{folder}: no rule files (*.yaml)", problems)
        raise RulebaseError(f"{folder}: rule base has {len(problems)} problem(s)", problems)
    return loaded


@dataclass
class _ParsedFile:
    path: Path
    data: dict[str, Any]
    source: SourceMap
    rules: list[tuple[int, dict[str, Any]]]  # (index in the file, raw rule) of every rule that passed the schema
    problems: int = 0  # schema problems of the file


def collect_rules(
    folder: str | Path, *, vocabulary: Vocabulary | None = None, catalogue: Catalogue | None = None
) -> tuple[LoadedRules, list[StagedProblem]]:
    """Load as much of ``folder`` as can be loaded, and every problem found on the way.

    Unlike :func:`load_rules` this does not stop at the first broken file or rule: a file that cannot be parsed is
    skipped, a rule that fails the schema or the type check is left out, and everything else is loaded, so later
    analyses (``radiopal lint``) see the rest of the rule base. Raises :class:`RulebaseError` only when ``folder``
    does not exist.
    """
    vocab = vocabulary or load_vocabulary()
    cat = catalogue or load_catalogue()
    staged: list[StagedProblem] = []
    parsed: list[_ParsedFile] = []
    lost: dict[str, str] = {}  # derived facts declared by files that could not be read → where that file failed
    files = rule_files(folder)
    if not files:
        staged.append(StagedProblem("read", Problem("no rule files (*.yaml)", file=str(folder))))
    for path in files:
        size = _size(path)
        if size is not None and size > RULE_FILE_MAX_BYTES:  # never read a huge file into memory
            message = f"rule file is {size:,} bytes, more than the limit of {RULE_FILE_MAX_BYTES:,}"
            staged.append(StagedProblem("read", Problem(message, file=str(path))))
            continue
        raw, digest = _read(path)
        cached = _cached_file(path, digest)
        if cached is not None:
            parsed.append(cached)
            continue
        try:
            if raw is None:  # let the reader say why it cannot be read
                located = load_document(path, kind="rule file", max_bytes=RULE_FILE_MAX_BYTES)
            else:
                located = load_text(raw, file=str(path), kind="rule file", max_bytes=RULE_FILE_MAX_BYTES)
        except InputError as exc:
            staged.extend(StagedProblem("read", p) for p in exc.problems)
            cause = _at(exc.problems[0]) if exc.problems else str(path)
            for name in declared_leniently(raw or b""):
                lost.setdefault(name, cause)
            continue
        item = _validated(path, located.data, located.source, staged)
        if item is not None:
            parsed.append(item)
            if digest is not None and len(item.rules) == len(located.data["rules"]) and not item.problems:
                _remember(digest, located.data, located.source)
    # Derived facts of every file are known to every file.
    derived: dict[str, FactSpec] = {}
    declared_at: dict[str, Problem] = {}
    for item in parsed:
        declared = item.data.get("derived_facts")
        for name, spec in (declared.items() if isinstance(declared, dict) else ()):
            line, col = item.source.where(("derived_facts", name))
            where = Problem("", path=f"derived_facts.{name}", file=str(item.path), line=line, column=col)
            if name in vocab or name in derived:
                staged.append(StagedProblem("rulebase", Problem(
                    f"derived fact {name!r} is already defined", file=str(item.path), line=line, column=col,
                    path=f"derived_facts.{name}",
                    hint="it is in kb/facts.yaml" if name in vocab else f"declared first at {_at(declared_at[name])}")))
                continue
            description = spec.get("description", "") if isinstance(spec, dict) else ""
            derived[name] = FactSpec(name, "boolean", str(description), derived_by=str(item.path))
            declared_at[name] = where
    full_vocab = vocab.with_derived(derived)
    table, threshold_problems = load_thresholds(folder, cat.references)
    staged.extend(StagedProblem("thresholds", p) for p in threshold_problems)
    checker = _Checker(full_vocab, cat, table)
    rule_files_out = []
    all_rules: list[Rule] = []
    rule_paths: dict[int, tuple[Any, ...]] = {}
    area_default = "unknown"
    for item in parsed:
        area = item.data.get("area")
        area = area if isinstance(area, str) else area_default
        rules = []
        for i, raw_rule in item.rules:
            rule = checker.rule(raw_rule, ("rules", i), str(item.path), item.source, area)
            if rule is not None:
                rules.append(rule)
                rule_paths[id(rule)] = ("rules", i)
        staged.extend(StagedProblem("type", p, _key_at(p.path, item.data)) for p in checker.take())
        declared = item.data.get("derived_facts")
        rule_files_out.append(RuleFile(
            str(item.path), area, str(item.data.get("version", "")), str(item.data.get("title", "")), tuple(rules),
            {k: str(v.get("description", "")) if isinstance(v, dict) else ""
             for k, v in (declared.items() if isinstance(declared, dict) else ())}))
        all_rules.extend(rules)
    staged.extend(StagedProblem("rulebase", p, p.rule_id) for p in _duplicates(parsed))
    staged.extend(StagedProblem("rulebase", p) for p in _derivation_problems(parsed, derived, declared_at))
    staged = _mark_consequences(staged, lost, _dropped_derivers(parsed, staged))
    loaded = LoadedRules(tuple(rule_files_out), tuple(all_rules), full_vocab, cat, str(folder),
                         {str(item.path): item.source for item in parsed}, rule_paths, table)
    return loaded, staged


_UNKNOWN_FACT = re.compile(r"^unknown fact '([^']+)'")
_NOT_DERIVED = re.compile(r"^derived fact '([^']+)': no rule derives it")


def declared_leniently(raw: bytes) -> list[str]:
    """The names a file that does not parse declares under ``derived_facts:`` (block style), read line by line.

    A file with a YAML error declares nothing the loader can see, so every rule elsewhere that reads one of its
    derived facts would report "unknown fact" — errors that hide their cause. This tolerant pass only serves to
    recognise those errors as consequences; it never makes a fact known.
    """
    names: list[str] = []
    inside = False
    for line in raw.decode("utf-8", "replace").splitlines():
        if re.match(r"^derived_facts\s*:\s*(#.*)?$", line):
            inside = True
            continue
        if inside and line[:1] not in ("", " ", "#"):
            inside = False
        match = re.match(r"^  ([A-Za-z_][A-Za-z0-9_]*)\s*:", line) if inside else None
        if match:
            names.append(match.group(1))
    return names


def _dropped_derivers(parsed: list[_ParsedFile], staged: list[StagedProblem]) -> dict[str, str]:
    """Derived fact → where the rule that derives it failed the schema (so it was left out)."""
    first: dict[tuple[str, str], str] = {}
    for found in staged:
        p = found.problem
        if found.stage == "schema" and p.path.startswith("rules["):
            first.setdefault((p.file, p.path[:p.path.index("]") + 1]), _at(p))
    out: dict[str, str] = {}
    for item in parsed:
        kept = {i for i, _ in item.rules}
        for i, raw in enumerate(item.data.get("rules") or ()):
            then = raw.get("then") if isinstance(raw, dict) else None
            name = then.get("derive") if isinstance(then, dict) else None
            if i not in kept and isinstance(name, str):
                out.setdefault(name, first.get((str(item.path), f"rules[{i}]"), str(item.path)))
    return out


def _mark_consequences(staged: list[StagedProblem], lost: dict[str, str],
                       dropped: dict[str, str]) -> list[StagedProblem]:
    """Mark the problems that only follow from another one — a rule reading a derived fact of a file that did not
    parse, a derived fact whose only rule failed the schema — and list them after the problems that cause them."""
    causes, consequences = [], []
    for item in staged:
        p = item.problem
        unknown = _UNKNOWN_FACT.match(p.message)
        underived = _NOT_DERIVED.match(p.message)
        cause = (lost.get(unknown.group(1)) if unknown else None) or (
            dropped.get(underived.group(1)) if underived else None)
        if cause:
            consequences.append(StagedProblem(item.stage, dataclasses.replace(p, consequence_of=cause),
                                              item.rule_key))
        else:
            causes.append(item)
    return causes + consequences


def _at(problem: Problem) -> str:
    return f"{problem.file}:{problem.line}" if problem.line else problem.file


def _validated(path: Path, data: Any, source: SourceMap, staged: list[StagedProblem]) -> _ParsedFile | None:
    """Schema-check one parsed file; keep the rules that pass on their own when the file as a whole does not."""
    found = schemacheck.problems(data, "rulefile", source=source)
    staged.extend(StagedProblem("schema", p, _key_at(p.path, data)) for p in _with_rule_ids(found, data))
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        return None
    raw_rules = data["rules"]
    if not found:
        return _ParsedFile(path, data, source, list(enumerate(raw_rules)))
    rule_check = _rule_validator()
    kept = [(i, raw) for i, raw in enumerate(raw_rules) if rule_check.is_valid(raw)]
    return _ParsedFile(path, data, source, kept, problems=len(found))


#: Parsed, schema-valid rule files by the sha256 of their bytes. Parsing YAML is most of the cost of loading a rule
#: base; the service, ``radiopal diff`` and the tests load the same files again and again.
_PARSED: OrderedDict[str, tuple[Any, dict[tuple[Any, ...], tuple[int, int]]]] = OrderedDict()
_PARSED_MAX = 64
_PARSED_LOCK = threading.Lock()


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _read(path: Path) -> tuple[bytes | None, str | None]:
    """The bytes of a rule file and their sha256 (None, None when it cannot be read or is too large)."""
    try:
        if path.stat().st_size > RULE_FILE_MAX_BYTES:
            return None, None
        raw = path.read_bytes()
    except OSError:
        return None, None
    return raw, hashlib.sha256(raw).hexdigest()


def _cached_file(path: Path, digest: str | None) -> _ParsedFile | None:
    """A fresh copy of a schema-valid file parsed before with the same bytes, or None."""
    if digest is None:
        return None
    with _PARSED_LOCK:
        hit = _PARSED.get(digest)
        if hit is None:
            return None
        _PARSED.move_to_end(digest)
    data = copy.deepcopy(hit[0])
    return _ParsedFile(path, data, SourceMap(str(path), hit[1]), list(enumerate(data["rules"])))


def _remember(digest: str, data: Any, source: SourceMap) -> None:
    with _PARSED_LOCK:
        _PARSED[digest] = (copy.deepcopy(data), source.positions)
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)


@cache
def _rule_validator() -> Draft202012Validator:
    """A validator for one rule (``#/$defs/rule`` of the rule-file schema)."""
    schema = schemacheck.validator("rulefile").schema
    return Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/rule"})


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


def _key_at(path: str, data: Any) -> str:
    """The key (``id`` or ``id/variant``) of the rule a ``rules[i]...`` problem path points into, or ``""``."""
    if not path.startswith("rules[") or not isinstance(data, dict):
        return ""
    try:
        raw = data["rules"][int(path[len("rules["):path.index("]")])]
        return _raw_key(raw) if isinstance(raw, dict) and isinstance(raw.get("id"), str) else ""
    except (ValueError, IndexError, KeyError, TypeError):
        return ""


def _raw_key(raw: dict[str, Any]) -> str:
    variant = raw.get("variant")
    return f"{raw['id']}/{variant}" if variant else str(raw["id"])


def _duplicates(parsed: list[_ParsedFile]) -> list[Problem]:
    """Rules (that passed the schema, whether or not they type-check) sharing an id and variant."""
    seen: dict[str, str] = {}
    out = []
    for item in parsed:
        for i, raw in item.rules:
            key = _raw_key(raw)
            line, col = item.source.where(("rules", i, "id"))
            if key in seen:
                out.append(Problem(f"duplicate rule id {key!r} (first defined at {seen[key]})", path=f"rules[{i}].id",
                                   file=str(item.path), line=line, column=col, rule_id=key,
                                   hint="give one of them a `variant` if both encode the same brief rule"))
            else:
                seen[key] = f"{item.path}:{line}"
    return out


def _derivation_problems(parsed: list[_ParsedFile], derived: dict[str, FactSpec],
                         declared_at: dict[str, Problem]) -> list[Problem]:
    """Each declared derived fact needs exactly one rule deriving it."""
    by_fact: dict[str, list[str]] = {}
    for item in parsed:
        for _, raw in item.rules:
            name = raw["then"].get("derive") if isinstance(raw.get("then"), dict) else None
            if isinstance(name, str):
                by_fact.setdefault(name, []).append(_raw_key(raw))
    out = []
    for name in derived:
        makers = by_fact.get(name, [])
        if len(makers) != 1:
            what = "no rule derives it" if not makers else f"{len(makers)} rules derive it: " + ", ".join(makers)
            where = declared_at[name]
            out.append(Problem(f"derived fact {name!r}: {what}; expected exactly one", path=where.path,
                               file=where.file, line=where.line, column=where.column,
                               hint="add a rule with `then: {derive: " + name + "}`" if not makers else
                               "derive it in one rule (use `any` to combine the conditions)"))
    return out


class _Checker:
    """Builds rule objects from validated YAML while type-checking them; collects problems."""

    def __init__(self, vocabulary: Vocabulary, catalogue: Catalogue, thresholds: ThresholdTable | None = None) -> None:
        self.vocab = vocabulary
        self.cat = catalogue
        self.thresholds = thresholds or ThresholdTable()
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
        raw = dict(raw)
        named = ""
        if isinstance(raw["plus_days"], dict):
            named = raw["plus_days"]["threshold"]
            raw["plus_days"] = self._named_days(named, (*path, "plus_days", "threshold"))
        spec = self._date_spec(raw, path, when)
        return DateSpec(spec.plus_days, spec.fact, spec.of, spec.field, spec.none_if, named) if named else spec

    def _named_days(self, name: str, path: tuple[Any, ...]) -> int:
        threshold = self._threshold(name, path)
        if threshold is None:
            return 0
        days = in_days(threshold)
        if days is None or days < 0:
            self.problem(path, f"threshold {name!r} is {threshold.shown()}, which does not fit a number of days "
                               f"(defined at {threshold.file}:{threshold.line})", "give it in d or wk, whole days")
            return 0
        return days

    def _threshold(self, name: str, path: tuple[Any, ...]) -> Threshold | None:
        threshold = self.thresholds.get(name)
        if threshold is None:
            where = self.thresholds.file or f"{THRESHOLDS_FILE} (there is none beside the rule files)"
            self.problem(path, f"unknown threshold {name!r} (not defined in {where})",
                         hint_for(name, self.thresholds.thresholds))
        return threshold

    def _date_spec(self, raw: dict[str, Any], path: tuple[Any, ...], when: Condition | None) -> DateSpec:
        if raw["plus_days"] > MAX_PLUS_DAYS:
            self.problem((*path, "plus_days"), f"plus_days {raw['plus_days']} is out of range; expected at most "
                                               f"{MAX_PLUS_DAYS} days ({MAX_PLUS_DAYS // 365} years)")
            return DateSpec(0)
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
        if "threshold" in raw:
            return self._named_comparison(raw, subject, path, item, cid, line)
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
        if kind == "drug_list" and op != "contains":
            self.problem((*path, "op"), f"{name!r} holds the agents and classes an entry names: ask with "
                                        f"`op: contains, value: AGENT_OR_CLASS`, not {op!r}")
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
            if kind not in ("string_list", "list", "drug_list"):
                self.problem((*path, "op"), f"'contains' needs a list fact, but {name!r} is a {kind}")
            elif kind == "drug_list":
                terms = load_drugs().terms
                if value not in terms:
                    self.problem((*path, "value"), f"{value!r} is not a drug or drug class of the drug vocabulary "
                                                   "(kb/drugs.yaml)", hint_for(str(value), terms))
        elif op in COMPARATORS:
            self._check_scalar(kind, values, value, (*path, "value"), name)
        if unit is not None:
            node.value = self._convert_unit(subject, name, value, unit, path, kind)
        return node

    def _named_comparison(self, raw: dict[str, Any], subject: str, path: tuple[Any, ...], item: FactSpec | None,
                          cid: str, line: int) -> Condition:
        """``{fact: x, op: "<", threshold: NAME}``: the named number, converted to the subject's unit."""
        name, op, named = raw[subject], raw["op"], raw["threshold"]
        node = Compare(subject, name, op, None, None, None, cid=cid, line=line, threshold=named)
        for key in ("value", "unit"):
            if key in raw:
                self.problem((*path, key), f"`{key}` and `threshold` together: the threshold gives the number "
                                           "and its unit", f"remove `{key}`")
        if op not in COMPARATORS:
            self.problem((*path, "op"), f"a threshold is one number; {op!r} does not compare with a number",
                         "use <, <=, >, >=, == or !=")
            return node
        kind, _ = self._subject_type(subject, name, path, item) if subject != "status_of" else ("status", ())
        if kind is None:
            return node
        threshold = self._threshold(named, (*path, "threshold"))
        if threshold is None:
            return node
        at = f"defined at {threshold.file}:{threshold.line}"
        if kind == "days":
            days = in_days(threshold)
            if days is None:
                self.problem((*path, "threshold"), f"threshold {named!r} is {threshold.shown()}, which does not fit "
                                                   f"days since {name} ({at})", "a duration in d or wk, whole days")
            else:
                node.value = days
            return node
        if kind not in ("number", "integer"):
            self.problem((*path, "threshold"), f"threshold {named!r} is a number, but {name!r} is a {kind}")
            return node
        target = self.vocab.facts[name].unit if subject == "fact" else DIMENSIONLESS
        value = in_unit(threshold, target or DIMENSIONLESS)
        if value is None:
            self.problem((*path, "threshold"), f"threshold {named!r} is in {threshold.unit}, which does not fit "
                                               f"{name!r} (measured in {target or DIMENSIONLESS}; {at})",
                         "define a threshold in a unit of the same quantity")
            return node
        node.value, node.written_value = value, threshold.value
        node.unit = None if threshold.unit == DIMENSIONLESS else threshold.unit
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
        if ok and isinstance(value, float) and not math.isfinite(value):
            self.problem(path, f"{value!r} is not a finite number; a threshold must be one (a NaN compares false "
                               "with everything, so the rule would silently never fire)")
            return
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
