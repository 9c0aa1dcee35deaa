"""The missing data as a FHIR R4 Questionnaire (SDC style), and a QuestionnaireResponse read back into the document.

An EHR that renders questionnaires natively can collect what its record lacks (bone-scan uptake at the painful sites,
pain distribution, cord compression, current blood counts …). Each item's ``linkId`` is the contract path of the
field (``labs.platelets``); its type, answer options and units come from the patient schema, and its help text
names the therapies waiting for it. Answers are applied to the patient document, which is then validated as strictly
as any contract document: a bad answer is an error naming its ``linkId``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from ..errors import InputError, Problem
from ..resources import schema_path

__all__ = ["QUESTIONNAIRE_URL", "answered_items", "apply_answers", "build_questionnaire"]

QUESTIONNAIRE_URL = "http://radiopal.example/fhir/Questionnaire/missing-data"
UCUM = "http://unitsofmeasure.org"
_UNIT_OPTION = "http://hl7.org/fhir/StructureDefinition/questionnaire-unitOption"
_ITEM_CONTROL = "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl"


@cache
def _patient_schema() -> dict[str, Any]:
    return dict(json.loads(schema_path("patient").read_text(encoding="utf-8")))


def _node(path: str) -> dict[str, Any] | None:
    """The schema node of a contract path (``labs.platelets``), or None for a path inside a list or unknown."""
    if "[" in path:
        return None
    node: dict[str, Any] = _patient_schema()
    for part in path.split("."):
        props = node.get("properties") or {}
        if part not in props:
            return None
        node = props[part]
    return node


def _kinds(node: Mapping[str, Any]) -> list[str]:
    kinds = node.get("type", [])
    return [k for k in (kinds if isinstance(kinds, list) else [kinds]) if k != "null"]


def _is_lab(node: Mapping[str, Any]) -> bool:
    props = node.get("properties") or {}
    return {"value", "unit"} <= set(props) and "enum" in props["unit"]


def _ucum_codes() -> dict[str, str]:
    """Contract unit string → UCUM code (the FHIR code table's `units`, reversed; first UCUM code wins)."""
    from .codes import load_code_table

    out: dict[str, str] = {}
    for ucum, contract in load_code_table().units.items():
        out.setdefault(contract, ucum)
    return out


def _item(path: str, needed_by: list[str]) -> dict[str, Any]:
    node = _node(path)
    help_text = "Needed to decide " + ", ".join(needed_by) + "." if needed_by else "Needed by the rules."
    item: dict[str, Any] = {"linkId": path, "text": (node or {}).get("description") or path, "required": False}
    if node is None:
        item.update(type="display", text=f"{path}: enter it in the record (a list entry cannot be answered here).")
        return item
    kinds = _kinds(node)
    if _is_lab(node):
        ucum = _ucum_codes()
        item["type"] = "quantity"
        item["extension"] = [{"url": _UNIT_OPTION, "valueCoding": {"system": UCUM, "code": ucum.get(unit, unit),
                                                                   "display": unit}}
                             for unit in node["properties"]["unit"]["enum"]]
    elif "enum" in node:
        item["type"] = "choice"
        item["answerOption"] = [{"valueCoding": {"code": str(v), "display": str(v)}}
                                for v in node["enum"] if v is not None]
    elif node.get("format") == "date" or "$ref" in node:
        item["type"] = "date"
    elif "boolean" in kinds:
        item["type"] = "boolean"
    elif "integer" in kinds:
        item["type"] = "integer"
    elif "number" in kinds:
        item["type"] = "decimal"
    elif "array" in kinds:
        item.update(type="string", repeats=True)
    else:
        item["type"] = "string"
    item["item"] = [{"linkId": f"{path}.help", "type": "display", "text": help_text,
                     "extension": [{"url": _ITEM_CONTROL, "valueCodeableConcept": {"coding": [
                         {"system": "http://hl7.org/fhir/questionnaire-item-control", "code": "help"}]}}]}]
    return item


def build_questionnaire(result: Any) -> dict[str, Any]:
    """A Questionnaire asking for every path of ``result.missing_data``, with what each would let radiopal decide."""
    names = {t.id: t.name for t in result.rulebase.catalogue.therapies}
    needed: dict[str, list[str]] = {path: [] for path in result.missing_data}
    for decision in result.decisions:
        for path in decision.missing_data:
            if path in needed and decision.status == "insufficient_data":
                needed[path].append(names[decision.therapy])
    return {
        "resourceType": "Questionnaire",
        "url": QUESTIONNAIRE_URL,
        "status": "active",
        "title": "radiopal: data needed to decide",
        "subjectType": ["Patient"],
        "description": (f"The data radiopal could not find for patient {result.patient.patient_id} on "
                        f"{result.patient.evaluation_date.isoformat()}. Decision support for clinicians, not a "
                        "prescription."),
        "item": [_item(path, sorted(set(needed[path]))) for path in sorted(needed)],
    }


def _answer_value(item: Mapping[str, Any], link: str) -> Any:
    answers = item.get("answer") or []
    if not isinstance(answers, list) or len(answers) != 1 or not isinstance(answers[0], Mapping):
        raise _bad(link, "expected exactly one answer")
    values = {k: v for k, v in answers[0].items() if k.startswith("value")}
    if len(values) != 1:
        raise _bad(link, "expected one value[x] in the answer")
    ((kind, value),) = values.items()
    return kind, value


def _bad(link: str, message: str) -> InputError:
    return InputError(f"QuestionnaireResponse item {link}: {message}",
                      [Problem(message, path=f"QuestionnaireResponse.item[linkId={link}]")])


def _convert(link: str, node: Mapping[str, Any], kind: str, value: Any) -> Any:
    if _is_lab(node):
        if kind != "valueQuantity" or not isinstance(value, Mapping) or "value" not in value:
            raise _bad(link, "expected valueQuantity with a value and a unit")
        allowed = list(node["properties"]["unit"]["enum"])
        by_ucum = {v: k for k, v in _ucum_codes().items()}
        unit = by_ucum.get(str(value.get("code", ""))) or value.get("unit")
        if unit not in allowed:
            raise _bad(link, f"unit {value.get('code') or value.get('unit')!r} is not one of {', '.join(allowed)}")
        return {"value": value["value"], "unit": unit}
    expected = {"boolean": "valueBoolean", "integer": "valueInteger", "decimal": "valueDecimal", "date": "valueDate",
                "choice": "valueCoding", "string": "valueString"}[_item(link, [])["type"]]
    if kind == "valueDecimal" and expected == "valueInteger" and float(value).is_integer():
        kind, value = expected, int(value)
    if kind != expected:
        raise _bad(link, f"expected {expected}, found {kind}")
    if kind == "valueCoding":
        return value.get("code") if isinstance(value, Mapping) else value
    if kind == "valueDate":
        try:
            dt.date.fromisoformat(str(value))
        except ValueError:
            raise _bad(link, f"{value!r} is not a date YYYY-MM-DD") from None
    return value


def apply_answers(document: Mapping[str, Any], response: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``document`` with every answered item of ``response`` set at its path (``linkId``).

    Raises :class:`~radiopal.errors.InputError` naming the linkId for an answer that cannot be used. The result
    is a contract document: validate it (``parse_patient``) as any other, so a wrong unit or an impossible value
    is refused with the field path.
    """
    if not isinstance(response, Mapping) or response.get("resourceType") != "QuestionnaireResponse":
        raise InputError("answers: expected a FHIR QuestionnaireResponse",
                         [Problem("expected resourceType QuestionnaireResponse", path="resourceType")])
    out = copy.deepcopy(dict(document))
    for item in answered_items(response.get("item") or []):
        link = str(item.get("linkId", ""))
        node = _node(link)
        if node is None:
            raise _bad(link, "not a field of the patient document radiopal can take an answer for")
        kind, value = _answer_value(item, link)
        target = out
        parts = link.split(".")
        for part in parts[:-1]:
            child = target.get(part)
            if not isinstance(child, dict):
                child = target[part] = {}
            target = child
        target[parts[-1]] = _convert(link, node, kind, value)
    return out


def answered_items(items: Any) -> list[Mapping[str, Any]]:
    """Answered items, nested groups flattened; help (display) items skipped."""
    out: list[Mapping[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        if item.get("answer"):
            out.append(item)
        out += answered_items(item.get("item"))
    return out
