"""Named thresholds: every clinical number of a rule base defined once (``thresholds.yaml`` beside the rule files).

A threshold has a value, a unit, a verification tag, sources and the clinical rule it comes from; rules refer to it
by name (``{fact: plt_current, op: "<", threshold: plt_floor_beta}``, ``plus_days: {threshold: sr89_retreatment}``)
and the loader puts the number in its place, so the engines, the compiled path and lint see plain numbers while the
explanation and the graph can still say which named number a comparison used.

Relations declare what the clinical knowledge says about several numbers at once (``order: [a, b]``: a caution zone
starts at a floor and ends above it; dose bands ascend and so tile a range). This module reads and checks the file
itself (schema, reference keys, units, names used by relations, cycles among relations); whether the *values* keep
the declared order is a lint check (:mod:`radiopal.lint.named`), so an author can still experiment with
``--allow-lint-errors``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from .. import schemacheck
from ..errors import InputError, Problem
from ..patient.units import convert, quantities
from ..suggest import hint_for
from ..yamlio import SourceMap, dotted, load_document

#: The reserved file name: a rule folder's thresholds, never read as a rule file.
THRESHOLDS_FILE = "thresholds.yaml"
#: The unit of a count or a score (kb/facts.yaml writes ``unit: "1"``).
DIMENSIONLESS = "1"


@dataclass(frozen=True)
class Threshold:
    """One named clinical number, where it is defined and what it rests on."""

    name: str
    value: float
    unit: str
    verification: str
    sources: tuple[str, ...]
    brief: str
    unverified: str = ""
    note: str = ""
    file: str = ""
    line: int = 0

    @property
    def citation(self) -> str:
        """``ELIG-GEN-10 [V-sec]: metastron_uspi, snm_bone_pain`` — what to show beside the value."""
        return f"{self.brief} [{self.verification}]: {', '.join(self.sources)}"

    def shown(self) -> str:
        """The value as written, with its unit (``60 10^9/L``, ``28 d``, ``8``)."""
        value = int(self.value) if float(self.value).is_integer() else self.value
        return f"{value}" if self.unit == DIMENSIONLESS else f"{value} {self.unit}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``radiopal thresholds --format json``)."""
        return {"name": self.name, "value": self.value, "unit": self.unit, "verification": self.verification,
                "unverified": self.unverified, "sources": list(self.sources), "brief": self.brief, "note": self.note,
                "file": self.file, "line": self.line}


@dataclass(frozen=True)
class Relation:
    """Thresholds that must ascend in the given order (strictly unless ``strict`` is false), or (``tiles``) the dose
    bands of a therapy on a fact that must leave no value without a dose or a block."""

    id: str
    order: tuple[str, ...]
    strict: bool
    note: str
    file: str = ""
    line: int = 0
    tiles: tuple[str, str] | None = None  # (therapy, fact): its dose bands must leave no hole


@dataclass(frozen=True)
class ThresholdTable:
    """The thresholds of one rule folder (empty when the folder has no thresholds file)."""

    thresholds: Mapping[str, Threshold] = field(default_factory=dict)
    relations: tuple[Relation, ...] = ()
    file: str = ""
    version: str = ""
    raw: Any = field(default=None, compare=False, repr=False)

    def __contains__(self, name: object) -> bool:
        return name in self.thresholds

    def get(self, name: str) -> Threshold | None:
        return self.thresholds.get(name)


def thresholds_path(folder: str | Path) -> Path:
    """Where the thresholds of a rule folder (or of the folder holding one rule file) live."""
    path = Path(folder)
    return (path if path.is_dir() else path.parent) / THRESHOLDS_FILE


def load_thresholds(folder: str | Path, references: Iterable[str]) -> tuple[ThresholdTable, list[Problem]]:
    """Read and check the thresholds file of ``folder``; an absent file is an empty table, not a problem."""
    path = thresholds_path(folder)
    if not path.is_file():
        return ThresholdTable(), []
    try:
        located = load_document(path, kind="thresholds file")
    except InputError as exc:
        return ThresholdTable(file=str(path)), list(exc.problems)
    data, source = located.data, located.source
    problems = schemacheck.problems(data, "thresholds", source=source)
    if problems or not isinstance(data, dict):
        return ThresholdTable(file=str(path)), problems
    known_refs = set(references)
    checker = _Checker(str(path), source)
    table: dict[str, Threshold] = {}
    for name, raw in data["thresholds"].items():
        at = ("thresholds", name)
        for i, key in enumerate(raw["sources"]):
            if key not in known_refs:
                checker.problem((*at, "sources", i), f"unknown source key {key!r} (not in kb/references.yaml)",
                                hint_for(key, known_refs))
        if not unit_known(raw["unit"]):
            checker.problem((*at, "unit"), f"unknown unit {raw['unit']!r}",
                            f"expected {DIMENSIONLESS} (a count or score) or a unit of kb/units.yaml, e.g. "
                            + ", ".join(sorted({u for q in quantities().values() for u in q.units})[:8]))
        if raw["verification"] == "U" and not raw.get("unverified"):
            checker.problem((*at, "unverified"), "a threshold tagged U needs `unverified:` saying what is unverified")
        line, _ = source.where(at)
        table[name] = Threshold(name, raw["value"], raw["unit"], raw["verification"], tuple(raw["sources"]),
                                raw["brief"], raw.get("unverified", ""), raw.get("note", ""), str(path), line)
    relations = []
    for i, raw in enumerate(data.get("relations", ())):
        at = ("relations", i)
        for j, name in enumerate(raw.get("order", ())):
            if name not in table:
                checker.problem((*at, "order", j), f"relation {raw['id']!r} names {name!r}, which is not defined "
                                                   "under thresholds", hint_for(name, table))
        line, _ = source.where(at)
        tiles = raw.get("tiles")
        relations.append(Relation(raw["id"], tuple(raw.get("order", ())), bool(raw.get("strict", True)), raw["note"],
                                  str(path), line, (tiles["therapy"], tiles["fact"]) if tiles else None))
    problems = checker.problems + _unit_clashes(relations, table, checker) + _cycles(relations, str(path))
    return ThresholdTable(table, tuple(relations), str(path), str(data["version"]), data), problems


