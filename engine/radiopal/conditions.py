"""The rule condition language: a small declarative tree, evaluated in three values (met / not met / unknown).

Authors write conditions in YAML (see docs/rule-language.md)::

    all:
      - {fact: plt_current, op: ">=", value: 100, unit: "10^9/L"}
      - any: [{fact: site, op: "!=", value: prostate}, {fact: castration_resistant, op: "!=", value: true}]
      - not: {fact: visceral_metastases, op: "==", value: true}
      - {days_since: last_ra223_date, op: "<", value: 28}
      - exists: chemotherapy
        where: {all: [{field: myelosuppressive, op: "==", value: true}, {days_since_field: last_dose_date, op: "<", value: 28}]}
      - {status_of: ebrt_single_8gy, op: in, value: [recommended, eligible]}

Nothing here is ``eval``: each node is a small class with two methods, ``truth`` (fast, used inside the engine's
TEST) and ``explain`` (the same semantics, returning the values seen, for the reasoning graph and why-not).
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .tri import Tri, all_of, any_of

THERAPY_PLACEHOLDER = "$therapy"

COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
SET_OPS = ("in", "not_in")
PRESENCE_OPS = ("known", "unknown")
ALL_OPS = (*COMPARATORS, *SET_OPS, "contains", *PRESENCE_OPS)
ORDER_OPS = ("<", "<=", ">", ">=")


class FactLike(Protocol):
    """What the evaluator needs of a fact: is it known, its value, and which paths are missing (read only)."""

    @property
    def known(self) -> bool: ...

    @property
    def value(self) -> Any: ...

    @property
    def missing(self) -> tuple[str, ...]: ...


@dataclass
class Env:
    """What a condition is evaluated against."""

    facts: Mapping[str, FactLike]
    evaluation_date: dt.date
    therapy: str | None = None
    item: Mapping[str, Any] | None = None
    item_path: str = ""
    statuses: Mapping[str, str] = field(default_factory=dict)

    def with_item(self, item: Mapping[str, Any], path: str) -> Env:
        return Env(self.facts, self.evaluation_date, self.therapy, item, path, self.statuses)


@dataclass
class Outcome:
    """The result of one node, with what it saw: for the reasoning graph, why-not and coverage."""

    node: Condition
    value: Tri
    observed: Any = None
    children: list[Outcome] = field(default_factory=list)
    witnesses: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()

    def walk(self) -> Iterator[Outcome]:
        """This outcome and all below it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def facts_used(self) -> list[str]:
        """Names of the facts this outcome read, in order, without repeats."""
        seen: dict[str, None] = {}
        for outcome in self.walk():
            name = getattr(outcome.node, "fact_name", None)
            if name:
                seen.setdefault(name, None)
        return list(seen)


class Condition:
    """Base of every condition node. ``cid`` is its path inside the rule (``when.all[1]``), stable across runs."""

    cid: str = ""
    line: int = 0

    def truth(self, env: Env) -> Tri:
        raise NotImplementedError

    def explain(self, env: Env) -> Outcome:
        raise NotImplementedError

    def facts(self) -> set[str]:
        """Patient-level facts this node reads (list facts included; fields of entries not)."""
        return set()

    def statuses(self) -> set[str]:
        """Therapies whose final status this node reads (phase-2 rules)."""
        return set()

    def nodes(self) -> Iterator[Condition]:
        yield self

    def describe(self) -> str:
        """A short, human-readable form (``plt_current >= 100 10^9/L``)."""
        raise NotImplementedError


@dataclass(eq=False)
class AllOf(Condition):
    children: list[Condition]
    cid: str = ""
    line: int = 0

    def truth(self, env: Env) -> Tri:
        return all_of(c.truth(env) for c in self.children)

    def explain(self, env: Env) -> Outcome:
        outs = [c.explain(env) for c in self.children]
        out = Outcome(self, all_of(o.value for o in outs), children=outs)
        _merge_witnesses(out)
        return out

    def facts(self) -> set[str]:
        return set().union(*(c.facts() for c in self.children)) if self.children else set()

    def statuses(self) -> set[str]:
        return set().union(*(c.statuses() for c in self.children)) if self.children else set()

    def nodes(self) -> Iterator[Condition]:
        yield self
        for c in self.children:
            yield from c.nodes()

    def describe(self) -> str:
        return "all of (" + "; ".join(c.describe() for c in self.children) + ")"


