"""The rule model: what the loader builds from YAML and the compiler turns into experta rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..conditions import Condition

STATUSES = ("recommended", "eligible", "deferred", "contraindicated", "not_indicated", "insufficient_data")
#: Brief §13 precedence, strongest first: contraindicated > not_indicated > deferred > insufficient_data >
#: recommended > eligible.
PRECEDENCE = ("contraindicated", "not_indicated", "deferred", "insufficient_data", "recommended", "eligible")
POSITIVE = frozenset({"recommended", "eligible"})


@dataclass(frozen=True)
class Advisory:
    """An advisory a rule emits (contract §B.4); ``text`` overrides the catalogue's default text."""

    id: str
    text: str | None = None


@dataclass(frozen=True)
class DateSpec:
    """How a deferral's earliest date is computed: a date fact, or the latest matching list entry, plus days."""

    plus_days: int
    fact: str | None = None
    of: str | None = None
    field: str | None = None
    none_if: Condition | None = None
    threshold: str = ""  # the named duration (thresholds.yaml) plus_days came from, if any


@dataclass(frozen=True)
class Conclusion:
    """What a rule concludes when it fires."""

    status: str | None = None
    earliest_date: DateSpec | None = None
    dose_mg: float | None = None
    advisories: tuple[Advisory, ...] = ()
    derive: str | None = None
    info: str | None = None


@dataclass(frozen=True)
class Requirement:
    """A fact a therapy needs (contract §A.4), optionally only when a condition holds (e.g. female)."""

    fact: str
    when: Condition | None = None


@dataclass(frozen=True)
class Rule:
    """One rule of a rule base, with its provenance."""

    id: str
    title: str
    version: int
    strength: str
    verification: str
    sources: tuple[str, ...]
    then: Conclusion
    therapies: tuple[str, ...] = ()
    when: Condition | None = None
    requires: tuple[Requirement, ...] = ()
    variant: str = ""
    summary: str = ""
    unverified: str = ""
    note: str = ""
    file: str = ""
    line: int = 0
    area: str = ""
    raw: Any = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        """Unique key within a rule base: the brief id, plus the variant when there is one."""
        return f"{self.id}/{self.variant}" if self.variant else self.id

    @property
    def is_unverified(self) -> bool:
        return self.verification == "U"

    @property
    def is_requirement(self) -> bool:
        return bool(self.requires)

    def facts(self) -> set[str]:
        """Facts the rule reads (its condition, its requirements, its date)."""
        out: set[str] = set()
        if self.when is not None:
            out |= self.when.facts()
        for req in self.requires:
            out.add(req.fact)
            if req.when is not None:
                out |= req.when.facts()
        spec = self.then.earliest_date
        if spec is not None:
            if spec.fact:
                out.add(spec.fact)
            if spec.of:
                out.add(spec.of)
        return out

    def statuses(self) -> set[str]:
        """Therapies whose final status this rule reads: such a rule runs in the second phase."""
        out: set[str] = set()
        if self.when is not None:
            out |= self.when.statuses()
        for req in self.requires:
            if req.when is not None:
                out |= req.when.statuses()
        return out

    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class RuleFile:
    """One parsed rule file."""

    path: str
    area: str
    version: str
    title: str
    rules: tuple[Rule, ...]
    derived_facts: dict[str, str]
