"""Observations → contract fields: for each field, the latest result counts, and only it is read.

Results are Observations with status final, amended or corrected, effective on or before the evaluation date, whose
code (or one of whose ``component`` codes — an eGFR inside a renal panel) is in the code table. "Latest" orders by
effectiveDateTime / effectivePeriod.end / effectiveInstant, then ``issued``; results with the same timestamp are
broken by the row's ``prefer`` column. A field fed by several codes (platelets 777-3 and 26515-7) takes the latest
across them; ``rank`` makes a code a fallback (eGFR is used only when no Cockcroft-Gault CrCl exists, DATA-03).

A record is not a hand-written document: when the latest result cannot be used (a unit that cannot be read or
converted, a ``dataAbsentReason``, a value of the wrong type, same-time results that disagree) the field is left
unknown with a warning naming the resource, element and reason. Older results are skipped, not judged. A decimal
where the contract takes an integer is rounded half up, with a warning.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .codes import RADIOPAL_SYSTEM, CodeRow, CodeTable, FieldSpec
from .common import Entry, FieldValue, Sink, When, number, when_of
from .quantities import read_quantity

__all__ = ["USABLE_STATUSES", "map_observations"]

USABLE_STATUSES = frozenset({"final", "amended", "corrected"})
_VALUE_ELEMENTS = (
    "valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean", "valueInteger", "valueRange",
    "valueRatio", "valueSampledData", "valueTime", "valueDateTime", "valuePeriod",
)
_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
_EXPECTED = {
    "lab": "valueQuantity", "number": "valueQuantity", "integer": "valueInteger", "boolean": "valueBoolean",
    "code": "valueCodeableConcept", "strings": "component[].valueString",
}


@dataclass(frozen=True, eq=False)  # compared by identity: the holder is a parsed resource
class _Result:
    """One Observation (or one of its components) reporting a field: the element holding value[x] and its time."""

    entry: Entry
    row: CodeRow
    spec: FieldSpec
    when: When | None
    issued: When | None
    holder: Any  # the Observation, or the component that carries the value
    where: tuple[str | int, ...]  # element path of the holder below the resource: () or ("component", j)

    def order(self) -> tuple[dt.datetime, dt.datetime]:
        return (self.when.instant if self.when else _EARLIEST, self.issued.instant if self.issued else _EARLIEST)

    def path(self, *parts: str | int) -> str:
        return self.entry.path(*self.where, *parts)


@dataclass(frozen=True)
class _Read:
    """The value read from a result (``None`` with a note for a bound such as ``>90``) and how its unit was read."""

    value: Any
    note: str | None = None
    how: str | None = None


def _effective(obs: Any) -> When | None:
    period = obs.effectivePeriod
    for value in (obs.effectiveDateTime, period.end if period else None, obs.effectiveInstant,
                  period.start if period else None):
        when = when_of(value)
        if when is not None:
            return when
    return when_of(obs.issued)


def _present_value(holder: Any) -> str | None:
    for name in _VALUE_ELEMENTS:
        if getattr(holder, name, None) is not None:
            return name
    return None


def _match(concept: Any, table: CodeTable) -> tuple[CodeRow | None, list[str]]:
    """The row a CodeableConcept's codings map to, or (None, the fields) when they map to different fields."""
    rows: dict[str, CodeRow] = {}
    for coding in (concept.coding or ()) if concept is not None else ():
        row = table.lookup("observations", coding.system, coding.code)
        if row is not None:
            rows.setdefault(row.maps_to, row)
    if len(rows) > 1:
        return None, sorted(rows)
    return next(iter(rows.values()), None), []


def _unknown(result: _Result, sink: Sink, reason: str, *element: str | int) -> None:
    sink.warn(f"{result.spec.path} is left unknown: {reason}", result.path(*element))


