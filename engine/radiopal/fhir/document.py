"""Building the contract §A document: nested assignment by field path, and the contract's key order."""

from __future__ import annotations

from typing import Any

__all__ = ["CONTRACT_KEY_ORDER", "contract_field_paths", "ordered", "put"]

# Contract 1.0 §A.1, block by block, in the order the contract lists the keys.
CONTRACT_KEY_ORDER: dict[str, tuple[str, ...]] = {
    "": ("schema_version", "patient_id", "evaluation_date", "context", "demographics", "primary_tumour",
         "bone_disease", "pain", "performance", "labs", "dental", "treatment_history"),
    "context": ("regulatory_region", "trial_available", "availability"),
    "context.availability": ("re186", "re188", "p32"),
    "demographics": ("age_years", "sex", "weight_kg", "pregnant", "breastfeeding"),
    "primary_tumour": ("site", "castration_resistant", "primary_controlled", "radiosensitive_histology"),
    "bone_disease": ("pattern", "lesion_count", "total_metastases_count", "bone_scan", "visceral_metastases",
                     "lymph_node_max_short_axis_cm", "spinal_cord_compression", "scc_single_level",
                     "paraplegia_over_48h", "neurological_deficit", "pathological_fracture", "impending_fracture",
                     "mirels_score"),
    "bone_disease.bone_scan": ("date", "uptake_at_painful_sites", "superscan"),
    "pain": ("score_nrs", "distribution", "painful_sites", "analgesic_step"),
    "performance": ("ecog", "life_expectancy_weeks"),
    "labs": ("date", "platelets", "wbc", "anc", "haemoglobin", "creatinine_clearance", "serum_creatinine",
             "serum_creatinine_baseline", "calcium", "albumin", "calcium_lln", "alp", "psa", "platelet_trend",
             "dic_suspected"),
    "dental": ("exam_done", "exam_date", "unhealed_oral_lesion", "planned_invasive_procedure"),
    "treatment_history": ("chemotherapy", "radionuclides", "ebrt", "bone_health_agents", "hormonal",
                          "prior_mcrpc_systemic_lines", "ineligible_for_other_mcrpc_therapy", "hypersensitivity"),
}


def contract_field_paths() -> list[str]:
    """Every leaf field path of contract §A.1 (``labs.platelets``, ``bone_disease.bone_scan.date`` ...)."""
    out = []
    for block, keys in CONTRACT_KEY_ORDER.items():
        for key in keys:
            path = f"{block}.{key}" if block else key
            if path not in CONTRACT_KEY_ORDER:
                out.append(path)
    return out


def put(document: dict[str, Any], path: str, value: Any) -> None:
    """Set ``document[a][b][c] = value`` for ``path`` ``a.b.c``, creating the blocks on the way."""
    *blocks, key = path.split(".")
    node = document
    for block in blocks:
        node = node.setdefault(block, {})
    node[key] = value


def ordered(document: dict[str, Any], block: str = "") -> dict[str, Any]:
    """A copy of ``document`` with its keys in contract order (unknown keys last, as found)."""
    order = CONTRACT_KEY_ORDER.get(block, ())
    keys = [k for k in order if k in document] + [k for k in document if k not in order]
    out: dict[str, Any] = {}
    for key in keys:
        value = document[key]
        path = f"{block}.{key}" if block else key
        out[key] = ordered(value, path) if isinstance(value, dict) and path in CONTRACT_KEY_ORDER else value
    return out
