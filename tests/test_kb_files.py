"""The knowledge-base data files: JSON Schemas, therapy catalogue and references (kb/).

Checks the files against each other and, when the read-only shared material is present, against the contract, the
clinical brief and the vignettes.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from radiopal.yamlio import load_document, load_text

ROOT = Path(__file__).resolve().parents[1]
KB = ROOT / "kb"
SHARED = ROOT.parent / "shared"
CONTRACT = SHARED / "contract.md"
BRIEF = SHARED / "clinical" / "brief.md"
VIGNETTES = sorted((SHARED / "vignettes").glob("*.yaml"))

needs_shared = pytest.mark.skipif(
    not CONTRACT.is_file(), reason=f"shared contract material not found at {SHARED} (read-only checkout sibling)"
)

THERAPY_IDS = [
    "sr89", "sm153", "ra223", "re186", "re188", "p32", "sn117m",
    "ebrt_single_8gy", "ebrt_multifraction", "sbrt", "hemibody_rt",
    "surgery_referral",
    "cisplatin_sensitisation", "docetaxel_sm153", "doxorubicin_sr89", "docetaxel_sr89",
    "zoledronic_acid", "pamidronate", "ibandronate", "clodronate", "denosumab",
]  # fmt: skip
ADVISORY_IDS = {
    "ADV-BREASTFEED", "ADV-RN-AFTER-LOCAL", "ADV-LE-SHORT", "ADV-PAIN-MILD", "ADV-HEME-CAUTION", "ADV-MARROW-RISK",
    "ADV-RN-RENAL", "ADV-INCONTINENCE", "ADV-EVIDENCE-LIMITED", "ADV-RA-LOW-BURDEN", "ADV-RA-NODES",
    "ADV-RA-COMBO-EU", "ADV-RA-EU-LINES", "ADV-RA-BHA", "ADV-NOT-AVAILABLE", "ADV-P32-MARROW", "ADV-SCC-URGENT",
    "ADV-RETREAT-NONRESPONDER", "ADV-BHA-CONCURRENT-OK", "ADV-SM-BP-SCAN", "ADV-FLARE", "ADV-POST-RN-CHEMO",
    "ADV-IBN-SEVERE-RENAL", "ADV-DMAB-RENAL-CA", "ADV-CA-VITD", "ADV-DENTAL-EXAM", "ADV-DENTAL-INVASIVE",
    "ADV-BHA-INTERVAL", "ADV-BHA-ONSET", "ADV-ANALGESIA-ESCALATE", "ADV-RT-PREMED", "ADV-DATA-EGFR",
    "ADV-BONESCAN-OLD", "ADV-CHEMO-HISTORIC", "ADV-MON-SR89", "ADV-MON-SM153", "ADV-MON-RA223", "ADV-MON-RE186",
    "ADV-MON-P32", "ADV-MON-ZA", "ADV-MON-DMAB", "ADV-MON-PAM", "ADV-MON-CLO",
}  # fmt: skip
RULE_ID = re.compile(r"^[A-Z0-9]+(-[A-Z0-9]+)*[a-z]?$")
GROUPS = {"radionuclide", "external_beam", "surgery", "radionuclide_chemotherapy", "bone_health_agent"}
KINDS = {"guideline", "label", "trial", "review", "other"}


def _json(name: str) -> dict[str, Any]:
    return json.loads((KB / "schemas" / f"{name}.schema.json").read_text(encoding="utf-8"))


def _yaml(name: str) -> Any:
    return yaml.safe_load((KB / name).read_text(encoding="utf-8"))


PATIENT_SCHEMA = _json("patient")
DECISION_SCHEMA = _json("decision")
PATIENT = Draft202012Validator(PATIENT_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
DECISION = Draft202012Validator(DECISION_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
THERAPIES = _yaml("therapies.yaml")
REFERENCES = _yaml("references.yaml")

# A complete, valid patient document (contract §A.1 example, trimmed), independent of the shared folder.
VALID_PATIENT: dict[str, Any] = load_text("""
schema_version: "1.0"
patient_id: T01
evaluation_date: 2025-06-02
context: {regulatory_region: EU, trial_available: false, availability: {re186: false, re188: false, p32: false}}
demographics: {age_years: 71, sex: male, weight_kg: 82}
primary_tumour: {site: prostate, castration_resistant: true, primary_controlled: true, radiosensitive_histology: false}
bone_disease:
  pattern: osteoblastic
  lesion_count: 8
  total_metastases_count: 8
  bone_scan: {date: 2025-05-20, uptake_at_painful_sites: true, superscan: false}
  visceral_metastases: false
  lymph_node_max_short_axis_cm: 1.2
  spinal_cord_compression: none
  pathological_fracture: false
  impending_fracture: false
  mirels_score: null
