"""Conditions as constraints: the three-valued condition tree in disjunctive normal form over variable domains.

A condition is met (TRUE), not met (FALSE) or unknown. Each question lint asks is about one of four *modes*:

* ``T``  — the condition is met                (a rule fires)
* ``F``  — the condition is not met            (``not`` of a met condition)
* ``NT`` — the condition is not met or unknown (a rule does *not* fire)
* ``NF`` — the condition is met or unknown

In every mode a comparison becomes one constraint on one variable — e.g. ``crcl < 30`` in mode ``NT`` is
"crcl unknown, or crcl ≥ 30" — and ``all``/``any``/``not`` become conjunction and disjunction (Kleene logic is a
De Morgan algebra, so pushing negations down and distributing is exact). The result is a DNF: a list of
*terms*, each a mapping variable → :class:`Domain`. A DNF is satisfiable when it has a term; every term kept is
satisfiable by construction (empty intersections are dropped as they appear).

Comparisons on numeric facts (``< <= > >= == !=``, ``in``) are intervals; booleans, enums, strings and therapy
statuses are finite sets; everything else (``exists``, ``contains``, ``$therapy`` outside a therapy) is an opaque
three-valued atom, identified by its text so the same test in two rules is the same atom. A boolean fact derived by
a rule (``then: {derive: ...}``) is replaced by the condition that derives it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..conditions import COMPARATORS, THERAPY_PLACEHOLDER, AllOf, AnyOf, Compare, Condition, Exists, Not
from ..rulebase.model import STATUSES, Rule
from ..vocabulary import Vocabulary
from .domains import Domain, FiniteSet, IntervalSet, ValueSet, canonical_number

Var = tuple[str, ...]
Term = dict[Var, Domain]
DNF = list[Term]

TRUE_DNF: DNF = [{}]
FALSE_DNF: DNF = []

T, F, NT, NF = "T", "F", "NT", "NF"
_NEGATED = {T: F, F: T, NT: NF, NF: NT}
_CONJUNCTIVE = {  # modes in which the node is a conjunction of its children (else a disjunction)
    "all": {T, NF},
    "any": {F, NT},
}
_ATOM_UNIVERSE = frozenset({"T", "F"})
NUMERIC_TYPES = ("number", "integer", "days")


class TooComplex(Exception):  # noqa: N818 - a signal, not an error a user sees
    """The normal form grew beyond the limit; the analysis of this condition is skipped."""


@dataclass(frozen=True)
class VarInfo:
    """What a variable is, for messages: its label (``crcl``), unit and value kind."""

    label: str
    unit: str | None
    kind: str  # "numeric" | "discrete" | "atom"
    full: Domain

    @property
    def numeric(self) -> bool:
        return self.kind == "numeric"


def and_(a: DNF, b: DNF, limit: int) -> DNF:
    """Conjunction of two DNFs (terms with an empty variable are dropped)."""
    out: DNF = []
    for ta in a:
        for tb in b:
            term = _merge(ta, tb)
            if term is not None:
                out.append(term)
                if len(out) > limit:
                    raise TooComplex
    return out


def _merge(a: Term, b: Term) -> Term | None:
    if len(a) < len(b):
        a, b = b, a
    out = dict(a)
    for var, dom in b.items():
        if var in out:
            both = out[var] & dom
            if both.is_empty():
                return None
            out[var] = both
        else:
            out[var] = dom
    return out


def or_(a: DNF, b: DNF, limit: int) -> DNF:
    """Disjunction of two DNFs."""
    out = a + b
    if len(out) > limit:
        raise TooComplex
    return out


class Logic:
    """Translates the conditions of one loaded rule base into DNFs, with caching."""

    def __init__(self, rules: Iterable[Rule], vocabulary: Vocabulary, *, limit: int = 2000,
                 inline_derived: bool = True) -> None:
        self.vocab = vocabulary
        self.limit = limit
        self.vars: dict[Var, VarInfo] = {}
        self.derivations: dict[str, Condition] = {}
        if inline_derived:
            for rule in rules:
                if rule.then.derive and rule.when is not None:
                    self.derivations[rule.then.derive] = rule.when
        self._inlining: list[str] = []
        self._cache: dict[tuple[Any, ...], DNF] = {}
        self._per_therapy: dict[int, bool] = {}

    # --- public questions ---------------------------------------------------------------------------------------
    def condition(self, node: Condition, mode: str = T, therapy: str | None = None) -> DNF:
        """The DNF of ``node`` in ``mode`` (T, F, NT, NF) for ``therapy`` (which ``$therapy`` stands for)."""
        return self._dnf(node, mode, therapy, None)

    def fires(self, rule: Rule, therapy: str | None, mode: str = T) -> DNF:
        """When ``rule`` fires (mode T) or does not fire (mode NT) for ``therapy``.

        A requirement rule fires when some required fact is unknown while its ``when`` is not false; a derivation
        always fires.
        """
        if therapy is not None and not self._uses_therapy(rule):
            therapy = None  # the same DNF for every therapy: translate (and cache) it once
        key = ("rule", id(rule), mode, therapy)
        if key in self._cache:
            return self._cache[key]
        if rule.requires:
            parts: list[DNF] = []
            for req in rule.requires:
                missing, known = self._presence(req.fact, therapy)
                if mode == T:
                    applies = self._dnf(req.when, NF, therapy, None) if req.when is not None else TRUE_DNF
                    parts.append(and_(missing, applies, self.limit))
                else:
                    never = self._dnf(req.when, F, therapy, None) if req.when is not None else FALSE_DNF
                    parts.append(or_(known, never, self.limit))
            result: DNF = FALSE_DNF if mode == T else TRUE_DNF
            for part in parts:
                result = or_(result, part, self.limit) if mode == T else and_(result, part, self.limit)
        elif rule.then.derive:
            result = TRUE_DNF if mode == T else FALSE_DNF
        elif rule.when is not None:
            result = self._dnf(rule.when, mode, therapy, None)
        else:
            result = FALSE_DNF if mode == T else TRUE_DNF
        self._cache[key] = result
        return result

    def _uses_therapy(self, rule: Rule) -> bool:
        key = id(rule)
        if key not in self._per_therapy:
            self._per_therapy[key] = uses_therapy(rule)
        return self._per_therapy[key]

    def _presence(self, name: str, therapy: str | None) -> tuple[DNF, DNF]:
        """(fact unknown, fact known) as DNFs; a rule-derived fact is unknown when its condition is."""
        if name in self.derivations and name not in self._inlining:
            self._inlining.append(name)
            try:
                cond = self.derivations[name]
                return self._states(cond, frozenset("U"), therapy), self._states(cond, frozenset("TF"), therapy)
            finally:
                self._inlining.pop()
        var = self._fact_var(name)
        full = self.vars[var].full.values
        return [{var: Domain(True, full.complement())}], [{var: Domain(False, full)}]

    def implies(self, a: Rule, b: Rule, therapy: str | None) -> bool:
        """Whenever ``a`` fires for ``therapy``, ``b`` fires too."""
        b_not = self.fires(b, therapy, NT)
        return all(not and_([term], b_not, self.limit) for term in self.fires(a, therapy, T))

    def both(self, a: Rule, b: Rule, therapy: str | None) -> DNF:
        """The situations in which ``a`` and ``b`` fire together."""
        return and_(self.fires(a, therapy, T), self.fires(b, therapy, T), self.limit)

    def describe_term(self, term: Term, only: Iterable[Var] | None = None) -> str:
        """``crcl in [49, 50) mL/min; site in {breast}`` for the constrained variables of a term."""
        parts = []
        wanted = set(only) if only is not None else None
        for var in sorted(term, key=lambda v: self.vars[v].label):
            if wanted is not None and var not in wanted:
                continue
            dom, info = term[var], self.vars[var]
            if dom.is_full() or info.kind == "atom":
                continue
            unit = f" {info.unit}" if info.unit and info.numeric and not dom.values.is_empty() else ""
            text = dom.describe()
            joined = f"{info.label} in {text}" if text[:1] in "[({" else f"{info.label} {text}"
            parts.append(joined + unit)
        return "; ".join(parts)

    # --- translation ----------------------------------------------------------------------------------------------
    def _dnf(self, node: Condition, mode: str, therapy: str | None, scope: str | None) -> DNF:
        key = (id(node), mode, therapy, scope)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        result = self._translate(node, mode, therapy, scope)
        self._cache[key] = result
        return result

    def _translate(self, node: Condition, mode: str, therapy: str | None, scope: str | None) -> DNF:
        if isinstance(node, AllOf):
            kind = "any" if isinstance(node, AnyOf) else "all"
            parts = [self._dnf(c, mode, therapy, scope) for c in node.children]
            if mode in _CONJUNCTIVE[kind]:
                result = TRUE_DNF
                for part in sorted(parts, key=len):
                    result = and_(result, part, self.limit)
                    if not result:
                        break
                return result
            out: DNF = []
            for part in parts:
                out = or_(out, part, self.limit)
            return out
        if isinstance(node, Not):
            return self._dnf(node.child, _NEGATED[mode], therapy, scope)
        if isinstance(node, Exists):
            return self._exists(node, mode, therapy)
        if isinstance(node, Compare):
            return self._compare(node, mode, therapy, scope)
        return self._atom(("node", type(node).__name__, node.describe()), mode, None)  # pragma: no cover

    def _exists(self, node: Exists, mode: str, therapy: str | None) -> DNF:
        where_possible = bool(self._dnf(node.where, T, therapy, node.list_name))
        return self._atom(("exists", node.list_name, signature(node.where, therapy)), mode,
                          None if where_possible else frozenset({"F"}))

    def _atom(self, key: tuple[Any, ...], mode: str, possible: frozenset[str] | None) -> DNF:
        var: Var = ("atom", *map(str, key))
        if var not in self.vars:
            self.vars[var] = VarInfo(" ".join(map(str, key[1:])), None, "atom",
                                     Domain(True, FiniteSet.full(_ATOM_UNIVERSE)))
        full = FiniteSet.full(_ATOM_UNIVERSE)
        literal = {
            T: Domain(False, full.with_items({"T"})),
            F: Domain(False, full.with_items({"F"})),
            NT: Domain(True, full.with_items({"F"})),
            NF: Domain(True, full.with_items({"T"})),
        }[mode]
        if possible is not None:
            literal = literal & Domain(True, full.with_items(possible))
        return [{var: literal}] if not literal.is_empty() else FALSE_DNF

    def _fact_var(self, name: str) -> Var:
        var: Var = ("fact", name)
        if var not in self.vars:
            spec = self.vocab.facts.get(name)
            kind = spec.type if spec is not None else "string"
            unit = spec.unit if spec is not None else None
            values = spec.values if spec is not None else ()
            if kind == "date":
                kind, unit = "days", "days since"
            self.vars[var] = _var_info(name, kind, unit, values)
        return var

    def _field_var(self, list_name: str, name: str, days: bool) -> Var:
        var: Var = ("field", list_name, name)
        if var not in self.vars:
            spec = self.vocab.facts.get(list_name)
            field = spec.fields.get(name) if spec is not None else None
            kind = field.type if field is not None else "string"
            values = field.values if field is not None else ()
            unit = None
            if days or kind == "date":
                kind, unit = "days", "days since"
            self.vars[var] = _var_info(f"{list_name}.{name}", kind, unit, values)
        return var

    def _compare(self, node: Compare, mode: str, therapy: str | None, scope: str | None) -> DNF:
        value = node.value
        if _has_placeholder(value):
            if therapy is None:
                return self._atom(("test", node.describe()), mode, None)
            value = tuple(therapy if v == THERAPY_PLACEHOLDER else v for v in value) if isinstance(
                value, tuple) else therapy
        if node.subject in ("fact", "days_since"):
            if node.subject == "fact" and node.name in self.derivations and node.name not in self._inlining:
                return self._derived(node, value, mode, therapy)
            var = self._fact_var(node.name)
        elif node.subject in ("field", "days_since_field"):
            var = self._field_var(scope or "?", node.name, node.subject == "days_since_field")
        elif node.subject == "status_of":
            var = ("status", node.name)
            if var not in self.vars:
                self.vars[var] = VarInfo(f"status of {node.name}", None, "discrete",
                                         Domain(True, FiniteSet.full(STATUSES)))
        else:  # pragma: no cover - the loader knows no other subject
            return self._atom(("test", node.describe()), mode, None)
        info = self.vars[var]
        literal = self._literal(info, node.op, value, mode)
        if literal is None:
            return self._atom(("test", node.subject, node.name, node.op, repr(value)), mode, None)
        return [{var: literal}] if not literal.is_empty() else FALSE_DNF

    @staticmethod
    def _literal(info: VarInfo, op: str, value: Any, mode: str) -> Domain | None:
        """The domain of one comparison in ``mode``; None when the comparison is opaque (``contains``)."""
        full = info.full.values
        if op in ("known", "unknown"):
            known = Domain(False, full)
            unknown = Domain(True, full.complement())
            met, unmet = (known, unknown) if op == "known" else (unknown, known)
            return {T: met, F: unmet, NT: unmet, NF: met}[mode]
        values = _matching(info, op, value)
        if values is None:
            return None
        return {
            T: Domain(False, values),
            F: Domain(False, values.complement()),
            NT: Domain(True, values.complement()),
            NF: Domain(True, values),
        }[mode]

    def _derived(self, node: Compare, value: Any, mode: str, therapy: str | None) -> DNF:
        """A comparison on a rule-derived boolean fact, replaced by the condition that derives it."""
        var = self._fact_var(node.name)
        literal = self._literal(self.vars[var], node.op, value, mode)
        if literal is None:  # pragma: no cover - booleans have no opaque operators
            return self._atom(("test", node.describe()), mode, None)
        states = set()
        if isinstance(literal.values, FiniteSet) and not literal.values.cofinite:
            states |= {"T" if v is True else "F" for v in literal.values.items if isinstance(v, bool)}
        if literal.unknown:
            states.add("U")
        cond = self.derivations[node.name]
        self._inlining.append(node.name)
        try:
            return self._states(cond, frozenset(states), therapy)
        finally:
            self._inlining.pop()

    def _states(self, cond: Condition, states: frozenset[str], therapy: str | None) -> DNF:
        """The DNF of "``cond`` is in one of ``states``" (subsets of met T / not met F / unknown U)."""
        def d(mode: str) -> DNF:
            return self._dnf(cond, mode, therapy, None)

        table = {
            frozenset(): lambda: FALSE_DNF,
            frozenset("T"): lambda: d(T),
            frozenset("F"): lambda: d(F),
            frozenset("U"): lambda: and_(d(NT), d(NF), self.limit),
            frozenset("TF"): lambda: or_(d(T), d(F), self.limit),
            frozenset("TU"): lambda: d(NF),
            frozenset("FU"): lambda: d(NT),
            frozenset("TFU"): lambda: TRUE_DNF,
        }
        return table[states]()


def _var_info(label: str, kind: str, unit: str | None, values: tuple[str, ...]) -> VarInfo:
    if kind in NUMERIC_TYPES:
        integral = kind in ("integer", "days")
        return VarInfo(label, unit if unit not in ("1", None) else None, "numeric",
                       Domain(True, IntervalSet.full(integral)))
    if kind == "boolean":
        return VarInfo(label, None, "discrete", Domain(True, FiniteSet.full((True, False))))
    if kind == "enum":
        return VarInfo(label, None, "discrete", Domain(True, FiniteSet.full(values)))
    return VarInfo(label, None, "discrete", Domain(True, FiniteSet.full(None)))


def _matching(info: VarInfo, op: str, value: Any) -> ValueSet | None:
    """The known values for which ``x op value`` holds, or None when lint cannot say (opaque)."""
    full = info.full.values
    if op == "contains":
        return None
    if isinstance(full, IntervalSet):
        try:
            if op in COMPARATORS:
                return IntervalSet.of(op, value, full.integral)
            if op in ("in", "not_in"):
                points = IntervalSet.points(value, full.integral)
                return points if op == "in" else points.complement()
        except (TypeError, ValueError):
            return None
        return None
    assert isinstance(full, FiniteSet)
    try:
        if op == "==":
            return full.with_items([value])
        if op == "!=":
            return full.with_items([value]).complement()
        if op in ("in", "not_in"):
            chosen = full.with_items(value)
            return chosen if op == "in" else chosen.complement()
    except TypeError:  # an unhashable value: the loader reported it
        return None
    return None


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, tuple):
        return THERAPY_PLACEHOLDER in value
    return bool(value == THERAPY_PLACEHOLDER)


def uses_therapy(rule: Rule) -> bool:
    """Whether a condition of ``rule`` compares with ``$therapy`` (its meaning differs per therapy)."""
    return any(isinstance(n, Compare) and _has_placeholder(n.value) for n in rule_nodes(rule))


def rule_nodes(rule: Rule) -> Iterator[Condition]:
    """Every condition node of a rule: ``when``, requirement conditions and ``none_if``."""
    if rule.when is not None:
        yield from rule.when.nodes()
    for req in rule.requires:
        if req.when is not None:
            yield from req.when.nodes()
    spec = rule.then.earliest_date
    if spec is not None and spec.none_if is not None:
        yield from spec.none_if.nodes()


def signature(node: Condition, therapy: str | None = None) -> str:
    """A canonical text of a condition (same test, same text), for identifying opaque atoms."""
    if isinstance(node, AnyOf):
        return "any(" + ",".join(sorted(signature(c, therapy) for c in node.children)) + ")"
    if isinstance(node, AllOf):
        return "all(" + ",".join(sorted(signature(c, therapy) for c in node.children)) + ")"
    if isinstance(node, Not):
        return "not(" + signature(node.child, therapy) + ")"
    if isinstance(node, Exists):
        return f"exists {node.list_name}(" + signature(node.where, therapy) + ")"
    if isinstance(node, Compare):
        value = node.value
        if therapy is not None and _has_placeholder(value):
            value = tuple(therapy if v == THERAPY_PLACEHOLDER else v for v in value) if isinstance(
                value, tuple) else therapy
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = canonical_number(value)
        return f"{node.subject}:{node.name} {node.op} {value!r}"
    return node.describe()  # pragma: no cover
