"""Read a patient document (contract §A), validate it, and check what a schema cannot (dates vs evaluation date)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import schemacheck
from ..errors import InputError, Problem
from ..yamlio import SourceMap, dotted, load_document

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
    """Validate already-parsed data as a patient document; raise :class:`InputError` listing every problem."""
    source = source or SourceMap("<patient>")
    if not isinstance(data, Mapping):
        raise InputError(
            f"{source.file}: expected a mapping (a patient document), got {type(data).__name__}",
            [Problem(f"expected a mapping (a patient document), got {type(data).__name__}", file=source.file)],
        )
    found = schemacheck.problems(data, "patient", source=source)
    if found:
        raise InputError(f"{source.file}: invalid patient document", found)
    evaluation_date = dt.date.fromisoformat(data["evaluation_date"])
    found = _future_dates(data, evaluation_date, source)
    if found:
        raise InputError(f"{source.file}: invalid patient document", found)
    return PatientDocument(data, source, evaluation_date)


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