pain: {score_nrs: 6, distribution: multifocal, painful_sites: [pelvis, ribs], analgesic_step: 3}
performance: {ecog: 1, life_expectancy_weeks: 52}
labs:
  date: 2025-05-30
  platelets: {value: 210, unit: "10^9/L"}
  wbc: {value: 6100, unit: "/uL"}
  anc: {value: 3.9, unit: "10^3/uL"}
  haemoglobin: {value: 124, unit: "g/L"}
  creatinine_clearance: {value: 78, unit: "mL/min", method: cockcroft_gault}
  serum_creatinine: {value: 80, unit: "umol/L"}
  calcium: {value: 9.2, unit: "mg/dL", corrected: false}
  albumin: {value: 4.0, unit: "g/dL"}
  calcium_lln: {value: 2.10, unit: "mmol/L"}
  psa: {value: 45, unit: "ug/L"}
  platelet_trend: stable
dental: {exam_done: true, exam_date: 2025-04-10, unhealed_oral_lesion: false}
treatment_history:
  chemotherapy:
    - {agent: docetaxel, class: taxane, myelosuppressive: true, last_dose_date: 2024-12-16, ongoing: false}
  radionuclides:
    - {agent: sr89, date: 2024-11-04, activity_MBq: 148, response: true}
  ebrt:
    - {date: 2024-09-10, site: left femur, dose_Gy: 8, fractions: 1, technique: conventional}
  bone_health_agents:
    - {agent: denosumab, start_date: 2024-06-01, last_dose_date: 2025-05-05, ongoing: true}
  hormonal:
    - {agent: adt_lhrh, start_date: 2021-02-01, end_date: null, ongoing: true}
  prior_mcrpc_systemic_lines: 2
  ineligible_for_other_mcrpc_therapy: false
  hypersensitivity: [phosphonates]
