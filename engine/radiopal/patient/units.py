"""Unit normalisation with pint (brief DATA-01): every lab value becomes its quantity's canonical unit.

The allowed units, their pint expressions and the molar masses for mass ↔ amount conversions are data in
``kb/units.yaml``. Converted values are rounded to 6 decimals so that 100 000 /µL is exactly 100 ×10⁹/L and a value on
a threshold stays on it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from ..resources import kb_dir

ROUND_DECIMALS = 6

_registry_lock = threading.Lock()
_registry: Any = None


@dataclass(frozen=True)
class Quantity:
    """One kind of quantity: its canonical unit, allowed units (contract string → pint expression), molar mass."""

    name: str
    canonical: str
    units: dict[str, str]
    molar_mass: float | None


@cache
def quantities() -> dict[str, Quantity]:
    """The unit table of ``kb/units.yaml``."""
    raw = yaml.safe_load((kb_dir() / "units.yaml").read_text(encoding="utf-8"))
    return {
        name: Quantity(name, spec["canonical"], dict(spec["units"]), spec.get("molar_mass_g_per_mol"))
        for name, spec in raw["quantities"].items()
    }


def quantity_for_unit(unit: str) -> list[str]:
    """Names of the quantities that accept ``unit`` (for error messages and type checks)."""
    return [q.name for q in quantities().values() if unit in q.units]


def _ureg() -> Any:
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                import pint

                _registry = pint.UnitRegistry()
    return _registry


def convert(value: float, unit: str, quantity: str, to: str | None = None) -> float:
    """Convert ``value`` in contract unit ``unit`` to ``to`` (default: the quantity's canonical unit).

    Raises ``KeyError`` when ``unit`` or ``to`` is not allowed for ``quantity``.
    """
    q = quantities()[quantity]
    target = to or q.canonical
    if unit == target:
        return float(value)
    source_expr = q.units[unit]
    target_expr = q.units[target]
    return round(_factor(quantity, source_expr, target_expr) * float(value), ROUND_DECIMALS)


def convert_expression(value: float, source_expr: str, quantity: str) -> float:
    """Convert ``value`` in any unit pint understands (``"1e3 / microliter"``, ``"pound"``) to the canonical unit of
    ``quantity`` (contract unit string, e.g. ``10^9/L``), with the quantity's molar mass where mass meets amount.

    Raises ``ValueError`` when pint cannot parse the expression or the dimensions do not match.
    """
    q = quantities()[quantity]
    try:
        factor = _factor(quantity, source_expr, q.units[q.canonical])
    except Exception as exc:  # pint raises its own error classes (UndefinedUnitError, DimensionalityError ...)
        raise ValueError(f"cannot convert {source_expr!r} to {q.canonical}: {exc}") from exc
    return round(factor * float(value), ROUND_DECIMALS)


@cache
def _factor(quantity: str, source_expr: str, target_expr: str) -> float:
    ureg = _ureg()
    q = quantities()[quantity]
    # Expressions such as "1e9 / liter" carry a scale, so they are parsed as quantities, not as bare units.
    source = ureg.parse_expression(source_expr)
    target = ureg.parse_expression(target_expr)
    if q.molar_mass is not None and source.dimensionality != target.dimensionality:
        with ureg.context("chemistry", mw=ureg.Quantity(q.molar_mass, "g/mol")):
            return float(source.to(target.units).magnitude / target.magnitude)
    return float(source.to(target.units).magnitude / target.magnitude)
