"""A fact's value for one patient (known, or unknown with the paths that are missing) and the table of them all.

Kept apart from :mod:`.facts` (which builds the table) and :mod:`.derive` (which computes derived facts) so both can
use them without importing each other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FactTable", "FactValue"]


@dataclass(frozen=True, eq=False)
class FactValue:
    """A fact for one patient: known with a value, or unknown with the paths that are missing.

    Compared and hashed by identity, so it can ride inside an experta fact whatever its value holds.
    """

    name: str
    known: bool
    value: Any = None
    missing: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    original: Any = None
    note: str = ""

    @staticmethod
    def of(name: str, value: Any, sources: tuple[str, ...] = (), original: Any = None, note: str = "") -> FactValue:
        return FactValue(name, True, value, (), sources, original, note)

    @staticmethod
    def unknown(name: str, missing: tuple[str, ...], sources: tuple[str, ...] = (), note: str = "") -> FactValue:
        return FactValue(name, False, None, tuple(sorted(set(missing))), sources or missing, None, note)


@dataclass
class FactTable:
    """All facts of one patient, by name, plus the evaluation date."""

    evaluation_date: dt.date
    facts: dict[str, FactValue] = field(default_factory=dict)

    def __getitem__(self, name: str) -> FactValue:
        return self.facts[name]

    def __contains__(self, name: object) -> bool:
        return name in self.facts

    def __iter__(self) -> Iterator[FactValue]:
        return iter(self.facts.values())

    def get(self, name: str) -> FactValue | None:
        return self.facts.get(name)

    def value(self, name: str) -> Any:
        """The value of a known fact, else None."""
        fact = self.facts.get(name)
        return fact.value if fact is not None and fact.known else None
