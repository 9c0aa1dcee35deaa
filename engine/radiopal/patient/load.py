"""Read a patient document (contract §A), validate it, and check what a schema cannot (dates vs evaluation date)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import schemacheck
from ..errors import InputError, Problem
from ..yamlio import MAX_DEPTH, SourceMap, dotted, load_document

#: Fields holding dates that must not lie after the evaluation date.
_DATE_FIELDS = (
    ("labs", "date"),
    ("bone_disease", "bone_scan", "date"),
    ("dental", "exam_date"),
)
_HISTORY_DATES = {
    "chemotherapy": ("last_dose_date",),
    "radionuclides": ("date",),
    "ebrt": ("date",),
    "bone_health_agents": ("start_date", "last_dose_date"),
    "hormonal": ("start_date", "end_date"),
}


#: Largest magnitude of any number in a patient document. No clinical quantity comes near it (platelets in /µL are
#: ~10⁶); beyond it a unit conversion could overflow to infinity. NaN and ±Infinity are refused outright.
MAX_NUMBER = 1e12
#: Dates a patient document may hold (inclusive). Outside this window a date is a typing error, and interval arithmetic
#: near year 9999 would overflow.
MIN_DATE = dt.date(1900, 1, 1)
MAX_DATE = dt.date(2199, 12, 31)


@dataclass(frozen=True)
class PatientDocument:
    """A validated patient document: the data, where it came from, and its evaluation date."""

    data: Mapping[str, Any]
    source: SourceMap
    evaluation_date: dt.date

    @property
    def patient_id(self) -> str:
        return str(self.data["patient_id"])


def load_patient(path: str | Path) -> PatientDocument:
    """Read and validate a patient document file (YAML or JSON)."""
    located = load_document(path, kind="patient document")
    return parse_patient(located.data, source=located.source)


def parse_patient(data: Any, *, source: SourceMap | None = None) -> PatientDocument:
    """Validate already-parsed data as a patient document; raise :class:`InputError` listing every problem.

    ``datetime.date`` values (as ``yaml.safe_load`` returns an unquoted ``2025-06-02``, or as a Python caller builds
    the dict) are read as their ISO text; a ``datetime`` (a time of day) is not a contract date and stays an error.
    """
    source = source or SourceMap("<patient>")
    if not isinstance(data, Mapping):
        raise InputError(
            f"{source.file}: expected a mapping (a patient document), got {type(data).__name__}",
            [Problem(f"expected a mapping (a patient document), got {type(data).__name__}", file=source.file)],
        )
    found = _impossible_values(data, source)  # first: it refuses nesting deeper than MAX_DEPTH without recursing
    data = _iso_dates(data)
    found += _date_range(data, source) + schemacheck.problems(data, "patient", source=source)
    if found:
        raise InputError(f"{source.file}: invalid patient document", found)
    evaluation_date = dt.date.fromisoformat(data["evaluation_date"])
    found = _future_dates(data, evaluation_date, source)
    if found:
        raise InputError(f"{source.file}: invalid patient document", found)
    return PatientDocument(data, source, evaluation_date)


def _iso_dates(value: Any) -> Any:
    """A copy of ``value`` with every ``datetime.date`` (not ``datetime``) as ``YYYY-MM-DD`` text; else unchanged."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _iso_dates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso_dates(v) for v in value]
    return value


def _future_dates(data: Mapping[str, Any], evaluation_date: dt.date, source: SourceMap) -> list[Problem]:
    out = []

    def check(path: tuple[Any, ...], value: Any) -> None:
        if not isinstance(value, str):
            return
        try:
            when = dt.date.fromisoformat(value)
        except ValueError:
            return
        if when > evaluation_date:
            line, column = source.where(path)
            out.append(
                Problem(
                    f"{value} is after the evaluation date {evaluation_date.isoformat()}; "
                    "expected a date on or before it",
                    path=dotted(path), file=source.file, line=line, column=column,
                )
            )

    for path in _DATE_FIELDS:
        node: Any = data
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        check(path, node)
    history = data.get("treatment_history") or {}
    for list_name, fields in _HISTORY_DATES.items():
        for i, entry in enumerate(history.get(list_name) or []):
            for name in fields:
                if isinstance(entry, Mapping):
                    check(("treatment_history", list_name, i, name), entry.get(name))
    return out


class _TooDeepError(Exception):
    def __init__(self, path: tuple[Any, ...]) -> None:
        self.path = path


def _walk(value: Any) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) of a document, without recursion; raises :class:`_TooDeepError` beyond ``MAX_DEPTH``."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), value)]
    while stack:
        path, value = stack.pop()
        if len(path) >= MAX_DEPTH:
            raise _TooDeepError(path)
        yield path, value
        if isinstance(value, Mapping):
            stack.extend(((*path, key), item) for key, item in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend(((*path, i), item) for i, item in enumerate(value))


def _impossible_values(data: Mapping[str, Any], source: SourceMap) -> list[Problem]:
    """Values no schema keyword catches: NaN/Infinity, numbers beyond :data:`MAX_NUMBER`, lone surrogates, and
    nesting deeper than ``MAX_DEPTH`` (data given as a dict has not been through :mod:`radiopal.yamlio`)."""
    out = []
    try:
        found = list(_walk(data))
    except _TooDeepError as exc:
        line, column = source.where(exc.path[:MAX_DEPTH])
        problem = Problem(f"nesting is too deep (limit {MAX_DEPTH})", path=dotted(exc.path[:3]) + "...",
                          file=source.file, line=line, column=column)
        raise InputError(f"{source.file}: invalid patient document", [problem]) from None
    for path, value in found:
        message = ""
        if isinstance(value, bool):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            message = f"{value} is not a number; expected a finite number"
        elif isinstance(value, (int, float)) and abs(value) > MAX_NUMBER:
            message = f"{_short(value)} is impossible here; expected a magnitude of at most {MAX_NUMBER:g}"
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                message = "holds a lone surrogate; expected valid Unicode text"
        if message:
            line, column = source.where(path)
            out.append(Problem(message, path=dotted(path) or "(document)", file=source.file, line=line, column=column))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"


def _date_range(data: Mapping[str, Any], source: SourceMap) -> list[Problem]:
    """Every date between :data:`MIN_DATE` and :data:`MAX_DATE` (an invalid calendar date is left to the schema)."""
    out = []
    for path, value in _walk(data):
        if not (isinstance(value, str) and len(value) == 10 and path and str(path[-1]).endswith("date")):
            continue
        try:
            when = dt.date.fromisoformat(value)
        except ValueError:
            continue
        if not MIN_DATE <= when <= MAX_DATE:
            line, column = source.where(path)
            out.append(Problem(f"{value} is out of range; expected a date from {MIN_DATE} to {MAX_DATE}",
                               path=dotted(path), file=source.file, line=line, column=column))
    return out
