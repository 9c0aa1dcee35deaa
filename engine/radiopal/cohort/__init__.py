"""Cohort audit at scale: run radiopal over a whole population, on Dask or serially.

``radiopal cohort INPUT -o OUT_DIR`` (or :func:`run_cohort`) evaluates every patient of a folder of documents, a JSON
Lines file, or FHIR bulk-data NDJSON, and writes one row per patient and therapy (Parquet and CSV), a per-patient
table, the input errors, and a self-contained summary page whose headline is the under-use finding: patients for
whom a radionuclide (or a bone-health agent) is recommended or eligible but none is in their treatment history.

Modules: :mod:`.record` (the record and reader base), :mod:`.readers` (streaming inputs), :mod:`.bulk` (FHIR
Bulk Data exports), :mod:`.evaluate` (worker side, rule base compiled once per process),
:mod:`.run` (driver: serial loop or Dask), :mod:`.outputs` (atomic parts, done-ledger, consolidation),
:mod:`.summary` (the HTML page). Needs the ``cohort`` extra (dask[distributed], pandas, pyarrow, matplotlib, tqdm);
importing this package imports none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["CohortError", "CohortOptions", "CohortReport", "run_cohort"]

if TYPE_CHECKING:
    from .run import CohortError, CohortOptions, CohortReport, run_cohort


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module 'radiopal.cohort' has no attribute {name!r}")
