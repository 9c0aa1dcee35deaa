"""FHIR R4 Bundle → radiopal patient document (contract §A), with per-field provenance.

The stages, each in its own module:

* :mod:`.parse` — read and validate the Bundle with ``fhir.resources.R4B``;
* :mod:`.observations` — LOINC and radiopal-coded Observations → labs, scores, flags;
* :mod:`.conditions` — ICD-10 / SNOMED CT Conditions → primary site, cord compression, fracture;
* :mod:`.medications`, :mod:`.procedures`, :mod:`.allergies` → ``treatment_history``;
* :mod:`.document` — assemble the document in contract key order.

What maps to what is data (``kb/fhir/codes.yaml``). A record is not a hand-written document: a value radiopal cannot
use leaves its field unknown, with a :class:`~.common.MappingWarning` naming the resource, element and reason
(contract §D ``warnings``), and the engine answers ``insufficient_data`` where that field is needed. Only a Bundle
that is not usable at all (not R4, no Patient, several Patients and none chosen, no patient id) raises an
:class:`~radiopal.errors.InputError`, each problem with its element path (``entry[3].resource.gender``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EngineError, InputError, Problem
from .allergies import map_allergies
from .codes import CodeTable, load_code_table
from .common import Entry, FieldValue, MappingWarning, ReferenceIndex, Sink, when_of
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
    ``warnings`` are values of the record radiopal could not use (the field is then unknown) or choices it made
    (contract §D ``warnings``: ``w.to_dict()`` is ``{source, element, message}``); ``ignored`` lists the resources
    that contributed nothing, with the reason. ``evaluation_date_from`` says where the evaluation date came from:
    ``argument``, ``Bundle.timestamp`` or ``today``.
    """

    document: dict[str, Any]
    provenance: dict[str, dict[str, Any]]
    warnings: tuple[MappingWarning, ...] = field(default=())
    ignored: tuple[dict[str, Any], ...] = field(default=())
    evaluation_date_from: str = "argument"


def bundle_to_document(
    bundle: dict[str, Any] | str | Path,
    *,
    evaluation_date: str | dt.date | None = None,
    patient: str | None = None,
    code_table: CodeTable | None = None,
    today: dt.date | None = None,
) -> MappedDocument:
    """Map a FHIR R4 Bundle (a dict, JSON text, or a JSON/YAML file path) to a contract §A patient document.

    ``evaluation_date`` (``YYYY-MM-DD`` or a ``datetime.date``) is the day every interval is counted to; without it
    the date of ``Bundle.timestamp`` is used, else ``today`` (default: the system date), with a warning. Only data
    known on that day count. ``patient`` (a Patient id or identifier value) picks one Patient of a Bundle that holds
    several; without it such a Bundle is an error listing the ids. ``code_table`` overrides ``kb/fhir/codes.yaml``.

    A value that cannot be used leaves its field unknown, with a warning. Raises
    :class:`~radiopal.errors.InputError` (element path named) only when the Bundle is not usable at all: not R4,
    no (or no chosen) Patient, no patient id, a malformed evaluation date. Never lets a parser exception through (an
    unforeseen failure on valid R4 is an :class:`~radiopal.errors.EngineError`).
    """
    parsed = read_bundle(bundle)
    table = code_table or load_code_table()
    try:
        return _map(parsed, table, evaluation_date, patient, today)
    except (AttributeError, TypeError, ValueError, KeyError, ArithmeticError) as exc:
        # A valid R4 bundle the mapper did not foresee is a radiopal bug: report it with context, not a traceback.
        message = f"{parsed.file}: the FHIR mapper failed on a valid R4 Bundle ({type(exc).__name__}: {exc})"
        raise EngineError(message, [Problem(message, file=parsed.file)]) from exc


