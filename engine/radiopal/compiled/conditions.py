"""Turn a condition tree (:mod:`radiopal.conditions`) into one Python closure per node, once per rule base.

Each closure takes ``(env, item)`` — the evaluation environment and the list entry an ``exists`` is looking at (None
outside one) — and returns the same :class:`~radiopal.tri.Tri` as the node's ``truth(env)``: the same reads, the same
comparisons, the same three-valued AND/OR/NOT with the same short-circuits, the same ``$therapy`` substitution. What
is decided once here instead of on every call: which subject is read, which operator is applied, whether the value is
the ``$therapy`` placeholder, and the path of the child nodes. Nothing is ``eval``-ed.

Explanations (which values each node saw) are not compiled: a firing's outcome is computed on demand by the node's
own ``explain``, the same code on both paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..conditions import COMPARATORS, THERAPY_PLACEHOLDER, AllOf, AnyOf, Compare, Condition, Env, Exists, Not
from ..tri import Tri, all_of, any_of

TRUE, FALSE, UNKNOWN = Tri.TRUE, Tri.FALSE, Tri.UNKNOWN

#: A compiled condition: (environment, current list entry or None) → met / not met / unknown.
Compiled = Callable[[Env, Any], Tri]

#: The comparison functions the compiler applies (a test patches one entry to show a mis-compiled operator is caught).
OPERATORS: dict[str, Callable[[Any, Any], Any]] = dict(COMPARATORS)
_MEMBERSHIP: dict[str, Callable[[Any, Any], bool]] = {"in": lambda v, t: v in t, "not_in": lambda v, t: v not in t}


def compile_condition(node: Condition) -> Compiled:
    """The closure computing ``node.truth(env)`` (with ``env.item`` passed as the second argument)."""
    if isinstance(node, AnyOf):  # AnyOf subclasses AllOf: test it first
        return _any([compile_condition(c) for c in node.children])
    if isinstance(node, AllOf):
        return _all([compile_condition(c) for c in node.children])
    if isinstance(node, Not):
        return _not(compile_condition(node.child))
    if isinstance(node, Exists):
        return _exists(node.list_name, compile_condition(node.where))
    if isinstance(node, Compare):
        return _compare(node)
    raise TypeError(f"no compiled form for condition node {type(node).__name__}")


def _all(children: list[Compiled]) -> Compiled:
    if len(children) == 1:
        (only,) = children
        return only  # all_of of one value is that value
    if len(children) == 2:
        first, second = children

        def all2(env: Env, item: Any) -> Tri:
            a = first(env, item)
            if a is FALSE:
                return FALSE
            b = second(env, item)
            if b is FALSE:
                return FALSE
            return UNKNOWN if (a is UNKNOWN or b is UNKNOWN) else TRUE

        return all2

    return _fold(children, all_of)


def _any(children: list[Compiled]) -> Compiled:
    if len(children) == 1:
        (only,) = children
        return only

    return _fold(children, any_of)


def _fold(children: list[Compiled], combine: Callable[[Iterable[Tri]], Tri]) -> Compiled:
    """The children combined by ``all_of`` or ``any_of`` themselves (Kleene AND/OR, the same short-circuit)."""
    def fold(env: Env, item: Any) -> Tri:
        return combine(child(env, item) for child in children)

    return fold


def _not(child: Compiled) -> Compiled:
    def negate(env: Env, item: Any) -> Tri:
        value = child(env, item)
        return FALSE if value is TRUE else TRUE if value is FALSE else UNKNOWN

    return negate


def _exists(list_name: str, where: Compiled) -> Compiled:
    def exists(env: Env, item: Any) -> Tri:
        fact = env.facts.get(list_name)
        if fact is None or not fact.known:
            return UNKNOWN
        return any_of(where(env, entry) for entry in list(fact.value))

    return exists


def _reader(node: Compare) -> Callable[[Env, Any], tuple[bool, Any]]:
    """(known, value) of the node's subject, as ``Compare._read`` gives them."""
    name = node.name
    subject = node.subject
    if subject == "fact":
        def read_fact(env: Env, item: Any) -> tuple[bool, Any]:
            fact = env.facts.get(name)
            if fact is None or not fact.known:
                return False, None
            return True, fact.value

        return read_fact
    if subject == "days_since":
        def read_days(env: Env, item: Any) -> tuple[bool, Any]:
            fact = env.facts.get(name)
            if fact is None or not fact.known:
                return False, None
            return True, (env.evaluation_date - fact.value).days

        return read_days
    if subject in ("field", "days_since_field"):
        days = subject == "days_since_field"

        def read_field(env: Env, item: Any) -> tuple[bool, Any]:
            value = (item or {}).get(name)
            if value is None:
                return False, None
            return True, ((env.evaluation_date - value).days if days else value)

        return read_field
    if subject == "status_of":
        def read_status(env: Env, item: Any) -> tuple[bool, Any]:
            status = env.statuses.get(name)
            return status is not None, status

        return read_status
    raise TypeError(f"no compiled form for subject {subject!r}")


def _tester(node: Compare) -> Callable[[Any, Env], bool]:
    """``value → bool`` as ``Compare._test`` decides it, with the operator and the placeholder settled now."""
    op = node.op
    target = node.value
    placeholder = isinstance(target, str) and target == THERAPY_PLACEHOLDER
    if op in OPERATORS:
        compare = OPERATORS[op]
        if placeholder:
            return lambda value, env: compare(value, env.therapy)
        return lambda value, env: compare(value, target)
    if op in ("in", "not_in"):
        negate = op == "not_in"
        if placeholder:
            return lambda value, env: (value in env.therapy) is not negate  # type: ignore[operator]
        return lambda value, env: (value in target) is not negate
    if op == "contains":
        if placeholder:
            return lambda value, env: _contains(value, str(env.therapy).lower())
        wanted = str(target).lower()
        return lambda value, env: _contains(value, wanted)
    raise TypeError(f"no compiled form for operator {op!r}")


def _contains(values: Any, wanted: str) -> bool:
    return any(str(v).lower() == wanted for v in values)


def _compare(node: Compare) -> Compiled:
    read = _reader(node)
    if node.op in ("known", "unknown"):
        want_known = node.op == "known"

        def presence(env: Env, item: Any) -> Tri:
            return TRUE if read(env, item)[0] is want_known else FALSE

        return presence
    test = _tester(node)
    target = node.value
    fast = OPERATORS.get(node.op) or _MEMBERSHIP.get(node.op)
    if node.subject == "fact" and fast is not None and not (isinstance(target, str) and target == THERAPY_PLACEHOLDER):
        name = node.name
        apply = fast

        def compare_fact_literal(env: Env, item: Any) -> Tri:  # the commonest node: fact, operator, literal
            fact = env.facts.get(name)
            if fact is None or not fact.known:
                return UNKNOWN
            return TRUE if apply(fact.value, target) else FALSE

        return compare_fact_literal

    def compare(env: Env, item: Any) -> Tri:
        known, value = read(env, item)
        if not known:
            return UNKNOWN
        return TRUE if test(value, env) else FALSE

    return compare
