"""Observations → contract fields: pick the latest usable result per field and read its value[x].

Usable = status final, amended or corrected. "Latest" orders by effectiveDateTime / effectivePeriod.end /
effectiveInstant, then ``issued``; results with the same timestamp are broken by the row's ``prefer`` column and
must otherwise agree. A field fed by several codes (platelets 777-3 and 26515-7) takes the latest across them;
``rank`` makes a code a fallback (eGFR is used only when no Cockcroft-Gault CrCl exists, brief DATA-03).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .codes import RADIOPAL_SYSTEM, CodeRow, CodeTable, FieldSpec
from .common import Entry, FieldValue, Sink, When, number, when_of

__all__ = ["USABLE_STATUSES", "map_observations"]

USABLE_STATUSES = frozenset({"final", "amended", "corrected"})
UCUM = "http://unitsofmeasure.org"
_VALUE_ELEMENTS = (
    "valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean", "valueInteger", "valueRange",
    "valueRatio", "valueSampledData", "valueTime", "valueDateTime", "valuePeriod",
)
_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
_EXPECTED = {
    "lab": "valueQuantity", "number": "valueQuantity", "integer": "valueInteger", "boolean": "valueBoolean",
    "code": "valueCodeableConcept", "strings": "component[].valueString",
}


@dataclass(frozen=True)
class _Candidate:
    entry: Entry
    row: CodeRow
    spec: FieldSpec
    when: When | None
    issued: When | None
    value: Any
    note: str | None  # set when the result exists but is not a usable value (a bound such as ">90")

    def order(self) -> tuple[dt.datetime, dt.datetime]:
        return (self.when.instant if self.when else _EARLIEST, self.issued.instant if self.issued else _EARLIEST)


def _effective(obs: Any) -> When | None:
    period = obs.effectivePeriod
    for value in (obs.effectiveDateTime, period.end if period else None, obs.effectiveInstant,
                  period.start if period else None):
        when = when_of(value)
        if when is not None:
            return when
    return when_of(obs.issued)


def _present_value(obs: Any) -> str | None:
    for name in _VALUE_ELEMENTS:
        if getattr(obs, name, None) is not None:
            return name
    return None


def _match(entry: Entry, table: CodeTable, sink: Sink) -> CodeRow | None:
    rows: dict[str, CodeRow] = {}
    for coding in (entry.resource.code.coding or ()) if entry.resource.code else ():
        row = table.lookup("observations", coding.system, coding.code)
        if row is not None:
            rows.setdefault(row.maps_to, row)
    if len(rows) > 1:
        sink.error(f"codings map to different fields ({', '.join(sorted(rows))}); radiopal cannot choose",
                   entry.path("code", "coding"))
        return None
    return next(iter(rows.values()), None)


def _quantity(entry: Entry, q: Any, spec: FieldSpec, sink: Sink, where: str) -> tuple[str, Any] | None:
    """Check a Quantity's UCUM code against the field's units; return (ucum code, value) or None after an error."""
    allowed = ", ".join(spec.units)
    if q.value is None:
        sink.error("quantity has no value", entry.path(where, "value"))
        return None
    if not q.code:
        sink.error(f"quantity has no UCUM code for {spec.path}; allowed UCUM codes: {allowed}",
                   entry.path(where, "code"))
        return None
    if q.system != UCUM:
        sink.error(f"quantity system is {q.system!r}; radiopal reads UCUM units ({UCUM})", entry.path(where, "system"))
        return None
    if q.code not in spec.units:
        sink.error(f"unit {q.code!r} is not accepted for {spec.path}; allowed UCUM codes: {allowed}",
                   entry.path(where, "code"))
        return None
    return q.code, q.value


def _read(entry: Entry, row: CodeRow, spec: FieldSpec, table: CodeTable, sink: Sink) -> tuple[bool, Any, str | None]:
    """(ok, value, note) for one Observation; ok is False after an error was recorded."""
    obs = entry.resource
    present = _present_value(obs)
    expected = _EXPECTED[spec.kind]

    def wrong() -> tuple[bool, Any, str | None]:
        sink.error(f"{spec.path} expects {expected}, found {present or 'no value'}", entry.path(present or "value[x]"))
        return False, None, None

    if spec.kind in {"lab", "number"}:
        if present != "valueQuantity":
            return wrong()
        checked = _quantity(entry, obs.valueQuantity, spec, sink, "valueQuantity")
        if checked is None:
            return False, None, None
        code, raw = checked
        if obs.valueQuantity.comparator:
            return True, None, f"result is a bound ({obs.valueQuantity.comparator}{raw} {code}), not a value"
        if spec.kind == "number":
            return True, number(raw), None
        return True, {"value": number(raw), "unit": table.unit(code), **row.set}, None
    if spec.kind == "integer":
        if present == "valueInteger":
            return True, int(obs.valueInteger), None
        if present == "valueQuantity" and spec.units:
            checked = _quantity(entry, obs.valueQuantity, spec, sink, "valueQuantity")
            if checked is None:
                return False, None, None
            value = number(checked[1])
            if not isinstance(value, int):
                sink.error(f"{spec.path} must be a whole number, got {checked[1]}", entry.path("valueQuantity", "value"))
                return False, None, None
            return True, value, None
        return wrong()
    if spec.kind == "boolean":
        return (True, bool(obs.valueBoolean), None) if present == "valueBoolean" else wrong()
    if spec.kind == "code":
        if present != "valueCodeableConcept":
            return wrong()
        codes = [c.code for c in obs.valueCodeableConcept.coding or () if c.system == RADIOPAL_SYSTEM and c.code]
        good = [c for c in codes if c in spec.answers]
        if len(set(good)) == 1:
            return True, good[0], None
        found = f"found {', '.join(repr(c) for c in codes)}" if codes else "found no radiopal coding"
        sink.error(f"{spec.path} expects one of {', '.join(spec.answers)} (system {RADIOPAL_SYSTEM}); {found}",
                   entry.path("valueCodeableConcept", "coding"))
        return False, None, None
    # strings: one component per item, in order
    items: list[str] = []
    for j, comp in enumerate(obs.component or ()):
        if comp.valueString is None:
            sink.error(f"{spec.path} expects each component to carry valueString", entry.path("component", j))
            return False, None, None
        items.append(str(comp.valueString))
    if not items:
        return wrong()
    return True, items, None


def _candidates(entries: Iterable[Entry], table: CodeTable, sink: Sink) -> dict[str, list[_Candidate]]:
    out: dict[str, list[_Candidate]] = {}
    for entry in entries:
        if entry.type != "Observation":
            continue
        row = _match(entry, table, sink)
        if row is None:
            sink.ignore(entry, "Observation.code is not in kb/fhir/codes.yaml")
            continue
        obs = entry.resource
        if obs.status not in USABLE_STATUSES:
            sink.ignore(entry, f"status {obs.status!r} (radiopal uses final, amended, corrected)")
            continue
        if _present_value(obs) is None and not obs.component:
            reason = obs.dataAbsentReason.text if obs.dataAbsentReason and obs.dataAbsentReason.text else "no value"
            sink.ignore(entry, f"no value[x] ({reason})")
            continue
        spec = table.fields[row.maps_to]
        ok, value, note = _read(entry, row, spec, table, sink)
        if ok:
            out.setdefault(spec.path, []).append(
                _Candidate(entry, row, spec, _effective(obs), when_of(obs.issued), value, note))
    return out


def _choose(field_path: str, found: list[_Candidate], sink: Sink) -> _Candidate | None:
    best_rank = min(c.row.rank for c in found)
    pool = [c for c in found if c.row.rank == best_rank]
    pool.sort(key=lambda c: (*c.order(), c.row.prefer), reverse=True)
    chosen = pool[0]
    for other in pool[1:]:
        if other.order() != chosen.order() or other.row.prefer != chosen.row.prefer:
            break
        if other.value != chosen.value:
            sink.error(
                f"two {field_path} results with the same time disagree ({chosen.value!r} in {chosen.entry.path()} "
                f"vs {other.value!r}); radiopal does not choose between them",
                other.entry.path(),
            )
            return None
    for other in found:
        if other.row.rank > best_rank:
            sink.ignore(other.entry, f"{field_path}: a preferred code ({chosen.row.code}) has a result")
        elif other is not chosen:
            sink.ignore(other.entry, f"{field_path}: superseded by {chosen.entry.ref}")
    return chosen


def _day(candidate: _Candidate, sink: Sink, target: str) -> str | None:
    if candidate.when is None:
        sink.warn(f"{target}: {candidate.entry.ref} has no effective date", candidate.entry.path("effective[x]"))
        return None
    if candidate.when.day is None:
        sink.error(f"{target} needs a full date (YYYY-MM-DD), got {candidate.when.text!r}",
                   candidate.entry.path("effective[x]"))
        return None
    return candidate.when.day.isoformat()


def map_observations(entries: Iterable[Entry], table: CodeTable, sink: Sink) -> dict[str, FieldValue]:
    """Map Observations to contract fields (by code-table row), recording provenance in ``sink``.

    Returns field path → value for the fields found, including the dates derived from them
    (``labs.date``, ``bone_disease.bone_scan.date``, ``dental.exam_date``) and ``labs.calcium_lln``.
    """
    out: dict[str, FieldValue] = {}
    chosen: dict[str, _Candidate] = {}
    for field_path, found in _candidates(entries, table, sink).items():
        pick = _choose(field_path, found, sink)
        if pick is None:
            continue
        if pick.value is None:
            sink.warn(f"{field_path} left out: the latest result {pick.note}", pick.entry.path("valueQuantity"))
            continue
        chosen[field_path] = pick
        out[field_path] = FieldValue(pick.value, pick.entry, pick.row, pick.when)
        sink.cite(field_path, pick.entry, matched=pick.row.system,
                  code=f"{table.systems[pick.row.system]}|{pick.row.code}", verified=pick.row.verified,
                  effective=pick.when.text if pick.when else None)
        spec = pick.spec
        if spec.date_to and pick.when is not None and (pick.value is True or not spec.date_when_true):
            day = _day(pick, sink, spec.date_to)
            if day is not None:
                out[spec.date_to] = FieldValue(day, pick.entry, pick.row, pick.when)
                sink.cite(spec.date_to, pick.entry, derived=f"effective date of {field_path}")
        if spec.reference_low_to:
            low = _reference_low(pick, table, sink)
            if low is not None:
                out[spec.reference_low_to] = FieldValue(low, pick.entry, pick.row, pick.when)
                sink.cite(spec.reference_low_to, pick.entry, derived=f"referenceRange.low of {field_path}")
    _lab_date(chosen, table, out, sink)
    return out


def _reference_low(pick: _Candidate, table: CodeTable, sink: Sink) -> dict[str, Any] | None:
    ranges = pick.entry.resource.referenceRange or ()
    if not ranges or ranges[0].low is None:
        return None
    checked = _quantity(pick.entry, ranges[0].low, pick.spec, sink, "referenceRange[0].low")
    if checked is None:
        return None
    return {"value": number(checked[1]), "unit": table.unit(checked[0])}


_COUNT_FIELDS = ("labs.platelets", "labs.wbc", "labs.anc", "labs.haemoglobin")


def _lab_date(chosen: dict[str, _Candidate], table: CodeTable, out: dict[str, FieldValue], sink: Sink) -> None:
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
