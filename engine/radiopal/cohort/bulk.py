"""A FHIR Bulk Data export (``$export``, "Flat FHIR" NDJSON) read as one collection Bundle per patient, streamed.

What is read:

* **With a manifest** (the ``$export`` completion response saved as a ``.json`` file in the folder, or given as the
  input itself): every ``output[].url`` is followed — an absolute URL is found in the folder by its last path
  segment, a relative one below the folder — whatever the file is called; ``error[]`` (``outcome[]`` in STU 4)
  files of OperationOutcomes are reported in ``errors.jsonl``. ``transactionTime`` is the default evaluation date.
* **Without one** (a folder copied from a server): every ``*.ndjson`` and ``*.ndjson.gz`` file in the folder.
  Files are recognised by the ``resourceType`` of their lines, never by their names, so a type may be split over
  several files (``1.Observation.ndjson``, ``Observation-2.ndjson.gz``) and a file may mix types. An export
  organised by patient (STU 4 ``outputOrganizedBy: Patient``, a patient possibly continued in the next file) reads
  the same way: every line is indexed wherever it is.

Gzip is recognised by its magic bytes. Resources are joined to their patient by ``subject`` / ``patient`` /
``beneficiary`` / ``individual`` references: ``Patient/<id>`` (relative or absolute, ``/_history/n`` allowed) or
``urn:uuid:<id>`` (an export from a system that keeps Bundle-style references; the Patient's id must be that uuid).
Resources outside the patient compartment that the mapping reads (``Medication``) join the Bundles that refer to
them. Resource types the FHIR mapping never reads (Claim, Encounter, ImagingStudy ...) are counted and skipped.

Scale: one pass over the files writes, per resource line, ``(patient, file, line, byte offset, length)`` into a
temporary SQLite index on disk; patients are then read back in order, each resource by a seek and a read. The driver
holds one patient's resources at a time however large the export is. A gzip file is decompressed once into a spool
file beside the index (byte offsets need a seekable file). A line that is not JSON, not a resource, or names no
patient is one error record naming its file and line; the rest of the file is read on.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import shutil
import sqlite3
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from ..errors import InputError, Problem, RadiopalError
from .record import Reader, Record

__all__ = ["BulkExportReader", "is_bulk_input", "locate_problems", "manifest_in"]

NDJSON_SUFFIXES: Final = (".ndjson", ".ndjson.gz")
MANIFEST_LIMIT: Final = 64 * 1024 * 1024  # a manifest is small; a larger .json file is not looked into
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?/?$")
_URN_UUID = re.compile(r"^urn:uuid:([0-9a-fA-F-]{36})$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ANY_REF = re.compile(rb'"reference"\s*:\s*"([^"#]+)"')
_SUBJECT_FIELDS: Final = ("subject", "patient", "beneficiary", "individual")
_ENTRY = re.compile(r"^entry\[(\d+)\](?:\.resource)?\.?(.*)$")
_INSERT_CHUNK: Final = 5_000
_GZIP_MAGIC: Final = b"\x1f\x8b"


def _mapped_types() -> frozenset[str]:
    from ..fhir.mapping import MAPPED_TYPES

    return MAPPED_TYPES


# ------------------------------------------------------------------------------------------------ layout


def is_manifest(data: Any) -> bool:
    """Whether parsed JSON is a Bulk Data manifest (an ``output`` list, and ``transactionTime`` or ``request``)."""
    return isinstance(data, dict) and isinstance(data.get("output"), list) and (
        "transactionTime" in data or "request" in data)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > MANIFEST_LIMIT:
            return None
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, ValueError):
        return None
    return data if is_manifest(data) else None


def manifest_in(folder: Path) -> Path | None:
    """The Bulk Data manifest of ``folder``, or None: a top-level ``.json`` file named ``*manifest*``, or — when the
    folder holds NDJSON files — any top-level ``.json`` file, that parses as a manifest (``manifest.json`` first).

    A folder of patient documents without NDJSON files is never read through (only ``*manifest*.json`` files are).
    """
    try:
        files = [p for p in folder.iterdir() if p.is_file()]
    except OSError:
        return None
    ndjson = any(_is_ndjson_name(p) for p in files)
    candidates = sorted((p for p in files if p.suffix.lower() == ".json" and (ndjson or "manifest" in p.name.lower())),
                        key=lambda p: (p.name.lower() != "manifest.json", p.name))
    return next((p for p in candidates if _read_manifest(p) is not None), None)


def _is_ndjson_name(path: Path) -> bool:
    return path.name.lower().endswith(NDJSON_SUFFIXES)


def is_bulk_input(path: Path) -> bool:
    """Whether ``path`` is a Bulk Data export: a folder of NDJSON files (or with a manifest), a manifest file, or one
    ``.ndjson.gz`` file. (A single plain ``.ndjson`` file is told apart from JSON Lines by the caller.)"""
    if path.is_dir():
        return any(_is_ndjson_name(p) for p in path.iterdir() if p.is_file()) or manifest_in(path) is not None
    if path.name.lower().endswith(".ndjson.gz"):
        return True
    return path.suffix.lower() == ".json" and _read_manifest(path) is not None


@dataclass(frozen=True)
class _Source:
    """One NDJSON file of the export: its name for messages, where it is, and whether it lists export errors."""

    shown: Path
    path: Path
    errors: bool = False


def _input_error(path: Path, message: str, where: str = "") -> InputError:
    return InputError(f"{path}: {where + ': ' if where else ''}{message}",
                      [Problem(message, path=where, file=str(path))])


def _manifest_sources(manifest_path: Path, manifest: dict[str, Any]) -> list[_Source]:
    folder = manifest_path.parent.resolve()
    sources: list[_Source] = []
    for key in ("output", "error", "outcome"):
        items = manifest.get(key) or []
        if not isinstance(items, list):
            raise _input_error(manifest_path, "expected a list", key)
        for i, item in enumerate(items):
            url = item.get("url") if isinstance(item, dict) else None
            if not isinstance(url, str) or not url:
                raise _input_error(manifest_path, "expected an object with a url", f"{key}[{i}]")
            parts = urlsplit(url)
            name = PurePosixPath(unquote(parts.path)).name
            if parts.scheme in ("", "file"):  # a path: relative to the manifest's folder, or a file: URL
                candidates = [folder / unquote(parts.path if parts.scheme else url), folder / name]
            else:  # a download URL: the file was saved next to the manifest under its last path segment
                candidates = [folder / name]
            local = next((c for c in candidates if name and c.is_file()), None)
            if local is None:
                raise _input_error(manifest_path, f"{url!r}: no such file next to the manifest (expected {name!r} in "
                                   f"{folder}; download every file the manifest lists)", f"{key}[{i}].url")
            sources.append(_Source(local, local, errors=key != "output"))
    return sources


def _folder_sources(folder: Path) -> list[_Source]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and _is_ndjson_name(p))
    return [_Source(p, p) for p in files]


def _transaction_date(manifest: dict[str, Any]) -> str | None:
    text = manifest.get("transactionTime")
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date().isoformat()
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------ the reader


class BulkExportReader(Reader):
    """One collection Bundle per patient from a Bulk Data export (see the module docstring). A context manager."""

    format = "fhir"

    def __init__(self, path: Path, *, workdir: Path) -> None:
        self.path = path
        self.workdir = workdir
        self.manifest: Path | None = None
        self.default_evaluation_date: str | None = None
        manifest_path = path if path.is_file() and path.suffix.lower() == ".json" else (
            manifest_in(path) if path.is_dir() else None)
        if manifest_path is not None:
            manifest = _read_manifest(manifest_path)
            if manifest is None:
                raise _input_error(manifest_path, "not a FHIR Bulk Data manifest (no output list)")
            self.manifest = manifest_path
            self.sources = _manifest_sources(manifest_path, manifest)
            self.default_evaluation_date = _transaction_date(manifest)
        elif path.is_dir():
            self.sources = _folder_sources(path)
        else:
            self.sources = [_Source(path, path)]
        if not any(not s.errors for s in self.sources):
            raise _input_error(path, "holds no NDJSON files (*.ndjson, *.ndjson.gz) and no manifest listing any")
        self.skipped: Counter[str] = Counter()
        self._db_path: Path | None = None
        self._spool: Path | None = None
        self._db: sqlite3.Connection | None = None
        self._readable: list[Path] = []

    @property
    def files(self) -> list[Path]:
        """The export's NDJSON files, as named in messages."""
        return [s.shown for s in self.sources]

    def describe(self) -> str:
        how = f"manifest {self.manifest.name}" if self.manifest else "files recognised by their resourceType"
        text = f"FHIR Bulk Data export {self.path} ({len(self.sources)} NDJSON file(s), {how})"
        if self.skipped:
            kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(self.skipped.items()))
            text += f"; skipped, not read by the FHIR mapping: {kinds}"
        return text

    # -- index --------------------------------------------------------------------------------------------------

    def _index(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        self.workdir.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}-{id(self):x}"
        self._db_path = self.workdir / f".fhir-index-{tag}.sqlite"
        self._db_path.unlink(missing_ok=True)
        db = sqlite3.connect(self._db_path)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        # uuid: the resource id when it is a uuid (its Bundle entry then gets fullUrl urn:uuid:<id>), else NULL.
        db.execute("CREATE TABLE res (pref TEXT, is_patient INTEGER, file INTEGER, line INTEGER, off INTEGER, "
                   "len INTEGER, uuid TEXT)")
        db.execute("CREATE TABLE shared (ref TEXT PRIMARY KEY, file INTEGER, line INTEGER, off INTEGER, len INTEGER, "
                   "uuid TEXT)")
        db.execute("CREATE TABLE bad (file INTEGER, line INTEGER, message TEXT)")
        mapped = _mapped_types()
        self.skipped.clear()
        for number, source in enumerate(self.sources):
            readable = self._readable_copy(db, number, source, tag)
            self._readable.append(readable)
            self._scan(db, number, source, readable, mapped)
        db.execute("CREATE INDEX res_pref ON res (pref, is_patient DESC, file, line)")
        db.commit()
        self._db = db
        return db

    def _readable_copy(self, db: sqlite3.Connection, number: int, source: _Source, tag: str) -> Path:
        """The file itself, or for gzip a decompressed spool copy; a damaged gzip keeps the lines before the damage."""
        try:
            with source.path.open("rb") as handle:
                compressed = handle.read(2) == _GZIP_MAGIC
        except OSError as exc:
            raise _input_error(source.shown, f"cannot read: {exc.strerror or exc}") from exc
        if not compressed:
            return source.path
        if self._spool is None:
            self._spool = self.workdir / f".fhir-spool-{tag}"
            self._spool.mkdir(parents=True, exist_ok=True)
        target = self._spool / f"{number}.ndjson"
        with gzip.open(source.path, "rb") as packed, target.open("wb") as out:
            lines = 0
            try:
                while chunk := packed.read(1024 * 1024):
                    out.write(chunk)
                    lines += chunk.count(b"\n")
            except (OSError, EOFError, zlib.error) as exc:
                db.execute("INSERT INTO bad VALUES (?, ?, ?)", (number, lines + 1,
                                                                f"the gzip data is damaged from here on ({exc})"))
        return target

    def _scan(self, db: sqlite3.Connection, number: int, source: _Source, readable: Path,
              mapped: frozenset[str]) -> None:
        res: list[tuple[str, int, int, int, int, int, str | None]] = []
        shared: list[tuple[str, int, int, int, int, str | None]] = []
        bad: list[tuple[int, int, str]] = []
        offset = 0
        with readable.open("rb") as handle:
            for line_no, line in enumerate(handle, start=1):
                start, length = offset, len(line)
                offset += length
                if not line.strip():
                    continue
                found = _classify(line, source.errors, mapped)
                if isinstance(found, str):
                    bad.append((number, line_no, found))
                elif found is None:
                    continue
                else:
                    kind, key, rid = found
                    uuid = rid if rid and _UUID.match(rid) else None
                    if kind == "skip":
                        self.skipped[key] += 1
                    elif kind == "shared":
                        shared.append((key, number, line_no, start, length, uuid))
                        if uuid:
                            shared.append((f"urn:uuid:{uuid}", number, line_no, start, length, uuid))
                    else:
                        res.append((key, int(kind == "patient"), number, line_no, start, length, uuid))
                if len(res) >= _INSERT_CHUNK:
                    db.executemany("INSERT INTO res VALUES (?, ?, ?, ?, ?, ?, ?)", res)
                    res.clear()
                if len(shared) >= _INSERT_CHUNK:
                    db.executemany("INSERT OR IGNORE INTO shared VALUES (?, ?, ?, ?, ?, ?)", shared)
                    shared.clear()
        db.executemany("INSERT INTO res VALUES (?, ?, ?, ?, ?, ?, ?)", res)
        db.executemany("INSERT OR IGNORE INTO shared VALUES (?, ?, ?, ?, ?, ?)", shared)
        db.executemany("INSERT INTO bad VALUES (?, ?, ?)", bad)

    def count(self) -> int:
        """Patients (with or without a Patient resource) plus unreadable lines: what iteration yields."""
        db = self._index()
        patients = db.execute("SELECT COUNT(DISTINCT pref) FROM res").fetchone()[0]
        bad = db.execute("SELECT COUNT(*) FROM bad").fetchone()[0]
        return int(patients) + int(bad)

    # -- iteration ----------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Record]:
        db = self._index()
        ordinal = 0
        for number, line, message in db.execute("SELECT file, line, message FROM bad ORDER BY file, line").fetchall():
            shown = self.sources[number].shown
            yield Record(ordinal, f"{shown.name}:{line}", str(shown), line, "fhir", b"", message)
            ordinal += 1
        handles = [path.open("rb") for path in self._readable]
        try:
            cursor = db.execute("SELECT pref, is_patient, file, line, off, len, uuid FROM res "
                                "ORDER BY pref, is_patient DESC, file, line")
            group: list[tuple[int, int, int, int, int, str | None]] = []
            current: str | None = None
            for pref, is_patient, number, line, off, length, uuid in cursor:
                if pref != current and current is not None:
                    yield self._patient_record(ordinal, current, group, handles, db)
                    ordinal += 1
                    group = []
                current = pref
                group.append((is_patient, number, line, off, length, uuid))
            if current is not None:
                yield self._patient_record(ordinal, current, group, handles, db)
        finally:
            for handle in handles:
                handle.close()

    def _patient_record(self, ordinal: int, pref: str, group: list[tuple[int, int, int, int, int, str | None]],
                        handles: list[Any], db: sqlite3.Connection) -> Record:
        is_patient, number, line, _, _, _ = group[0]
        shown = self.sources[number].shown
        if not is_patient:
            return Record(ordinal, pref, str(shown), line, "fhir", b"",
                                f"{len(group)} resource(s) refer to {pref}, which is in no file of the export "
                                f"(first: {shown.name}:{line})")
        parts: list[bytes] = []
        uuids: list[str | None] = []
        origins: list[str] = []
        for _, file_no, line_no, off, length, uuid in group:
            handles[file_no].seek(off)
            parts.append(handles[file_no].read(length).strip())
            uuids.append(uuid)
            origins.append(f"{self.sources[file_no].shown.name}:{line_no}")
        seen: set[str] = set()
        for ref in sorted({m.decode("utf-8", "replace") for part in parts for m in _ANY_REF.findall(part)}):
            key = ref if _URN_UUID.match(ref) else "/".join(ref.rstrip("/").split("/")[-2:])
            if key.startswith("Patient/") or key in seen:
                continue
            seen.add(key)
            row = db.execute("SELECT file, line, off, len, uuid FROM shared WHERE ref = ?", (key,)).fetchone()
            if row is not None:
                handles[row[0]].seek(row[2])
                parts.append(handles[row[0]].read(row[3]).strip())
                uuids.append(row[4])
                origins.append(f"{self.sources[row[0]].shown.name}:{row[1]}")
        data = b'{"resourceType":"Bundle","type":"collection","entry":[' + b",".join(
            _entry(part, uuid) for part, uuid in zip(parts, uuids, strict=True)) + b"]}"
        return Record(ordinal, pref, str(shown), line, "fhir", data, origins=tuple(origins))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._db_path is not None:
            self._db_path.unlink(missing_ok=True)
            self._db_path = None
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None
        self._readable = []