""").data


def _errors(validator: Draft202012Validator, document: Any) -> list[tuple[tuple[Any, ...], str]]:
    return [(tuple(e.absolute_path), e.validator) for e in validator.iter_errors(document)]


def _with(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(document)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _without(document: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    out = copy.deepcopy(document)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


def _object_schemas(schema: Any, where: str = "#") -> list[tuple[str, dict[str, Any]]]:
    """Every sub-schema that declares `properties`, with a JSON-pointer-like location."""
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(schema, dict):
        if "properties" in schema:
            found.append((where, schema))
        for key, value in schema.items():
            found.extend(_object_schemas(value, f"{where}/{key}"))
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            found.extend(_object_schemas(value, f"{where}/{i}"))
    return found


# --- The two JSON Schemas --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", [PATIENT_SCHEMA, DECISION_SCHEMA], ids=["patient", "decision"])
def test_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("https://radiopal.example/schemas/")
    assert schema["title"]


@pytest.mark.parametrize("schema", [PATIENT_SCHEMA, DECISION_SCHEMA], ids=["patient", "decision"])
def test_every_object_in_a_schema_is_closed_and_every_property_is_described(schema: dict[str, Any]) -> None:
    for where, sub in _object_schemas(schema):
        if "/allOf/" in where or "/prefixItems/" in where:
            continue  # constraints layered on a closed object (if/then rules, per-position `therapy` consts)
        assert sub.get("additionalProperties") is False, f"{where} is not closed"
        for name, prop in sub["properties"].items():
            assert prop.get("description"), f"{where}/properties/{name} has no description"


def test_the_patient_schema_requires_only_the_identity_fields() -> None:
    # Contract §D: only schema_version, patient_id and evaluation_date are structural; an absent sex, site or block
    # is insufficient_data (rules/data.yaml DATA-06), never an invalid document.
    assert set(PATIENT_SCHEMA["required"]) == {"schema_version", "patient_id", "evaluation_date"}
    assert "required" not in PATIENT_SCHEMA["properties"]["demographics"]
    assert "required" not in PATIENT_SCHEMA["properties"]["primary_tumour"]


# --- Valid patient documents -----------------------------------------------------------------------------------------


def test_a_complete_document_with_mixed_units_is_a_valid_patient_document() -> None:
    assert _errors(PATIENT, VALID_PATIENT) == []


def test_a_document_with_only_the_required_fields_is_valid() -> None:
    minimal = {
        "schema_version": "1.0",
        "patient_id": "T02",
        "evaluation_date": "2025-06-02",
        "demographics": {"sex": "female"},
        "primary_tumour": {"site": "breast"},
    }
    assert _errors(PATIENT, minimal) == []


@pytest.mark.parametrize(
    "path",
    [
        ("context",),
        ("demographics", "age_years"),
        ("demographics", "pregnant"),
        ("primary_tumour", "castration_resistant"),
        ("bone_disease", "pattern"),
        ("bone_disease", "bone_scan", "uptake_at_painful_sites"),
        ("bone_disease", "spinal_cord_compression"),
        ("bone_disease", "mirels_score"),
        ("pain", "score_nrs"),
        ("pain", "distribution"),
        ("performance", "life_expectancy_weeks"),
        ("labs",),
        ("labs", "date"),
        ("labs", "platelets"),
        ("labs", "creatinine_clearance", "method"),
        ("labs", "calcium", "corrected"),
        ("dental", "unhealed_oral_lesion"),
        ("treatment_history", "hormonal"),
        ("treatment_history", "chemotherapy", 0, "best_response"),
        ("treatment_history", "ebrt", 0, "technique"),
        ("treatment_history", "bone_health_agents", 0, "ongoing"),
    ],
    ids=lambda p: ".".join(map(str, p)),
)
def test_an_optional_field_that_is_null_is_accepted_as_absent(path: tuple[Any, ...]) -> None:
    assert _errors(PATIENT, _with(VALID_PATIENT, path, None)) == []


@needs_shared
@pytest.mark.parametrize("vignette", VIGNETTES, ids=[p.stem for p in VIGNETTES])
def test_every_shared_vignette_without_expected_is_a_valid_patient_document(vignette: Path) -> None:
    document = load_document(vignette).data
    assert "expected" in document
    del document["expected"]
    assert _errors(PATIENT, document) == []


@needs_shared
def test_the_contract_a1_example_is_a_valid_patient_document() -> None:
    block = re.search(r"### A\.1 Shape\s*```yaml\n(.*?)```", CONTRACT.read_text(encoding="utf-8"), re.S)
    assert block, "contract §A.1 example not found"
    assert _errors(PATIENT, load_text(block.group(1)).data) == []


# --- Invalid patient documents are rejected at the right place -------------------------------------------------------

INVALID_PATIENTS = {
    "unknown top-level field": (_with(VALID_PATIENT, ("expected",), {}), (), "additionalProperties"),
    "unknown nested field": (
        _with(VALID_PATIENT, ("labs", "platelets", "flag"), "L"), ("labs", "platelets"), "additionalProperties"),
    "unknown enum value": (
        _with(VALID_PATIENT, ("primary_tumour", "site"), "liver"), ("primary_tumour", "site"), "enum"),
    "unknown chemotherapy class": (
        _with(VALID_PATIENT, ("treatment_history", "chemotherapy", 0, "class"), "vinca"),
        ("treatment_history", "chemotherapy", 0, "class"), "enum"),
    "wrong unit": (
        _with(VALID_PATIENT, ("labs", "platelets", "unit"), "g/dL"), ("labs", "platelets", "unit"), "enum"),
    "lab without a unit": (
        _without(VALID_PATIENT, ("labs", "haemoglobin", "unit")), ("labs", "haemoglobin"), "required"),
    "negative platelets": (
        _with(VALID_PATIENT, ("labs", "platelets", "value"), -1), ("labs", "platelets", "value"), "minimum"),
    "pain score 11": (_with(VALID_PATIENT, ("pain", "score_nrs"), 11), ("pain", "score_nrs"), "maximum"),
    "fractional pain score": (_with(VALID_PATIENT, ("pain", "score_nrs"), 6.5), ("pain", "score_nrs"), "type"),
    "mirels score 3": (
        _with(VALID_PATIENT, ("bone_disease", "mirels_score"), 3), ("bone_disease", "mirels_score"), "minimum"),
    "null sex": (_with(VALID_PATIENT, ("demographics", "sex"), None), ("demographics", "sex"), "type"),
    "missing patient id": (_without(VALID_PATIENT, ("patient_id",)), (), "required"),
    "wrong schema version": (_with(VALID_PATIENT, ("schema_version",), "2.0"), ("schema_version",), "const"),
    "date not zero-padded": (_with(VALID_PATIENT, ("labs", "date"), "2025-5-30"), ("labs", "date"), "pattern"),
    "impossible date": (_with(VALID_PATIENT, ("evaluation_date",), "2025-02-30"), ("evaluation_date",), "format"),
    "chemotherapy entry without last dose date": (
        _without(VALID_PATIENT, ("treatment_history", "chemotherapy", 0, "last_dose_date")),
        ("treatment_history", "chemotherapy", 0), "required"),
    "hormonal entry without ongoing": (
        _without(VALID_PATIENT, ("treatment_history", "hormonal", 0, "ongoing")),
        ("treatment_history", "hormonal", 0), "required"),
    "radionuclide entry without date": (
        _without(VALID_PATIENT, ("treatment_history", "radionuclides", 0, "date")),
        ("treatment_history", "radionuclides", 0), "required"),
    "weight of zero": (
        _with(VALID_PATIENT, ("demographics", "weight_kg"), 0), ("demographics", "weight_kg"), "exclusiveMinimum"),
    "ecog 5": (_with(VALID_PATIENT, ("performance", "ecog"), 5), ("performance", "ecog"), "maximum"),
}  # fmt: skip


@pytest.mark.parametrize(("document", "path", "keyword"), INVALID_PATIENTS.values(), ids=INVALID_PATIENTS.keys())
def test_an_invalid_patient_document_is_rejected_at_the_offending_path(
    document: dict[str, Any], path: tuple[Any, ...], keyword: str
) -> None:
    errors = _errors(PATIENT, document)
    assert {where for where, _ in errors} == {path}
    assert keyword in {failed for _, failed in errors}


# --- Decision output schema ------------------------------------------------------------------------------------------


def _decision_document() -> dict[str, Any]:
    decisions: list[dict[str, Any]] = [
        {"therapy": t, "status": "not_indicated", "earliest_date": None, "dose_mg": None, "reasons": [],
         "dose_reasons": [], "unverified": False}
        for t in THERAPY_IDS
    ]
    decisions[THERAPY_IDS.index("ra223")].update(
        status="recommended", reasons=["ELIG-RA-06", "ELIG-RA-12"], advisories=["ADV-RA-BHA"], unverified=False
    )
    decisions[THERAPY_IDS.index("sr89")].update(status="deferred", earliest_date="2025-07-21", reasons=["SEQ-01"])
    decisions[THERAPY_IDS.index("ebrt_multifraction")].update(status="eligible", reasons=["RT-01b"])
    decisions[THERAPY_IDS.index("zoledronic_acid")].update(status="recommended", dose_mg=3.5, reasons=["BHA-01"],
                                                           dose_reasons=["BHA-02"])
    return {
        "schema_version": "1.1",
        "patient_id": "V01",
        "evaluation_date": "2025-06-02",
        "decisions": decisions,
        "advisories": [
            {"id": "ADV-RA-BHA", "therapy": "ra223", "rule": "ELIG-RA-13", "text": "Assess fracture risk.",
             "severity": "info", "unverified": False},
            {"id": "ADV-MON-RA223", "therapy": None, "rule": "MON-RA-01", "text": "CBC.", "severity": "info",
             "unverified": True},
        ],
        "warnings": [],
        "missing_data": ["labs.platelets", "treatment_history.chemotherapy[].best_response"],
        "normalised": {"plt_10e9_L": 210, "anc_10e9_L": 3.9, "hb_g_dL": None, "crcl_mL_min": 78},
        "rulebase": {"version": "1.0.0", "hash": "sha256:0123abcd"},
        "disclaimer": "Decision support, not a prescription.",
    }


def test_a_full_decision_document_is_valid() -> None:
    assert _errors(DECISION, _decision_document()) == []


def test_a_1_0_decision_document_is_not_a_1_1_one() -> None:
    """Contract §D: dose_reasons, unverified and severity are always present in 1.1."""
    old = _decision_document()
    old["schema_version"] = "1.0"
    del old["decisions"][0]["dose_reasons"], old["advisories"][0]["severity"]
    paths = {path for path, _ in _errors(DECISION, old)}
    assert ("schema_version",) in paths and ("decisions", 0) in paths and ("advisories", 0) in paths


def test_every_advisory_has_the_severity_of_contract_section_d() -> None:
    severities = {adv_id: spec.get("severity") for adv_id, spec in THERAPIES["advisories"].items()}
    assert set(severities.values()) == {"urgent", "caution", "info"}
    assert [a for a, s in severities.items() if s == "urgent"] == ["ADV-SCC-URGENT"]
    caution = {"ADV-HEME-CAUTION", "ADV-MARROW-RISK", "ADV-RN-RENAL", "ADV-P32-MARROW", "ADV-IBN-SEVERE-RENAL",
               "ADV-DMAB-RENAL-CA", "ADV-DENTAL-INVASIVE", "ADV-LE-SHORT", "ADV-BREASTFEED", "ADV-RETREAT-NONRESPONDER",
               "ADV-POST-RN-CHEMO", "ADV-RA-COMBO-EU"}
    assert {a for a, s in severities.items() if s == "caution"} == caution


@needs_shared
def test_the_severity_table_matches_contract_section_d() -> None:
    section = CONTRACT.read_text(encoding="utf-8").split("## D.")[1]
    rows = dict(re.findall(r"^\| (urgent|caution|info) \| (.+) \|$", section, re.M))
    severities = {adv_id: spec.get("severity") for adv_id, spec in THERAPIES["advisories"].items()}
    for level in ("urgent", "caution"):
        listed = set(re.findall(r"ADV-[A-Z0-9-]*[A-Z0-9]", rows[level]))
        assert listed == {a for a, s in severities.items() if s == level}, level


def test_the_decision_schema_enumerates_exactly_the_therapy_and_advisory_ids() -> None:
    defs = DECISION_SCHEMA["$defs"]
    assert defs["therapy_id"]["enum"] == THERAPY_IDS
    assert set(defs["advisory_id"]["enum"]) == ADVISORY_IDS
    decisions = DECISION_SCHEMA["properties"]["decisions"]
    assert decisions["minItems"] == decisions["maxItems"] == len(THERAPY_IDS) == 21


def _swap_first_two(document: dict[str, Any]) -> dict[str, Any]:
    document["decisions"][0], document["decisions"][1] = document["decisions"][1], document["decisions"][0]
    return document


def _set_decision(field: str, value: Any, therapy: str = "sr89") -> Any:
    def change(document: dict[str, Any]) -> dict[str, Any]:
        document["decisions"][THERAPY_IDS.index(therapy)][field] = value
        return document

    return change


INVALID_DECISIONS = {
    "a missing therapy": (lambda d: {**d, "decisions": d["decisions"][:-1]}, ("decisions",), "minItems"),
    "therapies out of B.3 order": (_swap_first_two, ("decisions", 0, "therapy"), "const"),
    "an unknown status": (_set_decision("status", "maybe"), ("decisions", 0, "status"), "enum"),
    "a malformed rule id": (_set_decision("reasons", ["elig-gen-01"]), ("decisions", 0, "reasons", 0), "pattern"),
    "earliest_date on a status that is not deferred": (
        _set_decision("earliest_date", "2025-07-01", "sm153"), ("decisions", 1, "earliest_date"), "type"),
    "dose_mg on a therapy without a dose": (_set_decision("dose_mg", 4.0, "denosumab"),
                                            ("decisions", 20, "dose_mg"), "type"),
    "an unknown decision key": (_set_decision("why", "because"), ("decisions", 0), "additionalProperties"),
    "an unknown advisory id": (
        lambda d: {**d, "advisories": [{"id": "ADV-NOPE", "rule": "RT-01", "text": "x"}]},
        ("advisories", 0, "id"), "enum"),
    "duplicate missing_data paths": (
        lambda d: {**d, "missing_data": ["labs.date", "labs.date"]}, ("missing_data",), "uniqueItems"),
    "a non-numeric normalised value": (
        lambda d: {**d, "normalised": {"plt_10e9_L": "210"}}, ("normalised", "plt_10e9_L"), "type"),
}  # fmt: skip


@pytest.mark.parametrize(("change", "path", "keyword"), INVALID_DECISIONS.values(), ids=INVALID_DECISIONS.keys())
def test_an_invalid_decision_document_is_rejected_at_the_offending_path(
    change: Any, path: tuple[Any, ...], keyword: str
) -> None:
    assert (path, keyword) in _errors(DECISION, change(_decision_document()))


# --- Therapy and advisory catalogue ----------------------------------------------------------------------------------


def test_the_therapy_catalogue_lists_the_21_contract_therapies_in_contract_order() -> None:
    assert [t["id"] for t in THERAPIES["therapies"]] == THERAPY_IDS


def test_every_therapy_has_a_group_name_and_notes_and_radionuclides_say_how_they_emit() -> None:
    for therapy in THERAPIES["therapies"]:
        assert therapy["group"] in GROUPS, therapy["id"]
        assert therapy["name"], therapy["id"]
        assert isinstance(therapy["notes"], str), therapy["id"]
        if therapy["group"] == "radionuclide":
            assert therapy["emitter"] in {"beta", "alpha", "conversion_electron"}, therapy["id"]
            assert therapy["bone_seeking"] is True, therapy["id"]
        else:
            assert "emitter" not in therapy, therapy["id"]
        if therapy["group"] == "radionuclide_chemotherapy":
            assert therapy["partner_radionuclide"] in {"sr89", "sm153"}, therapy["id"]
        for key in therapy.get("sources", []):
            assert key in REFERENCES, f"{therapy['id']}: unknown reference key {key}"


def test_the_advisory_catalogue_has_every_contract_advisory_with_text_and_emitting_rules() -> None:
    advisories = THERAPIES["advisories"]
    assert set(advisories) == ADVISORY_IDS
    for advisory_id, entry in advisories.items():
        assert set(entry) <= {"text", "rules", "unverified", "severity"}, advisory_id
        assert entry["text"].strip(), advisory_id
        assert entry["rules"], advisory_id
        assert all(RULE_ID.match(rule) for rule in entry["rules"]), advisory_id
        assert ("[U" in entry["text"]) == bool(entry.get("unverified")), f"{advisory_id}: [U] mark and flag disagree"


@needs_shared
def test_the_catalogues_match_the_contract_vocabulary() -> None:
    text = CONTRACT.read_text(encoding="utf-8")
    b3 = text.split("### B.3")[1].split("### B.4")[0]
    b4 = text.split("### B.4")[1].split("### B.5")[0]
    assert re.findall(r"\| `([a-z0-9_]+)` \|", b3) == THERAPY_IDS
    assert set(re.findall(r"ADV-[A-Z0-9-]*[A-Z0-9]", b4)) == ADVISORY_IDS


@needs_shared
def test_every_rule_that_emits_an_advisory_exists_in_the_brief() -> None:
    brief = BRIEF.read_text(encoding="utf-8")
    for advisory_id, entry in THERAPIES["advisories"].items():
        for rule in entry["rules"]:
            assert re.search(rf"(?<![A-Z0-9-]){re.escape(rule)}(?![0-9a-z])", brief), f"{advisory_id}: {rule}"


# --- References ------------------------------------------------------------------------------------------------------


def test_every_reference_has_a_citation_a_url_a_reading_note_and_a_kind() -> None:
    for key, entry in REFERENCES.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", key), key
        assert entry["citation"].strip(), key
        # A published source has a web address; radiopal's own documents have none (docs/ carries them), and no
        # reference may point at a file beside the checkout that a user of radiopal does not have.
        if "number" in entry:
            assert re.match(r"https?://", entry["url"]), key
        else:
            assert "url" not in entry and "urls" not in entry, key
        if "urls" in entry:
            assert len(entry["urls"]) > 1 and entry["urls"][0] == entry["url"], key
        assert entry["read"], key
        assert entry["kind"] in KINDS, key
        assert "http" not in entry["citation"], key


def test_reference_numbers_1_to_62_each_appear_exactly_once() -> None:
    numbers = sorted(entry["number"] for entry in REFERENCES.values() if "number" in entry)
    assert numbers == list(range(1, 63))
    assert {"contract", "rulebase_derived"} <= set(REFERENCES)


@needs_shared
def test_each_reference_matches_its_numbered_entry_in_brief_section_14() -> None:
    section = BRIEF.read_text(encoding="utf-8").split("## 14.")[1]
    lines = {int(n): line for n, line in re.findall(r"^(\d+)\. (.+)$", section, re.M)}
    for key, entry in REFERENCES.items():
        if "number" not in entry:
            continue
        line = lines[entry["number"]]
        assert entry["citation"][:12] in line, f"{key}: citation does not match §14 entry {entry['number']}"
        if "doi.org" not in entry["url"]:
            for url in entry.get("urls", [entry["url"]]):
                assert url in line, f"{key}: {url} is not in §14 entry {entry['number']}"
