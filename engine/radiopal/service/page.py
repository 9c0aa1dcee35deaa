"""The clinician page: the action summary of one evaluation, and a form that supplies what the record lacks.

Reached from a CDS card (``/page/record/{record}`` — the evaluation the card came from) or, when the service runs
without authentication on a loopback address, by pasting a patient document or a FHIR Bundle at ``/page``. Each
missing field of the evaluation becomes a form control generated from the patient schema (the same items as the FHIR
Questionnaire: type, unit choices, allowed values, and the therapies waiting for it), prefilled with what is known.
Submitting applies the values as a QuestionnaireResponse would, validates the document as strictly as the command
line does (a bad value is shown next to its field with the CLI's message, nothing is evaluated with it, and the rest
of the form is kept), re-evaluates, and shows what changed.

State stays on the server, under an unguessable token (128 random bits): no patient data in URLs or logs. Pages are
rendered from Jinja2 templates with autoescaping; they make no external request and need no JavaScript.
"""

from __future__ import annotations

import copy
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import DISCLAIMER
from ..errors import InputError
from ..explain.summary import action_summary
from ..fhir.questionnaire import apply_answers, build_questionnaire
from ..patient.facts import get_path

__all__ = ["PAGE_CACHE", "ClinicianPages"]

PAGE_CACHE = 500  # evaluations kept for the page (oldest dropped first)
_UNANSWERED = ("", "unknown")


@dataclass
class PageState:
    """One evaluation shown on the page: the patient document it was made from and its result."""

    document: dict[str, Any]
    result: Any
    previous: dict[str, str] | None = None  # therapy -> status before the last submission
    warnings: list[dict[str, str]] = field(default_factory=list)


