"""AllergyIntolerance → ``treatment_history.hypersensitivity`` (a free-text list in the contract, e.g. phosphonates).

A code or name in ``allergies:`` of codes.yaml maps to its contract term (``phosphonates``); anything else keeps its
normalised text, so the clinician still sees it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .codes import CodeTable, normalise_text
from .common import Entry, Sink
from .medications import match_concept

__all__ = ["map_allergies"]

_INACTIVE = frozenset({"inactive", "resolved"})
_NOT_TRUE = frozenset({"refuted", "entered-in-error"})


def _status(concept: object) -> str | None:
    for coding in getattr(concept, "coding", None) or ():
        if coding.code:
            return str(coding.code)
    return None


def _name(concept: Any) -> str | None:
    if concept is None:
        return None
    if concept.text:
        return str(concept.text)
    return next((str(c.display) for c in concept.coding or () if c.display), None)


def map_allergies(entries: Iterable[Entry], table: CodeTable, sink: Sink) -> list[str]:
    """Current allergies/intolerances as contract hypersensitivity terms, in bundle order, without repeats."""
    items: list[str] = []
    for entry in entries:
        if entry.type != "AllergyIntolerance":
            continue
        res = entry.resource
        clinical, verification = _status(res.clinicalStatus), _status(res.verificationStatus)
        if clinical in _INACTIVE or verification in _NOT_TRUE:
            sink.ignore(entry, f"clinicalStatus {clinical!r}, verificationStatus {verification!r}")
            continue
        matches = match_concept(res.code, table, "allergies", sink, entry.path("code"))
        if matches:
            terms = [(m.row.agent, m.describe()) for m in matches]
        else:
            text = _name(res.code)
            if not text:
                sink.ignore(entry, "no code or text naming the substance")
                continue
            terms = [(" ".join(normalise_text(text)), {"matched": "free text", "code": text})]
        for term, how in terms:
            if term in items:
                continue
            sink.cite(f"treatment_history.hypersensitivity[{len(items)}]", entry, **how)
            items.append(term)
    return items
