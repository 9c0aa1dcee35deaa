"""FHIR Quantity → the number and unit a contract field takes: a UCUM code, or an unambiguous unit text, converted
with pint (``kb/units.yaml``) when it is not one of the field's contract units. No hand-written factors.

Real systems write ``10*3/uL``, ``10*9/L``, ``[lb_av]``, ``mL/min/{1.73_m2}``, or only a unit text (``K/ul``,
``x10*9/L``, ``g/dl``) with no code at all. A text is read only when ``unit_text`` in ``kb/fhir/codes.yaml`` names
the one UCUM code it means, or when it is itself one of the field's UCUM codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..patient.units import convert_expression, quantities
from .codes import CodeTable, FieldSpec
from .common import number

__all__ = ["UCUM", "ReadQuantity", "read_quantity", "ucum_expression"]

UCUM = "http://unitsofmeasure.org"
_ANNOTATION = re.compile(r"\{[^{}]*\}")
_POWER = re.compile(r"10(?:\*|\^)(-?\d+)")
# UCUM's bracketed customary units, as pint names them.
_BRACKETS = {"[lb_av]": "pound", "[oz_av]": "ounce", "[in_i]": "inch", "[ft_i]": "foot"}


@dataclass(frozen=True)
class ReadQuantity:
    """A usable quantity: the number, the contract unit, and how it was read (for provenance)."""

    value: int | float
    unit: str | None
    how: str


def ucum_expression(code: str) -> str | None:
    """A UCUM code as a pint expression (``10*3/uL`` → ``1e3/uL``, ``[lb_av]`` → ``pound``), or ``None``."""
    text = _ANNOTATION.sub("", code).strip()
    if not text:
        return "1"
    text = _POWER.sub(lambda m: f"1e{m.group(1)}", text)
    for bracket, name in _BRACKETS.items():
        text = text.replace(bracket, name)
    if "[" in text or "'" in text:
        return None
    text = re.sub(r"(?<=[A-Za-z\d])\.(?=[A-Za-z])", "*", text)  # UCUM multiplies with a dot
    return "1" + text if text.startswith("/") else text


def _ucum_of(q: Any, spec: FieldSpec, table: CodeTable) -> tuple[str | None, str, str | None]:
    """(UCUM code, how it was found, problem) for a Quantity's unit."""
    if q.code and q.system in (UCUM, None):
        return str(q.code), "UCUM code" if q.system == UCUM else "code (no system)", None
    text = str(q.unit).strip() if q.unit else ""
    if text:
        if text in spec.units:
            return text, f"unit text {text!r} (no UCUM code)", None
        code = table.unit_text.get(text.lower())
        if code is not None:
            return code, f"unit text {text!r} (no UCUM code) read as UCUM {code!r}", None
    if q.code:
        return None, "", (f"the unit system is {q.system!r}, not UCUM ({UCUM}), and the unit text "
                          f"{text or '(none)'!r} is not one radiopal reads unambiguously")
    if text:
        return None, "", f"no UCUM code, and the unit text {text!r} is not one radiopal reads unambiguously"
    return None, "", "the quantity has no unit"


def read_quantity(q: Any, spec: FieldSpec, table: CodeTable) -> tuple[ReadQuantity | None, str | None]:
    """(the quantity as the field takes it, None) or (None, why it cannot be used)."""
    if q.value is None:
        return None, "the quantity has no value"
    code, how, problem = _ucum_of(q, spec, table)
    if code is None:
        return None, problem
    if code in spec.units:
        unit = table.unit(code) if spec.kind == "lab" else None
        return ReadQuantity(number(q.value), unit, how), None
    accepted = ", ".join(spec.units)
    expression = ucum_expression(code)
    if spec.quantity is None or expression is None:
        return None, f"unit {code!r} is not accepted for {spec.path} (UCUM codes read: {accepted})"
    try:
        value = convert_expression(float(q.value), expression, spec.quantity)
    except ValueError:
        return None, f"unit {code!r} cannot be converted for {spec.path} (UCUM codes read: {accepted})"
    canonical = quantities()[spec.quantity].canonical
    converted = f"{how}, converted from {number(q.value)} {code} to {canonical} with pint"
    return ReadQuantity(_plain(value), canonical if spec.kind == "lab" else None, converted), None


def _plain(value: float) -> int | float:
    return int(value) if value.is_integer() else value