def _entry(part: bytes, uuid: str | None) -> bytes:
    """A Bundle entry around one resource line; a resource whose id is a uuid also gets ``fullUrl: urn:uuid:<id>``
    so that the ``urn:uuid:`` references of exports that keep them resolve."""
    if uuid:
        return b'{"fullUrl":"urn:uuid:' + uuid.encode("ascii") + b'","resource":' + part + b"}"
    return b'{"resource":' + part + b"}"


def _classify(line: bytes, error_file: bool, mapped: frozenset[str]) -> tuple[str, str, str | None] | str | None:
    """What one line is: ``(kind, key, id)`` — kind ``patient`` or ``res`` (key ``Patient/<id>``), ``shared``
    (key ``Type/id``) or ``skip`` (key the type) — an error message, or None for a line to ignore."""
    try:
        resource = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not a JSON resource: {exc}"
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return "not a FHIR resource (no resourceType)"
    rtype = resource["resourceType"]
    if rtype == "OperationOutcome":
        return f"the export server reported: {_outcome_text(resource)}"
    if error_file:
        return None
    rid = resource.get("id")
    if rtype == "Patient":
        if not isinstance(rid, str) or not rid:
            return "Patient resource without an id"
        return ("patient", f"Patient/{rid}", rid)
    if rtype not in mapped:
        return ("skip", rtype, None)
    rid = rid if isinstance(rid, str) and rid else None
    pref = _patient_of(resource)
    if pref is not None:
        return ("res", pref, rid)
    if rtype == "Medication":
        if rid:
            return ("shared", f"{rtype}/{rid}", rid)
        return "Medication resource without an id (nothing can refer to it)"
    return f"{rtype} without a reference to a Patient in subject/patient: not joined to any patient"


