"""Numeric thresholds across rules: gaps, conflicting overlaps and near-misses, per therapy and fact.

For a therapy and a numeric fact, each rule *bands* the fact when its condition limits the fact's values: the band
is the union, over the terms of the rule's DNF that limit the fact, of the values they allow. Then:

* **dose-gap** — the dose bands of a therapy, with the ranges where a rule blocks it (contraindicated /
  not_indicated), leave a hole: e.g. bands ``30 <= crcl <= 39`` and ``40 <= crcl <= 49`` leave ``(39, 40)``.
  **dose-open-end** (info): beyond the outermost band nothing gives a dose and nothing blocks the therapy.
* **dose-overlap** — two rules of one therapy with different ``dose_mg`` can fire together (their full conditions,
  not just the bands, are jointly satisfiable): an error, as the engine would then have to pick one.
  Overlapping *statuses* are not reported: §13 precedence resolves them by design.
* **status-gap** — between the bands the status rules of a therapy put on a fact, a range no rule decides. A hole
  of one value or, on a non-integer fact, narrower than 1 (integer-style band edges such as ``<= 39`` / ``>= 40``)
  is a warning; a wider hole is information (the default, or rules on other facts, decide there).
* **near-miss** — the same threshold on the same fact written strict in one place and inclusive in another
  (``< 100`` here, ``<= 100`` there): a warning when the rules share a therapy, information otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..conditions import ORDER_OPS, AllOf, Compare, Condition, Exists, Not
from ..rulebase.model import Rule
from .context import LintContext
from .domains import INF, Interval, IntervalSet, canonical_number, format_number
from .findings import Finding, Related
from .logic import DNF, T, TooComplex, Var, rule_nodes

BLOCKING = ("contraindicated", "not_indicated")


@dataclass
class _Band:
    rule: Rule
    values: IntervalSet


def check(ctx: LintContext) -> Iterator[Finding]:
    """Gaps, dose overlaps and near-misses."""
    for therapy, rules in ctx.therapy_rules():
        dnfs: dict[int, DNF] = {}
        for rule in rules:
            if rule.requires or rule.then.derive:
                continue
            try:
                dnfs[id(rule)] = ctx.logic.fires(rule, therapy, T)
            except TooComplex:
                continue
        considered = [r for r in rules if id(r) in dnfs and dnfs[id(r)]]
        variables = sorted({v for r in considered for term in dnfs[id(r)] for v in term
                            if v[0] == "fact" and ctx.logic.vars[v].numeric})
        for var in variables:
            yield from _dose_gaps(ctx, therapy, var, considered, dnfs)
            yield from _status_gaps(ctx, therapy, var, considered, dnfs)
        yield from _dose_overlaps(ctx, therapy, considered)
    yield from _near_misses(ctx)


def _bands(ctx: LintContext, var: Var, rules: list[Rule], dnfs: dict[int, DNF]) -> list[_Band]:
    """The band of each rule on ``var``: the values its branches that limit ``var`` allow (branches of an ``any``
    that do not mention the fact are left out: ``plt < 60 or wbc < 2.4`` bands platelets at ``< 60``)."""
    out = []
    for rule in rules:
        values: IntervalSet | None = None
        for term in dnfs[id(rule)]:
            dom = term.get(var)
            if dom is None or not isinstance(dom.values, IntervalSet) or dom.values.is_full():
                continue
            values = dom.values if values is None else values.union(dom.values)
        if values is not None and not values.is_empty():
            out.append(_Band(rule, values))
    return out


def _union(bands: list[_Band], integral: bool) -> IntervalSet:
    covered = IntervalSet((), integral)
    for band in bands:
        covered = covered.union(band.values)
    return covered


def _unit(ctx: LintContext, var: Var) -> str:
    unit = ctx.logic.vars[var].unit
    return f" {unit}" if unit else ""


def _range(ctx: LintContext, var: Var, iv: Interval) -> str:
    label = ctx.logic.vars[var].label
    text = iv.describe()
    joined = f"{label} in {text}" if text[0] in "[(" else f"{label} {text}"
    return joined + _unit(ctx, var)


def _touches(iv: Interval, hole: Interval, integral: bool) -> tuple[bool, bool]:
    """(``iv`` ends where ``hole`` starts, ``iv`` starts where ``hole`` ends)."""
    step = 1 if integral else 0
    return iv.hi + step == hole.lo, iv.lo - step == hole.hi


def _edge(var: Var, bands: list[_Band], hole: Interval, integral: bool) -> tuple[_Band, Condition | None]:
    """The band that ends where ``hole`` starts (else the one that starts where it ends), and its comparison there."""
    below = [b for b in bands if any(_touches(iv, hole, integral)[0] for iv in b.values.intervals)]
    above = [b for b in bands if any(_touches(iv, hole, integral)[1] for iv in b.values.intervals)]
    band = (below or above or bands)[0]
    step = 1 if integral else 0
    edges = {hole.lo, hole.lo - step} if below else {hole.hi, hole.hi + step}
    for node in rule_nodes(band.rule):
        if (isinstance(node, Compare) and node.subject in ("fact", "days_since") and node.name == var[1]
                and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
                and canonical_number(node.value) in edges):
            return band, node
    return band, None


def _neighbours(ctx: LintContext, bands: list[_Band], hole: Interval,
                integral: bool) -> tuple[str, tuple[Related, ...]]:
    near = [b for b in bands if any(any(_touches(iv, hole, integral)) for iv in b.values.intervals)]
    text = ", ".join(f"{b.rule.key} ({b.values.describe()})" for b in near)
    return text, tuple(ctx.related(b.rule) for b in near)


def _holes(covered: IntervalSet) -> list[Interval]:
    return list(covered.hull().minus(covered).intervals)


def _dose_gaps(ctx: LintContext, therapy: str, var: Var, rules: list[Rule], dnfs: dict[int, DNF]) -> Iterator[Finding]:
    doses = _bands(ctx, var, [r for r in rules if r.then.dose_mg is not None], dnfs)
    if not doses:
        return
    blocks = _bands(ctx, var, [r for r in rules if r.then.status in BLOCKING], dnfs)
    integral = ctx.logic.vars[var].full.values.integral  # type: ignore[union-attr]
    covered = _union(doses + blocks, integral)
    for hole in _holes(covered):
        band, node = _edge(var, doses + blocks, hole, integral)
        text, related = _neighbours(ctx, doses + blocks, hole, integral)
        yield ctx.finding(
            "dose-gap", f"no dose band of {therapy} covers {_range(ctx, var, hole)} (bands around it: {text})",
            band.rule, node, related=tuple(r for r in related if r.rule != band.rule.key),
            hint="make the band edges meet: one side `<` and the other `>=` the same value")
    dose_hull = _union(doses, integral).hull()
    natural = IntervalSet.of(">=", 0, integral)
    for side in dose_hull.complement().intersect(natural).minus(covered).intervals:
        band, node = _edge(var, doses, side, integral)
        yield ctx.finding(
            "dose-open-end", f"for {_range(ctx, var, side)} no rule gives {therapy} a dose and none blocks it",
            band.rule, node, hint="extend the outermost band, or add the rule that applies there")


def _status_gaps(ctx: LintContext, therapy: str, var: Var, rules: list[Rule],
                 dnfs: dict[int, DNF]) -> Iterator[Finding]:
    bands = _bands(ctx, var, [r for r in rules if r.then.status], dnfs)
    if len(bands) < 2:
        return
    integral = ctx.logic.vars[var].full.values.integral  # type: ignore[union-attr]
    for hole in _holes(_union(bands, integral)):
        narrow = hole.is_point() or (not integral and hole.width() <= 1)
        band, node = _edge(var, bands, hole, integral)
        text, related = _neighbours(ctx, bands, hole, integral)
        if narrow:
            message = (f"no rule of {therapy} decides for {_range(ctx, var, hole)}, between the bands of "
                       f"{text}: the band edges do not meet")
            hint = "make the band edges meet: one side `<` and the other `>=` the same value"
        else:
            message = (f"no rule of {therapy} that bands {ctx.logic.vars[var].label} decides for "
                       f"{_range(ctx, var, hole)} (bands around it: {text}); there other rules or the default "
                       "(not_indicated) decide")
            hint = "intended if nothing changes in that range; otherwise add the rule for it"
        yield ctx.finding("status-gap", message, band.rule, node, severity="warning" if narrow else "info",
                          related=tuple(r for r in related if r.rule != band.rule.key), hint=hint)


def _dose_overlaps(ctx: LintContext, therapy: str, rules: list[Rule]) -> Iterator[Finding]:
    doses = [r for r in rules if r.then.dose_mg is not None]
    for i, a in enumerate(doses):
        for b in doses[i + 1:]:
            if a.then.dose_mg == b.then.dose_mg:
                continue
            try:
                both = ctx.logic.both(a, b, therapy)
            except TooComplex:
                continue
            if not both:
                continue
            later, earlier = (b, a) if ctx.order(b) >= ctx.order(a) else (a, b)
            shared = [v for v in both[0] if v[0] == "fact"]
            where = ctx.logic.describe_term(both[0], shared) or "their conditions hold together"
            yield ctx.finding(
                "dose-overlap",
                f"{later.key} ({later.then.dose_mg:g} mg) and {earlier.key} ({earlier.then.dose_mg:g} mg) both apply "
                f"to {therapy} when {where}", later, None, "then", "dose_mg", related=(ctx.related(earlier),),
                hint="make the bands exclusive: one side `<` and the other `>=` the same value")


@dataclass(frozen=True)
class _Threshold:
    rule: Rule
    node: Compare
    label: str
    value: float
    upper: bool
    strict: bool


def _thresholds(rule: Rule) -> Iterator[_Threshold]:
    def walk(node: Condition, scope: str | None) -> Iterator[_Threshold]:
        if isinstance(node, AllOf):
            for child in node.children:
                yield from walk(child, scope)
        elif isinstance(node, Not):
            yield from walk(node.child, scope)
        elif isinstance(node, Exists):
            yield from walk(node.where, node.list_name)
        elif (isinstance(node, Compare) and node.op in ORDER_OPS and isinstance(node.value, (int, float))
              and not isinstance(node.value, bool)):
            label = {
                "fact": node.name,
                "days_since": f"days since {node.name}",
                "field": f"{scope}.{node.name}",
                "days_since_field": f"days since {scope}.{node.name}",
            }.get(node.subject)
            if label is not None:
                yield _Threshold(rule, node, label, canonical_number(node.value), node.op in ("<", "<="),
                                 node.op in ("<", ">"))

    roots: list[Any] = [rule.when] + [r.when for r in rule.requires]
    if rule.then.earliest_date is not None:
        roots.append(rule.then.earliest_date.none_if)
    for root in roots:
        if root is not None:
            yield from walk(root, None)


def _near_misses(ctx: LintContext) -> Iterator[Finding]:
    groups: dict[tuple[str, float, bool], list[_Threshold]] = {}
    for rule in ctx.rules:
        for th in _thresholds(rule):
            groups.setdefault((th.label, th.value, th.upper), []).append(th)
    for items in groups.values():
        if len({th.strict for th in items}) < 2:
            continue
        for i, th in enumerate(items):
            others = [o for o in items[:i] if o.strict != th.strict]
            if not others:
                continue
            close = [o for o in others if _share_therapy(o.rule, th.rule)]
            other = (close or others)[0]
            more = len(others) - 1
            yield ctx.finding(
                "near-miss",
                f"`{th.label} {th.node.op} {format_number(th.value)}` here, `{other.label} {other.node.op} "
                f"{format_number(other.value)}` in {other.rule.key}{f' and {more} more' if more > 0 else ''}: "
                f"at exactly {format_number(th.value)}{_unit_of(ctx, th)} the two disagree",
                th.rule, th.node, severity="warning" if close else "info", related=(ctx.related(other.rule, other.node),),
                hint="use the same boundary convention for the same threshold, unless the sources differ")


def _unit_of(ctx: LintContext, th: _Threshold) -> str:
    if th.node.subject in ("days_since", "days_since_field"):
        return " days"
    spec = ctx.loaded.vocabulary.facts.get(th.node.name) if th.node.subject == "fact" else None
    return f" {spec.unit}" if spec is not None and spec.unit and spec.unit not in ("1", "a") else ""


def _share_therapy(a: Rule, b: Rule) -> bool:
    if not a.therapies and not b.therapies:
        return True
    return bool(set(a.therapies) & set(b.therapies))


__all__ = ["INF", "check"]


def dose_holes(ctx: LintContext, therapy: str, fact: str) -> list[str] | None:
    """The ranges of ``fact`` where no dose band of ``therapy`` applies and no rule blocks it (``crcl in (39, 40)
    mL/min``), or None when the therapy has no dose band on that fact."""
    var: Var = ("fact", fact)
    if var not in ctx.logic.vars or not ctx.logic.vars[var].numeric:
        return None
    rules = [r for t, rs in ctx.therapy_rules() if t == therapy for r in rs if not r.requires and not r.then.derive]
    dnfs: dict[int, DNF] = {}
    for rule in rules:
        try:
            dnfs[id(rule)] = ctx.logic.fires(rule, therapy, T)
        except TooComplex:
            continue
    considered = [r for r in rules if id(r) in dnfs and dnfs[id(r)]]
    doses = _bands(ctx, var, [r for r in considered if r.then.dose_mg is not None], dnfs)
    if not doses:
        return None
    blocks = _bands(ctx, var, [r for r in considered if r.then.status in BLOCKING], dnfs)
    integral = ctx.logic.vars[var].full.values.integral  # type: ignore[union-attr]
    return [_range(ctx, var, hole) for hole in _holes(_union(doses + blocks, integral))]
