"""The therapy catalogue, advisory catalogue and references (``kb/therapies.yaml``, ``kb/references.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .resources import kb_dir
from .yamlio import load_document


@dataclass(frozen=True)
class Therapy:
    """One therapy id of contract §B.3."""

    id: str
    group: str
    name: str
    emitter: str | None = None


@dataclass(frozen=True)
class Reference:
    """One reference of brief §14."""

    key: str
    number: int | None
    citation: str
    url: str | None
    kind: str = ""
    read: str = ""


@dataclass(frozen=True)
class Catalogue:
    """Therapies in output order, advisory default texts, and references by key."""

    therapies: tuple[Therapy, ...]
    advisories: dict[str, dict[str, Any]]
    references: dict[str, Reference]

    @property
    def therapy_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.therapies)

    def therapy(self, therapy_id: str) -> Therapy:
        for t in self.therapies:
            if t.id == therapy_id:
                return t
        raise KeyError(therapy_id)

    def advisory_text(self, advisory_id: str) -> str:
        return str((self.advisories.get(advisory_id) or {}).get("text", "")).strip()

    def advisory_severity(self, advisory_id: str) -> str:
        """``urgent``, ``caution`` or ``info`` (contract §D; ``kb/therapies.yaml``)."""
        return str((self.advisories.get(advisory_id) or {}).get("severity", "info"))


def load_catalogue(kb: str | Path | None = None) -> Catalogue:
    """Read the catalogue from a kb folder (default: the shipped one)."""
    if kb is None:
        return _shipped()
    return _read(Path(kb))


@cache
def _shipped() -> Catalogue:
    return _read(kb_dir())


def _read(kb: Path) -> Catalogue:
    therapies_raw = load_document(kb / "therapies.yaml", kind="therapy catalogue").data
    refs_raw = load_document(kb / "references.yaml", kind="reference list").data
    therapies = tuple(
        Therapy(t["id"], t["group"], t["name"], t.get("emitter")) for t in therapies_raw["therapies"]
    )
    refs_map = refs_raw.get("references", refs_raw) if isinstance(refs_raw, dict) else {}
    references = {}
    for key, ref in refs_map.items():
        if not isinstance(ref, dict):
            continue
        url = ref.get("url") or (ref.get("urls") or [None])[0]
        references[key] = Reference(key, ref.get("number"), str(ref.get("citation", "")).strip(), url,
                                    str(ref.get("kind", "")), str(ref.get("read", "")))
    return Catalogue(therapies, dict(therapies_raw.get("advisories") or {}), references)
