"""Worker side of a cohort run: evaluate one batch of records with a rule base compiled once per process.

:func:`evaluate_batch` is what the serial loop calls in-process and what Dask ships to its workers. It never raises
for a bad patient: an unreadable or invalid record becomes an error entry and the batch goes on.

The rule base travels as a :class:`RuleSnapshot` (the rule files' bytes and the digest of the compiled rules), so a
worker on another host needs no copy of the rules, and a rule file edited while a run is going cannot make two
workers disagree: each worker compiles the snapshot's content, once, and checks the digest.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
import traceback
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..errors import RadiopalError, RulebaseError
from .record import Record

if TYPE_CHECKING:
    from ..api import RuleBase
    from ..result import Result

__all__ = ["BONE_HEALTH_AGENTS", "PATIENT_COLUMNS", "POSITIVE", "RADIONUCLIDES", "THERAPY_COLUMNS", "BatchConfig",
           "BatchResult", "RuleSnapshot", "compile_count", "evaluate_batch", "rechecked", "rulebase_for",
           "safe_name", "snapshot_rules"]

#: Radionuclides of the under-use finding (contract §B.3, without the investigational sn117m).
RADIONUCLIDES: Final = ("sr89", "sm153", "ra223", "re186", "re188", "p32")
#: Bone-health agents (contract §B.3).
BONE_HEALTH_AGENTS: Final = ("zoledronic_acid", "pamidronate", "ibandronate", "clodronate", "denosumab")
POSITIVE: Final = ("recommended", "eligible")

#: One row per patient and therapy.
THERAPY_COLUMNS: Final = ("patient_id", "therapy", "status", "earliest_date", "dose_mg", "reasons", "missing_data",
                          "unverified", "rulebase_version")
#: One row per evaluated patient.
PATIENT_COLUMNS: Final = ("patient_id", "source", "line", "evaluation_date", "primary_site", "prior_radionuclides",
                          "prior_bone_health_agents", "candidate_radionuclides", "candidate_bone_health_agents",
                          "radionuclide_underuse", "bone_health_underuse", "missing_data", "advisories",
                          "rulebase_version")

_SAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class RuleSnapshot:
    """The rule files of a rule base (name → bytes), their folder on the driver, and the compiled digest."""

    folder: str
    files: tuple[tuple[str, bytes], ...]
    digest: str
    version: str


@dataclass(frozen=True)
class BatchConfig:
    """What every batch needs besides its records: which outputs to produce, and the FHIR evaluation date."""

    decisions: bool = False
    graphs: bool = False
    evaluation_date: str | None = None
    #: The evaluation path of the run ("compiled" for cohorts; "experta" evaluates everything on the engine of record).
    engine: str = "compiled"
    #: On the compiled path, re-evaluate about one record in N on experta and compare (0: never).
    recheck_every: int = 500


@dataclass
class BatchResult:
    """The outcome of one batch: columnar rows, errors, optional per-patient files, and worker statistics."""

    index: int
    keys: list[str]
    therapies: dict[str, list[Any]]
    patients: dict[str, list[Any]]
    errors: list[dict[str, Any]]
    files: list[tuple[str, str, str]] = field(default_factory=list)  # (subfolder, file name, text)
    pid: int = 0
    compiles: int = 0
    seconds: float = 0.0
    rechecked: int = 0
    #: The first record whose re-check on experta differed: key, patient id, and both paths' outputs.
    mismatch: dict[str, Any] | None = None


_LOCK = threading.Lock()
_CACHE: dict[str, RuleBase] = {}
_COMPILES = 0


def snapshot_rules(folder: str | Path | None) -> tuple[RuleSnapshot, RuleBase]:
    """Read the rule files of ``folder`` (default: the shipped rules), compile them, and return both.

    The compiled rule base is built from the bytes read, so the digest always describes the snapshot, even when a
    file changes on disk meanwhile. Raises :class:`RulebaseError` for an unusable rule base.
    """
    from ..api import load_rulebase
    from ..resources import rules_dir
    from ..rulebase.load import rule_files

    source = Path(folder) if folder is not None else rules_dir()
    files = _read_files(source, rule_files)
    rulebase = load_rulebase(source)
    if _read_files(source, rule_files) != files:  # edited while compiling: compile the bytes read, not the folder
        rulebase = _compile_files(files, load_rulebase)
    snapshot = RuleSnapshot(str(source.resolve()), files, rulebase.digest, rulebase.version)
    with _LOCK:
        _CACHE.setdefault(rulebase.digest, rulebase)
    return snapshot, rulebase


def _read_files(source: Path, rule_files: Any) -> tuple[tuple[str, bytes], ...]:
    return tuple((path.name, path.read_bytes()) for path in rule_files(source))


def _compile_files(files: tuple[tuple[str, bytes], ...], load_rulebase: Any) -> RuleBase:
    with tempfile.TemporaryDirectory(prefix="radiopal-rules-") as tmp:
        for name, data in files:
            (Path(tmp) / name).write_bytes(data)
        return load_rulebase(tmp)


def rulebase_for(snapshot: RuleSnapshot, engine: str = "experta") -> RuleBase:
    """The compiled rule base of ``snapshot`` in this process: compiled on first use, then cached by digest.

    The rule folder is compiled in place when it still holds the snapshot's rules (so rule locations name the real
    files); otherwise the snapshot's bytes are compiled. A digest that does not match is an error, never a silent mix
    of rule versions. ``engine`` picks the evaluation path (the rules are read and checked once for both).
    """
    global _COMPILES
    with _LOCK:
        cached = _CACHE.get(snapshot.digest)
        if cached is not None:
            return _on_engine(cached, snapshot.digest, engine)
        from ..api import load_rulebase
        from ..rulebase.load import rule_files

        rulebase = None
        folder = Path(snapshot.folder)
        try:
            if folder.is_dir() and _read_files(folder, rule_files) == snapshot.files:
                rulebase = load_rulebase(folder)
        except (OSError, RadiopalError):
            rulebase = None
        if rulebase is None or rulebase.digest != snapshot.digest:
            rulebase = _compile_files(snapshot.files, load_rulebase)
        _COMPILES += 1
        if rulebase.digest != snapshot.digest:
            raise RulebaseError(f"rule base digest mismatch on worker {os.getpid()}: "
                                f"{rulebase.digest} != {snapshot.digest}")
        _CACHE[snapshot.digest] = rulebase
        return _on_engine(rulebase, snapshot.digest, engine)


def _on_engine(rulebase: RuleBase, digest: str, engine: str) -> RuleBase:
    """``rulebase`` on ``engine``, built once per process (the caller holds the lock)."""
    if rulebase.engine == engine:
        return rulebase
    key = f"{digest}#{engine}"
    other = _CACHE.get(key)
    if other is None:
        other = _CACHE[key] = rulebase.on_engine(engine)
    return other


def compile_count() -> int:
    """How many rule bases this process has compiled for workers (1 per worker and rule base when all is well)."""
    return _COMPILES


def evaluate_batch(index: int, records: list[Record], config: BatchConfig, snapshot: RuleSnapshot) -> BatchResult:
    """Evaluate every record of one batch, in order; invalid records become error entries.

    On the compiled path, the records :func:`rechecked` picks are evaluated on experta too; the first difference ends
    the batch with :attr:`BatchResult.mismatch` set (the driver stops the run and writes both results out).
    """
    started = time.perf_counter()
    rulebase = rulebase_for(snapshot, config.engine)
    reference = rulebase_for(snapshot, "experta") if config.engine != "experta" and config.recheck_every else None
    version = rulebase.version
    therapies: dict[str, list[Any]] = {name: [] for name in THERAPY_COLUMNS}
    patients: dict[str, list[Any]] = {name: [] for name in PATIENT_COLUMNS}
    errors: list[dict[str, Any]] = []
    files: list[tuple[str, str, str]] = []
    checked = 0
    for record in records:
        outcome = _evaluate_record(record, rulebase, config)
        if reference is not None and rechecked(record.key, config.recheck_every):
            checked += 1
            mismatch = _recheck(record, outcome, reference, config)
            if mismatch is not None:
                return BatchResult(index, [r.key for r in records], therapies, patients, errors, files, os.getpid(),
                                   compile_count(), time.perf_counter() - started, checked, mismatch)
        if isinstance(outcome, dict):
            errors.append(outcome)
            continue
        _append_rows(outcome, record, version, therapies, patients)
        if config.decisions or config.graphs:
            name = safe_name(outcome.patient.patient_id, record.key) + ".json"
            files.append(("decisions", name, outcome.to_json()))
            if config.graphs:
                files.append(("graphs", name, outcome.graph.to_json()))
    return BatchResult(index, [r.key for r in records], therapies, patients, errors, files, os.getpid(),
                       compile_count(), time.perf_counter() - started, checked)


def rechecked(key: str, every: int) -> bool:
    """Whether the record ``key`` is one of the ~1 in ``every`` re-checked on experta (by a hash of its key: the same
    records whatever the batching, the worker count or a --resume)."""
    return every > 0 and zlib.crc32(key.encode("utf-8")) % every == 0


def _recheck(record: Record, outcome: Result | dict[str, Any], reference: RuleBase,
             config: BatchConfig) -> dict[str, Any] | None:
    """Evaluate ``record`` on experta and compare with ``outcome``: None when they agree, else both results."""
    expected = _evaluate_record(record, reference, config)
    ours, theirs = _comparable(outcome), _comparable(expected)
    if ours == theirs:
        return None
    patient_id = outcome.patient.patient_id if not isinstance(outcome, dict) else outcome.get("patient_id")
    return {"key": record.key, "source": record.source, "line": record.line or None, "patient_id": patient_id,
            "engine": config.engine, "result": ours, "experta": theirs}


def _comparable(outcome: Result | dict[str, Any]) -> dict[str, Any]:
    """What the re-check compares: the decision document and every firing (rule, therapy, phase, date, missing
    data), or the error entry of a record that failed."""
    if isinstance(outcome, dict):
        return {"error": outcome}
    firings = [{"rule": f.compiled.rule.key, "therapy": f.therapy, "phase": f.phase,
                "earliest_date": f.earliest_date.isoformat() if f.earliest_date else None,
                "missing": list(f.missing_paths)} for f in outcome.firings]
    return {"decisions": json.loads(outcome.to_json()), "firings": firings}


def _evaluate_record(record: Record, rulebase: RuleBase, config: BatchConfig) -> Result | dict[str, Any]:
    from ..patient.load import parse_patient
    from ..yamlio import load_text

    if record.error is not None:
        return _error(record, None, record.error, [])
    data: Any = None
    mapped: Any = None
    try:
        if record.fmt == "fhir":
            from ..fhir import bundle_to_document

            mapped = bundle_to_document(record.data.decode("utf-8"), evaluation_date=config.evaluation_date)
            data = mapped.document
            document = parse_patient(data)
        else:
            name = f"{record.source}:{record.line}" if record.line else record.source
            located = load_text(record.data, file=name, kind="patient document", as_json=record.fmt == "json")
            data = located.data
            document = parse_patient(data, source=located.source)
        result = rulebase.evaluate(document)
        if mapped is not None:  # the values the mapping could not use go into the decision JSON's warnings
            from ..api import attach_mapping

            attach_mapping(result, mapped)
        return result
    except RadiopalError as exc:
        if record.origins:  # FHIR bulk data: name the NDJSON file and line of each problem, not a Bundle entry
            from .bulk import locate_problems

            return _error(record, data, str(exc).replace("<bundle>", record.key, 1),
                          locate_problems(exc, record.origins, record.key))
        return _error(record, data, str(exc), exc.lines() if exc.problems else [])
    except Exception as exc:  # a bug must not stop a population run: report it with its place and go on
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return _error(record, data, f"internal error: {type(exc).__name__}: {exc}",
                      [f"{Path(where.filename).name}:{where.lineno} in {where.name}"], kind="internal")


def _error(record: Record, data: Any, message: str, problems: list[str], kind: str = "input") -> dict[str, Any]:
    patient_id = None
    if isinstance(data, Mapping) and isinstance(data.get("patient_id"), str | int):
        patient_id = str(data["patient_id"])
    elif record.fmt == "fhir" and record.key.startswith("Patient/"):
        patient_id = record.key[len("Patient/"):]
    return {"source": record.source, "line": record.line or None, "key": record.key, "patient_id": patient_id,
            "kind": kind, "message": message, "problems": problems}


def _agents(data: Mapping[str, Any], group: str) -> list[str]:
    history = data.get("treatment_history")
    entries = history.get(group) if isinstance(history, Mapping) else None
    if not isinstance(entries, list):
        return []
    return sorted({str(e["agent"]) for e in entries if isinstance(e, Mapping) and e.get("agent")})


def _append_rows(result: Result, record: Record, version: str, therapies: dict[str, list[Any]],
                 patients: dict[str, list[Any]]) -> None:
    pid = result.patient.patient_id
    positive: set[str] = set()
    for d in result.decisions:
        therapies["patient_id"].append(pid)
        therapies["therapy"].append(d.therapy)
        therapies["status"].append(d.status)
        therapies["earliest_date"].append(d.earliest_date)
        therapies["dose_mg"].append(None if d.dose_mg is None else float(d.dose_mg))
        therapies["reasons"].append(";".join(d.reasons))
        therapies["missing_data"].append(";".join(d.missing_data) if d.status != "not_indicated" else "")
        therapies["unverified"].append(bool(d.unverified))
        therapies["rulebase_version"].append(version)
        if d.status in POSITIVE:
            positive.add(d.therapy)
    data = result.patient.data
    prior_rn = _agents(data, "radionuclides")
    prior_bha = _agents(data, "bone_health_agents")
    candidate_rn = [t for t in RADIONUCLIDES if t in positive]
    candidate_bha = [t for t in BONE_HEALTH_AGENTS if t in positive]
    tumour = data.get("primary_tumour")
    patients["patient_id"].append(pid)
    patients["source"].append(record.source)
    patients["line"].append(record.line or None)
    patients["evaluation_date"].append(result.patient.evaluation_date)
    patients["primary_site"].append(tumour.get("site") if isinstance(tumour, Mapping) else None)
    patients["prior_radionuclides"].append(";".join(prior_rn))
    patients["prior_bone_health_agents"].append(";".join(prior_bha))
    patients["candidate_radionuclides"].append(";".join(candidate_rn))
    patients["candidate_bone_health_agents"].append(";".join(candidate_bha))
    patients["radionuclide_underuse"].append(bool(candidate_rn) and not prior_rn)
    patients["bone_health_underuse"].append(bool(candidate_bha) and not prior_bha)
    patients["missing_data"].append(";".join(result.missing_data))
    patients["advisories"].append(";".join(a.id for a in result.advisories))
    patients["rulebase_version"].append(version)


def safe_name(patient_id: str | None, fallback: str) -> str:
    """A file-name-safe form of a patient id (or of ``fallback`` when the id is empty)."""
    name = _SAFE.sub("_", patient_id or "").strip("._")
    return name[:120] or _SAFE.sub("_", fallback).strip("._")[:120] or "patient"


def dumps_error(entry: Mapping[str, Any]) -> str:
    """One errors.jsonl line."""
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
