"""CDS Hooks prefetch: templates derived from the rule base's data requirements, and the Bundle built from the answers.

Which data to ask the EHR for is not written by hand: the facts the rules read (conditions, requirements, dates)
lead, through the fact vocabulary (``kb/facts.yaml``), to contract fields (``labs.platelets``), and through the FHIR
code table (``kb/fhir/codes.yaml``) to FHIR queries — Observations by code list, Conditions, medication resources,
Procedures, AllergyIntolerance. When the rule base grows, the templates grow with it.

A request's prefetch answers (resources, searchset Bundles or ``null``) are merged into one collection Bundle for
:func:`radiopal.fhir.bundle_to_document`; each entry remembers where it came from (``prefetch.observations.entry[3]``)
so a mapping error names the element the EHR sent. Keys the EHR did not answer are fetched from ``fhirServer`` when
one is given (with the ``fhirAuthorization`` token); without one the request fails with HTTP 412.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..fhir.codes import CodeTable
from ..fhir.mapping import MAPPED_TYPES  # resource types the mapper reads; others are left out of the Bundle
from .errors import ServiceError

__all__ = [
    "AssembledBundle",
    "DataRequirements",
    "assemble_bundle",
    "data_requirements",
    "fetch_missing",
    "prefetch_templates",
    "render_template",
]

PATIENT_TOKEN = "{{context.patientId}}"
#: Optional prefetch key: the clinician's answers to radiopal's questionnaire (never required, never fetched).
ANSWERS_KEY = "answers"
#: Contract fields that only the Patient resource fills.
PATIENT_FIELDS = frozenset({"patient_id", "demographics.age_years", "demographics.sex", "evaluation_date"})
#: Contract fields a radiopal deriver (``from: {derive: ...}`` in kb/facts.yaml) reads. A deriver missing here is
#: treated as reading every field, so a new one can only make the prefetch larger, never silently smaller.
DERIVED_INPUTS: dict[str, tuple[str, ...]] = {
    "pregnant": ("demographics.sex", "demographics.pregnant"),
    "breastfeeding": ("demographics.sex", "demographics.breastfeeding"),
    "radiosensitive_histology": ("primary_tumour.site", "primary_tumour.radiosensitive_histology"),
    "labs_current": ("labs.date",),
    "wbc_or_anc_current": ("labs.wbc", "labs.anc", "labs.date"),
    "scr_rise": ("labs.serum_creatinine", "labs.serum_creatinine_baseline"),
    "ca_corr": ("labs.calcium", "labs.albumin"),
    "calcium_lln": ("labs.calcium_lln",),
    "hypocalcaemia": ("labs.calcium", "labs.albumin", "labs.calcium_lln"),
    "ra223_injections_in_course": ("treatment_history.radionuclides",),
    "last_ra223_date": ("treatment_history.radionuclides",),
    "last_sr89_date": ("treatment_history.radionuclides",),
    "last_sm153_date": ("treatment_history.radionuclides",),
    "last_sr89_response": ("treatment_history.radionuclides",),
    "last_ebrt_date": ("treatment_history.ebrt",),
    "painful_site_irradiated": ("treatment_history.ebrt", "pain.painful_sites"),
    "last_painful_site_ebrt_date": ("treatment_history.ebrt", "pain.painful_sites"),
    "hemibody_rt_given": ("treatment_history.ebrt",),
    "on_abiraterone": ("treatment_history.hormonal",),
    "recent_myelosuppressive_chemo": ("treatment_history.chemotherapy",),
}
MEDICATION_RESOURCES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")
#: Prefetch keys for resource searches, in discovery order: key → (resource type, which history fields need it).
SEARCHES: dict[str, tuple[str, frozenset[str]]] = {
    "conditions": ("Condition", frozenset()),
    "medicationRequests": ("MedicationRequest", frozenset({"chemotherapy", "hormonal", "bone_health_agents",
                                                            "radionuclides"})),
    "medicationStatements": ("MedicationStatement", frozenset({"chemotherapy", "hormonal", "bone_health_agents",
                                                                "radionuclides"})),
    "medicationAdministrations": ("MedicationAdministration", frozenset({"chemotherapy", "hormonal",
                                                                          "bone_health_agents", "radionuclides"})),
    "procedures": ("Procedure", frozenset({"ebrt", "radionuclides"})),
    "allergies": ("AllergyIntolerance", frozenset({"hypersensitivity"})),
}
MAX_PAGES = 20


@dataclass(frozen=True)
class DataRequirements:
    """What a rule base needs from the EHR: contract fields, Observation codings, and resource searches."""

    fields: frozenset[str]
    observation_codes: tuple[tuple[str, str], ...]  # (system URI, code), sorted
    searches: tuple[str, ...]  # prefetch keys of SEARCHES that are needed, in SEARCHES order


def data_requirements(rulebase: Any, table: CodeTable) -> DataRequirements:
    """Derive the data requirements of ``rulebase`` (a :class:`radiopal.RuleBase`) through ``table``."""
    vocabulary = rulebase.vocabulary
    facts: set[str] = set()
    for rule in rulebase.rules:
        facts |= rule.facts()
    fields: set[str] = set(PATIENT_FIELDS)
    every_field = _all_fields(table)
    for name in sorted(facts):
        spec = vocabulary.facts.get(name)
        if spec is None or spec.derived_by:
            continue  # a fact derived by a rule: that rule's own facts are already in `facts`
        if spec.source_path:
            fields.add(spec.source_path)
            if "lab" in spec.origin:
                fields.add("labs.date")  # current labs (DATA-04) and the lab block's date come from every count
        elif "derive" in spec.origin:
            fields.update(DERIVED_INPUTS.get(str(spec.origin["derive"]), every_field))
    codes: set[tuple[str, str]] = set()
    for path in fields:
        for row in _observation_rows(path, table):
            codes.add((table.systems[row.system], row.code))
    history = {f.split(".")[1] for f in fields if f.startswith("treatment_history.")}
    conditions = any(_condition_rows(path, table) for path in fields)
    searches = [key for key, (_resource, groups) in SEARCHES.items()
                if (conditions if key == "conditions" else bool(groups & history))]
    return DataRequirements(frozenset(fields), tuple(sorted(codes)), tuple(searches))


def prefetch_templates(requirements: DataRequirements) -> dict[str, str]:
    """CDS Hooks prefetch templates (key → FHIR query with ``{{context.patientId}}``) for ``requirements``."""
    templates = {"patient": f"Patient/{PATIENT_TOKEN}"}
    if requirements.observation_codes:
        codes = ",".join(f"{system}|{code}" for system, code in requirements.observation_codes)
        templates["observations"] = f"Observation?patient={PATIENT_TOKEN}&code={codes}"
    for key in requirements.searches:
        resource = SEARCHES[key][0]
        include = f"&_include={resource}:medication" if resource in MEDICATION_RESOURCES else ""
        templates[key] = f"{resource}?patient={PATIENT_TOKEN}{include}"
    from ..fhir.questionnaire import QUESTIONNAIRE_URL

    templates[ANSWERS_KEY] = (f"QuestionnaireResponse?subject={PATIENT_TOKEN}&questionnaire={QUESTIONNAIRE_URL}"
                              "&status=completed&_sort=-authored&_count=1")
    return templates


def latest_answers(value: Any, patient_id: str) -> dict[str, Any] | None:
    """The most recent completed QuestionnaireResponse to radiopal's questionnaire in a prefetch answer (a resource or
    a searchset Bundle), or None. One about another patient is a 400 (never answer for the wrong patient)."""
    from ..fhir.questionnaire import QUESTIONNAIRE_URL

    if not isinstance(value, Mapping):
        return None
    resources = [e.get("resource") for e in value.get("entry") or [] if isinstance(e, Mapping)] \
        if value.get("resourceType") == "Bundle" else [value]
    found: list[Mapping[str, Any]] = []
    for resource in resources:
        if not isinstance(resource, Mapping) or resource.get("resourceType") != "QuestionnaireResponse":
            continue
        if resource.get("questionnaire") != QUESTIONNAIRE_URL or resource.get("status") not in ("completed", "amended"):
            continue
        subject = str((resource.get("subject") or {}).get("reference") or "")
        if not subject.rstrip("/").endswith(f"Patient/{patient_id}"):
            raise ServiceError(400, "patient-mismatch", f"prefetch.{ANSWERS_KEY}: a QuestionnaireResponse about "
                                                        f"{subject or 'no patient'}, not Patient/{patient_id}")
        found.append(resource)
    if not found:
        return None
    latest: Mapping[str, Any] = max(found, key=lambda r: str(r.get("authored") or ""))
    return dict(latest)


def render_template(template: str, context: Mapping[str, Any]) -> str:
    """Replace ``{{context.<name>}}`` tokens with the hook context's values."""
    def value(match: re.Match[str]) -> str:
        found = context.get(match.group(1))
        if not isinstance(found, str) or not found:
            raise ServiceError(400, "bad-request", f"context.{match.group(1)} is needed to build the prefetch query")
        return found

    return re.sub(r"\{\{\s*context\.(\w+)\s*\}\}", value, template)


