"""The CDS Hooks services of radiopal, independent of the web framework: discovery, calls, feedback, reports.

Services (CDS Hooks 2.0):

* ``radiopal-patient-view`` (``patient-view``): one summary card of the radionuclide and bone-health options.
* ``radiopal-order-check`` (``order-sign``; also answers ``order-select``) and ``radiopal-order-select``
  (``order-select``): a card for each drafted MedicationRequest/ServiceRequest that is a therapy radiopal decides on
  and is deferred or contraindicated now. Discovery lists one hook per service id, hence two ids for the order hooks.

Every call is evaluated with the rule base loaded at start and recorded in the audit log (always), with the cards'
uuids so that feedback can be tied back to the evaluation.
"""

from __future__ import annotations

import contextlib
import html
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..audit import AuditLog, default_audit_db
from ..errors import InputError, Problem, RadiopalError
from ..fhir.codes import load_code_table
from .auth import Authenticator, Claims
from .cards import DraftOrder, order_cards, page_url, patient_view_card, therapy_views
from .errors import ServiceError
from .feedback import parse_feedback
from .identity import MAX_LISTED, Mismatch, describe, mismatches
from .prefetch import (
    ANSWERS_KEY,
    MAPPED_TYPES,
    assemble_bundle,
    data_requirements,
    fetch_missing,
    latest_answers,
    prefetch_templates,
    unanswered,
)
from .settings import Settings

__all__ = ["SERVICES", "CDSHooksService", "ServiceSpec"]

ORDER_TYPES = ("MedicationRequest", "ServiceRequest")
_EBRT_THERAPIES = {
    "ebrt.conventional": ("ebrt_single_8gy", "ebrt_multifraction"),
    "ebrt.sbrt": ("sbrt",),
    "ebrt.hemibody_upper": ("hemibody_rt",),
    "ebrt.hemibody_lower": ("hemibody_rt",),
}
_ORDERED_GROUPS = ("radionuclides", "bone_health_agents")
REPORT_CACHE = 256
CALLER_PREFIX = "cds-hooks:"


@dataclass(frozen=True)
class ServiceSpec:
    """One CDS Service: its id, the hook it is listed under, the hooks it answers, and its text."""

    id: str
    hook: str
    answers: tuple[str, ...]
    title: str
    description: str


SERVICES: dict[str, ServiceSpec] = {s.id: s for s in (
    ServiceSpec("radiopal-patient-view", "patient-view", ("patient-view",),
                "radiopal: radionuclide and bone-health options",
                "One summary card of the radionuclide and bone-health options for painful bone metastases: "
                "recommended or eligible ones, deferred ones with their earliest date, contraindicated ones, and "
                "the data still needed, each with the rules and citations behind it. Decision support, not a "
                "prescription."),
    ServiceSpec("radiopal-order-check", "order-sign", ("order-sign", "order-select"),
                "radiopal: check a radionuclide or bone-health order",
                "A card when a drafted order (MedicationRequest or ServiceRequest) is for a therapy radiopal decides "
                "on and that therapy is deferred or contraindicated for this patient now, with why and the earliest "
                "date. Answers order-sign and order-select."),
    ServiceSpec("radiopal-order-select", "order-select", ("order-select",),
                "radiopal: check a radionuclide or bone-health order while it is selected",
                "The radiopal-order-check service for the order-select hook: checks the selected draft orders."),
)}


