"""The FHIR code table (``kb/fhir/codes.yaml``): which codes feed which contract field.

The table is data. This module reads and checks it once, then answers look-ups:
exact codes, ICD-10/ATC prefixes (longest prefix wins, dots ignored) and normalised medication text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..drugs import DrugVocabulary, has_words, load_drugs, normalise_text
from ..errors import Problem, RulebaseError
from ..patient.units import quantities
from ..resources import kb_dir
from ..yamlio import load_document

__all__ = [
    "RADIOPAL_SYSTEM",
    "CodeRow",
    "CodeTable",
    "FieldSpec",
    "default_code_table_path",
    "load_code_table",
    "normalise_text",
]

RADIOPAL_SYSTEM = "http://radiopal.example/fhir/CodeSystem/radiopal"
VERIFICATION_LEVELS = frozenset({"verified", "secondary", "unverified"})
FIELD_KINDS = frozenset({"lab", "number", "integer", "boolean", "code", "strings"})
SECTIONS = ("observations", "conditions", "medications", "procedures", "allergies")
# ICD-10 rows apply to the WHO and the CM code systems alike.
_SYSTEM_ALIASES = {"icd10": ("icd10", "icd10cm")}


def _norm_code(system_key: str, code: str) -> str:
    if system_key in {"icd10", "icd10cm"}:
        return code.replace(".", "").strip().upper()
    if system_key == "atc":
        return code.strip().upper()
    return code.strip()


@dataclass(frozen=True)
class CodeRow:
    """One row of the code table."""

    section: str
    index: int
    system: str
    code: str
    maps_to: str
    source: str
    verified: str
    display: str = ""
    match: str = "exact"
    set: Mapping[str, Any] = field(default_factory=dict)
    rank: int = 0
    prefer: int = 0

    @property
    def group(self) -> str:
        """For ``maps_to`` of the form ``group.agent``: the group (``chemotherapy``)."""
        return self.maps_to.split(".", 1)[0]

    @property
    def agent(self) -> str:
        """For ``maps_to`` of the form ``group.agent``: the agent (``docetaxel``)."""
        return self.maps_to.split(".", 1)[1]

    def where(self) -> str:
        """Where the row is in codes.yaml (``medications[3]``)."""
        return f"{self.section}[{self.index}]"


@dataclass(frozen=True)
class FieldSpec:
    """How a contract field is read from an Observation (``fields:`` in codes.yaml)."""

    path: str
    kind: str
    units: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()
    date_to: str | None = None
    date_when_true: bool = False
    reference_low_to: str | None = None
    quantity: str | None = None  # kb/units.yaml quantity for converting other UCUM units (lab, number, integer)


@dataclass
class CodeTable:
    """The loaded code table with its look-up indexes."""

    file: str
    systems: dict[str, str]
    units: dict[str, str]
    fields: dict[str, FieldSpec]
    lab_date_fields: tuple[str, ...]
    agents: dict[str, Any]
    extension_base: str
    extensions: dict[str, Any]
    rows: dict[str, list[CodeRow]]
    unit_text: dict[str, str] = field(default_factory=dict)  # lower-cased unit text → UCUM code
    _exact: dict[tuple[str, str, str], CodeRow] = field(default_factory=dict)
    _also: dict[tuple[str, str, str], list[CodeRow]] = field(default_factory=dict)  # further rows of one code
    _prefix: dict[tuple[str, str], list[CodeRow]] = field(default_factory=dict)
    _text: dict[str, list[tuple[tuple[str, ...], CodeRow]]] = field(default_factory=dict)
    _keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._keys.update({uri: key for key, uri in self.systems.items()})
        for section, rows in self.rows.items():
            for row in rows:
                if row.system == "text":
                    self._text.setdefault(section, []).append((normalise_text(row.code), row))
                    continue
                for key in _SYSTEM_ALIASES.get(row.system, (row.system,)):
                    code = _norm_code(key, row.code)
                    if row.match == "prefix":
                        self._prefix.setdefault((section, key), []).append(row)
                    elif (section, key, code) in self._exact:
                        self._also.setdefault((section, key, code), []).append(row)
                    else:
                        self._exact[(section, key, code)] = row
        for rows in self._prefix.values():
            rows.sort(key=lambda r: -len(_norm_code(r.system, r.code)))

    def system_key(self, uri: str | None) -> str | None:
        """``http://loinc.org`` → ``loinc`` (``None`` for a system the table does not know)."""
        return self._keys.get(uri or "")

    def lookup(self, section: str, system_uri: str | None, code: str | None) -> CodeRow | None:
        """The row for a coding in a section: an exact code first, then the longest matching prefix."""
        key = self.system_key(system_uri)
        if key is None or not code:
            return None
        norm = _norm_code(key, code)
        row = self._exact.get((section, key, norm))
        if row is not None:
            return row
        for candidate in self._prefix.get((section, key), ()):
            if norm.startswith(_norm_code(key, candidate.code)):
                return candidate
        return None

    def lookup_all(self, section: str, system_uri: str | None, code: str | None) -> list[CodeRow]:
        """Every row for a coding: a code may feed several fields (a hormone-refractory prostate cancer names the
        site and the castration status)."""
        row = self.lookup(section, system_uri, code)
        if row is None:
            return []
        key = self.system_key(system_uri) or ""
        return [row, *self._also.get((section, key, _norm_code(key, code or "")), ())]

    def lookup_text(self, section: str, text: str | None) -> list[CodeRow]:
        """Rows whose words appear, in order and adjacent, among the words of ``text``."""
        if not text:
            return []
        words = normalise_text(text)
        return [row for needle, row in self._text.get(section, ()) if has_words(words, needle)]

    def unit(self, ucum: str) -> str | None:
        """The contract unit string for a UCUM code, or ``None``."""
        return self.units.get(ucum)


