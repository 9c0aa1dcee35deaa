"""Stream patient records out of a cohort input, one :class:`Record` at a time.

Three input shapes are read (``detect_format`` tells them apart):

``dir``
    a folder of patient documents (``*.yaml``, ``*.yml``, ``*.json``; sub-folders included, hidden entries skipped),
    one patient per file, in sorted path order;
``jsonl``
    a JSON Lines file, one patient document per non-blank line;
``fhir``
    FHIR bulk-data NDJSON: a folder of ``<ResourceType>.ndjson`` files (a single ``.ndjson`` file of resources also
    works). Resources are grouped by the Patient they refer to (``subject``, ``patient``, ``beneficiary``,
    ``individual``), and each group becomes one collection Bundle; resources outside the patient compartment
    (``Medication``, ...) are added to the Bundles that reference them.

A record carries raw bytes, not parsed data: parsing and validation happen on the workers, so the driver stays light.
Its ``key`` is stable for the same input (relative path, ``file:line``, or ``Patient/<id>``); ``--resume`` relies on it.
The FHIR reader builds its grouping index in a temporary SQLite file, so memory stays flat however many resources
there are.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from ..errors import InputError, Problem

__all__ = ["FORMATS", "DirectoryReader", "FhirNdjsonReader", "JsonLinesReader", "Reader", "Record", "detect_format",
           "open_reader"]

FORMATS: Final = ("auto", "dir", "jsonl", "fhir")
DOCUMENT_SUFFIXES: Final = (".yaml", ".yml", ".json")
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})$")
_ANY_REF = re.compile(rb'"reference"\s*:\s*"([^"#]+)"')
_SUBJECT_FIELDS: Final = ("subject", "patient", "beneficiary", "individual")
_INSERT_CHUNK: Final = 5_000


@dataclass(frozen=True, slots=True)
class Record:
    """One patient to evaluate.

    ``ordinal`` is the record's position in the input (0-based); ``key`` its stable identity for ``--resume``;
    ``source``/``line`` where it came from (``line`` 0 for a whole file); ``fmt`` how to read ``data``
    (``yaml``, ``json`` or ``fhir`` — a Bundle as JSON bytes); ``error`` a problem found while reading, in which case
    the record is reported and not evaluated.
    """

    ordinal: int
    key: str
    source: str
    line: int
    fmt: str
    data: bytes
    error: str | None = None


class Reader:
    """Base of the input readers: iterate records, count them, close resources (a context manager)."""

    format: str = ""

    def __iter__(self) -> Iterator[Record]:  # pragma: no cover - abstract
        raise NotImplementedError

    def count(self) -> int:
        """How many records iteration will yield (a cheap pass, for the progress bar)."""
        return sum(1 for _ in self)

    def describe(self) -> str:
        """The input as a short text for reports."""
        return self.format

    def close(self) -> None:
        """Release any temporary resource."""

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def detect_format(path: Path) -> str:
    """``dir``, ``jsonl`` or ``fhir`` for an input path; raise :class:`InputError` when it cannot be told."""
    if path.is_dir():
        ndjson = any(p.suffix.lower() == ".ndjson" for p in path.iterdir() if p.is_file())
        documents = any(p.suffix.lower() in DOCUMENT_SUFFIXES for p in path.iterdir() if p.is_file())
        if ndjson and documents:
            raise _input_error(path, "holds both .ndjson files and patient documents; pass --input-format")
        if ndjson:
            return "fhir"
        return "dir"
    if path.is_file():
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            return "fhir" if _first_line_is_resource(path) else "jsonl"
        raise _input_error(path, "is a file but not JSON Lines (.jsonl/.ndjson); pass a folder of patient documents, "
                                 "a .jsonl file or a folder of FHIR .ndjson files")
    raise _input_error(path, "no such file or folder")


def open_reader(path: Path, fmt: str = "auto", *, workdir: Path | None = None, exclude: Path | None = None) -> Reader:
    """The reader for ``path`` (``fmt`` one of :data:`FORMATS`). ``workdir`` holds the FHIR index; ``exclude`` is a
    folder never read (the output folder, when it lies inside the input)."""
    if fmt not in FORMATS:
        raise _input_error(path, f"unknown input format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not path.exists():
        raise _input_error(path, "no such file or folder")
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "dir":
        if not path.is_dir():
            raise _input_error(path, "is not a folder (--input-format dir)")
        return DirectoryReader(path, exclude=exclude)
    if kind == "jsonl":
        if not path.is_file():
            raise _input_error(path, "is not a file (--input-format jsonl)")
        return JsonLinesReader(path)
    return FhirNdjsonReader(path, workdir=workdir or (path if path.is_dir() else path.parent))


# ------------------------------------------------------------------------------------------------ documents folder


class DirectoryReader(Reader):
    """Patient documents in a folder tree, one per file, in sorted path order."""

    format = "dir"

    def __init__(self, root: Path, *, exclude: Path | None = None) -> None:
        self.root = root
        self.exclude = exclude.resolve() if exclude is not None else None

    def describe(self) -> str:
        return f"folder of patient documents {self.root}"

    def paths(self) -> Iterator[Path]:
        """Every document path, sorted per folder (depth first), hidden entries and the excluded folder skipped."""
        stack = [self.root]
        while stack:
            folder = stack.pop()
            if self.exclude is not None and folder.resolve() == self.exclude:
                continue
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            subfolders = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(Path(entry.path))
                elif entry.is_file() and Path(entry.name).suffix.lower() in DOCUMENT_SUFFIXES:
                    yield Path(entry.path)
            stack.extend(reversed(subfolders))

    def count(self) -> int:
        return sum(1 for _ in self.paths())

    def __iter__(self) -> Iterator[Record]:
        for ordinal, path in enumerate(self.paths()):
            key = path.relative_to(self.root).as_posix()
            fmt = "json" if path.suffix.lower() == ".json" else "yaml"
            try:
                data = path.read_bytes()
            except OSError as exc:
                yield Record(ordinal, key, str(path), 0, fmt, b"", f"cannot read: {exc.strerror or exc}")
                continue
            yield Record(ordinal, key, str(path), 0, fmt, data)


# ------------------------------------------------------------------------------------------------ JSON Lines


class JsonLinesReader(Reader):
    """One patient document per non-blank line of a JSON Lines file."""

    format = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"JSON Lines file {self.path}"

    def count(self) -> int:
        with self.path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())

    def __iter__(self) -> Iterator[Record]:
        ordinal = 0
        name = self.path.name
        with self.path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                yield Record(ordinal, f"{name}:{number}", str(self.path), number, "json", line)
                ordinal += 1


# ------------------------------------------------------------------------------------------------ FHIR bulk NDJSON


class FhirNdjsonReader(Reader):
    """FHIR bulk-data NDJSON, regrouped into one collection Bundle per patient.

    The first use scans every file once and stores, per resource, its patient reference and byte range in a SQLite
    index (in ``workdir``; removed by :meth:`close`). Patients come out sorted by reference; lines that are not JSON
    resources, or clinical resources with no patient reference, come first as error records.
    """

    format = "fhir"

    def __init__(self, path: Path, *, workdir: Path) -> None:
        self.path = path
        self.files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".ndjson") \
            if path.is_dir() else [path]
        if not self.files:
            raise _input_error(path, "holds no .ndjson files")
        self.workdir = workdir
        self._db_path: Path | None = None
        self._db: sqlite3.Connection | None = None

    def describe(self) -> str:
        return f"FHIR bulk NDJSON {self.path} ({len(self.files)} file(s))"

    # -- index --------------------------------------------------------------------------------------------------

    def _index(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._db_path = self.workdir / f".fhir-index-{os.getpid()}.sqlite"
        self._db_path.unlink(missing_ok=True)
        db = sqlite3.connect(self._db_path)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE res (pref TEXT, is_patient INTEGER, file INTEGER, line INTEGER, off INTEGER, "
                   "len INTEGER)")
        db.execute("CREATE TABLE shared (ref TEXT PRIMARY KEY, file INTEGER, off INTEGER, len INTEGER)")
        db.execute("CREATE TABLE bad (file INTEGER, line INTEGER, message TEXT)")
        for number, path in enumerate(self.files):
            self._scan(db, number, path)
        db.execute("CREATE INDEX res_pref ON res (pref, is_patient DESC, file, line)")
        db.commit()
        self._db = db
        return db

    def _scan(self, db: sqlite3.Connection, number: int, path: Path) -> None:
        res: list[tuple[str, int, int, int, int, int]] = []
        shared: list[tuple[str, int, int, int]] = []
        bad: list[tuple[int, int, str]] = []
        offset = 0
        with path.open("rb") as handle:
            for line_no, line in enumerate(handle, start=1):
                start, length = offset, len(line)
                offset += length
                if not line.strip():
                    continue
                try:
                    resource = json.loads(line)
                except (ValueError, UnicodeDecodeError) as exc:
                    bad.append((number, line_no, f"not a JSON resource: {exc}"))
                    continue
                if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                    bad.append((number, line_no, "not a FHIR resource (no resourceType)"))
                    continue
                rtype = resource["resourceType"]
                rid = resource.get("id")
                if rtype == "Patient":
                    if not isinstance(rid, str) or not rid:
                        bad.append((number, line_no, "Patient resource without an id"))
                        continue
                    res.append((f"Patient/{rid}", 1, number, line_no, start, length))
                else:
                    pref = _patient_of(resource)
                    if pref is not None:
                        res.append((pref, 0, number, line_no, start, length))
                    elif isinstance(rid, str) and rid:
                        shared.append((f"{rtype}/{rid}", number, start, length))
                    else:
                        bad.append((number, line_no, f"{rtype} resource with neither a patient reference nor an id"))
                if len(res) >= _INSERT_CHUNK:
                    db.executemany("INSERT INTO res VALUES (?, ?, ?, ?, ?, ?)", res)
                    res.clear()
                if len(shared) >= _INSERT_CHUNK:
                    db.executemany("INSERT OR IGNORE INTO shared VALUES (?, ?, ?, ?)", shared)
                    shared.clear()
        db.executemany("INSERT INTO res VALUES (?, ?, ?, ?, ?, ?)", res)
        db.executemany("INSERT OR IGNORE INTO shared VALUES (?, ?, ?, ?)", shared)
        db.executemany("INSERT INTO bad VALUES (?, ?, ?)", bad)

    def count(self) -> int:
        db = self._index()
        patients = db.execute("SELECT COUNT(DISTINCT pref) FROM res").fetchone()[0]
        bad = db.execute("SELECT COUNT(*) FROM bad").fetchone()[0]
        return int(patients) + int(bad)

    # -- iteration ----------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Record]:
        db = self._index()
        ordinal = 0
        for number, line, message in db.execute("SELECT file, line, message FROM bad ORDER BY file, line").fetchall():
            path = self.files[number]
            yield Record(ordinal, f"{path.name}:{line}", str(path), line, "fhir", b"", message)
            ordinal += 1
        handles = [path.open("rb") for path in self.files]
        try:
            cursor = db.execute("SELECT pref, is_patient, file, line, off, len FROM res "
                                "ORDER BY pref, is_patient DESC, file, line")
            group: list[tuple[int, int, int, int, int]] = []
            current: str | None = None
            for pref, is_patient, number, line, off, length in cursor:
                if pref != current and current is not None:
                    yield self._bundle_record(ordinal, current, group, handles, db)
                    ordinal += 1
                    group = []
                current = pref
                group.append((is_patient, number, line, off, length))
            if current is not None:
                yield self._bundle_record(ordinal, current, group, handles, db)
        finally:
            for handle in handles:
                handle.close()

    def _bundle_record(self, ordinal: int, pref: str, group: list[tuple[int, int, int, int, int]],
                       handles: list[Any], db: sqlite3.Connection) -> Record:
        parts = []
        for _, number, _, off, length in group:
            handles[number].seek(off)
            parts.append(handles[number].read(length).strip())
        seen: set[str] = set()
        for ref in sorted({m.decode("utf-8", "replace") for part in parts for m in _ANY_REF.findall(part)}):
            key = "/".join(ref.rstrip("/").split("/")[-2:])
            if key.startswith("Patient/") or key in seen:
                continue
            seen.add(key)
            row = db.execute("SELECT file, off, len FROM shared WHERE ref = ?", (key,)).fetchone()
            if row is not None:
                handles[row[0]].seek(row[1])
                parts.append(handles[row[0]].read(row[2]).strip())
        data = b'{"resourceType":"Bundle","type":"collection","entry":[' + \
            b",".join(b'{"resource":' + part + b"}" for part in parts) + b"]}"
        _, number, line, _, _ = group[0]
        return Record(ordinal, pref, str(self.files[number]), line, "fhir", data)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._db_path is not None:
            self._db_path.unlink(missing_ok=True)
            self._db_path = None


def _patient_of(resource: dict[str, Any]) -> str | None:
    for name in _SUBJECT_FIELDS:
        value = resource.get(name)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            match = _PATIENT_REF.search(value["reference"])
            if match:
                return f"Patient/{match.group(1)}"
    return None


def _first_line_is_resource(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    data = json.loads(line)
                    return isinstance(data, dict) and "resourceType" in data
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return False


def _input_error(path: Path, message: str) -> InputError:
    return InputError(f"{path}: {message}", [Problem(message, file=str(path))])
