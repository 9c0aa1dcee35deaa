"""Value domains for static analysis: interval sets for numbers, finite sets for everything else.

A :class:`Domain` is the set of states a variable may be in: some of its values, and possibly *unknown* (the fact is
absent). Conditions are three-valued, so "unknown" is a state like any other. Domains are closed under intersection
and complement; a conjunction of constraints on one variable is satisfiable when the intersection is not empty.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

INF = math.inf


def canonical_number(value: Any) -> float:
    """A threshold as a float rounded to 10 significant digits, so 88.4 µmol/L → 1.0 mg/dL compares equal to 1.0."""
    return float(f"{float(value):.10g}")


def format_number(value: float) -> str:
    """``60.0`` → ``60``, ``49.5`` → ``49.5``."""
    return f"{value:.10g}"


@dataclass(frozen=True)
class Interval:
    """One interval of the real line; ``lo``/``hi`` may be ±infinity (then open at that end)."""

    lo: float
    hi: float
    lo_closed: bool
    hi_closed: bool

    def is_empty(self) -> bool:
        return self.lo > self.hi or (self.lo == self.hi and not (self.lo_closed and self.hi_closed))

    def is_point(self) -> bool:
        return self.lo == self.hi

    def width(self) -> float:
        return self.hi - self.lo

    def describe(self) -> str:
        """``< 30``, ``>= 40``, ``= 60``, ``[30, 40)``."""
        if self.is_point():
            return f"= {format_number(self.lo)}"
        if self.lo == -INF and self.hi == INF:
            return "any value"
        if self.lo == -INF:
            return f"{'<=' if self.hi_closed else '<'} {format_number(self.hi)}"
        if self.hi == INF:
            return f"{'>=' if self.lo_closed else '>'} {format_number(self.lo)}"
        return (f"{'[' if self.lo_closed else '('}{format_number(self.lo)}, {format_number(self.hi)}"
                f"{']' if self.hi_closed else ')'}")


def _integral(iv: Interval) -> Interval | None:
    """The same interval restricted to integers, as a closed interval (None when it holds no integer)."""
    lo = -INF if iv.lo == -INF else float(math.ceil(iv.lo)) if iv.lo_closed else float(math.floor(iv.lo) + 1)
    hi = INF if iv.hi == INF else float(math.floor(iv.hi)) if iv.hi_closed else float(math.ceil(iv.hi) - 1)
    if lo > hi:
        return None
    return Interval(lo, hi, lo != -INF, hi != INF)


def _normalise(intervals: Iterable[Interval], integral: bool) -> tuple[Interval, ...]:
    items: list[Interval] = []
    for iv in intervals:
        if iv.is_empty():
            continue
        if integral:
            fixed = _integral(iv)
            if fixed is None:
                continue
            iv = fixed
        items.append(iv)
    items.sort(key=lambda i: (i.lo, not i.lo_closed))
    merged: list[Interval] = []
    for iv in items:
        if merged:
            cur = merged[-1]
            touching = (iv.lo <= cur.hi + 1) if integral else (
                iv.lo < cur.hi or (iv.lo == cur.hi and (cur.hi_closed or iv.lo_closed)))
            if touching:
                if iv.hi > cur.hi or (iv.hi == cur.hi and iv.hi_closed):
                    merged[-1] = Interval(cur.lo, iv.hi, cur.lo_closed, iv.hi_closed)
                continue
        merged.append(iv)
    return tuple(merged)


@dataclass(frozen=True)
class IntervalSet:
    """A finite union of disjoint intervals; ``integral`` restricts it to integers (integer facts, days)."""

    intervals: tuple[Interval, ...]
    integral: bool = False

    @staticmethod
    def full(integral: bool = False) -> IntervalSet:
        return IntervalSet((Interval(-INF, INF, False, False),), integral)

    @staticmethod
    def build(intervals: Iterable[Interval], integral: bool = False) -> IntervalSet:
        return IntervalSet(_normalise(intervals, integral), integral)

    @staticmethod
    def of(op: str, value: float, integral: bool = False) -> IntervalSet:
        """The values ``x`` with ``x op value`` (op one of ``< <= > >= == !=``)."""
        v = canonical_number(value)
        shapes = {
            "<": Interval(-INF, v, False, False),
            "<=": Interval(-INF, v, False, True),
            ">": Interval(v, INF, False, False),
            ">=": Interval(v, INF, True, False),
            "==": Interval(v, v, True, True),
        }
        if op == "!=":
            return IntervalSet.build([shapes["=="]], integral).complement()
        return IntervalSet.build([shapes[op]], integral)

    @staticmethod
    def points(values: Iterable[float], integral: bool = False) -> IntervalSet:
        return IntervalSet.build((Interval(v, v, True, True) for v in map(canonical_number, values)), integral)

    def intersect(self, other: IntervalSet) -> IntervalSet:
        out = []
        for a in self.intervals:
            for b in other.intervals:
                if a.lo > b.lo or (a.lo == b.lo and not a.lo_closed):
                    lo, lo_closed = a.lo, a.lo_closed
                else:
                    lo, lo_closed = b.lo, b.lo_closed
                if a.hi < b.hi or (a.hi == b.hi and not a.hi_closed):
                    hi, hi_closed = a.hi, a.hi_closed
                else:
                    hi, hi_closed = b.hi, b.hi_closed
                out.append(Interval(lo, hi, lo_closed, hi_closed))
        return IntervalSet.build(out, self.integral or other.integral)

    def union(self, other: IntervalSet) -> IntervalSet:
        return IntervalSet.build((*self.intervals, *other.intervals), self.integral or other.integral)

    def complement(self) -> IntervalSet:
        out = []
        lo, lo_closed = -INF, False
        for iv in self.intervals:
            out.append(Interval(lo, iv.lo, lo_closed, not iv.lo_closed))
            lo, lo_closed = iv.hi, not iv.hi_closed
        out.append(Interval(lo, INF, lo_closed, False))
        return IntervalSet.build(out, self.integral)

    def minus(self, other: IntervalSet) -> IntervalSet:
        return self.intersect(other.complement())

    def is_empty(self) -> bool:
        return not self.intervals

    def is_full(self) -> bool:
        return len(self.intervals) == 1 and self.intervals[0].lo == -INF and self.intervals[0].hi == INF

    def hull(self) -> IntervalSet:
        """The smallest single interval holding the whole set."""
        if not self.intervals:
            return self
        first, last = self.intervals[0], self.intervals[-1]
        return IntervalSet.build([Interval(first.lo, last.hi, first.lo_closed, last.hi_closed)], self.integral)

    def describe(self) -> str:
        if not self.intervals:
            return "no value"
        return " or ".join(iv.describe() for iv in self.intervals)


@dataclass(frozen=True)
class FiniteSet:
    """A set of discrete values. With a ``universe`` (booleans, enums, statuses) it is finite; without one
    (free strings) it may be *cofinite*: every value except ``items``."""

    items: frozenset[Hashable]
    universe: frozenset[Hashable] | None = None
    cofinite: bool = False

    @staticmethod
    def full(universe: Iterable[Hashable] | None) -> FiniteSet:
        if universe is None:
            return FiniteSet(frozenset(), None, True)
        values = frozenset(universe)
        return FiniteSet(values, values)

    def with_items(self, items: Iterable[Hashable]) -> FiniteSet:
        values = frozenset(items)
        if self.universe is not None:
            return FiniteSet(values & self.universe, self.universe)
        return FiniteSet(values, None, False)

    def intersect(self, other: FiniteSet) -> FiniteSet:
        universe = self.universe if self.universe is not None else other.universe
        if not self.cofinite and not other.cofinite:
            return FiniteSet(self.items & other.items, universe)
        if self.cofinite and other.cofinite:
            return FiniteSet(self.items | other.items, universe, True)
        finite, co = (self, other) if not self.cofinite else (other, self)
        return FiniteSet(finite.items - co.items, universe)

    def union(self, other: FiniteSet) -> FiniteSet:
        return self.complement().intersect(other.complement()).complement()

    def complement(self) -> FiniteSet:
        if self.universe is not None:
            return FiniteSet(self.universe - self.items, self.universe)
        return FiniteSet(self.items, None, not self.cofinite)

    def is_empty(self) -> bool:
        return not self.cofinite and not self.items

    def is_full(self) -> bool:
        if self.universe is not None:
            return self.items == self.universe
        return self.cofinite and not self.items

    def describe(self) -> str:
        def show(v: Hashable) -> str:
            return "yes" if v is True else "no" if v is False else str(v)

        names = ", ".join(sorted(show(v) for v in self.items))
        if self.cofinite:
            return f"anything but {{{names}}}" if names else "any value"
        return f"{{{names}}}" if names else "no value"


ValueSet = IntervalSet | FiniteSet


@dataclass(frozen=True)
class Domain:
    """The states a variable may be in: a set of values, and whether *unknown* is allowed."""

    unknown: bool
    values: ValueSet

    def __and__(self, other: Domain) -> Domain:
        return Domain(self.unknown and other.unknown, self.values.intersect(other.values))  # type: ignore[arg-type]

    def __or__(self, other: Domain) -> Domain:
        return Domain(self.unknown or other.unknown, self.values.union(other.values))  # type: ignore[arg-type]

    def complement(self) -> Domain:
        return Domain(not self.unknown, self.values.complement())

    def is_empty(self) -> bool:
        return not self.unknown and self.values.is_empty()

    def is_full(self) -> bool:
        return self.unknown and self.values.is_full()

    def describe(self) -> str:
        text = self.values.describe()
        if self.unknown:
            return "unknown" if self.values.is_empty() else f"{text} or unknown"
        return text
