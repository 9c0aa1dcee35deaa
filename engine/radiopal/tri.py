"""Three-valued (Kleene) truth: a condition is met, not met, or unknown because data are missing."""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Tri(enum.Enum):
    """Met / not met / unknown. ``unknown`` is never silently false."""

    TRUE = "met"
    FALSE = "not_met"
    UNKNOWN = "unknown"

    @staticmethod
    def of(value: bool) -> Tri:
        return Tri.TRUE if value else Tri.FALSE

    def __invert__(self) -> Tri:
        if self is Tri.TRUE:
            return Tri.FALSE
        if self is Tri.FALSE:
            return Tri.TRUE
        return Tri.UNKNOWN


def all_of(values: Iterable[Tri]) -> Tri:
    """Kleene AND: false if any is false, else unknown if any is unknown, else true."""
    unknown = False
    for v in values:
        if v is Tri.FALSE:
            return Tri.FALSE
        if v is Tri.UNKNOWN:
            unknown = True
    return Tri.UNKNOWN if unknown else Tri.TRUE


def any_of(values: Iterable[Tri]) -> Tri:
    """Kleene OR: true if any is true, else unknown if any is unknown, else false."""
    unknown = False
    for v in values:
        if v is Tri.TRUE:
            return Tri.TRUE
        if v is Tri.UNKNOWN:
            unknown = True
    return Tri.UNKNOWN if unknown else Tri.FALSE
