"""FHIR R4 Bundle → radiopal patient document (contract §A), with per-field provenance.

The stages, each in its own module:

* :mod:`.parse` — read and validate the Bundle with ``fhir.resources.R4B``;
* :mod:`.observations` — LOINC and radiopal-coded Observations → labs, scores, flags;
* :mod:`.conditions` — ICD-10 / SNOMED CT Conditions → primary site, cord compression, fracture;
* :mod:`.medications`, :mod:`.procedures`, :mod:`.allergies` → ``treatment_history``;
* :mod:`.document` — assemble the document in contract key order.

What maps to what is data (``kb/fhir/codes.yaml``). All problems found are raised together as one
:class:`~radiopal.errors.InputError`, each with the element path (``entry[3].resource.valueQuantity.code``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EngineError, InputError, Problem
from .allergies import map_allergies
from .codes import CodeTable, load_code_table
from .common import Entry, FieldValue, ReferenceIndex, Sink, when_of
from .conditions import SITE, how, map_conditions
from .document import ordered, put
from .medications import MEDICATION_TYPES, build_treatment_history, map_medications
from .observations import map_observations
from .parse import ParsedBundle, read_bundle
from .procedures import map_procedures

__all__ = ["MAPPED_TYPES", "SCHEMA_VERSION", "MappedDocument", "bundle_to_document"]

SCHEMA_VERSION = "1.0"
_SUBJECT_ELEMENT = {
    "Observation": "subject", "Condition": "subject", "MedicationRequest": "subject",
    "MedicationStatement": "subject", "MedicationAdministration": "subject", "Procedure": "subject",
    "AllergyIntolerance": "patient",
}
_SEX = {"male": "male", "female": "female"}
#: Resource types the mapping reads: the Patient, the clinical resources above, and the Medications they refer to.
#: The CDS Hooks prefetch and the cohort's Bulk Data reader leave every other type out.
MAPPED_TYPES = frozenset({"Patient", "Medication", *_SUBJECT_ELEMENT})


@dataclass(frozen=True)
class MappedDocument:
    """The result of mapping one Bundle.

    ``document`` follows contract §A (schema_version 1.0) and can go straight to the engine.
    ``provenance`` maps a document field path (``labs.platelets``, ``treatment_history.hormonal[0]``) to where it
    came from: ``{"resource": "Observation/o1", "fullUrl": "urn:uuid:...", "matched": "loinc", "code": ...,
    "verified": ...}`` — the FHIR side of a fact's justification.
    ``warnings`` are findings that did not stop the mapping; ``ignored`` lists the resources that contributed
    nothing, with the reason.
    """

    document: dict[str, Any]
    provenance: dict[str, dict[str, Any]]
    warnings: tuple[Problem, ...] = field(default=())
    ignored: tuple[dict[str, Any], ...] = field(default=())


def bundle_to_document(
    bundle: dict[str, Any] | str | Path,
    *,
    evaluation_date: str | None = None,
    code_table: CodeTable | None = None,
) -> MappedDocument:
    """Map a FHIR R4 Bundle (a dict, JSON text, or a JSON/YAML file path) to a contract §A patient document.

    ``evaluation_date`` (``YYYY-MM-DD``) is the day every interval is counted to; without it the date part of
    ``Bundle.timestamp`` is used, and a Bundle with neither is an error. ``code_table`` overrides
    ``kb/fhir/codes.yaml``. Raises :class:`~radiopal.errors.InputError` listing every problem with its element
    path; never lets a parser exception through (an unforeseen failure on valid R4 is an
    :class:`~radiopal.errors.EngineError`).
    """
    parsed = read_bundle(bundle)
    table = code_table or load_code_table()
    try:
        return _map(parsed, table, evaluation_date)
    except (AttributeError, TypeError, ValueError, KeyError, ArithmeticError) as exc:
        # A valid R4 bundle the mapper did not foresee is a radiopal bug: report it with context, not a traceback.
        message = f"{parsed.file}: the FHIR mapper failed on a valid R4 Bundle ({type(exc).__name__}: {exc})"
        raise EngineError(message, [Problem(message, file=parsed.file)]) from exc


def _map(parsed: ParsedBundle, table: CodeTable, evaluation_date: str | None) -> MappedDocument:
    sink = Sink(file=parsed.file)
    entries = parsed.entries
    patient = _patient(entries, sink)
    refs = ReferenceIndex(entries)
    _check_subjects(entries, patient, refs, sink)
    day = _evaluation_date(evaluation_date, parsed.bundle, sink)

    document: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    values: dict[str, FieldValue] = {}
    if patient is not None:
        _demographics(patient, day, values, sink)
    values.update(map_observations(entries, table, sink))
    _merge_conditions(values, map_conditions(entries, table, sink), table, sink)

    events = map_medications(entries, table, refs, sink)
    ebrt, procedure_events = map_procedures(entries, table, sink)
    history = build_treatment_history(events + procedure_events, table, sink)
    hypersensitivity = map_allergies(entries, table, sink)

    if sink.errors:
        problems = list(dict.fromkeys(sink.errors))
        raise InputError(f"{parsed.file}: cannot map the FHIR Bundle: {len(problems)} problem(s)", problems)

    if day is not None:
        document["evaluation_date"] = day.isoformat()
    for path, fv in values.items():
        put(document, path, fv.value)
    history["ebrt"] = ebrt
    if not any(e.type in MEDICATION_TYPES for e in entries):
        # hormonal is required (may be empty) for ra223: an empty list would claim "no hormonal therapy".
        del history["hormonal"]
        sink.warn("the bundle holds no medication resources: treatment_history.hormonal is left out (unknown)")
    for group in ("chemotherapy", "radionuclides", "ebrt", "bone_health_agents", "hormonal"):
        if group in history:
            put(document, f"treatment_history.{group}", history[group])
    if hypersensitivity:
        put(document, "treatment_history.hypersensitivity", hypersensitivity)
    return MappedDocument(ordered(document), dict(sorted(sink.provenance.items())), tuple(sink.warnings),
                          tuple(sink.ignored))


def _patient(entries: tuple[Entry, ...], sink: Sink) -> Entry | None:
    patients = [e for e in entries if e.type == "Patient"]
    if not patients:
        sink.error("the Bundle holds no Patient resource; radiopal needs exactly one", "entry")
        return None
    if len(patients) > 1:
        sink.error(f"the Bundle holds {len(patients)} Patient resources ({', '.join(p.ref for p in patients)}); "
                   "radiopal maps one patient per Bundle", patients[1].path())
        return None
    return patients[0]


def _refers_to(reference: str, patient: Entry, refs: ReferenceIndex) -> bool:
    target = refs.resolve(reference)
    if target is not None:
        return target is patient
    rid = getattr(patient.resource, "id", None)
    return bool(rid) and reference.rstrip("/").endswith(f"Patient/{rid}")


def _check_subjects(entries: tuple[Entry, ...], patient: Entry | None, refs: ReferenceIndex, sink: Sink) -> None:
    """A clinical resource about someone else must not reach this patient's document."""
    if patient is None:
        return
    for entry in entries:
        element = _SUBJECT_ELEMENT.get(entry.type)
        ref = getattr(entry.resource, element, None) if element else None
        reference = ref.reference if ref is not None else None
        if element and reference and not _refers_to(reference, patient, refs):
            sink.error(f"{element} {reference!r} is not the Bundle's patient ({patient.ref})",
                       entry.path(element, "reference"))


