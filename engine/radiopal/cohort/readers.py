"""Stream patient records out of a cohort input, one :class:`Record` at a time.

Three input shapes are read (``detect_format`` tells them apart):

``dir``
    a folder of patient documents (``*.yaml``, ``*.yml``, ``*.json``; sub-folders included, hidden entries skipped),
    one patient per file, in sorted path order;
``jsonl``
    a JSON Lines file, one patient document per non-blank line;
``fhir``
    a FHIR Bulk Data export (:mod:`.bulk`): a folder of NDJSON files (``Patient.ndjson``, ``Observation.ndjson``,
    ... or named as the server liked, ``.ndjson.gz`` too), with or without the export's manifest; the manifest file
    itself; or a single ``.ndjson`` file of resources. Each patient's resources become one collection Bundle.

A record carries raw bytes, not parsed data: parsing and validation happen on the workers, so the driver stays light.
Its ``key`` is stable for the same input (relative path, ``file:line``, or ``Patient/<id>``); ``--resume`` relies on it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from ..errors import InputError, Problem
from .bulk import BulkExportReader, is_bulk_input, manifest_in
from .record import Reader, Record

__all__ = ["FORMATS", "BulkExportReader", "DirectoryReader", "JsonLinesReader", "Reader", "Record", "detect_format",
           "open_reader"]

FORMATS: Final = ("auto", "dir", "jsonl", "fhir")
DOCUMENT_SUFFIXES: Final = (".yaml", ".yml", ".json")


def detect_format(path: Path) -> str:
    """``dir``, ``jsonl`` or ``fhir`` for an input path; raise :class:`InputError` when it cannot be told."""
    if path.is_dir():
        if is_bulk_input(path):
            manifest = manifest_in(path)
            documents = any(p.suffix.lower() in DOCUMENT_SUFFIXES and p != manifest
                            for p in path.iterdir() if p.is_file())
            if documents:
                raise _input_error(path, "holds both FHIR NDJSON files and patient documents; pass --input-format")
            return "fhir"
        return "dir"
    if path.is_file():
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            return "fhir" if _first_line_is_resource(path) else "jsonl"
        if is_bulk_input(path):
            return "fhir"
        raise _input_error(path, "is a file but not JSON Lines (.jsonl/.ndjson) nor a FHIR Bulk Data manifest; pass a "
                                 "folder of patient documents, a .jsonl file or a FHIR Bulk Data export folder")
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
    return BulkExportReader(path, workdir=workdir or (path if path.is_dir() else path.parent))


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