def _all_fields(table: CodeTable) -> tuple[str, ...]:
    out = set(PATIENT_FIELDS) | set(table.fields) | {"labs.date"}
    out |= {f"treatment_history.{g}" for g in ("chemotherapy", "hormonal", "bone_health_agents", "radionuclides",
                                                "ebrt", "hypersensitivity")}
    out |= {row.maps_to.split("=")[0] for row in table.rows["conditions"] if "=" in row.maps_to}
    return tuple(sorted(out))


def _observation_rows(path: str, table: CodeTable) -> list[Any]:
    """Observation rows that fill ``path``: directly, as the date of another field, or as its reference range."""
    targets = {path}
    for spec in table.fields.values():
        if path in (spec.date_to, spec.reference_low_to):
            targets.add(spec.path)
    if path == "labs.date":
        targets.update(table.lab_date_fields)
    return [row for row in table.rows["observations"] if row.maps_to in targets]


def _condition_rows(path: str, table: CodeTable) -> list[Any]:
    return [row for row in table.rows["conditions"] if row.maps_to.split("=")[0] == path]


# --- the request's answers → one Bundle ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AssembledBundle:
    """A collection Bundle of every prefetched resource, and where each entry came from."""

    bundle: dict[str, Any]
    origins: tuple[str, ...]  # origins[i] = "prefetch.<key>" or "prefetch.<key>.entry[j]" for bundle entry i

    def locate(self, path: str) -> str:
        """Rewrite an element path of the assembled Bundle (``entry[4].resource.code``) to the request's."""
        match = re.match(r"entry\[(\d+)\](.*)", path)
        if match is None or int(match.group(1)) >= len(self.origins):
            return path
        rest = match.group(2)
        origin = self.origins[int(match.group(1))]
        if origin.endswith("]"):  # an entry of a searchset: keep `.resource...`
            return origin + rest
        return origin + rest.removeprefix(".resource")