def _evaluation_date(given: str | None, bundle: Any, sink: Sink) -> dt.date | None:
    if given is not None:
        try:
            if len(given) != 10:
                raise ValueError(given)
            day = dt.date.fromisoformat(given)
        except (TypeError, ValueError):
            sink.error(f"evaluation_date must be YYYY-MM-DD, got {given!r}", "evaluation_date")
            return None
        sink.cite("evaluation_date", None, derived="the evaluation_date argument")
        return day
    when = when_of(bundle.timestamp)
    if when is None or when.day is None:
        sink.error("no evaluation date: pass evaluation_date or set Bundle.timestamp", "timestamp",
                   hint="bundle_to_document(..., evaluation_date='YYYY-MM-DD')")
        return None
    sink.cite("evaluation_date", None, derived="Bundle.timestamp", value=when.text)
    return when.day


def _age(birth: Any, on: dt.date) -> tuple[int, int]:
    """(youngest, oldest) possible age in whole years; equal unless the birth date is partial."""
    def years(born: dt.date) -> int:
        return on.year - born.year - ((on.month, on.day) < (born.month, born.day))

    if isinstance(birth, dt.date):
        return years(birth), years(birth)
    parts = [int(p) for p in str(birth).split("-")]
    if len(parts) == 1:
        return years(dt.date(parts[0], 12, 31)), years(dt.date(parts[0], 1, 1))
    first = dt.date(parts[0], parts[1], 1)
    last = (dt.date(parts[0] + (parts[1] == 12), parts[1] % 12 + 1, 1) - dt.timedelta(days=1))
    return years(last), years(first)


def _demographics(patient: Entry, day: dt.date | None, values: dict[str, FieldValue], sink: Sink) -> None:
    res = patient.resource
    pid = res.id
    how = "Patient.id"
    if not pid:
        pid = next((i.value for i in res.identifier or () if i.value), None)
        how = "Patient.identifier[0].value"
    if not pid:
        sink.error("the Patient has neither an id nor an identifier value; patient_id is required", patient.path("id"))
    else:
        values["patient_id"] = FieldValue(str(pid), patient)
        sink.cite("patient_id", patient, derived=how)
    if res.gender is not None:
        if res.gender not in _SEX:
            sink.error(f"gender {res.gender!r} cannot be mapped: the contract's sex is male | female",
                       patient.path("gender"))
        else:
            values["demographics.sex"] = FieldValue(_SEX[res.gender], patient)
            sink.cite("demographics.sex", patient, derived="Patient.gender")
    if res.birthDate is not None and day is not None:
        youngest, oldest = _age(res.birthDate, day)
        if youngest != oldest:
            sink.error(f"birthDate {res.birthDate} gives an age of {youngest} or {oldest} on {day.isoformat()}; "
                       "give the full date", patient.path("birthDate"))
        else:
            values["demographics.age_years"] = FieldValue(youngest, patient)
            sink.cite("demographics.age_years", patient, derived=f"Patient.birthDate on {day.isoformat()}")


def _merge_conditions(values: dict[str, FieldValue], found: dict[str, FieldValue], table: CodeTable,
                      sink: Sink) -> None:
    """Condition-derived fields join the Observation-derived ones; a disagreement is an error, not a choice."""
    for path, fv in found.items():
        if path == "bone_metastases":
            continue
        if path == SITE:
            values[path] = fv
            continue
        known = values.get(path)
        if known is None:
            values[path] = fv
            sink.cite(path, fv.entry, **how(fv, table))
        elif known.value != fv.value:
            sink.error(f"{path}: {fv.entry.ref} ({fv.row.code}) says {fv.value!r} but {known.entry.ref} says "
                       f"{known.value!r}; radiopal does not choose", fv.entry.path("code"))
        else:
            sink.provenance[path] = {**sink.provenance.get(path, {}), "confirmed_by": fv.entry.ref}
