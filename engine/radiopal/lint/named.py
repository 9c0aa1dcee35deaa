"""Named thresholds: declared relations hold, every threshold is used, and rules name their numbers.

* **relation-violated** — the values break a relation of the thresholds file (``order: [a, b]``: a below b), e.g. a
  platelet floor raised to or above the ceiling of the caution zone that starts at it. An error: the rules that
  share the numbers would contradict each other.
* **unused-threshold** — a threshold no rule names (a left-over, or a rule that writes the number out instead).
* **unnamed-number** — a rule compares with a number it writes itself, or defers by a number of days, where the
  rule base has a thresholds file: the number is then defined twice. A literal 0 (no pain, no injection yet) is
  structure, not a clinical number, and is exempt.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

from ..conditions import Compare
from ..rulebase.thresholds import ThresholdTable, in_unit, usage
from .context import LintContext
from .domains import format_number
from .findings import Finding, Related
from .thresholds import dose_holes


def check(ctx: LintContext) -> Iterator[Finding]:
    """Relations, unused thresholds and numbers written out."""
    table = ctx.loaded.thresholds
    if not table.file:
        return
    yield from _relations(table)
    yield from _tilings(ctx, table)
    used = usage(ctx.rules)
    for name, threshold in table.thresholds.items():
        if name not in used:
            yield Finding("unused-threshold", f"threshold {name!r} ({threshold.shown()}) is used by no rule",
                          file=table.file, line=threshold.line, path=f"thresholds.{name}",
                          hint="remove it, or name it in the rules that write its number out")
    yield from _unnamed(ctx)


def _tilings(ctx: LintContext, table: ThresholdTable) -> Iterator[Finding]:
    for relation in table.relations:
        if relation.tiles is None:
            continue
        therapy, fact = relation.tiles
        holes = dose_holes(ctx, therapy, fact)
        if holes is None:
            yield Finding("relation-violated", f"relation {relation.id!r}: {therapy} has no dose band on {fact}, so "
                          f"there is nothing to tile: {relation.note}", file=relation.file, line=relation.line,
                          path=f"relations[{relation.id}]", hint="check the therapy and the fact the relation names")
        elif holes:
            yield Finding("relation-violated", f"relation {relation.id!r}: the dose bands of {therapy} leave "
                          f"{'; '.join(holes)} without a dose or a block: {relation.note}", file=relation.file,
                          line=relation.line, path=f"relations[{relation.id}]",
                          hint="make the band edges meet (the dose-gap finding points at the rule)")


def _relations(table: ThresholdTable) -> Iterator[Finding]:
    for relation in table.relations:
        if relation.tiles is not None:
            continue
        named = [table.thresholds[n] for n in relation.order if n in table.thresholds]
        if len(named) != len(relation.order):
            continue  # an undefined name: the loader has reported it
        for low, high in pairwise(named):
            high_value = in_unit(high, low.unit)
            if high_value is None:
                break  # units that do not fit: reported by the loader
            broken = low.value >= high_value if relation.strict else low.value > high_value
            if broken:
                word = "below" if relation.strict else "at or below"
                yield Finding(
                    "relation-violated",
                    f"relation {relation.id!r}: {low.name} ({low.shown()}) must be {word} {high.name} "
                    f"({high.shown()}): {relation.note}",
                    file=relation.file, line=relation.line, path=f"relations[{relation.id}]",
                    related=(Related(low.name, low.file, low.line), Related(high.name, high.file, high.line)),
                    hint=f"change {low.name} or {high.name} so that the order holds, or change the relation if the "
                         "clinical knowledge changed")


def _unnamed(ctx: LintContext) -> Iterator[Finding]:
    for rule in ctx.rules:
        conditions = [rule.when, *(r.when for r in rule.requires)]
        for condition in conditions:
            for node in condition.nodes() if condition is not None else ():
                if (isinstance(node, Compare) and not node.threshold and _is_number(node.value)
                        and node.value != 0):
                    line, column, path = ctx.where(rule, node)
                    yield Finding("unnamed-number",
                                  f"`{node.describe()}` writes the number {format_number(node.value)} itself",
                                  rule=rule.key, file=rule.file, line=line, column=column, path=path,
                                  hint="define it once in thresholds.yaml and write `threshold: NAME` here")
        date = rule.then.earliest_date
        if date is not None and not date.threshold and date.plus_days:
            line, column, path = ctx.where(rule, None, "then", "earliest_date", "plus_days")
            yield Finding("unnamed-number", f"the deferral writes plus_days {date.plus_days} itself",
                          rule=rule.key, file=rule.file, line=line, column=column, path=path,
                          hint="define the interval once in thresholds.yaml and write `plus_days: {threshold: NAME}`")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
