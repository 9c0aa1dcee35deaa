"""Whose data is this? Refuse a hook call whose FHIR data is not about ``context.patientId``.

A CDS client sends the patient in two places: ``context.patientId`` (the chart the clinician has open) and the
prefetch (and, for order hooks, ``context.draftOrders``). When they disagree, a card would describe one patient in
another's chart. The service therefore refuses the call unless every resource it would use is shown to belong to
``context.patientId``:

* a ``Patient`` resource must have that id;
* every other resource of the patient compartment must name that patient in ``subject`` (or ``patient``):
  ``Patient/<id>``, an absolute URL ending in ``Patient/<id>`` (``/_history/n`` allowed), or a ``urn:uuid:`` that
  is the ``fullUrl`` of a Patient with that id in the same Bundle. A reference to another patient, to something
  that is not a Patient (``Group/1``), one that cannot be resolved, or none at all, cannot be shown to be this
  patient's, and is refused too (the safer reading: a patient-scoped search never returns such a resource).

``Medication`` resources (and other resources outside the patient compartment) name no patient and are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Mismatch", "describe", "mismatches", "patient_of_reference"]

#: Resource types with no patient of their own (shared by many patients' records).
UNOWNED_TYPES = frozenset({"Medication", "Organization", "Practitioner", "PractitionerRole", "Location", "Device",
                           "Substance"})
#: Types whose patient is in ``patient`` rather than ``subject`` (R4).
PATIENT_ELEMENT = frozenset({"AllergyIntolerance", "Immunization", "Claim", "ExplanationOfBenefit", "Coverage"})
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?/?$")
#: How many offending resources a refusal lists (the count is always given).
MAX_LISTED = 20


@dataclass(frozen=True)
class Mismatch:
    """One resource that is not shown to be about the context patient: where it is and what it names instead."""

    path: str
    found: str | None  # the patient id it names, or None when it names no patient
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "patient": self.found, "reason": self.reason}


def patient_of_reference(reference: str, patients_by_url: Mapping[str, str]) -> str | None:
    """The Patient id a reference string points to, or None when it points to no Patient that can be named.

    ``patients_by_url`` maps the ``fullUrl`` of each Patient entry in the Bundle to its id (for ``urn:uuid:``).
    """
    if reference in patients_by_url:
        return patients_by_url[reference]
    if reference.startswith(("urn:", "#")):
        return None
    match = _PATIENT_REF.search(reference)
    return match.group(1) if match else None


def mismatches(entries: Iterable[tuple[str, Any, Any]], patient_id: str) -> list[Mismatch]:
    """The entries not shown to be about ``patient_id``; ``entries`` are ``(path, resource, fullUrl)`` triples.

    ``path`` names the entry in the request (``prefetch.observations.entry[3].resource``).
    """
    items: Sequence[tuple[str, Any, Any]] = list(entries)
    by_url = {str(url): str(res.get("id")) for _p, res, url in items
              if isinstance(res, Mapping) and res.get("resourceType") == "Patient" and isinstance(url, str) and url}
    out: list[Mismatch] = []
    for path, resource, _url in items:
        if not isinstance(resource, Mapping):
            continue
        kind = resource.get("resourceType")
        if kind == "Patient":
            rid = resource.get("id")
            if rid != patient_id:
                out.append(Mismatch(f"{path}.id", str(rid) if isinstance(rid, str) else None,
                                    f"Patient/{rid} is not the context patient" if rid else "a Patient without an id"))
            continue
        if kind in UNOWNED_TYPES or not isinstance(kind, str):
            continue
        element = "subject" if "subject" in resource else (
            "patient" if "patient" in resource or kind in PATIENT_ELEMENT else "subject")
        ref = resource.get(element)
        reference = ref.get("reference") if isinstance(ref, Mapping) else None
        if not isinstance(reference, str) or not reference:
            out.append(Mismatch(f"{path}.{element}", None,
                                f"{kind} names no patient ({element}.reference is missing)"))
            continue
        found = patient_of_reference(reference, by_url)
        if found is None:
            out.append(Mismatch(f"{path}.{element}.reference", None,
                                f"{element} {reference!r} is not a reference to a Patient radiopal can resolve"))
        elif found != patient_id:
            out.append(Mismatch(f"{path}.{element}.reference", found, f"{element} {reference!r} is another patient"))
    return out


def describe(mismatched: Sequence[Mismatch], patient_id: str) -> str:
    """One sentence naming the context patient and the other patient(s) found, for the 4xx message."""
    others = sorted({m.found for m in mismatched if m.found is not None})
    named = f"Patient/{', Patient/'.join(others)}" if others else "no patient radiopal can confirm"
    first = mismatched[0]
    return (f"the FHIR data is not about context.patientId {patient_id!r}: {len(mismatched)} resource(s) name "
            f"{named} (first: {first.path}: {first.reason}); radiopal refuses to answer rather than show a card "
            "about the wrong patient")