def unit_known(unit: str) -> bool:
    """Is ``unit`` a count/score or a unit of some quantity of kb/units.yaml?"""
    return unit == DIMENSIONLESS or any(unit in q.units for q in quantities().values())


def in_unit(threshold: Threshold, target: str) -> float | None:
    """The threshold's value in ``target`` (a unit of the same quantity), or None when the units do not fit."""
    if threshold.unit == target:
        return threshold.value
    if DIMENSIONLESS in (threshold.unit, target):
        return None
    for quantity in quantities().values():
        if threshold.unit in quantity.units and target in quantity.units:
            try:
                return convert(threshold.value, threshold.unit, quantity.name, target)
            except (KeyError, TypeError):
                return None
    return None


def in_days(threshold: Threshold) -> int | None:
    """The threshold as a whole number of days (``d`` or ``wk``), or None when it is not a duration in days."""
    # A week is 7 days exactly: no need to start pint's unit registry (a quarter of a second) for it.
    factor = {"d": 1, "wk": 7}.get(threshold.unit)
    days = threshold.value * factor if factor is not None else None
    if days is None or not float(days).is_integer():
        return None
    return int(days)


class _Checker:
    def __init__(self, file: str, source: SourceMap) -> None:
        self.file, self.source = file, source
        self.problems: list[Problem] = []

    def problem(self, path: tuple[Any, ...], message: str, hint: str = "") -> None:
        line, col = self.source.where(path)
        self.problems.append(Problem(message, path=dotted(path), file=self.file, line=line, column=col, hint=hint))


def _unit_clashes(relations: list[Relation], table: Mapping[str, Threshold], checker: _Checker) -> list[Problem]:
    """The thresholds a relation orders must be comparable: one unit, or units of one quantity."""
    before = len(checker.problems)
    for i, rel in enumerate(relations):
        named = [table[n] for n in rel.order if n in table]
        for other in named[1:]:
            if in_unit(other, named[0].unit) is None:
                checker.problem(("relations", i, "order"),
                                f"relation {rel.id!r} orders {named[0].name} ({named[0].unit}) and {other.name} "
                                f"({other.unit}): the units do not fit each other",
                                "a relation can only order numbers of one quantity")
                break
    clashes = checker.problems[before:]
    del checker.problems[before:]
    return clashes


def _cycles(relations: list[Relation], file: str) -> list[Problem]:
    """A cycle among declared orders (a below b, b below a) cannot hold for any values: report each once."""
    edges: dict[str, list[tuple[str, Relation]]] = {}
    for rel in relations:
        for low, high in pairwise(rel.order):
            edges.setdefault(low, []).append((high, rel))
    problems: list[Problem] = []
    reported: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 while on the current path, 2 when done
    nodes: list[str] = []  # the current path
    via: list[Relation] = []  # via[k] leads from nodes[k] to nodes[k + 1]

    def visit(node: str) -> None:
        state[node] = 1
        nodes.append(node)
        for nxt, rel in edges.get(node, ()):
            if state.get(nxt) == 1:
                first = nodes.index(nxt)
                names = [*nodes[first:], nxt]
                if frozenset(names) not in reported:
                    reported.add(frozenset(names))
                    rels = sorted({r.id for r in via[first:]} | {rel.id})
                    problems.append(Problem(
                        "declared relations form a cycle: " + " < ".join(names) + " (relations " + ", ".join(rels)
                        + "); no values can satisfy it", file=file, line=rel.line, path="relations",
                        hint="remove or reverse one of these relations"))
            elif state.get(nxt) is None:
                via.append(rel)
                visit(nxt)
                via.pop()
        nodes.pop()
        state[node] = 2

    for start in sorted(edges):
        if state.get(start) is None:
            visit(start)
    return problems


def usage(rules: Iterable[Any]) -> dict[str, list[Any]]:
    """The rules that use each threshold name (in a condition or a deferral's date), in rule-base order."""
    from ..conditions import Compare

    out: dict[str, list[Any]] = {}
    for rule in rules:
        names: dict[str, None] = {}
        conditions = [rule.when, *(r.when for r in rule.requires)]
        for condition in conditions:
            for node in condition.nodes() if condition is not None else ():
                if isinstance(node, Compare) and node.threshold:
                    names.setdefault(node.threshold, None)
        date = rule.then.earliest_date
        if date is not None and date.threshold:
            names.setdefault(date.threshold, None)
        for name in names:
            out.setdefault(name, []).append(rule)
    return out