def _map(parsed: ParsedBundle, table: CodeTable, evaluation_date: str | dt.date | None, wanted: str | None,
         today: dt.date | None) -> MappedDocument:
    sink = Sink(file=parsed.file, entries={e.index: e for e in parsed.entries})
    patient = _patient(parsed.entries, wanted, sink)
    refs = ReferenceIndex(parsed.entries)
    day, day_from = _evaluation_date(evaluation_date, parsed.bundle, sink, today)
    if patient is not None:
        _demographics(patient, day, {}, sink, check_only=True)
    if sink.errors:
        problems = list(dict.fromkeys(sink.errors))
        raise InputError(f"{parsed.file}: cannot map the FHIR Bundle: {len(problems)} problem(s)", problems)
    assert patient is not None and day is not None
    entries = _about(parsed.entries, patient, refs, sink)

    document: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    values: dict[str, FieldValue] = {}
    _demographics(patient, day, values, sink)
    values.update(map_observations(entries, table, sink, day))
    _merge_conditions(values, map_conditions(entries, table, sink, day), table, sink)

    events = map_medications(entries, table, refs, sink, day)
    ebrt, procedure_events = map_procedures(entries, table, sink, day)
    history = build_treatment_history(events + procedure_events, table, sink)
    hypersensitivity = map_allergies(entries, table, sink)

    document["evaluation_date"] = day.isoformat()
    for path, fv in values.items():
        put(document, path, fv.value)
    history["ebrt"] = ebrt
    if not any(e.type in MEDICATION_TYPES for e in entries):
        # hormonal is required (may be empty) for ra223: an empty list would claim "no hormonal therapy". Left out,
        # it is unknown, and missing_data names it where a therapy needs it (no value was unusable: no warning).
        del history["hormonal"]
    for group in ("chemotherapy", "radionuclides", "ebrt", "bone_health_agents", "hormonal"):
        if group in history:
            put(document, f"treatment_history.{group}", history[group])
    if hypersensitivity:
        put(document, "treatment_history.hypersensitivity", hypersensitivity)
    return MappedDocument(ordered(document), dict(sorted(sink.provenance.items())), tuple(sink.warnings),
                          tuple(sink.ignored), day_from)


def _ids(patient: Entry) -> list[str]:
    res = patient.resource
    return [str(res.id)] * bool(res.id) + [str(i.value) for i in res.identifier or () if i.value]


def _patient(entries: tuple[Entry, ...], wanted: str | None, sink: Sink) -> Entry | None:
    patients = [e for e in entries if e.type == "Patient"]
    if not patients:
        sink.error("the Bundle holds no Patient resource; radiopal needs one", "entry")
        return None
    listed = ", ".join(p.ref for p in patients)
    if wanted is not None:
        found = [p for p in patients if wanted in _ids(p)]
        if len(found) != 1:
            what = "no Patient has" if not found else f"{len(found)} Patients have"
            sink.error(f"{what} the id or identifier {wanted!r}; the Bundle's Patients: {listed}", "entry")
            return None
        return found[0]
    if len(patients) > 1:
        sink.error(f"the Bundle holds {len(patients)} Patient resources ({listed}); choose one with --patient ID "
                   "(Python: patient=ID)", patients[1].path())
        return None
    return patients[0]


def _refers_to(reference: str, patient: Entry, refs: ReferenceIndex) -> bool:
    target = refs.resolve(reference)
    if target is not None:
        return target is patient
    rid = getattr(patient.resource, "id", None)
    return bool(rid) and reference.rstrip("/").endswith(f"Patient/{rid}")


def _about(entries: tuple[Entry, ...], patient: Entry, refs: ReferenceIndex, sink: Sink) -> tuple[Entry, ...]:
    """The entries about this patient: a clinical resource about someone else never reaches the document.

    A resource about another Patient of the Bundle is skipped quietly (listed in ``ignored``); one whose subject
    is not a Patient of the Bundle (a Group, an unresolved contained reference) is skipped with a warning, and so is
    a clinical resource with no subject in a Bundle of several Patients.
    """
    several = sum(e.type == "Patient" for e in entries) > 1
    kept = []
    for entry in entries:
        element = _SUBJECT_ELEMENT.get(entry.type)
        if element is None:
            kept.append(entry)
            continue
        ref = getattr(entry.resource, element, None)
        reference = ref.reference if ref is not None else None
        if not reference:
            if several:
                sink.warn(f"no {element} in a Bundle of several Patients: the resource is not used",
                          entry.path(element))
                continue
            kept.append(entry)
        elif _refers_to(reference, patient, refs):
            kept.append(entry)
        else:
            target = refs.resolve(reference)
            if target is not None and target.type == "Patient":
                sink.ignore(entry, f"about another patient ({target.ref})")
            else:
                sink.warn(f"{element} {reference!r} is not the patient ({patient.ref}): the resource is not used",
                          entry.path(element, "reference"))
    return tuple(kept)


