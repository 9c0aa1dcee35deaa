"""Medication resources → ``treatment_history`` (chemotherapy, hormonal, bone-health agents, radionuclides).

Reads MedicationRequest, MedicationStatement and MedicationAdministration, with the drug in
``medicationCodeableConcept`` or a contained/referenced ``Medication.code``. A drug is matched by a coding
(ATC first, then RxNorm) and, only when no coding matches, by its normalised text; the path that matched
(``atc`` | ``rxnorm`` | ``text``) is kept in the provenance.

Each resource becomes a dose *event*; events of one agent are then folded into one contract entry
(radionuclides excepted: one entry per administration, de-duplicated by agent and day).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .codes import CodeRow, CodeTable
from .common import Entry, ReferenceIndex, Sink, When, find_extension, number, when_of

__all__ = ["Event", "Match", "activity_mbq", "build_treatment_history", "map_medications", "match_concept"]

MEDICATION_TYPES = frozenset({"MedicationRequest", "MedicationStatement", "MedicationAdministration"})
_PRECEDENCE = {"atc": 0, "rxnorm": 1}
_ONGOING = {
    "MedicationRequest": {"active": True, "on-hold": True, "completed": False, "stopped": False},
    "MedicationStatement": {"active": True, "on-hold": True, "completed": False, "stopped": False},
    "MedicationAdministration": {"completed": False, "in-progress": False, "stopped": False},
}
_NOT_AN_ORDER = frozenset({"proposal", "plan", "option"})
# Activity units for radionuclides; 1 mCi = 37 MBq by definition (brief §2).
_ACTIVITY_FACTORS = {"MBq": 1, "mCi": 37}
UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class Match:
    """A code-table row that matched a CodeableConcept, how (``atc`` | ``rxnorm`` | ``text`` ...) and on what."""

    row: CodeRow
    via: str
    code: str

    def describe(self) -> dict[str, Any]:
        """Provenance fields for this match."""
        return {"matched": self.via, "code": self.code, "table_code": self.row.code, "verified": self.row.verified}


@dataclass
class Event:
    """One medication resource (or radionuclide Procedure) reduced to what the contract needs."""

    entry: Entry
    match: Match
    kind: str
    ongoing: bool
    start: When | None = None
    end: When | None = None
    last_dose: When | None = None
    activity: int | float | None = None
    response: bool | None = None
    best_response: str | None = None
    #: Which element each date came from (provenance): {"start": "MedicationRequest.authoredOn", ...}
    origins: dict[str, str] | None = None

    def dose_date(self) -> tuple[When | None, str | None]:
        """The best evidence of the last dose: the last dose itself, else the end of the period, else its start
        (for an order, ``authoredOn``), with the element it came from."""
        origins = self.origins or {}
        for attr in ("last_dose", "end", "start"):
            when = getattr(self, attr)
            if when is not None:
                return when, origins.get(attr)
        return None, None

    @property
    def group(self) -> str:
        """``chemotherapy`` | ``hormonal`` | ``bone_health_agents`` | ``radionuclides``."""
        return self.match.row.group

    @property
    def agent(self) -> str:
        """The contract agent id (``docetaxel``, ``adt_lhrh`` ...)."""
        return self.match.row.agent


def match_concept(concept: Any, table: CodeTable, section: str, sink: Sink, path: str) -> list[Match]:
    """Rows that a CodeableConcept matches: by coding if any coding matches, else by normalised text.

    Codings that map to two different targets are an error (radiopal does not choose). Text may name several
    agents (a combination order); each is returned.
    """
    if concept is None:
        return []
    by_target: dict[str, Match] = {}
    for coding in concept.coding or ():
        row = table.lookup(section, coding.system, coding.code)
        if row is None:
            continue
        match = Match(row, row.system, f"{coding.system}|{coding.code}")
        known = by_target.get(row.maps_to)
        if known is None or _PRECEDENCE.get(row.system, 9) < _PRECEDENCE.get(known.via, 9):
            by_target[row.maps_to] = match
    if len(by_target) > 1:
        sink.warn(f"the codings name different agents ({', '.join(sorted(by_target))}); radiopal does not choose, "
                  "and the drug is not used", f"{path}.coding")
        return []
    if by_target:
        return list(by_target.values())
    texts = [concept.text] + [c.display for c in concept.coding or ()]
    for text in texts:
        rows = table.lookup_text(section, text)
        if rows:
            unique: dict[str, CodeRow] = {}
            for row in rows:
                unique.setdefault(row.maps_to, row)
            return [Match(row, "text", str(text)) for row in unique.values()]
    return []


def _concept(entry: Entry, refs: ReferenceIndex, sink: Sink) -> tuple[Any, str] | None:
    res = entry.resource
    if res.medicationCodeableConcept is not None:
        return res.medicationCodeableConcept, entry.path("medicationCodeableConcept")
    ref = res.medicationReference
    target = ref.reference if ref is not None else None
    if target and target.startswith("#"):
        for j, inner in enumerate(res.contained or ()):
            if inner.id == target[1:] and inner.get_resource_type() == "Medication":
                return inner.code, entry.path("contained", j, "code")
        sink.warn(f"medicationReference {target!r} names no contained Medication; the drug is unknown",
                  entry.path("medicationReference"))
        return None
    found = refs.resolve(target)
    if found is not None and found.type == "Medication":
        return found.resource.code, found.path("code")
    if target:
        sink.warn(f"medicationReference {target!r} is not in the bundle; the drug is unknown",
                  entry.path("medicationReference"))
    return None


def _bounds(res: Any) -> tuple[When | None, When | None]:
    for dosage in res.dosageInstruction or ():
        repeat = dosage.timing.repeat if dosage.timing else None
        period = repeat.boundsPeriod if repeat else None
        if period is not None:
            return when_of(period.start), when_of(period.end)
    return None, None


_BOUNDS = "dosageInstruction.timing.repeat.boundsPeriod"


def _dates(entry: Entry) -> tuple[When | None, When | None, When | None, dict[str, str]]:
    """(start, end, last dose) of a medication resource, per resource type, and the element each came from.

    The best date evidence wins: an administration's effective date, then a statement's or an order's period, then
    an order's ``authoredOn`` (the day it was written: the doses may come later).
    """
    res = entry.resource
    kind = entry.type
    ongoing = _ONGOING[kind][res.status]
    if kind == "MedicationAdministration":
        period = res.effectivePeriod
        for value, element in ((res.effectiveDateTime, "effectiveDateTime"),
                               (period.end if period else None, "effectivePeriod.end"),
                               (period.start if period else None, "effectivePeriod.start")):
            when = when_of(value)
            if when is not None:
                origin = f"{kind}.{element} (administration)"
                return when, when, when, {"start": origin, "end": origin, "last_dose": origin}
        return None, None, None, {}
    if kind == "MedicationStatement":
        period = res.effectivePeriod
        if res.effectiveDateTime is not None:
            start = when_of(res.effectiveDateTime)
            origin = f"{kind}.effectiveDateTime"
            end = None if ongoing else start
            return start, end, end, {"start": origin, "end": origin, "last_dose": origin}
        start = when_of(period.start) if period else None
        end = when_of(period.end) if period else None
        origins = {"start": f"{kind}.effectivePeriod.start", "end": f"{kind}.effectivePeriod.end",
                   "last_dose": f"{kind}.effectivePeriod.end"}
        return start, end, None if ongoing else end, origins
    start, end = _bounds(res)
    origins = {"start": f"{kind}.{_BOUNDS}.start", "end": f"{kind}.{_BOUNDS}.end",
               "last_dose": f"{kind}.{_BOUNDS}.end"}
    if start is None and res.authoredOn is not None:
        start = when_of(res.authoredOn)
        origins["start"] = f"{kind}.authoredOn, the order date: doses may have come later"
    return start, end, None if ongoing else end, origins


def _as_of(event: Event, day: Any, sink: Sink) -> Event | None:
    """The event as known on the evaluation day: dropped when it starts after it; a course that ended after the day
    was still going on it (ongoing, no end)."""
    if day is None:
        return event

    def after(when: When | None) -> bool:
        return when is not None and (when.day or when.instant.date()) > day

    if after(event.start) or (event.start is None and after(event.last_dose)):
        sink.ignore(event.entry, "starts after the evaluation date")
        return None
    if after(event.end) or after(event.last_dose):
        event.end = None
        event.last_dose = None
        event.ongoing = True
    return event


def activity_mbq(quantity: Any, sink: Sink, path: str) -> int | float | None:
    """A radionuclide activity in MBq (from MBq or mCi, UCUM), or ``None`` after recording an error."""
    if quantity is None or quantity.value is None:
        return None
    if quantity.system != UCUM or quantity.code not in _ACTIVITY_FACTORS:
        sink.warn(f"the activity is left unknown: unit {quantity.code!r} is not accepted (UCUM codes read: MBq, mCi)",
                  f"{path}.code")
        return None
    return number(quantity.value * _ACTIVITY_FACTORS[quantity.code])


def _dose(entry: Entry, sink: Sink) -> int | float | None:
    res = entry.resource
    if entry.type == "MedicationAdministration":
        if res.dosage is not None and res.dosage.dose is not None:
            return activity_mbq(res.dosage.dose, sink, entry.path("dosage", "dose"))
        return None
    dosages = res.dosage if entry.type == "MedicationStatement" else res.dosageInstruction
    name = "dosage" if entry.type == "MedicationStatement" else "dosageInstruction"
    for i, dosage in enumerate(dosages or ()):
        for j, dr in enumerate(dosage.doseAndRate or ()):
            if dr.doseQuantity is not None:
                return activity_mbq(dr.doseQuantity, sink, entry.path(name, i, "doseAndRate", j, "doseQuantity"))
    return None


def read_extensions(entry: Entry, table: CodeTable, sink: Sink) -> tuple[bool | None, str | None]:
    """(pain response, best response) from the radiopal extensions on a resource."""
    res = entry.resource
    response = None
    ext = find_extension(res, table.extension_base + "pain-response")
    if ext is not None:
        if ext.valueBoolean is None:
            sink.warn("the pain response is left unknown: pain-response expects valueBoolean", entry.path("extension"))
        else:
            response = bool(ext.valueBoolean)
    best = None
    ext = find_extension(res, table.extension_base + "best-response")
    if ext is not None:
        allowed = table.extensions["best-response"]["answers"]
        if ext.valueCode not in allowed:
            sink.warn(f"the best response is left unknown: best-response expects valueCode {' | '.join(allowed)}, "
                      f"got {ext.valueCode!r}", entry.path("extension"))
        else:
            best = str(ext.valueCode)
    return response, best


def map_medications(entries: Iterable[Entry], table: CodeTable, refs: ReferenceIndex, sink: Sink,
                    day: Any = None) -> list[Event]:
    """Dose events from the medication resources of a bundle, as known on ``day`` (the evaluation date); unknown
    drugs and unusable statuses are ignored."""
    events: list[Event] = []
    for entry in entries:
        if entry.type not in MEDICATION_TYPES:
            continue
        res = entry.resource
        statuses = _ONGOING[entry.type]
        if res.status not in statuses:
            sink.ignore(entry, f"status {res.status!r}")
            continue
        if entry.type == "MedicationRequest" and res.intent in _NOT_AN_ORDER:
            sink.ignore(entry, f"intent {res.intent!r} is not an order")
            continue
        found = _concept(entry, refs, sink)
        if found is None:
            continue
        matches = match_concept(found[0], table, "medications", sink, found[1])
        if not matches:
            sink.ignore(entry, "drug not in kb/fhir/codes.yaml")
            continue
        start, end, last, origins = _dates(entry)
        response, best = read_extensions(entry, table, sink)
        for match in matches:
            found_event = _as_of(Event(entry, match, entry.type, statuses[res.status], start, end, last,
                                       response=response, best_response=best, origins=origins), day, sink)
            if found_event is None:
                continue
            event = found_event
            if match.row.group == "radionuclides":
                if entry.type == "MedicationRequest":
                    sink.ignore(entry, "a radionuclide order is not an administration")
                    continue
                if entry.type == "MedicationStatement" and res.effectiveDateTime is None:
                    sink.warn("a radionuclide MedicationStatement needs effectiveDateTime (one statement per "
                              "injection); a period cannot be split into injections", entry.path("effectivePeriod"))
                    continue
                event.activity = _dose(entry, sink)
            events.append(event)
    return events


def _day(when: When | None, sink: Sink, entry: Entry, what: str) -> str | None:
    if when is None:
        return None
    if when.day is None:
        sink.warn(f"{what} is left unknown: it needs a full date (YYYY-MM-DD), got {when.text!r}", entry.path())
        return None
    return when.day.isoformat()


def _latest(events: list[Event], attr: str) -> Event | None:
    dated = [e for e in events if getattr(e, attr) is not None]
    return max(dated, key=lambda e: getattr(e, attr).instant) if dated else None


def _earliest(events: list[Event], attr: str) -> Event | None:
    dated = [e for e in events if getattr(e, attr) is not None]
    return min(dated, key=lambda e: getattr(e, attr).instant) if dated else None


def build_treatment_history(events: list[Event], table: CodeTable, sink: Sink) -> dict[str, list[dict[str, Any]]]:
    """Fold dose events into the contract's treatment_history lists, citing every entry's resources."""
    groups: dict[str, dict[str, list[Event]]] = {g: {} for g in ("chemotherapy", "radionuclides",
                                                               "bone_health_agents", "hormonal")}
    for event in events:
        key = event.agent if event.agent != "other" else f"other:{event.match.code}"
        groups[event.group].setdefault(key, []).append(event)
    out: dict[str, list[tuple[str, dict[str, Any], list[Event], str | None]]] = {g: [] for g in groups}

    for agent_events in groups["chemotherapy"].values():
        first = agent_events[0]
        attrs = table.agents["chemotherapy"][first.agent]
        item: dict[str, Any] = {"agent": first.agent, "class": attrs["class"],
                                "myelosuppressive": bool(attrs["myelosuppressive"])}
        dated = [(e, *e.dose_date()) for e in agent_events]
        dated = [d for d in dated if d[1] is not None]
        last = max(dated, key=lambda d: d[1].instant) if dated else None  # type: ignore[union-attr]
        day = _day(last[1], sink, last[0].entry, f"chemotherapy {first.agent} last_dose_date") if last else None
        if not day:
            # last_dose_date is required per entry: an entry without it cannot be written.
            sink.warn(f"chemotherapy {first.agent} is not used: no date of any dose in "
                      f"{', '.join(e.entry.ref for e in agent_events)}", first.entry.path())
            continue
        item["last_dose_date"] = day
        item["ongoing"] = any(e.ongoing for e in agent_events)
        with_best = [e for e in agent_events if e.best_response]
        if with_best:
            item["best_response"] = max(with_best, key=_sort_instant).best_response
        assert last is not None
        out["chemotherapy"].append((day, item, agent_events, last[2]))

    for agent_events in groups["hormonal"].values():
        first = agent_events[0]
        item = {"agent": first.agent}
        start = _earliest(agent_events, "start")
        start_day = _day(start.start, sink, start.entry, "start_date") if start and start.start else None
        if start_day:
            item["start_date"] = start_day
        ongoing = any(e.ongoing for e in agent_events)
        end = _latest(agent_events, "end")
        if not ongoing and end is not None and end.end is not None:
            end_day = _day(end.end, sink, end.entry, "end_date")
            if end_day:
                item["end_date"] = end_day
        item["ongoing"] = ongoing
        out["hormonal"].append((start_day or "", item, agent_events, None))

    for agent_events in groups["bone_health_agents"].values():
        first = agent_events[0]
        item = {"agent": first.agent}
        start = _earliest(agent_events, "start")
        start_day = _day(start.start, sink, start.entry, "start_date") if start and start.start else None
        if start_day:
            item["start_date"] = start_day
        latest = _latest(agent_events, "last_dose")
        if latest is not None and latest.last_dose is not None:
            last_day = _day(latest.last_dose, sink, latest.entry, "last_dose_date")
            if last_day:
                item["last_dose_date"] = last_day
        item["ongoing"] = any(e.ongoing for e in agent_events)
        out["bone_health_agents"].append((start_day or "", item, agent_events, None))

    for agent_events in groups["radionuclides"].values():
        by_day: dict[str, tuple[dict[str, Any], list[Event]]] = {}
        for event in sorted(agent_events, key=_sort_instant):
            day = _day(event.start, sink, event.entry, "radionuclide date")
            if day is None:
                if event.start is None:
                    sink.warn(f"this {event.agent} administration is not used: it has no date", event.entry.path())
                continue
            if day in by_day:
                item, sources = by_day[day]
                sources.append(event)
                _merge_radionuclide(item, event, sink)
                continue
            item = {"agent": event.agent, "date": day}
            if event.activity is not None:
                item["activity_MBq"] = event.activity
            if event.response is not None:
                item["response"] = event.response
            by_day[day] = (item, [event])
        for day, (item, sources) in by_day.items():
            item = {k: v for k, v in item.items() if v is not None}
            out["radionuclides"].append((day, item, sources, None))

    result: dict[str, list[dict[str, Any]]] = {}
    for group, items in out.items():
        items.sort(key=lambda t: (t[0], t[1]["agent"]))
        result[group] = []
        for i, (_, item, sources, date_from) in enumerate(items):
            result[group].append(item)
            primary = max(sources, key=_sort_instant)
            sink.cite(f"treatment_history.{group}[{i}]", primary.entry, **primary.match.describe(), date_from=date_from,
                      sources=[{**e.entry.source(), **e.match.describe()} for e in sources])
    return result


def _sort_instant(event: Event) -> Any:
    when = event.last_dose or event.end or event.start
    return (when.instant.isoformat() if when else "", event.entry.index)


def _merge_radionuclide(item: dict[str, Any], event: Event, sink: Sink) -> None:
    """Two records of one administration (say a MedicationAdministration and a Procedure): keep both's details."""
    for key, value in (("activity_MBq", event.activity), ("response", event.response)):
        if value is None or (key in item and item[key] is None):  # unknown, or already disputed
            continue
        if key in item and item[key] != value:
            sink.warn(f"{key} of the {item['agent']} administration on {item['date']} is left unknown: two records "
                      f"disagree ({item[key]!r} vs {value!r})", event.entry.path())
            item[key] = None
        item.setdefault(key, value)
