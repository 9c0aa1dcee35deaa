"""Shared fixtures: the shared folder (when CI has it beside the checkout), tiny rule bases, a base patient."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
VIGNETTES = SHARED / "vignettes"

needs_shared = pytest.mark.skipif(
    not VIGNETTES.is_dir(),
    reason="../shared (the clinical vignettes and tools) is not beside this checkout; CI has it, a user's clone does not",
)

BASE_PATIENT: dict[str, Any] = {
    "schema_version": "1.0",
    "patient_id": "T-BASE",
    "evaluation_date": "2025-06-02",
    "context": {"regulatory_region": "other"},
    "demographics": {"age_years": 70, "sex": "male", "weight_kg": 80},
    "primary_tumour": {"site": "prostate", "castration_resistant": True, "primary_controlled": False},
    "bone_disease": {
        "pattern": "osteoblastic",
        "lesion_count": 8,
        "total_metastases_count": 8,
        "bone_scan": {"date": "2025-05-20", "uptake_at_painful_sites": True, "superscan": False},
        "visceral_metastases": False,
        "spinal_cord_compression": "none",
        "pathological_fracture": False,
        "impending_fracture": False,
    },
    "pain": {"score_nrs": 6, "distribution": "multifocal", "painful_sites": ["pelvis", "ribs"], "analgesic_step": 3},
    "performance": {"ecog": 1, "life_expectancy_weeks": 52},
    "labs": {
        "date": "2025-05-30",
        "platelets": {"value": 210, "unit": "10^9/L"},
        "wbc": {"value": 6.1, "unit": "10^9/L"},
        "anc": {"value": 3.9, "unit": "10^9/L"},
        "haemoglobin": {"value": 12.4, "unit": "g/dL"},
        "creatinine_clearance": {"value": 78, "unit": "mL/min", "method": "cockcroft_gault"},
        "calcium": {"value": 2.35, "unit": "mmol/L", "corrected": True},
    },
    "dental": {"exam_done": True, "unhealed_oral_lesion": False},
    "treatment_history": {
        "chemotherapy": [],
        "radionuclides": [],
        "ebrt": [],
        "bone_health_agents": [],
        "hormonal": [{"agent": "adt_lhrh", "start_date": "2021-02-01", "ongoing": True}],
        "prior_mcrpc_systemic_lines": 2,
    },
}


@pytest.fixture
def patient() -> dict[str, Any]:
    """A fresh copy of a complete, unremarkable patient document."""
    return copy.deepcopy(BASE_PATIENT)


def vignette_document(path: Path) -> dict[str, Any]:
    """A vignette's patient document with its `expected` key stripped (as the contract's harness does)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.pop("expected", None)
    return to_plain(data)


def write_rulebase(folder: Path, *files: str) -> Path:
    """Write rule files (YAML text, dedented) into ``folder`` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(files):
        (folder / f"r{i}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def to_plain(data: Any) -> Any:
    """Dates from yaml.safe_load → ISO strings, as radiopal's own reader gives them."""
    import datetime as dt

    if isinstance(data, dict):
        return {k: to_plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [to_plain(v) for v in data]
    if isinstance(data, (dt.date, dt.datetime)):
        return data.isoformat()
    return data
