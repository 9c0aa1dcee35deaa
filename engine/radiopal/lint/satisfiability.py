"""Conditions that can never be met: the rule (or one branch of it) is dead.

A rule's ``when`` is unsatisfiable when its DNF in mode T is empty — e.g. ``crcl < 30`` and ``crcl >= 40`` in one
``all``, two different values ``==`` one fact, ``unknown`` and a comparison of the same fact. The finding points at
the smallest part that cannot hold and names the two comparisons that exclude each other. A branch of an ``any``
that can never be met while the rest can is reported as a warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations

from ..conditions import AllOf, AnyOf, Compare, Condition, Exists, Not
from ..rulebase.model import Rule
from .context import LintContext
from .findings import Finding
from .logic import _CONJUNCTIVE, _NEGATED, NF, T, TooComplex, and_

_WORDS = {T: "be met", "F": "fail", "NT": "fail or be unknown", NF: "be met or unknown"}


def check(ctx: LintContext) -> Iterator[Finding]:
    """Unsatisfiable rule conditions (error), dead branches (warning), requirements that never apply (error)."""
    for rule in ctx.rules:
        try:
            if rule.when is not None:
                yield from _walk(ctx, rule, rule.when, T, None, root=True)
            for i, req in enumerate(rule.requires):
                if req.when is not None and not ctx.logic.condition(req.when, NF):
                    yield ctx.finding("unsatisfiable", f"the condition of the requirement on {req.fact!r} is always "
                                      "false: the requirement never applies", rule, None, "requires", i,
                                      hint="fix the condition, or drop the requirement")
        except TooComplex:
            yield ctx.finding("too-complex", "the condition is too large for the logic analyses", rule)


def _dnf(ctx: LintContext, node: Condition, mode: str, scope: str | None) -> bool:
    return bool(ctx.logic._dnf(node, mode, None, scope))


def _walk(ctx: LintContext, rule: Rule, node: Condition, mode: str, scope: str | None,
          root: bool = False) -> Iterator[Finding]:
    if not _dnf(ctx, node, mode, scope):
        for culprit, why in _culprits(ctx, node, mode, scope):
            if root:
                yield ctx.finding("unsatisfiable", f"the condition can never be met, so the rule never fires: {why}",
                                  rule, culprit, hint="check the thresholds and operators of these comparisons")
            else:
                yield ctx.finding("unsatisfiable", f"this branch of the condition can never be met: {why}", rule,
                                  culprit, severity="warning", hint="fix it or remove it: it never contributes")
        return
    if isinstance(node, AllOf):
        for child in node.children:
            yield from _walk(ctx, rule, child, mode, scope)
    elif isinstance(node, Not):
        yield from _walk(ctx, rule, node.child, _NEGATED[mode], scope)
    elif isinstance(node, Exists) and mode == T:
        yield from _walk(ctx, rule, node.where, T, node.list_name)


def _culprits(ctx: LintContext, node: Condition, mode: str, scope: str | None) -> list[tuple[Condition, str]]:
    """The smallest parts of ``node`` that make it impossible in ``mode``, each with an explanation."""
    if isinstance(node, Not):
        return _culprits(ctx, node.child, _NEGATED[mode], scope)
    if isinstance(node, Exists):
        if _dnf(ctx, node.where, T, node.list_name):  # pragma: no cover - an exists atom is otherwise possible
            return [(node, f"`{node.describe()}` can never {_WORDS[mode]}")]
        inner = _culprits(ctx, node.where, T, node.list_name)
        return [(n, f"no {node.list_name} entry can match: {why}") for n, why in inner]
    if isinstance(node, Compare):
        reason = f"`{node.describe()}` can never {_WORDS[mode]}"
        spec = ctx.loaded.vocabulary.facts.get(node.name) if node.subject == "fact" else None
        if spec is not None and spec.derived_by:
            reason += f" (the condition deriving {node.name!r} cannot give that)"
        elif spec is not None and spec.type == "integer":
            reason += f" ({node.name!r} is an integer)"
        return [(node, reason)]
    assert isinstance(node, AllOf)
    kind = "any" if isinstance(node, AnyOf) else "all"
    impossible = [c for c in node.children if not _dnf(ctx, c, mode, scope)]
    if mode not in _CONJUNCTIVE[kind]:
        return [found for child in impossible for found in _culprits(ctx, child, mode, scope)]
    if impossible:
        return [found for child in impossible for found in _culprits(ctx, child, mode, scope)]
    for a, b in combinations(node.children, 2):
        both = and_(ctx.logic._dnf(a, mode, None, scope), ctx.logic._dnf(b, mode, None, scope), ctx.logic.limit)
        if not both:
            verb = "both hold" if mode == T else f"both {_WORDS[mode]}"
            return [(node, f"`{a.describe()}` and `{b.describe()}` cannot {verb}")]
    parts = "; ".join(f"`{c.describe()}`" for c in node.children)
    return [(node, f"its parts cannot all {_WORDS[mode]} together: {parts}")]
