"""Conditions → primary tumour site, bone metastases, cord compression and pathological fracture.

Codes are ICD-10 (WHO or CM, prefix match, longest prefix wins) or SNOMED CT, per ``conditions:`` in codes.yaml.
A Condition whose clinicalStatus is inactive, remission or resolved, or whose verificationStatus is refuted or
entered-in-error, is ignored; an absent status counts as current (R4 makes both optional).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from .codes import CodeRow, CodeTable
from .common import Entry, FieldValue, Sink, when_of

__all__ = ["INACTIVE_CLINICAL_STATUSES", "how", "map_conditions"]

INACTIVE_CLINICAL_STATUSES = frozenset({"inactive", "remission", "resolved"})
_NOT_TRUE = frozenset({"refuted", "entered-in-error"})
SITE = "primary_tumour.site"


def _status(concept: Any) -> str | None:
    if concept is None:
        return None
    for coding in concept.coding or ():
        if coding.code:
            return str(coding.code)
    return None


def _value(text: str) -> Any:
    return {"true": True, "false": False}.get(text, text)


def _current(cond: Any, day: dt.date | None) -> tuple[bool, str]:
    """Whether a Condition held on ``day``, and why not: recorded after it, abated on or before it, or inactive.

    An ``abatement[x]`` date after ``day`` means the condition was still present then, whatever the status says
    today (Synthea closes a cancer with a resolved status and an abatement date).
    """
    onset = when_of(cond.onsetDateTime) or when_of(cond.onsetPeriod.start if cond.onsetPeriod else None)
    recorded = when_of(cond.recordedDate)
    start = onset or recorded
    if day is not None and start is not None and (start.day or start.instant.date()) > day:
        return False, "onset or recordedDate after the evaluation date"
    abated = when_of(cond.abatementDateTime) or when_of(cond.abatementPeriod.end if cond.abatementPeriod else None)
    if abated is not None and day is not None:
        if (abated.day or abated.instant.date()) <= day:
            return False, f"abated on {abated.text}"
        return True, ""
    clinical = _status(cond.clinicalStatus)
    if clinical in INACTIVE_CLINICAL_STATUSES:
        return False, f"clinicalStatus {clinical!r}"
    return True, ""


def map_conditions(entries: Iterable[Entry], table: CodeTable, sink: Sink,
                   day: dt.date | None = None) -> dict[str, FieldValue]:
    """Map the Conditions current on ``day`` to contract fields; ``bone_metastases`` (no contract field) too.

    Only the primary site and bone metastases are cited here; the caller cites the other fields when it merges
    them with Observations. Two different specific primary sites leave the site unknown with a warning (radiopal
    does not choose); ``other`` yields to a specific site.
    """
    sites: dict[str, list[FieldValue]] = {}
    found: dict[str, list[FieldValue]] = {}
    for entry in entries:
        if entry.type != "Condition":
            continue
        cond = entry.resource
        verification = _status(cond.verificationStatus)
        current, why = _current(cond, day)
        if not current:
            sink.ignore(entry, why)
            continue
        if verification in _NOT_TRUE:
            sink.ignore(entry, f"verificationStatus {verification!r}")
            continue
        rows: dict[str, tuple[CodeRow, str]] = {}
        for coding in (cond.code.coding or ()) if cond.code else ():
            for row in table.lookup_all("conditions", coding.system, coding.code):
                rows.setdefault(row.maps_to, (row, f"{coding.system}|{coding.code}"))
        used = {k: r for k, r in rows.items() if k != "secondary_neoplasm"}
        if not used:
            sink.ignore(entry, "Condition.code is not in kb/fhir/codes.yaml" if not rows else "secondary neoplasm")
            continue
        for maps_to, (row, code) in used.items():
            field, _, raw = maps_to.partition("=")
            if field == SITE:
                sites.setdefault(raw, []).append(FieldValue(raw, entry, row, code=code))
            else:
                found.setdefault(field, []).append(FieldValue(_value(raw) if raw else True, entry, row, code=code))

    out = {field: values[0] for field, values in found.items()}
    if "bone_metastases" in out:
        first = out["bone_metastases"]
        sink.cite("bone_disease", first.entry, **how(first, table), derived="bone metastases confirmed")
    specific = sorted(s for s in sites if s != "other")
    if len(specific) > 1:
        where = "; ".join(f"{s}: {', '.join(fv.entry.ref for fv in sites[s])}" for s in specific)
        sink.warn(f"primary_tumour.site is left unknown: current Conditions name more than one primary tumour site "
                  f"({where}); radiopal does not choose", sites[specific[1]][0].entry.path("code"))
        return out
    site = specific[0] if specific else ("other" if "other" in sites else None)
    if site is not None:
        first = sites[site][0]
        out[SITE] = first
        sink.cite(SITE, first.entry, **how(first, table))
    return out


def how(fv: FieldValue, table: CodeTable) -> dict[str, Any]:
    """Provenance of a Condition-derived value: the coding that matched, its table row and the statuses."""
    system = fv.code.split("|", 1)[0] if fv.code else None
    return {
        "matched": table.system_key(system) or fv.row.system,
        "code": fv.code,
        "table_code": fv.row.code,
        "verified": fv.row.verified,
        "clinicalStatus": _status(fv.entry.resource.clinicalStatus),
        "verificationStatus": _status(fv.entry.resource.verificationStatus),
    }