@dataclass(eq=False)
class AnyOf(AllOf):
    def truth(self, env: Env) -> Tri:
        return any_of(c.truth(env) for c in self.children)

    def explain(self, env: Env) -> Outcome:
        outs = [c.explain(env) for c in self.children]
        out = Outcome(self, any_of(o.value for o in outs), children=outs)
        _merge_witnesses(out, only_true=True)
        return out

    def describe(self) -> str:
        return "any of (" + "; ".join(c.describe() for c in self.children) + ")"


@dataclass(eq=False)
class Not(Condition):
    child: Condition
    cid: str = ""
    line: int = 0

    def truth(self, env: Env) -> Tri:
        return ~self.child.truth(env)

    def explain(self, env: Env) -> Outcome:
        inner = self.child.explain(env)
        return Outcome(self, ~inner.value, children=[inner])

    def facts(self) -> set[str]:
        return self.child.facts()

    def statuses(self) -> set[str]:
        return self.child.statuses()

    def nodes(self) -> Iterator[Condition]:
        yield self
        yield from self.child.nodes()

    def describe(self) -> str:
        return f"not ({self.child.describe()})"


@dataclass(eq=False)
class Compare(Condition):
    """``subject op value``. The subject is a fact, an entry field, days since a date, or a therapy's status."""

    subject: str  # "fact" | "field" | "days_since" | "days_since_field" | "status_of"
    name: str
    op: str
    value: Any = None
    unit: str | None = None  # the unit the author wrote (value is already in the fact's canonical unit)
    written_value: Any = None
    cid: str = ""
    line: int = 0
    threshold: str = ""  # the named threshold (thresholds.yaml) the value came from, if any

    @property
    def fact_name(self) -> str | None:
        if self.subject in ("fact", "days_since"):
            return self.name
        if self.subject == "status_of":
            return f"status:{self.name}"
        return None

    def facts(self) -> set[str]:
        return {self.name} if self.subject in ("fact", "days_since") else set()

    def statuses(self) -> set[str]:
        return {self.name} if self.subject == "status_of" else set()

    def _read(self, env: Env) -> tuple[bool, Any, tuple[str, ...]]:
        """(known, value, missing paths) of the subject."""
        subject = self.subject
        if subject in ("fact", "days_since"):
            fact = env.facts.get(self.name)
            if fact is None or not fact.known:
                return False, None, tuple(fact.missing) if fact is not None else ()
            value = fact.value
            if subject == "days_since":
                value = (env.evaluation_date - value).days
            return True, value, ()
        if subject in ("field", "days_since_field"):
            item = env.item or {}
            value = item.get(self.name)
            if value is None:
                return False, None, (f"{env.item_path}.{self.name}",)
            if subject == "days_since_field":
                value = (env.evaluation_date - value).days
            return True, value, ()
        status = env.statuses.get(self.name)
        return (status is not None), status, ()

    def _test(self, value: Any, env: Env) -> bool:
        target = self.value
        if target == THERAPY_PLACEHOLDER:
            target = env.therapy
        op = self.op
        if op in COMPARATORS:
            return COMPARATORS[op](value, target)
        if op == "in":
            return value in target
        if op == "not_in":
            return value not in target
        if op == "contains":
            wanted = str(target).lower()
            return any(str(v).lower() == wanted for v in value)
        raise ValueError(op)  # pragma: no cover - the type checker rejects unknown operators

    def truth(self, env: Env) -> Tri:
        known, value, _ = self._read(env)
        if self.op == "known":
            return Tri.of(known)
        if self.op == "unknown":
            return Tri.of(not known)
        if not known:
            return Tri.UNKNOWN
        return Tri.of(self._test(value, env))

    def explain(self, env: Env) -> Outcome:
        known, value, missing = self._read(env)
        if self.op in PRESENCE_OPS:
            result = Tri.of(known if self.op == "known" else not known)
            return Outcome(self, result, observed=value, missing=missing if not known else ())
        if not known:
            return Outcome(self, Tri.UNKNOWN, missing=missing)
        return Outcome(self, Tri.of(self._test(value, env)), observed=value)

    def threshold_text(self) -> str:
        """The threshold as the author wrote it, with its unit (a node does not change once loaded: kept)."""
        cached = self.__dict__.get("_threshold_text")
        if cached is None:
            cached = self.__dict__["_threshold_text"] = self._threshold_text()
        return cached

    def _threshold_text(self) -> str:
        shown = self.written_value if self.written_value is not None else self.value
        if isinstance(shown, (list, tuple)):
            shown = "[" + ", ".join(str(x) for x in shown) + "]"
        unit = f" {self.unit}" if self.unit else ""
        if self.subject in ("days_since", "days_since_field"):
            shown, unit = self.value, " days"
        named = f" ({self.threshold})" if self.threshold else ""
        return f"{shown}{unit}{named}"

    def describe(self) -> str:
        cached = self.__dict__.get("_describe")
        if cached is None:
            cached = self.__dict__["_describe"] = self._describe()
        return cached

    def _describe(self) -> str:
        subject = {
            "days_since": f"days since {self.name}",
            "days_since_field": f"days since {self.name}",
            "status_of": f"status of {self.name}",
        }.get(self.subject, self.name)
        if self.op in PRESENCE_OPS:
            return f"{subject} is {self.op}"
        return f"{subject} {self.op} {self.threshold_text()}"