def _whole(value: Any, result: _Result, sink: Sink, element: tuple[str | int, ...]) -> int:
    """An integer field's value; a decimal is rounded half up, with a warning (Synthea writes pain as 2.95)."""
    if isinstance(value, int):
        return value
    rounded = int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    sink.warn(f"{result.spec.path}: {value} is not a whole number; rounded to {rounded}", result.path(*element))
    return rounded


def _quantity_of(result: _Result, q: Any, table: CodeTable, sink: Sink, element: str) -> _Read | None:
    read, problem = read_quantity(q, result.spec, table)
    if read is None:
        _unknown(result, sink, problem or "the quantity cannot be used", element)
        return None
    if q.comparator:
        return _Read(None, f"result is a bound ({q.comparator}{number(q.value)} {q.code or q.unit or ''}), not a value")
    return _Read(read.value, how=read.how) if read.unit is None else _Read(
        {"value": read.value, "unit": read.unit, **result.row.set}, how=read.how)


def _absent(result: _Result, sink: Sink) -> None:
    holder = result.holder
    reason = holder.dataAbsentReason
    if reason is not None:
        code = next((c.code for c in reason.coding or () if c.code), None)
        said = reason.text or code or "given"
        _unknown(result, sink, f"the latest result has no value (dataAbsentReason: {said})", "dataAbsentReason")
        return
    parts = getattr(holder, "component", None) or ()
    if parts:
        codes = sorted({f"{c.system}|{c.code}" for comp in parts for c in comp.code.coding or () if c.code})
        _unknown(result, sink, "the latest result has no value[x]; its values are in components radiopal does not "
                               f"read ({', '.join(codes) or 'uncoded'})", "component")
        return
    _unknown(result, sink, "the latest result has no value[x]", "value[x]")


def _read(result: _Result, table: CodeTable, sink: Sink) -> _Read | None:
    """The usable value of one result, or ``None`` after a warning (the field is then unknown)."""
    spec = result.spec
    holder = result.holder
    present = _present_value(holder)
    expected = _EXPECTED[spec.kind]
    if present is None and spec.kind != "strings":
        _absent(result, sink)
        return None

    def wrong() -> _Read | None:
        _unknown(result, sink, f"expected {expected}, found {present or 'no value'}", present or "value[x]")
        return None

    if spec.kind in {"lab", "number"}:
        if present != "valueQuantity":
            return wrong()
        return _quantity_of(result, holder.valueQuantity, table, sink, "valueQuantity")
    if spec.kind == "integer":
        if present == "valueInteger":
            return _Read(int(holder.valueInteger))
        if present == "valueQuantity" and spec.units:
            read = _quantity_of(result, holder.valueQuantity, table, sink, "valueQuantity")
            if read is None or read.value is None:
                return read
            return _Read(_whole(read.value, result, sink, ("valueQuantity", "value")), how=read.how)
        return wrong()
    if spec.kind == "boolean":
        return _Read(bool(holder.valueBoolean)) if present == "valueBoolean" else wrong()
    if spec.kind == "code":
        if present != "valueCodeableConcept":
            return wrong()
        codes = [c.code for c in holder.valueCodeableConcept.coding or () if c.system == RADIOPAL_SYSTEM and c.code]
        good = [c for c in codes if c in spec.answers]
        if len(set(good)) == 1:
            return _Read(good[0])
        found = f"found {', '.join(repr(c) for c in codes)}" if codes else "found no radiopal coding"
        _unknown(result, sink, f"expected one of {', '.join(spec.answers)} (system {RADIOPAL_SYSTEM}); {found}",
                 "valueCodeableConcept", "coding")
        return None
    # strings: one component per item, in order
    items: list[str] = []
    for j, comp in enumerate(holder.component or ()):
        if comp.valueString is None:
            _unknown(result, sink, "expected each component to carry valueString", "component", j)
            return None
        items.append(str(comp.valueString))
    if not items:
        return wrong()
    return _Read(items)


def _on_or_before(when: When | None, day: dt.date | None) -> bool:
    """Whether a result was known on the evaluation day (an undated result is kept; it sorts oldest)."""
    if day is None or when is None:
        return True
    return (when.day or when.instant.date()) <= day


