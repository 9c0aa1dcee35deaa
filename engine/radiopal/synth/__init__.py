"""A seeded generator of synthetic patient documents (contract §A) for load tests, batch jobs and coverage runs.

Every patient is plausible on its own and the cohort as a whole reaches the situations the rules care about: pregnancy
and breastfeeding, cord compression, fractures with Mirels scores, haematology at and around the hard floors, every
zoledronic-acid CrCl band, hypocalcaemia (corrected or via albumin), stale labs, chemotherapy washouts (28 and 42 days),
Ra-223 courses of 1–6 injections, prior Sr-89/Sm-153, hemibody RT, ongoing abiraterone, oligometastatic disease, and
every allowed unit variant.

Three kinds of patient come out (:data:`KINDS`):

``valid``
    A complete, contract-valid document.
``missing``
    The same patient with one to three clinically required fields (contract §A.4) removed; still schema-valid. The
    engine should answer ``insufficient_data`` for the therapies that need them.
``bad``
    The same patient made schema-invalid on purpose (unknown enum value, wrong unit string, negative count, missing
    ``sex``, unknown field, ...), so batch jobs can exercise their error reporting.

Generation is deterministic: patient *i* of seed *s* depends only on ``(s, i)`` (and the kind fractions), never on
how many patients are generated or in which order, so a run can be split or resumed. The documents are synthetic;
they describe nobody.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

from .degrade import corrupt, thin
from .story import Builder

__all__ = ["KINDS", "Kind", "SyntheticPatient", "generate", "patient_at"]

Kind = Literal["valid", "missing", "bad"]
KINDS: Final[tuple[Kind, ...]] = ("valid", "missing", "bad")


@dataclass(frozen=True)
class SyntheticPatient:
    """One generated patient.

    ``document`` is the patient document (contract §A) as plain JSON-compatible data, dates as ISO strings.
    ``kind`` is ``valid``, ``missing`` or ``bad`` (see the module docstring). ``paths`` names the fields that were
    removed (``missing``) or corrupted (``bad``), as dotted paths (``labs.platelets``); it is empty for ``valid``.
    """

    document: dict[str, Any]
    kind: Kind
    paths: tuple[str, ...] = ()


def generate(
    n: int,
    *,
    seed: int = 0,
    bad_fraction: float = 0.02,
    missing_fraction: float = 0.1,
    start: int = 0,
) -> Iterator[SyntheticPatient]:
    """An iterator over ``n`` synthetic patients, indexes ``start`` … ``start + n - 1`` of the cohort ``seed``.

    Arguments:
        n: how many patients (0 yields nothing).
        seed: the cohort seed; the same seed always gives the same patients.
        bad_fraction: expected share of schema-invalid (``bad``) patients.
        missing_fraction: expected share of patients with required fields removed (``missing``).
        start: index of the first patient, to split a cohort across workers or resume a run.

    Each patient's kind is drawn independently, so the shares are expectations, not exact counts.
    Raises :class:`ValueError` (at once, not on first iteration) for a negative ``n`` or ``start``, or for fractions
    outside [0, 1] or summing above 1.
    """
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0 (got n={n}, start={start})")
    _check_fractions(bad_fraction, missing_fraction)
    return (patient_at(index, seed=seed, bad_fraction=bad_fraction, missing_fraction=missing_fraction)
            for index in range(start, start + n))


def patient_at(
    index: int, *, seed: int = 0, bad_fraction: float = 0.02, missing_fraction: float = 0.1
) -> SyntheticPatient:
    """The patient at ``index`` of the cohort ``seed`` (what :func:`generate` yields at that position).

    The clinical story depends only on ``(seed, index)``; the fractions decide only whether it is then thinned
    (``missing``) or corrupted (``bad``). Raises :class:`ValueError` for a negative index or impossible fractions.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0 (got {index})")
    _check_fractions(bad_fraction, missing_fraction)
    rng = random.Random(f"{seed}:{index}")
    draw = rng.random()
    document = Builder(rng, patient_id=f"SYN-{seed}-{index:07d}").build()
    if draw < bad_fraction:
        paths = corrupt(random.Random(f"{seed}:{index}:bad"), document)
        return SyntheticPatient(document, "bad", paths)
    if draw < bad_fraction + missing_fraction:
        paths = thin(random.Random(f"{seed}:{index}:missing"), document)
        return SyntheticPatient(document, "missing", paths)
    return SyntheticPatient(document, "valid")


def _check_fractions(bad_fraction: float, missing_fraction: float) -> None:
    for name, value in (("bad_fraction", bad_fraction), ("missing_fraction", missing_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1 (got {value})")
    if bad_fraction + missing_fraction > 1.0:
        raise ValueError(f"bad_fraction + missing_fraction must not exceed 1 (got {bad_fraction + missing_fraction})")