def _patient_of(resource: dict[str, Any]) -> str | None:
    for name in _SUBJECT_FIELDS:
        value = resource.get(name)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            reference = value["reference"]
            urn = _URN_UUID.match(reference)
            if urn:
                return f"Patient/{urn.group(1)}"
            match = _PATIENT_REF.search(reference)
            if match:
                return f"Patient/{match.group(1)}"
    return None


def _outcome_text(outcome: dict[str, Any]) -> str:
    texts = []
    for issue in outcome.get("issue") or []:
        if isinstance(issue, dict):
            detail = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code")
            texts.append(f"{issue.get('severity', 'error')}: {detail}")
    return "; ".join(str(t) for t in texts) or "an OperationOutcome without issues"


def locate_problems(exc: RadiopalError, origins: tuple[str, ...], key: str) -> list[str]:
    """The problems of a mapping error with ``entry[i].resource.x`` rewritten to ``<ndjson file>:<line> x``."""
    lines = []
    for problem in exc.problems:
        match = _ENTRY.match(problem.path or "")
        if match and int(match.group(1)) < len(origins):
            where = f"{origins[int(match.group(1))]} {match.group(2)}".rstrip()
        else:
            where = f"{key} {problem.path}".rstrip()
        text = f"{where}: {problem.message}"
        lines.append(text + (f" ({problem.hint})" if problem.hint else ""))
    return lines