class CDSHooksService:
    """Everything the HTTP layer calls; built once at start (rule base, code table, prefetch, audit log, keys)."""

    def __init__(self, settings: Settings) -> None:
        from ..api import load_rulebase

        self.settings = settings
        self.rulebase = settings.rulebase or load_rulebase(settings.rules, engine=settings.engine)
        self.table = load_code_table()
        self.requirements = data_requirements(self.rulebase, self.table)
        self.templates = prefetch_templates(self.requirements)
        self.audit = AuditLog(settings.audit_db or default_audit_db())
        try:
            self.authenticator = None if settings.no_auth else Authenticator(
                str(settings.jwks), settings.issuers, replay_store=self.audit)
        except ValueError as exc:
            raise RadiopalError(f"cannot start the service: {exc}", [Problem(str(exc), hint="check --jwks")]) from exc
        self._results: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        _warm_up()

    # --- HTTP-facing operations --------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        """The public URL of ``path`` (``/cds-services/x``): the exact ``aud`` a client JWT must carry."""
        return self.settings.public_url + path

    def authenticate(self, authorization: str | None, path: str) -> Claims | None:
        """Verify the client's JWT for the endpoint at ``path`` (None when authentication is off)."""
        if self.authenticator is None:
            return None
        return self.authenticator.verify(authorization, self.url(path))

    def spec(self, service_id: str) -> ServiceSpec:
        spec = SERVICES.get(service_id)
        if spec is None:
            raise ServiceError(404, "not-found", f"no CDS Service {service_id!r}; see GET /cds-services")
        return spec

    def discovery(self) -> dict[str, Any]:
        """The discovery document: every service with its prefetch templates."""
        services = []
        for spec in SERVICES.values():
            services.append({
                "hook": spec.hook, "title": spec.title, "description": spec.description, "id": spec.id,
                "prefetch": dict(self.templates),
                "usageRequirements": "Send a JWT (RS384/ES384) signed by a key in radiopal's configured JWKS. "
                                     "Prefetch keys not sent are fetched from fhirServer; without one the call "
                                     "fails with HTTP 412.",
            })
        return {"services": services}

    def call(self, service_id: str, body: Any, claims: Claims | None) -> dict[str, Any]:
        """Answer one hook call: validate, gather the data, evaluate, build the cards, record. Returns the JSON body."""
        spec = self.spec(service_id)
        request = _validate_request(spec, body)
        context = request["context"]
        orders: list[DraftOrder] = []
        exclude: list[str] = []
        if spec.hook != "patient-view":
            drafts = context["draftOrders"].get("entry")
            self._same_patient(spec, request, claims, (
                (f"context.draftOrders.entry[{i}].resource", e.get("resource"), e.get("fullUrl"))
                for i, e in enumerate(drafts if isinstance(drafts, list) else []) if isinstance(e, Mapping)))
            orders, exclude = self._draft_orders(context, request["hook"])
            if not any(o.therapies for o in orders):
                return {"cards": []}  # no order radiopal decides on: nothing to evaluate, no data to ask for
        prefetch = dict(request.get("prefetch") or {})
        missing = unanswered(prefetch, [key for key in self.templates if key != ANSWERS_KEY])
        if missing:
            server = request.get("fhirServer")
            if not server:
                raise ServiceError(412, "prefetch-missing",
                                   "radiopal needs these prefetch keys and no fhirServer was given to fetch them: "
                                   + ", ".join(missing), [{"missing": key} for key in missing])
            prefetch.update(fetch_missing(server, request.get("fhirAuthorization"), self.templates, missing, context,
                                          timeout=self.settings.fhir_timeout, allowed=self.settings.fhir_servers))
        assembled = assemble_bundle(prefetch, self.templates, exclude=exclude, server=request.get("fhirServer"))
        self._same_patient(spec, request, claims, (
            (origin + ".resource" if origin.endswith("]") else origin, e["resource"], e.get("fullUrl"))
            for origin, e in zip(assembled.origins, assembled.bundle["entry"], strict=True)))
        result = self._evaluate(assembled, latest_answers(prefetch.get(ANSWERS_KEY), str(context.get("patientId"))))

        record_id = str(uuid.uuid4())
        report_url = self.url(f"/reports/{record_id}")
        if spec.hook == "patient-view":
            # No recorded malignancy: nothing to say, which is not an error (200, no card; audited as such).
            cards = [patient_view_card(result, report_url=report_url, page=page_url(self.settings.public_url, record_id))] \
                if has_malignancy(result) else []
        else:
            ordered = {t for o in orders for t in o.therapies}
            cards = order_cards(result, therapy_views(result, ordered), orders, report_url=report_url,
                                page=page_url(self.settings.public_url, record_id))
        audit_context = {
            "service": spec.id, "hook": request["hook"], "hookInstance": request["hookInstance"],
            "userId": context.get("userId"), "encounterId": context.get("encounterId"),
            "fhirServer": request.get("fhirServer"), "fetched": missing, "auth": _auth(claims),
            "draftOrders": [{"ref": o.ref, "therapies": list(o.therapies)} for o in orders],
            "cards": [{"uuid": c["uuid"], "summary": c["summary"], "indicator": c["indicator"]} for c in cards],
            "outcome": "evaluated-with-cards" if cards else "evaluated-with-no-cards",
            "no_cards_reason": None if cards else (
                "no recorded malignancy (no primary tumour and no bone disease in the FHIR data)"
                if spec.hook == "patient-view" else "no card for the drafted order(s)"),
            "provenance": result.extra.get("provenance", {}),
            "fhir_warnings": result.extra.get("fhir_warnings", []),
        }
        self.audit.record(result, caller=_caller(claims), context=audit_context, record_id=record_id,
                          cards={c["uuid"]: spec.id for c in cards})
        with self._lock:
            self._results[record_id] = result
            while len(self._results) > REPORT_CACHE:
                self._results.popitem(last=False)
        return {"cards": cards}

    def feedback(self, service_id: str, body: Any, claims: Claims | None) -> dict[str, Any]:
        """Record CDS Hooks feedback (accepted / overridden, with reasons) in the audit log."""
        spec = self.spec(service_id)
        items = parse_feedback(body)
        recorded = []
        for item in items:
            found = self.audit.card(item["card"])
            evaluation = found[0] if found is not None else None
            context = {"service": spec.id, "feedback": item, "evaluation_record": evaluation,
                       "known_card": found is not None and found[1] == spec.id, "auth": _auth(claims)}
            entry = self.audit.record_event("feedback", caller=_caller(claims), context=context)
            recorded.append({"card": item["card"], "record": entry.record_id, "evaluation_record": evaluation})
        return {"recorded": recorded}

    def cached_result(self, record_id: str) -> Any:
        """The result of an evaluation this service made and still holds (None otherwise)."""
        try:
            key = str(uuid.UUID(record_id))
        except ValueError:
            return None
        with self._lock:
            return self._results.get(key)

    def report(self, record_id: str) -> str | None:
        """The HTML report of an evaluation made by this service (None when there is none)."""
        try:
            key = str(uuid.UUID(record_id))
        except ValueError:
            return None
        with self._lock:
            result = self._results.get(key)
        if result is not None:
            from ..explain import explain, render_html

            return render_html(explain(result), result, graphs=False)
        # Evicted from the cache or made before a restart: the stored trace, as `radiopal audit show` prints it.
        record = self.audit.get(key)
        if record is None or record.kind != "evaluation" or not record.caller.startswith(CALLER_PREFIX):
            return None
        from ..audit_text import render_record

        return ("<!doctype html><meta charset='utf-8'><title>radiopal audit record</title>"
                f"<pre>{html.escape(render_record(record))}</pre>")

    # --- steps -------------------------------------------------------------------------------------------------
    def _same_patient(self, spec: ServiceSpec, request: Mapping[str, Any], claims: Claims | None,
                      entries: Any) -> None:
        """Refuse (HTTP 400, audited, no card) when the FHIR data is not shown to be about context.patientId.

        400, not 412: the request contradicts itself (the chart open is one patient, the data another); no data
        the service could fetch would make it answerable, and 412 tells a client the prefetch was merely missing.
        """
        patient_id = request["context"]["patientId"]
        found: list[Mismatch] = mismatches(entries, patient_id)
        if not found:
            return
        message = describe(found, patient_id)
        context = request["context"]
        self.audit.record_event("refusal", caller=_caller(claims), patient_id=patient_id, context={
            "service": spec.id, "hook": request["hook"], "hookInstance": request["hookInstance"],
            "userId": context.get("userId"), "encounterId": context.get("encounterId"),
            "fhirServer": request.get("fhirServer"), "auth": _auth(claims), "reason": "patient-mismatch",
            "contextPatientId": patient_id, "message": message,
            "otherPatients": sorted({m.found for m in found if m.found is not None}),
            "mismatches": len(found), "details": [m.to_dict() for m in found[:MAX_LISTED]],
        })
        raise ServiceError(400, "patient-mismatch", message, [m.to_dict() for m in found[:MAX_LISTED]])

    def evaluate_assembled(self, assembled: Any) -> Any:
        """Evaluate a Bundle assembled from an EHR's answers (a SMART launch's, say); 400 for unusable FHIR."""
        return self._evaluate(assembled)

    def _evaluate(self, assembled: Any, answers: Mapping[str, Any] | None = None) -> Any:
        from ..api import evaluate_fhir

        try:
            return evaluate_fhir(assembled.bundle, self.rulebase, evaluation_date=self.settings.today(),
                                 answers=answers)
        except InputError as exc:
            details = [{**p.to_dict(), "path": assembled.locate(p.path)} for p in exc.problems]
            first = details[0] if details else {"message": str(exc)}
            where = f"{first['path']}: " if first.get("path") else ""
            raise ServiceError(400, "invalid-fhir", f"the prefetched FHIR data cannot be used: {where}"
                                                    f"{first['message']}", details) from exc

    def _draft_orders(self, context: Mapping[str, Any], hook: str) -> tuple[list[DraftOrder], list[str]]:
        """The draft orders of an order hook, with the therapies they are for; and every draft ``Type/id``."""
        from ..fhir.common import ReferenceIndex, Sink
        from ..fhir.medications import _concept, match_concept
        from ..fhir.parse import read_bundle

        try:
            parsed = read_bundle(dict(context["draftOrders"]))
        except InputError as exc:
            details = [{**p.to_dict(), "path": f"context.draftOrders.{p.path}".rstrip(".")} for p in exc.problems]
            raise ServiceError(400, "invalid-fhir", f"context.draftOrders is not a valid R4 Bundle: "
                                                    f"{details[0]['path']}: {details[0]['message']}"
                               if details else "context.draftOrders is not a valid R4 Bundle", details) from exc
        except RadiopalError as exc:
            raise ServiceError(400, "invalid-fhir", f"context.draftOrders: {exc}") from exc
        selections = {str(s) for s in context.get("selections") or [] if isinstance(s, str)}
        refs = ReferenceIndex(parsed.entries)
        sink = Sink(file="context.draftOrders")
        therapy_ids = set(self.rulebase.catalogue.therapy_ids)
        orders, drafts = [], []
        for entry in parsed.entries:
            if entry.type not in ORDER_TYPES:
                continue
            drafts.append(entry.ref)
            if hook == "order-select" and selections and entry.ref not in selections:
                continue
            sections: tuple[str, ...]
            if entry.type == "MedicationRequest":
                found = _concept(entry, refs, sink)
                concept, sections = (found[0] if found else None), ("medications",)
            else:
                concept, sections = entry.resource.code, ("medications", "procedures")
            therapies: list[str] = []
            for section in sections:
                for match in match_concept(concept, self.table, section, sink, entry.path("code")):
                    therapies += _therapies(match.row.maps_to, therapy_ids)
            text = (concept.text or next((c.display for c in concept.coding or () if c.display), "")) if concept else ""
            orders.append(DraftOrder(entry.ref, tuple(dict.fromkeys(therapies)), str(text or "")))
        return orders, drafts


