"""Rules that never decide or add nothing: shadowed, duplicated and subsumed rules.

* **shadowed** — for a therapy, rule A proposes a status and rule B a stronger one (§13 precedence), and A's condition
  implies B's: whenever A fires, B fires too and wins, so A's status never decides. Warning when that holds for every
  therapy of A and A has no other effect (advisories, dose, information); info otherwise.
* **duplicate-rule** — two rules with the same conclusion and equivalent conditions (each implies the other).
* **subsumed** — same conclusion, and the narrower rule's condition implies the broader one's (info: a second
  citation for the same advice can be deliberate).

"A implies B" is decided exactly on the three-valued logic: the DNF of "A fires" and "B does not fire" (B not met or
unknown) has no satisfiable term.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..rulebase.model import PRECEDENCE, Rule
from .context import LintContext
from .findings import Finding
from .logic import T, TooComplex, signature


def check(ctx: LintContext) -> Iterator[Finding]:
    """Shadowed, duplicate and subsumed rules."""
    yield from _shadowed(ctx)
    yield from _same_conclusion(ctx)


def _possible(ctx: LintContext, rule: Rule, therapy: str | None) -> bool:
    try:
        return bool(ctx.logic.fires(rule, therapy, T))
    except TooComplex:
        return False


def _implies(ctx: LintContext, a: Rule, b: Rule, therapy: str | None) -> bool:
    try:
        return ctx.logic.implies(a, b, therapy)
    except TooComplex:
        return False


def _shadowed(ctx: LintContext) -> Iterator[Finding]:
    rank = {s: i for i, s in enumerate(PRECEDENCE)}
    shadows: dict[int, dict[str, list[Rule]]] = {}
    rules_by_id: dict[int, Rule] = {}
    for therapy, rules in ctx.therapy_rules():
        with_status = [r for r in rules if r.then.status and _possible(ctx, r, therapy)]
        for a in with_status:
            stronger = [b for b in with_status if rank[b.then.status] < rank[a.then.status]]  # type: ignore[index]
            winners = [b for b in stronger if _implies(ctx, a, b, therapy)]
            if winners:
                shadows.setdefault(id(a), {})[therapy] = winners
                rules_by_id[id(a)] = a
    for key, per_therapy in shadows.items():
        a = rules_by_id[key]
        winner_by_key = {b.key: b for bs in per_therapy.values() for b in bs}
        everywhere = set(per_therapy) == set(a.therapies)
        other_effect = bool(a.then.advisories or a.then.info or a.then.dose_mg is not None)
        severity = "warning" if everywhere and not other_effect else "info"
        names = ", ".join(f"{b.key} ({b.then.status})" for b in winner_by_key.values())
        scope = "" if everywhere else f" for {', '.join(per_therapy)}"
        extra = " (its advisories and information still show)" if other_effect else ""
        yield ctx.finding(
            "shadowed",
            f"whenever this rule fires{scope}, {names} fires too and wins by precedence (§13): its status "
            f"{a.then.status!r} never decides{extra}",
            a, None, "then", severity=severity,
            related=tuple(ctx.related(b) for b in winner_by_key.values()),
            hint="narrow the stronger rule, or drop this one if it is only a restatement")


def _conclusion(rule: Rule) -> tuple[Any, ...]:
    then = rule.then
    date = then.earliest_date
    date_key = None if date is None else (date.plus_days, date.fact, date.of, date.field,
                                          signature(date.none_if) if date.none_if is not None else None)
    return (then.status, then.dose_mg, date_key, tuple(sorted((a.id, a.text or "") for a in then.advisories)),
            then.info)


def _same_conclusion(ctx: LintContext) -> Iterator[Finding]:
    groups: dict[tuple[Any, ...], list[Rule]] = {}
    for rule in ctx.rules:
        if rule.then.derive:
            continue
        groups.setdefault(_conclusion(rule), []).append(rule)
    for rules in groups.values():
        rules = sorted(rules, key=ctx.order)
        duplicated: set[int] = set()
        for i, a in enumerate(rules):
            for b in rules[i + 1:]:
                if id(b) in duplicated:
                    continue
                found = _compare_pair(ctx, a, b)
                if found is not None:
                    if found.code == "duplicate-rule":
                        duplicated.add(id(b))
                    yield found


def _compare_pair(ctx: LintContext, a: Rule, b: Rule) -> Finding | None:
    """``a`` comes before ``b``; a finding when one adds nothing to the other."""
    ta, tb = set(a.therapies), set(b.therapies)
    if not (ta <= tb or tb <= ta):
        return None
    each_a: list[str | None] = [*sorted(ta)] or [None]
    each_b: list[str | None] = [*sorted(tb)] or [None]
    a_in_b = ta <= tb and all(_possible(ctx, a, t) and _implies(ctx, a, b, t) for t in each_a)
    b_in_a = tb <= ta and all(_possible(ctx, b, t) and _implies(ctx, b, a, t) for t in each_b)
    what = _what(a)
    where = "when" if b.when is not None else "requires"
    if a_in_b and b_in_a:
        # Distinct brief rules folded into one advice are deliberate (every brief id must be encoded): information.
        same_brief_rule = a.id == b.id
        return ctx.finding(
            "duplicate-rule", f"duplicates {a.key}: same conclusion ({what}) under an equivalent condition", b, None,
            where, related=(ctx.related(a),), severity="warning" if same_brief_rule else "info",
            hint=("merge the two variants into one rule" if same_brief_rule else
                  "fine when each encodes its own brief rule; otherwise merge them into one rule with both sources"))
    if a_in_b or b_in_a:
        narrow, broad = (a, b) if a_in_b else (b, a)
        return ctx.finding(
            "subsumed", f"whenever this rule fires, {broad.key} fires too with the same conclusion ({what}): it changes "
            "no status, date, dose or advisory (only the rules cited)", narrow, None,
            "when" if narrow.when is not None else "requires",
            related=(ctx.related(broad),),
            hint=f"fine if it is a deliberate second citation; otherwise remove it or fold its source into {broad.key}")
    return None


def _what(rule: Rule) -> str:
    then = rule.then
    parts = []
    if then.status:
        parts.append(then.status)
    if then.dose_mg is not None:
        parts.append(f"{then.dose_mg:g} mg")
    if then.advisories:
        parts.append(", ".join(a.id for a in then.advisories))
    if then.info:
        parts.append("information")
    return "; ".join(parts) or "nothing"
