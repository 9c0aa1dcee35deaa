"""Shared pieces of the FHIR mapper: one bundle entry, a point in time, and the sink that collects findings.

The sink is the one place that turns findings into :class:`~radiopal.errors.Problem` objects with element paths
(``entry[3].resource.valueQuantity.code``), so the mapping modules only say *what* is wrong and *where*.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..errors import Problem

__all__ = ["Entry", "FieldValue", "MappingWarning", "ReferenceIndex", "Sink", "When", "find_extension", "number",
           "when_of"]


@dataclass(frozen=True)
class Entry:
    """One ``Bundle.entry`` with a resource: its index, ``fullUrl`` and the parsed R4B resource."""

    index: int
    full_url: str | None
    resource: Any

    @property
    def type(self) -> str:
        """The FHIR resource type (``Observation``)."""
        return str(self.resource.get_resource_type())

    @property
    def ref(self) -> str:
        """``Type/id`` (or just ``Type`` when the resource has no id, as in many transaction bundles)."""
        rid = getattr(self.resource, "id", None)
        return f"{self.type}/{rid}" if rid else self.type

    def path(self, *parts: str | int) -> str:
        """Element path below this entry's resource: ``entry[3].resource.valueQuantity.code``."""
        out = f"entry[{self.index}].resource"
        for part in parts:
            out += f"[{part}]" if isinstance(part, int) else f".{part}"
        return out

    def source(self) -> dict[str, Any]:
        """Provenance stub: ``{"resource": "Observation/o1", "fullUrl": "urn:uuid:..."}``."""
        return {"resource": self.ref, "fullUrl": self.full_url}


@dataclass(frozen=True)
class When:
    """A FHIR ``date``/``dateTime``/``instant``: an instant for ordering, and the calendar day when it is precise.

    ``day`` is ``None`` for partial dates (``2025`` or ``2025-05``); ``instant`` is then the start of that period.
    A dateTime's day is the day in its own time-zone offset (no conversion), as written by the sender.
    """

    instant: dt.datetime
    day: dt.date | None
    text: str

    def iso(self) -> str | None:
        """``YYYY-MM-DD`` or ``None`` when the date is partial."""
        return self.day.isoformat() if self.day else None


def when_of(value: Any) -> When | None:
    """Turn a value parsed by fhir.resources (``date``, aware ``datetime`` or a partial-date string) into a When."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        try:
            instant = aware.astimezone(dt.UTC)
        except OverflowError:  # year 1 or 9999 with an offset: the UTC instant falls outside datetime's range
            instant = aware.replace(tzinfo=dt.UTC)
        return When(instant, value.date(), value.isoformat())
    if isinstance(value, dt.date):
        return When(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC), value, value.isoformat())
    text = str(value)
    parts = text.split("-")
    try:
        year = int(parts[0])
        month = int(parts[1]) if len(parts) > 1 else 1
    except ValueError:
        return None
    return When(dt.datetime(year, month, 1, tzinfo=dt.UTC), None, text)


def find_extension(element: Any, url: str) -> Any:
    """The first extension of ``element`` with this URL, or ``None``."""
    for ext in getattr(element, "extension", None) or ():
        if ext.url == url:
            return ext
    return None


def number(value: Decimal | int | float) -> int | float:
    """A FHIR decimal as the plain number the contract document uses: ``Decimal('210')`` → 210, ``'6.1'`` → 6.1."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, int):
        return value
    dec = value if isinstance(value, Decimal) else Decimal(str(value))
    exponent = dec.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0:
        return int(dec)
    return float(dec)


@dataclass(frozen=True)
class FieldValue:
    """A contract field's value, the resource it came from, the code-table row that matched and its date."""

    value: Any
    entry: Entry
    row: Any = None
    when: When | None = None
    code: str | None = None  # the coding that matched, as ``system|code``