def has_malignancy(result: Any) -> bool:
    """Whether the evaluated record holds a malignancy: a primary tumour, or bone disease (metastases) of any kind.

    A cancer coded in a way the code table does not know counts as none here (the mapping lists that Condition as
    ignored, with its reason, in the audit record); a patient-view card is shown only for a recognised cancer.
    """
    data = result.patient.data
    return bool(data.get("primary_tumour") or data.get("bone_disease")
                or "bone_disease" in result.extra.get("provenance", {}))


def _caller(claims: Claims | None) -> str:
    """Who called, for the audit record: the verified issuer (``cds-hooks:https://ehr.example``)."""
    return CALLER_PREFIX + (claims.iss if claims is not None else "no-auth")


def _auth(claims: Claims | None) -> dict[str, Any]:
    return claims.to_dict() if claims is not None else {"mode": "no-auth (loopback)"}


def _warm_up() -> None:
    """Load the FHIR models now: fhir.resources builds them on first use, which would slow the first call by seconds."""
    from ..fhir.parse import read_bundle

    kinds = sorted({*MAPPED_TYPES, *ORDER_TYPES})
    with contextlib.suppress(RadiopalError):  # the empty resources are invalid on purpose; their models are loaded
        read_bundle({"resourceType": "Bundle", "type": "collection",
                     "entry": [{"resource": {"resourceType": kind}} for kind in kinds]})


