"""Procedures → ``treatment_history.ebrt`` and radionuclide administrations recorded as procedures.

EBRT: Procedure.code is a radiopal technique code (ebrt-conventional | ebrt-sbrt | ebrt-hemibody-upper |
ebrt-hemibody-lower); date = performedPeriod.end (last fraction) or performedDateTime; site = bodySite text;
dose and fractions from the radiopal extensions ``ebrt-dose`` (valueQuantity, UCUM Gy) and ``ebrt-fractions``
(valueInteger). A Procedure whose ``usedCode`` names a radionuclide is an administration of it (activity from the
``administered-activity`` extension, pain response from ``pain-response``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from .codes import CodeTable
from .common import Entry, Sink, When, find_extension, number, when_of
from .medications import Event, activity_mbq, match_concept, read_extensions

__all__ = ["USABLE_PROCEDURE_STATUSES", "map_procedures"]

USABLE_PROCEDURE_STATUSES = frozenset({"completed", "in-progress", "stopped"})
UCUM = "http://unitsofmeasure.org"


def _performed(res: Any) -> When | None:
    period = res.performedPeriod
    return when_of(res.performedDateTime) or when_of(period.end if period else None)


def _site(res: Any) -> str | None:
    names = []
    for concept in res.bodySite or ():
        name = concept.text or next((c.display for c in concept.coding or () if c.display), None)
        if name:
            names.append(str(name))
    return ", ".join(names) or None


def _ebrt(entry: Entry, technique: str, table: CodeTable, sink: Sink) -> dict[str, Any] | None:
    res = entry.resource
    item: dict[str, Any] = {}
    when = _performed(res)
    if when is None:
        sink.warn("this EBRT course is not used: it has no end date (performedPeriod.end or performedDateTime)",
                  entry.path("performed[x]"))
        return None
    if when.day is None:
        sink.warn(f"this EBRT course is not used: its date needs a full date (YYYY-MM-DD), got {when.text!r}",
                  entry.path("performed[x]"))
        return None
    item["date"] = when.day.isoformat()
    site = _site(res)
    if site:
        item["site"] = site
    dose = find_extension(res, table.extension_base + "ebrt-dose")
    if dose is not None:
        q = dose.valueQuantity
        if q is None or q.value is None or q.system != UCUM or q.code != "Gy":
            sink.warn("the EBRT dose is left unknown: ebrt-dose expects valueQuantity in UCUM Gy", entry.path("extension"))
        else:
            item["dose_Gy"] = number(q.value)
    fractions = find_extension(res, table.extension_base + "ebrt-fractions")
    if fractions is not None:
        if fractions.valueInteger is None:
            sink.warn("the EBRT fractions are left unknown: ebrt-fractions expects valueInteger", entry.path("extension"))
        else:
            item["fractions"] = int(fractions.valueInteger)
    item["technique"] = technique
    return item


def map_procedures(entries: Iterable[Entry], table: CodeTable, sink: Sink,
                   day: dt.date | None = None) -> tuple[list[dict[str, Any]], list[Event]]:
    """EBRT courses (sorted by date, cited) and radionuclide administration events from Procedures performed on or
    before ``day`` (the evaluation date)."""
    courses: list[tuple[str, dict[str, Any], Entry, Any]] = []
    events: list[Event] = []
    for entry in entries:
        if entry.type != "Procedure":
            continue
        res = entry.resource
        if res.status not in USABLE_PROCEDURE_STATUSES:
            sink.ignore(entry, f"status {res.status!r}")
            continue
        when = _performed(res)
        if day is not None and when is not None and (when.day or when.instant.date()) > day:
            sink.ignore(entry, "performed after the evaluation date")
            continue
        row = None
        for coding in (res.code.coding or ()) if res.code else ():
            row = table.lookup("procedures", coding.system, coding.code)
            if row is not None:
                break
        if row is not None:
            item = _ebrt(entry, row.agent, table, sink)
            if item is not None:
                courses.append((item["date"], item, entry, row))
            continue
        matches = []
        for j, concept in enumerate(res.usedCode or ()):
            matches += [m for m in match_concept(concept, table, "medications", sink, entry.path("usedCode", j))
                        if m.row.group == "radionuclides"]
        if not matches:
            sink.ignore(entry, "neither an EBRT code nor a radionuclide in usedCode")
            continue
        ext = find_extension(res, table.extension_base + "administered-activity")
        activity = activity_mbq(ext.valueQuantity, sink, entry.path("extension")) if ext is not None else None
        response, _ = read_extensions(entry, table, sink)
        for match in matches:
            events.append(Event(entry, match, "Procedure", False, when, when, when, activity=activity,
                                response=response))
    courses.sort(key=lambda c: c[0])
    for i, (_, _, entry, row) in enumerate(courses):
        sink.cite(f"treatment_history.ebrt[{i}]", entry, matched=row.system,
                  code=f"{table.systems[row.system]}|{row.code}", verified=row.verified)
    return [c[1] for c in courses], events