class ReferenceIndex:
    """Resolves ``Reference.reference`` strings (``Type/id``, a ``fullUrl``, or an absolute URL) to bundle entries."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self._by_key: dict[str, Entry] = {}
        for entry in entries:
            rid = getattr(entry.resource, "id", None)
            if rid:
                self._by_key.setdefault(f"{entry.type}/{rid}", entry)
            if entry.full_url:
                self._by_key.setdefault(entry.full_url, entry)

    def resolve(self, reference: str | None) -> Entry | None:
        """The entry a reference points to, or ``None`` (contained ``#id`` references are not resolved here)."""
        if not reference or reference.startswith("#"):
            return None
        found = self._by_key.get(reference)
        if found is None and "/" in reference:
            parts = reference.rstrip("/").split("/")
            if len(parts) >= 2:
                found = self._by_key.get(f"{parts[-2]}/{parts[-1]}")
                if found is None and len(parts) >= 4 and parts[-2] == "_history":
                    found = self._by_key.get(f"{parts[-4]}/{parts[-3]}")
        return found


_ENTRY_PATH = re.compile(r"^entry\[(\d+)\]\.resource(?:\.(.*))?$")


@dataclass(frozen=True)
class MappingWarning:
    """A value of the record radiopal could not use (or a choice it made), contract §D ``warnings`` item.

    ``source`` names the resource (``Observation/o1``; the ``fullUrl`` or ``Bundle`` when it has no id),
    ``element`` the FHIR element (``Observation.valueQuantity.code``), ``message`` the reason and what radiopal did
    (the field is left unknown, the value was rounded ...). ``path`` is the element's place in the Bundle
    (``entry[3].resource.valueQuantity.code``).
    """

    source: str
    element: str
    message: str
    path: str = ""
    file: str = ""
    severity: str = "warning"

    def to_dict(self) -> dict[str, str]:
        """``{source, element, message}`` (contract §D)."""
        return {"source": self.source, "element": self.element, "message": self.message}

    def __str__(self) -> str:
        return f"{self.source} {self.element}: {self.message}"


@dataclass
class Sink:
    """Collects errors, warnings, ignored resources and provenance while one bundle is mapped.

    Errors make the Bundle unusable (no Patient, no patient id, a bad evaluation date); every other finding is a
    :class:`MappingWarning` and leaves the field it concerns unknown.
    """

    file: str = ""
    errors: list[Problem] = field(default_factory=list)
    warnings: list[MappingWarning] = field(default_factory=list)
    ignored: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)
    entries: dict[int, Entry] = field(default_factory=dict)
    _warned: set[MappingWarning] = field(default_factory=set)

    def error(self, message: str, path: str = "", hint: str = "") -> None:
        """Record a problem that makes the bundle unmappable (raised together at the end)."""
        self.errors.append(Problem(message, path=path, file=self.file, hint=hint))

    def warn(self, message: str, path: str = "") -> None:
        """Record a value radiopal could not use (the field stays unknown) or a choice it made, at a Bundle path."""
        source, element = "Bundle", f"Bundle.{path}" if path else "Bundle"
        match = _ENTRY_PATH.match(path)
        if match:
            entry = self.entries.get(int(match.group(1)))
            if entry is not None:
                source = entry.ref if getattr(entry.resource, "id", None) else (entry.full_url or path)
                element = entry.type + (f".{match.group(2)}" if match.group(2) else "")
        warning = MappingWarning(source, element, message, path=path, file=self.file)
        if warning not in self._warned:
            self._warned.add(warning)
            self.warnings.append(warning)

    def ignore(self, entry: Entry, reason: str) -> None:
        """Record a resource that contributes nothing to the document, and why."""
        self.ignored.append({**entry.source(), "reason": reason})

    def cite(self, field_path: str, entry: Entry | None, **extra: Any) -> None:
        """Record where a document field came from (resource id, fullUrl and how it matched)."""
        base: dict[str, Any] = entry.source() if entry is not None else {"resource": None, "fullUrl": None}
        base.update({k: v for k, v in extra.items() if v is not None})
        self.provenance[field_path] = base