def _therapies(maps_to: str, therapy_ids: set[str]) -> tuple[str, ...]:
    """The radiopal therapies a code-table target stands for (``radionuclides.sm153`` → ``sm153``)."""
    if maps_to in _EBRT_THERAPIES:
        return _EBRT_THERAPIES[maps_to]
    group, _, agent = maps_to.partition(".")
    if group in _ORDERED_GROUPS and agent in therapy_ids:
        return (agent,)
    return ()


#: The longest userId / encounterId accepted: they go into the audit record as sent.
MAX_REFERENCE = 256


def _validate_request(spec: ServiceSpec, body: Any) -> dict[str, Any]:
    """The checks CDS Hooks 2.0 asks of a call; a 400 naming the field otherwise."""
    def bad(message: str) -> ServiceError:
        return ServiceError(400, "bad-request", message)

    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    hook = body.get("hook")
    if not isinstance(hook, str) or not hook:
        raise bad("hook: required (a string)")
    if hook not in spec.answers:
        raise bad(f"hook: this service answers {' and '.join(spec.answers)}, not {hook!r}")
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not instance:
        raise bad("hookInstance: required (a string, a UUID)")
    context = body.get("context")
    if not isinstance(context, dict):
        raise bad("context: required (an object)")
    if not isinstance(context.get("patientId"), str) or not context["patientId"]:
        raise bad("context.patientId: required (a string)")
    user = context.get("userId")
    if not isinstance(user, str) or not user or len(user) > MAX_REFERENCE:
        raise bad(f"context.userId: required (a string such as Practitioner/123, at most {MAX_REFERENCE} characters)")
    encounter = context.get("encounterId")
    if encounter is not None and (not isinstance(encounter, str) or not encounter or len(encounter) > MAX_REFERENCE):
        raise bad(f"context.encounterId: must be a string id of at most {MAX_REFERENCE} characters")
    if hook in ("order-select", "order-sign"):
        orders = context.get("draftOrders")
        if not isinstance(orders, dict) or orders.get("resourceType") != "Bundle":
            raise bad("context.draftOrders: required (a FHIR Bundle)")
        if hook == "order-select" and not isinstance(context.get("selections"), list):
            raise bad("context.selections: required for order-select (a list of Type/id)")
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        raise bad("prefetch: must be an object")
    server = body.get("fhirServer")
    if server is not None and (not isinstance(server, str) or not server):
        raise bad("fhirServer: must be a URL string")
    authorization = body.get("fhirAuthorization")
    if authorization is not None:
        if not isinstance(authorization, dict):
            raise bad("fhirAuthorization: must be an object")
        if server is None:
            raise bad("fhirServer: required when fhirAuthorization is given")
    return body
