"""Degrading a synthetic patient: thinning (required fields removed, still schema-valid) and corruption (schema-invalid)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

from ._common import Doc, chance, delete_path, get_path, has_path, pick


def thin(rng: random.Random, document: Doc) -> tuple[str, ...]:
    """Remove one to three clinically required fields (contract §A.4), or set them to null (which counts as absent).

    The result stays schema-valid: the schema requires only the identity fields, ``sex`` and ``site``.
    """
    candidates = [
        "labs", "labs.platelets", "labs.wbc", "labs.anc", "labs.haemoglobin", "labs.creatinine_clearance",
        "labs.calcium", "bone_disease.bone_scan.uptake_at_painful_sites", "bone_disease.pattern",
        "bone_disease.lesion_count", "bone_disease.visceral_metastases", "bone_disease.spinal_cord_compression",
        "bone_disease.pathological_fracture", "bone_disease.impending_fracture",
        "bone_disease.total_metastases_count", "pain.score_nrs", "pain.distribution",
        "performance.life_expectancy_weeks", "performance.ecog", "demographics.pregnant",
        "demographics.breastfeeding", "primary_tumour.castration_resistant", "primary_tumour.primary_controlled",
        "dental.unhealed_oral_lesion", "treatment_history.hormonal",
    ]
    if get_path(document, "labs.calcium.corrected") is False:
        candidates.append("labs.albumin")
    available = [p for p in candidates if has_path(document, p) and get_path(document, p) is not None]
    dropped: list[str] = []
    for path in rng.sample(available, min(len(available), pick(rng, [(1, 50), (2, 30), (3, 20)]))):
        if path.startswith("labs.") and "labs" in dropped:
            continue
        if path == "labs" and any(p.startswith("labs.") for p in dropped):
            continue
        if chance(rng, 0.3):
            parent, _, leaf = path.rpartition(".")
            (get_path(document, parent) if parent else document)[leaf] = None
        else:
            delete_path(document, path)
        dropped.append(path)
    return tuple(sorted(dropped))


def _bad_enum(rng: random.Random, doc: Doc) -> str:
    history = doc["treatment_history"]
    choice = rng.randrange(8)
    if choice == 0:
        doc["primary_tumour"]["site"] = rng.choice(["pancreas", "Prostate", "colorectal"])
        return "primary_tumour.site"
    if choice == 1:
        doc["bone_disease"]["pattern"] = rng.choice(["sclerotic", "blastic"])
        return "bone_disease.pattern"
    if choice == 2:
        doc["pain"]["distribution"] = "diffuse"
        return "pain.distribution"
    if choice == 3:
        doc["bone_disease"]["spinal_cord_compression"] = rng.choice(["suspected", "yes"])
        return "bone_disease.spinal_cord_compression"
    if choice == 4:
        doc.setdefault("context", {})["regulatory_region"] = rng.choice(["UK", "eu"])
        return "context.regulatory_region"
    if choice == 5:
        history["radionuclides"].append({"agent": "lu177", "date": doc["evaluation_date"]})
        return f"treatment_history.radionuclides[{len(history['radionuclides']) - 1}].agent"
    if choice == 6:
        history["hormonal"].append({"agent": "bicalutamide", "start_date": doc["evaluation_date"], "ongoing": True})
        return f"treatment_history.hormonal[{len(history['hormonal']) - 1}].agent"
    history["ebrt"].append({"date": doc["evaluation_date"], "site": "pelvis", "dose_Gy": 8, "fractions": 1,
                            "technique": "imrt"})
    return f"treatment_history.ebrt[{len(history['ebrt']) - 1}].technique"


def _bad_unit(rng: random.Random, doc: Doc) -> str:
    lab, unit = rng.choice([("platelets", "x10^9/L"), ("platelets", "G/L"), ("wbc", "cells/L"), ("anc", "10^9/l"),
                            ("haemoglobin", "mg/dL"), ("haemoglobin", "g/dl"), ("calcium", "mEq/L"),
                            ("creatinine_clearance", "mL/s")])
    doc["labs"][lab]["unit"] = unit
    return f"labs.{lab}.unit"


def _bad_negative(rng: random.Random, doc: Doc) -> str:
    choice = rng.randrange(3)
    if choice == 0 or (choice == 2 and "prior_mcrpc_systemic_lines" not in doc["treatment_history"]):
        doc["bone_disease"]["lesion_count"] = -rng.randint(1, 12)
        return "bone_disease.lesion_count"
    if choice == 1:
        doc["bone_disease"]["total_metastases_count"] = -rng.randint(1, 12)
        return "bone_disease.total_metastases_count"
    doc["treatment_history"]["prior_mcrpc_systemic_lines"] = -1
    return "treatment_history.prior_mcrpc_systemic_lines"


def _bad_null_sex(rng: random.Random, doc: Doc) -> str:
    # An absent sex is insufficient_data since contract §D (not invalid); a null where the enum is required still is.
    doc["demographics"]["sex"] = None
    return "demographics.sex"


def _bad_unknown_field(rng: random.Random, doc: Doc) -> str:
    section, name, value = rng.choice([("demographics", "height_cm", 172), ("bone_disease", "lesion_cout", 4),
                                       ("labs", "vitamin_d", {"value": 40, "unit": "nmol/L"}),
                                       ("pain", "score_vas", 60), ("", "comment", "synthetic")])
    if not section:
        doc[name] = value
        return name
    doc[section][name] = value
    return f"{section}.{name}"


def _bad_range(rng: random.Random, doc: Doc) -> str:
    choice = rng.randrange(3)
    if choice == 0:
        doc["pain"]["score_nrs"] = rng.choice([11, -1])
        return "pain.score_nrs"
    if choice == 1:
        doc["performance"]["ecog"] = 5
        return "performance.ecog"
    doc["bone_disease"]["impending_fracture"] = True
    doc["bone_disease"]["mirels_score"] = rng.choice([3, 13])
    return "bone_disease.mirels_score"


def _bad_type(rng: random.Random, doc: Doc) -> str:
    choice = rng.randrange(3)
    if choice == 0:
        doc["bone_disease"]["lesion_count"] = "many"
        return "bone_disease.lesion_count"
    if choice == 1:
        doc["labs"]["platelets"]["value"] = str(doc["labs"]["platelets"]["value"])
        return "labs.platelets.value"
    doc["pain"]["score_nrs"] = doc["pain"]["score_nrs"] + 0.5
    return "pain.score_nrs"


def _bad_no_id(rng: random.Random, doc: Doc) -> str:
    key = rng.choice(["patient_id", "evaluation_date"])
    del doc[key]
    return key


_CORRUPTIONS: Final[tuple[Callable[[random.Random, Doc], str], ...]] = (
    _bad_enum, _bad_unit, _bad_negative, _bad_null_sex, _bad_unknown_field, _bad_range, _bad_type, _bad_no_id,
)


def corrupt(rng: random.Random, document: Doc) -> tuple[str, ...]:
    """Make the document schema-invalid in one or two ways; return the paths touched."""
    count = pick(rng, [(1, 80), (2, 20)])
    # In tuple order, so the corruptions that add list entries still find evaluation_date.
    chosen = sorted(rng.sample(range(len(_CORRUPTIONS)), count))
    paths = {_CORRUPTIONS[position](rng, document) for position in chosen}
    return tuple(sorted(paths))
