"""Build the facts the rules see from a validated patient document.

Each fact is known (with its value in the vocabulary's canonical unit) or unknown (with the document field paths
whose absence or staleness made it unknown — those paths become ``missing_data``, contract §A.4).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ..drugs import load_drugs
from ..errors import InputError, Problem
from ..vocabulary import FactSpec, Vocabulary, load_vocabulary
from . import derive
from .load import PatientDocument
from .units import convert
from .values import FactTable, FactValue

LABS_MAX_AGE_DAYS = 7  # DATA-04 [V-sec SNM]: "not more than 7 d before treatment"


def get_path(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or None when any part is absent or null."""
    node: Any = data
    for key in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
        if node is None:
            return None
    return node


def build_facts(doc: PatientDocument, vocabulary: Vocabulary | None = None) -> FactTable:
    """Build every vocabulary fact for ``doc`` (derived ones after the ones they read)."""
    vocab = vocabulary or load_vocabulary()
    table = FactTable(doc.evaluation_date)
    pending = []
    for spec in vocab.facts.values():
        if spec.derived_by:
            continue
        origin = spec.origin
        if "derive" in origin:
            pending.append(spec)
        elif "lab" in origin:
            table.facts[spec.name] = _lab_fact(doc, spec, table)
        elif "path" in origin:
            table.facts[spec.name] = _path_fact(doc, spec)
    # DATA-04 / brief §13a.1: a `current` lab fact is unknown when the labs are more than 7 days old. The window is
    # applied as soon as labs_current (derived from labs.date alone) is known and before any other fact is derived,
    # so every fact computed from a current count (wbc_or_anc_current, ...) sees the windowed value: one mechanism
    # for the direct reads and the derived ones alike.
    for spec in pending:
        if spec.name == "labs_current":
            table.facts[spec.name] = derive.compute(spec.origin["derive"], spec.name, doc, table)
    for spec in vocab.facts.values():
        if "lab" in spec.origin and spec.origin.get("current"):
            table.facts[spec.name] = _current(table.facts[spec.name], table)
    for spec in pending:
        if spec.name != "labs_current":
            table.facts[spec.name] = derive.compute(spec.origin["derive"], spec.name, doc, table)
    return table


def _path_fact(doc: PatientDocument, spec: FactSpec) -> FactValue:
    path = spec.origin["path"]
    raw = get_path(doc.data, path)
    if raw is None:
        if "default" in spec.origin:
            default = spec.origin["default"]
            value = tuple(default) if isinstance(default, list) else default
            return FactValue.of(spec.name, value, (path,), note="default (omitted in the document)")
        return FactValue.unknown(spec.name, (path,))
    return FactValue.of(spec.name, _typed(spec, raw, path), (path,), original=raw)


def _typed(spec: FactSpec, raw: Any, path: str) -> Any:
    if spec.type == "date":
        return dt.date.fromisoformat(raw)
    if spec.type == "number":
        return float(raw)
    if spec.type == "string_list":
        return tuple(str(x) for x in raw)
    if spec.type == "list":
        return tuple(_entry(spec, item) for item in raw)
    return raw


def _entry(spec: FactSpec, item: Mapping[str, Any]) -> Mapping[str, Any]:
    out = {}
    for name, value in item.items():
        field_spec = spec.fields.get(name)
        if value is not None and field_spec is not None and field_spec.type == "date":
            value = dt.date.fromisoformat(value)
        out[name] = value
    for name, field_spec in spec.fields.items():
        source = item.get(field_spec.derived_from) if field_spec.derived_from else None
        if isinstance(source, str) and field_spec.type == "drug_list":
            out[name] = load_drugs().terms_of(source)  # absent when the agent is: unknown, never empty
    return out


def _lab_fact(doc: PatientDocument, spec: FactSpec, table: FactTable) -> FactValue:
    lab = spec.origin["lab"]
    path = f"labs.{lab}"
    labs = doc.data.get("labs")
    if not isinstance(labs, Mapping):
        return FactValue.unknown(spec.name, (path, "labs.date"))
    raw = labs.get(lab)
    if not isinstance(raw, Mapping) or raw.get("value") is None:
        return FactValue.unknown(spec.name, (path,))
    quantity = spec.origin["quantity"]
    try:
        value = convert(raw["value"], raw["unit"], quantity, spec.unit)
    except KeyError as exc:  # the schema limits units per lab, so this is a vocabulary/units mismatch
        raise InputError(
            f"{path}.unit: unit {raw.get('unit')!r} cannot be converted to {spec.unit}",
            [Problem(f"unit {raw.get('unit')!r} cannot be converted to {spec.unit}", path=f"{path}.unit")],
        ) from exc
    original = {"value": raw["value"], "unit": raw["unit"]}
    return FactValue.of(spec.name, value, (path,), original=original)


def _current(fact: FactValue, table: FactTable) -> FactValue:
    """DATA-04: labs older than 7 days count as absent for the radionuclides; the path reported is labs.date."""
    if not fact.known:
        return fact
    current = table.facts["labs_current"]
    if current.known and current.value:
        return fact
    note = current.note or "labs date unknown"
    return FactValue.unknown(fact.name, ("labs.date",), (*fact.sources, "labs.date"), note=f"stale: {note}")