def _results(entries: Iterable[Entry], table: CodeTable, sink: Sink, day: dt.date | None) -> dict[str, list[_Result]]:
    """Every result that reports a field, per field; nothing is read or judged yet (indexes, no values)."""
    out: dict[str, list[_Result]] = {}
    for entry in entries:
        if entry.type != "Observation":
            continue
        obs = entry.resource
        row, conflict = _match(obs.code, table)
        if conflict:
            sink.warn(f"the codings map to different fields ({', '.join(conflict)}); radiopal does not choose, and "
                      "the result is not used", entry.path("code", "coding"))
            continue
        parts: list[tuple[CodeRow, Any, tuple[str | int, ...]]] = [(row, obs, ())] if row is not None else []
        for j, comp in enumerate(obs.component or ()):
            crow, _ = _match(comp.code, table)
            if crow is not None and (row is None or crow.maps_to != row.maps_to):
                parts.append((crow, comp, ("component", j)))
        if not parts:
            sink.ignore(entry, "Observation.code is not in kb/fhir/codes.yaml")
            continue
        if obs.status not in USABLE_STATUSES:
            sink.ignore(entry, f"status {obs.status!r} (radiopal uses final, amended, corrected)")
            continue
        when = _effective(obs)
        if not _on_or_before(when, day):
            sink.ignore(entry, "effective after the evaluation date")
            continue
        issued = when_of(obs.issued)
        for prow, holder, where in parts:
            spec = table.fields[prow.maps_to]
            out.setdefault(spec.path, []).append(_Result(entry, prow, spec, when, issued, holder, where))
    return out


def _choose(field_path: str, found: list[_Result], table: CodeTable, sink: Sink) -> tuple[_Result, _Read] | None:
    """The latest result of the best-ranked code, read; ``None`` (field unknown) when it cannot be used or when
    results of the same time disagree. Older results are skipped without being read."""
    best_rank = min(r.row.rank for r in found)
    pool = sorted((r for r in found if r.row.rank == best_rank), key=lambda r: (*r.order(), r.row.prefer),
                  reverse=True)
    latest = pool[0]
    ties = [r for r in pool if r.order() == latest.order() and r.row.prefer == latest.row.prefer]
    reads: list[tuple[_Result, _Read]] = []
    for result in ties:
        read = _read(result, table, sink)
        if read is None:
            return None
        reads.append((result, read))
    distinct = {repr(read.value) for _, read in reads}
    if len(distinct) > 1:
        shown = "; ".join(f"{r.entry.ref}: {read.value!r}" for r, read in reads)
        sink.warn(f"{field_path} is left unknown: results with the same time disagree ({shown}); radiopal does not "
                  "choose", latest.path())
        return None
    read_ids = {id(r) for r in ties}
    for other in found:
        if other.row.rank > best_rank:
            sink.ignore(other.entry, f"{field_path}: a preferred code ({latest.row.code}) has a result")
        elif id(other) not in read_ids:
            sink.ignore(other.entry, f"{field_path}: superseded by {latest.entry.ref}")
    return reads[0]


def _day(result: _Result, sink: Sink, target: str) -> str | None:
    if result.when is None:
        sink.warn(f"{target} is left unknown: {result.entry.ref} has no effective date", result.path("effective[x]"))
        return None
    if result.when.day is None:
        sink.warn(f"{target} is left unknown: it needs a full date (YYYY-MM-DD), got {result.when.text!r}",
                  result.entry.path("effective[x]"))
        return None
    return result.when.day.isoformat()