def unanswered(prefetch: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    """Keys the client did not answer: absent, or an OperationOutcome (the client could not get the data)."""
    out = []
    for key in keys:
        if key not in prefetch:
            out.append(key)
            continue
        value = prefetch[key]
        if isinstance(value, Mapping) and value.get("resourceType") == "OperationOutcome":
            out.append(key)
    return out


def assemble_bundle(prefetch: Mapping[str, Any], keys: Iterable[str], *, exclude: Iterable[str] = (),
                    server: str | None = None) -> AssembledBundle:
    """Merge the answers of ``keys`` into one collection Bundle (one entry per ``Type/id``, first seen wins).

    ``exclude`` lists ``Type/id`` references to leave out (the draft orders of an order hook: they are not history).
    An entry without a ``fullUrl`` gets ``{server}/{Type}/{id}`` when the FHIR server is known (provenance).
    A value that is neither ``null``, a resource nor a Bundle is a 400 naming its key.
    """
    entries: list[dict[str, Any]] = []
    origins: list[str] = []
    seen = set(exclude)

    def add(resource: Any, full_url: Any, origin: str) -> None:
        if not isinstance(resource, Mapping):
            raise ServiceError(400, "bad-request", f"{origin}: expected a FHIR resource (a JSON object)")
        kind = resource.get("resourceType")
        if kind not in MAPPED_TYPES:
            return
        rid = resource.get("id")
        if rid:
            ref = f"{kind}/{rid}"
            if ref in seen:
                return
            seen.add(ref)
        entry: dict[str, Any] = {"resource": dict(resource)}
        if isinstance(full_url, str) and full_url:
            entry["fullUrl"] = full_url
        elif server and rid:
            entry["fullUrl"] = f"{server.rstrip('/')}/{kind}/{rid}"
        entries.append(entry)
        origins.append(origin)

    for key in keys:
        value = prefetch.get(key)
        where = f"prefetch.{key}"
        if value is None:
            continue
        if not isinstance(value, Mapping) or not isinstance(value.get("resourceType"), str):
            raise ServiceError(400, "bad-request", f"{where}: expected a FHIR resource or Bundle, or null")
        if value["resourceType"] == "Bundle":
            items = value.get("entry") or []
            if not isinstance(items, list):
                raise ServiceError(400, "bad-request", f"{where}.entry: expected a list")
            for j, item in enumerate(items):
                if not isinstance(item, Mapping):
                    raise ServiceError(400, "bad-request", f"{where}.entry[{j}]: expected an object")
                if "resource" in item:
                    add(item["resource"], item.get("fullUrl"), f"{where}.entry[{j}]")
        else:
            add(value, None, where)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return AssembledBundle(bundle, tuple(origins))


# --- fetching what the client did not send ----------------------------------------------------------------------
def _allowed_server(url: str) -> bool:
    """https anywhere; plain http only to a loopback host (a local FHIR server in tests or development)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def _listed(url: str, allowed: Iterable[str]) -> bool:
    """Whether ``url`` is one of the ``allowed`` base URLs or below one (same scheme, host and port; path prefix)."""
    parts = urlsplit(url)
    for base in allowed:
        b = urlsplit(base)
        if (parts.scheme, parts.hostname, parts.port) != (b.scheme, b.hostname, b.port):
            continue
        prefix = b.path.rstrip("/")
        path = parts.path.rstrip("/")
        if path == prefix or path.startswith(prefix + "/"):
            return True
    return False


def fetch_missing(fhir_server: str, authorization: Mapping[str, Any] | None, templates: Mapping[str, str],
                  keys: Iterable[str], context: Mapping[str, Any], *, timeout: float = 10.0,
                  allowed: tuple[str, ...] = ()) -> dict[str, Any]:
    """Fetch the answers of ``keys`` from ``fhir_server`` (following ``next`` links); 412 when that fails.

    With ``allowed`` (the service's ``--fhir-server`` list) only those servers are contacted.
    """
    import httpx

    if not _allowed_server(fhir_server):
        raise ServiceError(412, "prefetch-unavailable",
                           f"fhirServer {fhir_server!r} is not usable: https is required (http only on loopback)")
    if allowed and not _listed(fhir_server, allowed):
        raise ServiceError(412, "prefetch-unavailable",
                           f"fhirServer {fhir_server!r} is not one this service may fetch from (--fhir-server)")
    headers = {"Accept": "application/fhir+json"}
    token = (authorization or {}).get("access_token")
    if isinstance(token, str) and token:
        headers["Authorization"] = f"Bearer {token}"
    base = fhir_server.rstrip("/") + "/"
    out: dict[str, Any] = {}
    with httpx.Client(timeout=timeout, headers=headers, follow_redirects=False) as client:
        for key in keys:
            url: str | None = base + render_template(templates[key], context)
            pages: list[dict[str, Any]] = []
            while url is not None and len(pages) < MAX_PAGES:
                try:
                    response = client.get(url)
                except httpx.HTTPError as exc:
                    raise ServiceError(412, "prefetch-unavailable",
                                       f"prefetch {key}: the FHIR server could not be reached ({type(exc).__name__})"
                                       ) from exc
                if response.status_code == 404 and key == "patient":
                    raise ServiceError(412, "prefetch-unavailable", "prefetch patient: the FHIR server has no such Patient")
                if response.status_code != 200:
                    raise ServiceError(412, "prefetch-unavailable",
                                       f"prefetch {key}: the FHIR server answered HTTP {response.status_code}")
                try:
                    data = response.json()
                except ValueError as exc:
                    raise ServiceError(412, "prefetch-unavailable", f"prefetch {key}: the FHIR server sent no JSON") from exc
                if not isinstance(data, dict):
                    raise ServiceError(412, "prefetch-unavailable", f"prefetch {key}: the FHIR server sent no resource")
                pages.append(data)
                url = _next_link(data, base) if data.get("resourceType") == "Bundle" else None
            out[key] = _merge_pages(pages)
    return out


def _next_link(bundle: Mapping[str, Any], base: str) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, Mapping) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            url = str(link["url"])
            # Only follow pages on the same server: a `next` link elsewhere would leak the bearer token.
            return url if url.startswith(base) else None
    return None


def _merge_pages(pages: list[dict[str, Any]]) -> dict[str, Any]:
    if len(pages) == 1:
        return pages[0]
    entries = [e for page in pages for e in (page.get("entry") or [])]
    return {**pages[0], "entry": entries, "link": []}