def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(loader=PackageLoader("radiopal.service", "templates"),
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


class ClinicianPages:
    """Renders the page and keeps the evaluations it shows (thread-safe)."""

    def __init__(self, rulebase: Any, evaluation_date: Any = None) -> None:
        self.rulebase = rulebase
        self.evaluation_date = evaluation_date
        self._states: OrderedDict[str, PageState] = OrderedDict()
        self._lock = threading.Lock()
        self._env = _environment()

    # --- state -------------------------------------------------------------------------------------------------
    def _keep(self, state: PageState) -> str:
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._states[token] = state
            while len(self._states) > PAGE_CACHE:
                self._states.popitem(last=False)
        return token

    def state(self, token: str) -> PageState | None:
        with self._lock:
            return self._states.get(token)

    def from_result(self, result: Any) -> str:
        """Keep an evaluation made elsewhere (the CDS card's) for the page; returns its token."""
        return self._keep(PageState(copy.deepcopy(dict(result.patient.data)), result,
                                    warnings=list(getattr(result, "warnings", []) or [])))

    def from_text(self, text: str) -> str:
        """Evaluate a pasted patient document (YAML/JSON) or FHIR Bundle (JSON). Raises InputError as the CLI does."""
        from ..yamlio import load_text

        data = load_text(text, file="pasted document", kind="patient document or FHIR Bundle").data
        if isinstance(data, Mapping) and data.get("resourceType") == "Bundle":
            from ..fhir import bundle_to_document

            mapped = bundle_to_document(dict(data), evaluation_date=self.evaluation_date)
            document = dict(mapped.document)
            result = self.rulebase.evaluate(document)
            result.extra["fhir_warnings"] = [w.to_dict() for w in mapped.warnings]
        else:
            document = dict(data) if isinstance(data, Mapping) else {}
            result = self.rulebase.evaluate(data)
        return self._keep(PageState(document, result, warnings=list(result.warnings)))

    def submit(self, token: str, form: Mapping[str, str]) -> tuple[str | None, dict[str, str]]:
        """Apply the submitted values. Returns (new token, {}) or (None, {field path: message}) when a value is bad."""
        state = self.state(token)
        if state is None:
            raise KeyError(token)
        response = _response_from_form(build_questionnaire(state.result)["item"], form)
        errors: dict[str, str] = {}
        try:
            document = apply_answers(state.document, response)
            result = self.rulebase.evaluate(document)
        except InputError as exc:
            for problem in exc.problems or []:
                path = str(problem.path or "")
                errors[_field_of(path, form)] = str(problem)  # the command line's words, with the field path
            if not errors:
                errors[""] = str(exc)
            return None, errors
        previous = {d.therapy: d.status for d in state.result.decisions}
        if state.warnings:
            result.extra.setdefault("fhir_warnings", state.warnings)
        return self._keep(PageState(document, result, previous, state.warnings)), {}

    # --- rendering ---------------------------------------------------------------------------------------------
    def render(self, token: str, *, errors: Mapping[str, str] | None = None,
               values: Mapping[str, str] | None = None) -> str:
        state = self.state(token)
        if state is None:
            raise KeyError(token)
        result = state.result
        summary = action_summary(result)
        names = {t.id: t.name for t in result.rulebase.catalogue.therapies}
        changes = []
        if state.previous:
            changes = [(names[d.therapy], state.previous.get(d.therapy), d.status) for d in result.decisions
                       if state.previous.get(d.therapy) != d.status]
        controls = [_control(item, state.document, values or {}, (errors or {}).get(item["linkId"]))
                    for item in build_questionnaire(result)["item"]]
        return str(self._env.get_template("page.html.j2").render(
            token=token, summary=summary, result=result, names=names, controls=controls, changes=changes,
            form_error=(errors or {}).get(""), disclaimer=DISCLAIMER,
            decisions=[(d, names[d.therapy]) for d in result.decisions]))

    def render_start(self, *, error: str | None = None, text: str = "") -> str:
        return str(self._env.get_template("start.html.j2").render(error=error, text=text, disclaimer=DISCLAIMER))


def _control(item: Mapping[str, Any], document: Mapping[str, Any], values: Mapping[str, str],
             error: str | None) -> dict[str, Any]:
    """What the template needs to draw one form control, prefilled with the submitted or known value."""
    path = item["linkId"]
    known = get_path(document, path)
    help_text = next((i["text"] for i in item.get("item", []) if i.get("type") == "display"), "")
    control: dict[str, Any] = {"path": path, "label": item.get("text", path), "type": item["type"], "help": help_text,
                               "error": error, "id": "f-" + path.replace(".", "-")}
    if item["type"] == "quantity":
        units = [e["valueCoding"]["display"] for e in item.get("extension", [])]
        control["units"] = units
        control["value"] = values.get(path, str(known.get("value")) if isinstance(known, Mapping) and
                                      known.get("value") is not None else "")
        control["unit"] = values.get(f"{path}.unit", known.get("unit") if isinstance(known, Mapping) else units[0])
    elif item["type"] == "choice":
        control["options"] = [o["valueCoding"]["code"] for o in item.get("answerOption", [])]
        control["value"] = values.get(path, "" if known is None else str(known))
    elif item["type"] == "boolean":
        control["value"] = values.get(path, "" if known is None else ("true" if known else "false"))
    else:
        control["value"] = values.get(path, "" if known is None else str(known))
    return control


def _response_from_form(items: list[Mapping[str, Any]], form: Mapping[str, str]) -> dict[str, Any]:
    """The submitted values as a QuestionnaireResponse (empty fields are left unanswered: still unknown)."""
    answered = []
    for item in items:
        path, kind = item["linkId"], item["type"]
        raw = (form.get(path) or "").strip()
        if raw in _UNANSWERED:
            continue
        if kind == "quantity":
            value: dict[str, Any] = {"valueQuantity": {"value": _number(raw), "unit": form.get(f"{path}.unit", "")}}
        elif kind == "choice":
            value = {"valueCoding": {"code": raw}}
        elif kind == "boolean":
            value = {"valueBoolean": raw == "true"}
        elif kind == "integer":
            number = _number(raw)
            value = {"valueInteger": number} if isinstance(number, int) else {"valueDecimal": number}
        elif kind == "decimal":
            value = {"valueDecimal": _number(raw)}
        elif kind == "date":
            value = {"valueDate": raw}
        elif kind == "display":
            continue
        else:
            value = {"valueString": raw}
        answered.append({"linkId": path, "answer": [value]})
    return {"resourceType": "QuestionnaireResponse", "status": "completed", "item": answered}


def _number(raw: str) -> Any:
    try:
        number = float(raw.replace(",", "."))
    except ValueError:
        return raw  # kept as typed: the validation names the field and what was expected
    return int(number) if number.is_integer() and "." not in raw and "," not in raw else number


def _field_of(path: str, form: Mapping[str, str]) -> str:
    """The form field a validation problem belongs to: the longest submitted path that starts the problem's path."""
    path = path.replace("QuestionnaireResponse.item[linkId=", "").rstrip("]")
    candidates = [p for p in form if not p.endswith(".unit") and (path == p or path.startswith(p + "."))]
    return max(candidates, key=len) if candidates else ""