def default_code_table_path() -> Path:
    """``kb/fhir/codes.yaml`` of this installation."""
    return kb_dir() / "fhir" / "codes.yaml"


@lru_cache(maxsize=8)
def _load_cached(path: str) -> CodeTable:
    return _build(path, load_document(path, kind="code table").data)


def load_code_table(path: str | Path | None = None) -> CodeTable:
    """Read and check ``kb/fhir/codes.yaml`` (or ``path``); raises :class:`RulebaseError` listing every bad row."""
    return _load_cached(str(path or default_code_table_path()))


def _build(file: str, data: Any) -> CodeTable:
    problems: list[Problem] = []

    def bad(message: str, where: str) -> None:
        problems.append(Problem(message, path=where, file=file))

    if not isinstance(data, dict):
        raise RulebaseError(f"{file}: expected a mapping", [Problem("expected a mapping", file=file)])
    systems = dict(data.get("systems") or {})
    units = {str(k): str(v) for k, v in (data.get("units") or {}).items()}
    fields = _fields(data.get("fields") or {}, units, bad)
    rows: dict[str, list[CodeRow]] = {}
    for section in SECTIONS:
        rows[section] = list(_rows(section, data.get(section) or [], systems, bad))
    agents = dict(data.get("agents") or {})
    drugs = load_drugs()
    if "chemotherapy" in agents:
        bad("the chemotherapy agents come from the drug vocabulary (kb/drugs.yaml), not from this table",
            "agents.chemotherapy")
    agents["chemotherapy"] = _chemotherapy_agents(drugs)
    rows["medications"] = rows["medications"] + _drug_rows(drugs, len(rows["medications"]))
    for row in rows["observations"]:
        if row.maps_to not in fields:
            bad(f"maps_to {row.maps_to!r} is not a field listed under `fields`", f"{row.where()}.maps_to")
    for section in ("medications",):
        for row in rows[section]:
            group, _, agent = row.maps_to.partition(".")
            known = agents.get(group)
            if known is None or agent not in known:
                bad(f"maps_to {row.maps_to!r} names no agent under `agents.{group}`", f"{row.where()}.maps_to")
    lab_dates = tuple(data.get("lab_date_fields") or ())
    for name in lab_dates:
        if name not in fields:
            bad(f"{name!r} is not a field listed under `fields`", "lab_date_fields")
    if problems:
        raise RulebaseError(f"{file}: invalid FHIR code table: {len(problems)} problem(s)", problems)
    return CodeTable(
        file=file,
        systems=systems,
        units=units,
        fields=fields,
        lab_date_fields=lab_dates,
        agents=agents,
        extension_base=str(data.get("extension_base") or ""),
        extensions=dict(data.get("extensions") or {}),
        rows=rows,
        unit_text={str(k).lower(): str(v) for k, v in (data.get("unit_text") or {}).items()},
    )


