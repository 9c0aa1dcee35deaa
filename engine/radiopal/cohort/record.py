"""The unit a cohort input yields (:class:`Record`, one patient) and the base of the input readers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

__all__ = ["Reader", "Record"]


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
    origins: tuple[str, ...] = ()  # FHIR bulk data: ``<file>:<line>`` of each Bundle entry, for error messages


class Reader:
    """Base of the input readers: iterate records, count them, close resources (a context manager)."""

    format: str = ""
    #: The evaluation date the input itself implies (a Bulk Data manifest's transactionTime), if any.
    default_evaluation_date: str | None = None

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