@dataclass(eq=False)
class Exists(Condition):
    """True when some entry of a list fact meets ``where``; the matching entries are kept as witnesses."""

    list_name: str
    where: Condition
    cid: str = ""
    line: int = 0

    @property
    def fact_name(self) -> str:
        return self.list_name

    def facts(self) -> set[str]:
        return {self.list_name} | self.where.facts()

    def statuses(self) -> set[str]:
        return self.where.statuses()

    def nodes(self) -> Iterator[Condition]:
        yield self
        yield from self.where.nodes()

    def _entries(self, env: Env) -> tuple[bool, list[Mapping[str, Any]], tuple[str, ...]]:
        fact = env.facts.get(self.list_name)
        if fact is None or not fact.known:
            return False, [], tuple(fact.missing) if fact is not None else ()
        return True, list(fact.value), ()

    def _item_path(self, env: Env) -> str:
        """The contract's path for a field of any entry: ``treatment_history.chemotherapy[]`` (contract §A.4)."""
        fact = env.facts.get(self.list_name)
        sources = getattr(fact, "sources", ()) if fact is not None else ()
        return f"{sources[0] if sources else self.list_name}[]"

    def truth(self, env: Env) -> Tri:
        known, entries, _ = self._entries(env)
        if not known:
            return Tri.UNKNOWN
        path = self._item_path(env)
        return any_of(self.where.truth(env.with_item(e, path)) for e in entries)

    def explain(self, env: Env) -> Outcome:
        known, entries, missing = self._entries(env)
        if not known:
            return Outcome(self, Tri.UNKNOWN, missing=missing)
        outs = []
        witnesses = []
        path = self._item_path(env)
        for entry in entries:
            inner = self.where.explain(env.with_item(entry, path))
            outs.append(inner)
            if inner.value is Tri.TRUE:
                witnesses.append(entry)
        out = Outcome(self, any_of(o.value for o in outs), observed=len(entries), children=outs)
        out.witnesses[self.list_name] = witnesses
        return out

    def describe(self) -> str:
        return f"some {self.list_name} entry with ({self.where.describe()})"


def _merge_witnesses(out: Outcome, only_true: bool = False) -> None:
    for child in out.children:
        if only_true and child.value is not Tri.TRUE:
            continue
        for name, items in child.witnesses.items():
            out.witnesses.setdefault(name, []).extend(items)