def _chemotherapy_agents(drugs: DrugVocabulary) -> dict[str, dict[str, Any]]:
    """What the mapper sets on a chemotherapy entry, from the drug vocabulary: the contract class and whether the
    agent is myelosuppressive (a class the contract lacks is ``other``)."""
    contract = {"taxane", "platinum", "anthracycline", "antimetabolite", "alkylator", "nitrosourea", "mitomycin"}
    return {d.id: {"class": d.drug_class if d.drug_class in contract else "other",
                   "myelosuppressive": bool(d.myelosuppressive)}
            for d in drugs.drugs.values() if d.group == "chemotherapy"}


def _drug_rows(drugs: DrugVocabulary, start: int) -> list[CodeRow]:
    """Medication rows for the chemotherapy agents of the drug vocabulary: its ATC code and every name it is written
    by. The ATC codes and the names are defined once, there; this table adds only what is FHIR-specific."""
    rows: list[CodeRow] = []
    for drug in drugs.drugs.values():
        if drug.group != "chemotherapy":
            continue
        target = f"chemotherapy.{drug.id}"
        if drug.atc:
            rows.append(CodeRow("medications", start + len(rows), "atc", drug.atc, target, drug.atc_source,
                                drug.atc_verified, drug.id))
        for written, kind in drug.names():
            verified = "verified" if kind == "name" else "unverified"
            note = "INN" if kind == "name" else f"{kind} (kb/drugs.yaml)"
            rows.append(CodeRow("medications", start + len(rows), "text", written.lower(), target, note, verified,
                                drug.id))
    return rows


def _fields(raw: Mapping[str, Any], units: Mapping[str, str], bad: Any) -> dict[str, FieldSpec]:
    out: dict[str, FieldSpec] = {}
    for path, spec in raw.items():
        kind = spec.get("kind")
        if kind not in FIELD_KINDS:
            bad(f"kind {kind!r} is not one of {sorted(FIELD_KINDS)}", f"fields.{path}.kind")
            continue
        field_units = tuple(spec.get("units") or ())
        if spec.get("quantity") is not None and spec["quantity"] not in quantities():
            bad(f"quantity {spec['quantity']!r} is not a quantity of kb/units.yaml", f"fields.{path}.quantity")
        if kind == "lab":
            for u in field_units:
                if u not in units:
                    bad(f"unit {u!r} has no contract unit under `units`", f"fields.{path}.units")
        out[path] = FieldSpec(
            path=path,
            kind=kind,
            units=field_units,
            answers=tuple(spec.get("answers") or ()),
            date_to=spec.get("date_to"),
            date_when_true=bool(spec.get("date_when_true", False)),
            reference_low_to=spec.get("reference_low_to"),
            quantity=spec.get("quantity"),
        )
    return out


def _rows(section: str, raw: Iterable[Any], systems: Mapping[str, str], bad: Any) -> Iterable[CodeRow]:
    for i, item in enumerate(raw):
        where = f"{section}[{i}]"
        if not isinstance(item, dict):
            bad("expected a mapping", where)
            continue
        missing = [k for k in ("system", "code", "maps_to", "source", "verified") if item.get(k) in (None, "")]
        if missing:
            bad(f"missing column(s): {', '.join(missing)}", where)
            continue
        if item["system"] != "text" and item["system"] not in systems:
            bad(f"system {item['system']!r} is not listed under `systems`", f"{where}.system")
            continue
        if item["verified"] not in VERIFICATION_LEVELS:
            bad(f"verified {item['verified']!r} is not one of {sorted(VERIFICATION_LEVELS)}", f"{where}.verified")
        match = item.get("match", "exact")
        if match not in {"exact", "prefix"}:
            bad(f"match {match!r} is not exact or prefix", f"{where}.match")
        yield CodeRow(
            section=section,
            index=i,
            system=str(item["system"]),
            code=str(item["code"]),
            maps_to=str(item["maps_to"]),
            source=str(item["source"]),
            verified=str(item["verified"]),
            display=str(item.get("display") or ""),
            match=match,
            set=dict(item.get("set") or {}),
            rank=int(item.get("rank", 0)),
            prefer=int(item.get("prefer", 0)),
        )