def _evaluation_date(given: str | dt.date | None, bundle: Any, sink: Sink,
                     today: dt.date | None) -> tuple[dt.date | None, str]:
    if isinstance(given, dt.datetime):
        given = given.date()
    if isinstance(given, dt.date):
        sink.cite("evaluation_date", None, derived="the evaluation_date argument")
        return given, "argument"
    if given is not None:
        try:
            if len(given) != 10:
                raise ValueError(given)
            day = dt.date.fromisoformat(given)
        except (TypeError, ValueError):
            sink.error(f"evaluation_date must be YYYY-MM-DD, got {given!r}", "evaluation_date")
            return None, "argument"
        sink.cite("evaluation_date", None, derived="the evaluation_date argument")
        return day, "argument"
    when = when_of(bundle.timestamp)
    if when is not None and when.day is not None:
        sink.cite("evaluation_date", None, derived="Bundle.timestamp", value=when.text)
        return when.day, "Bundle.timestamp"
    day = today or dt.date.today()
    sink.cite("evaluation_date", None, derived="today (no evaluation date given and no Bundle.timestamp)")
    sink.warn(f"no evaluation date given and no Bundle.timestamp: evaluated as of today, {day.isoformat()}",
              "timestamp")
    return day, "today"


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


def _demographics(patient: Entry, day: dt.date | None, values: dict[str, FieldValue], sink: Sink,
                  check_only: bool = False) -> None:
    """patient_id (required: an error without it), sex and age; a gender or birth date radiopal cannot use leaves
    that field unknown with a warning. ``check_only`` records only the error."""
    res = patient.resource
    pid = res.id
    how = "Patient.id"
    if not pid:
        pid = next((i.value for i in res.identifier or () if i.value), None)
        how = "Patient.identifier[0].value"
    if check_only:
        if not pid:
            sink.error("the Patient has neither an id nor an identifier value; patient_id is required",
                       patient.path("id"))
        return
    values["patient_id"] = FieldValue(str(pid), patient)
    sink.cite("patient_id", patient, derived=how)
    if res.gender is not None:
        if res.gender not in _SEX:
            sink.warn(f"demographics.sex is left unknown: gender {res.gender!r} is not male or female",
                      patient.path("gender"))
        else:
            values["demographics.sex"] = FieldValue(_SEX[res.gender], patient)
            sink.cite("demographics.sex", patient, derived="Patient.gender")
    died = when_of(res.deceasedDateTime)
    if (died is not None and day is not None and (died.day or died.instant.date()) <= day) or res.deceasedBoolean:
        sink.warn(f"the Patient is recorded as deceased{f' on {died.text}' if died else ''}; radiopal evaluated the "
                  f"record as of {day.isoformat() if day else 'the evaluation date'} all the same",
                  patient.path("deceasedDateTime" if died else "deceasedBoolean"))
    if res.birthDate is not None and day is not None:
        youngest, oldest = _age(res.birthDate, day)
        if youngest != oldest:
            sink.warn(f"demographics.age_years is left unknown: birthDate {res.birthDate} gives an age of {youngest} "
                      f"or {oldest} on {day.isoformat()}", patient.path("birthDate"))
        elif not 0 <= youngest <= 130:
            sink.warn(f"demographics.age_years is left unknown: birthDate {res.birthDate} gives an age of {youngest} "
                      f"on {day.isoformat()}", patient.path("birthDate"))
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
            sink.warn(f"{path} is left unknown: {fv.entry.ref} ({fv.row.code}) says {fv.value!r} but "
                      f"{known.entry.ref} says {known.value!r}; radiopal does not choose", fv.entry.path("code"))
            del values[path]
            sink.provenance.pop(path, None)
        else:
            sink.provenance[path] = {**sink.provenance.get(path, {}), "confirmed_by": fv.entry.ref}
