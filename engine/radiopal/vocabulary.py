"""The fact vocabulary (``kb/facts.yaml``): every fact a rule may name, with its type, unit and origin."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from .resources import kb_dir
from .yamlio import load_document

FACT_TYPES = ("boolean", "integer", "number", "enum", "date", "string", "string_list", "list")


@dataclass(frozen=True)
class FieldSpec:
    """A field of the entries of a list fact (e.g. ``chemotherapy[].last_dose_date``)."""

    name: str
    type: str
    values: tuple[str, ...] = ()
    derived_from: str = ""  # a field computed from another field of the entry (``drugs`` from ``agent``)


@dataclass(frozen=True)
class FactSpec:
    """One fact of the vocabulary."""

    name: str
    type: str
    description: str = ""
    unit: str | None = None
    values: tuple[str, ...] = ()
    origin: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    derived_by: str | None = None  # rule id, for facts a rule base derives

    @property
    def group(self) -> str:
        """The experta fact this fact travels in: one ``patient`` fact for everything read from the document, one fact
        per derived fact (rules chain on those).

        One fact per patient keeps experta's network to a single alpha test and a TEST per rule, with no joins: the
        measured cost per patient grows with the number of rules, not rules × joins (see benchmarks/). Which facts a
        firing actually read is recorded from its condition's evaluation.
        """
        if self.derived_by:
            return f"derived:{self.name}"
        return "patient"

    @property
    def source_path(self) -> str | None:
        """The document field the fact is read from, when it is read from one."""
        if "path" in self.origin:
            return str(self.origin["path"])
        if "lab" in self.origin:
            return f"labs.{self.origin['lab']}"
        return None


@dataclass(frozen=True)
class Vocabulary:
    """Facts by name."""

    facts: dict[str, FactSpec]
    version: str = ""

    def __contains__(self, name: object) -> bool:
        return name in self.facts

    def __getitem__(self, name: str) -> FactSpec:
        return self.facts[name]

    def with_derived(self, extra: dict[str, FactSpec]) -> Vocabulary:
        """A copy that also knows the facts a rule base derives."""
        return Vocabulary({**self.facts, **extra}, self.version)


def load_vocabulary(path: str | Path | None = None) -> Vocabulary:
    """Read the fact vocabulary (default: the shipped ``kb/facts.yaml``)."""
    if path is None:
        return _shipped()
    return _parse(load_document(path, kind="fact vocabulary").data)


@cache
def _shipped() -> Vocabulary:
    return _parse(load_document(kb_dir() / "facts.yaml", kind="fact vocabulary").data)


def _parse(raw: dict[str, Any]) -> Vocabulary:
    facts = {}
    for name, spec in raw["facts"].items():
        fields = {
            fname: FieldSpec(fname, fspec["type"], tuple(fspec.get("values", ())), str(fspec.get("from", "")))
            for fname, fspec in (spec.get("fields") or {}).items()
        }
        facts[name] = FactSpec(
            name=name,
            type=spec["type"],
            description=spec.get("description", ""),
            unit=spec.get("unit"),
            values=tuple(spec.get("values", ())),
            origin=dict(spec.get("from", {})),
            fields=fields,
        )
    return Vocabulary(facts, str(raw.get("version", "")))