def map_observations(entries: Iterable[Entry], table: CodeTable, sink: Sink,
                     day: dt.date | None = None) -> dict[str, FieldValue]:
    """Map Observations to contract fields (by code-table row), recording provenance in ``sink``.

    Only results effective on or before ``day`` (the evaluation date) count. Returns field path → value for the
    fields found, including the dates derived from them (``labs.date``, ``bone_disease.bone_scan.date``,
    ``dental.exam_date``) and ``labs.calcium_lln``. A field whose latest result cannot be used is left out (unknown)
    with a warning in ``sink``.
    """
    out: dict[str, FieldValue] = {}
    chosen: dict[str, _Result] = {}
    for field_path, found in _results(entries, table, sink, day).items():
        picked = _choose(field_path, found, table, sink)
        if picked is None:
            continue
        pick, read = picked
        if read.value is None:
            sink.warn(f"{field_path} is left unknown: the latest result {read.note}", pick.path("valueQuantity"))
            continue
        chosen[field_path] = pick
        out[field_path] = FieldValue(read.value, pick.entry, pick.row, pick.when)
        sink.cite(field_path, pick.entry, matched=pick.row.system,
                  code=f"{table.systems[pick.row.system]}|{pick.row.code}", verified=pick.row.verified,
                  effective=pick.when.text if pick.when else None, unit=read.how,
                  element=".".join(str(p) for p in pick.where) or None)
        spec = pick.spec
        if spec.date_to and pick.when is not None and (read.value is True or not spec.date_when_true):
            when = _day(pick, sink, spec.date_to)
            if when is not None:
                out[spec.date_to] = FieldValue(when, pick.entry, pick.row, pick.when)
                sink.cite(spec.date_to, pick.entry, derived=f"effective date of {field_path}")
        if spec.reference_low_to:
            low = _reference_low(pick, table, sink)
            if low is not None:
                out[spec.reference_low_to] = FieldValue(low, pick.entry, pick.row, pick.when)
                sink.cite(spec.reference_low_to, pick.entry, derived=f"referenceRange.low of {field_path}")
    _lab_date(chosen, table, out, sink)
    return out


def _reference_low(pick: _Result, table: CodeTable, sink: Sink) -> dict[str, Any] | None:
    ranges = getattr(pick.holder, "referenceRange", None) or ()
    if not ranges or ranges[0].low is None:
        return None
    read, problem = read_quantity(ranges[0].low, pick.spec, table)
    if read is None or read.unit is None:
        sink.warn(f"the reference range's low bound is not used: {problem}", pick.path("referenceRange", 0, "low"))
        return None
    return {"value": read.value, "unit": read.unit}


_COUNT_FIELDS = ("labs.platelets", "labs.wbc", "labs.anc", "labs.haemoglobin")


def _lab_date(chosen: dict[str, _Result], table: CodeTable, out: dict[str, FieldValue], sink: Sink) -> None:
    """labs.date: the OLDEST effective date among the blood counts used (else the latest of the other labs).

    The contract has one date for all labs, and DATA-04 judges the counts by it (≤ 7 days for a radionuclide). Taking
    the latest date would let an old platelet count pass as current beside a fresh haemoglobin; the oldest count date
    is the safer reading. Bone-health rules set no window, so the other labs do not hold the date back.
    """
    labs = [chosen[f] for f in table.lab_date_fields if f in chosen]
    if not labs:
        return
    counts = [chosen[f] for f in _COUNT_FIELDS if f in chosen and chosen[f].when is not None]
    pick = min(counts, key=lambda c: c.order()) if counts else max(labs, key=lambda c: c.order())
    which = "oldest effective date of the blood counts used" if counts else "latest effective date of the labs used"
    day = _day(pick, sink, "labs.date")
    if day is None:
        return
    out["labs.date"] = FieldValue(day, pick.entry, pick.row, pick.when)
    sink.cite("labs.date", pick.entry, derived=which)
    differing = sorted(
        (c for c in labs if c.when is not None and c.when.day is not None and c.when.day.isoformat() != day),
        key=lambda c: c.order(),
    )
    if differing:
        names = ", ".join(f"{c.spec.path} {c.when.iso()}" for c in differing if c.when)
        sink.warn(f"lab results carry different dates; labs.date is the {which} ({day}); others: {names}",
                  differing[0].entry.path("effective[x]"))
