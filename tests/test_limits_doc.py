"""docs/limits.md states the limits the code enforces: every table row's value equals the constant it names."""

from __future__ import annotations

import datetime as dt
import importlib
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "limits.md"
ROW = re.compile(r"^\|(?P<what>[^|]+)\|(?P<value>[^|]+)\|\s*`(?P<constant>[\w.]+)`\s*\|\s*$")
#: Limits the page must document (the brief's list: reading, patients, rules, the service).
REQUIRED = {
    "radiopal.yamlio.MAX_BYTES", "radiopal.yamlio.MAX_DEPTH", "radiopal.yamlio.MAX_NODES",
    "radiopal.patient.load.MAX_NUMBER", "radiopal.patient.load.MIN_DATE", "radiopal.patient.load.MAX_DATE",
    "radiopal.rulebase.load.RULE_FILE_MAX_BYTES", "radiopal.rulebase.load.MAX_PLUS_DAYS",
    "radiopal.service.settings.DEFAULT_MAX_BODY", "radiopal.service.app.DRAIN_LIMIT",
    "radiopal.service.settings.Settings.fhir_timeout", "radiopal.service.prefetch.MAX_PAGES",
}


def rows() -> list[tuple[str, str, str]]:
    out = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line.strip())
        if match:
            out.append((match["what"].strip(), match["value"].strip(), match["constant"]))
    return out


def resolve(dotted: str) -> Any:
    """``package.module.NAME`` or ``package.module.Class.attribute`` → the value."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            value = getattr(value, name)
        return value
    raise AssertionError(f"cannot import {dotted}")


def first_value(text: str) -> float | dt.date:
    """The leading number (``8,388,608``, ``1e12``, ``3,650``) or ISO date of a table cell."""
    date = re.match(r"^(\d{4}-\d{2}-\d{2})\b", text)
    if date:
        return dt.date.fromisoformat(date[1])
    number = re.match(r"^([0-9][0-9,]*(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)", text)
    assert number, f"no number at the start of {text!r}"
    return float(number[1].replace(",", ""))


def test_the_page_documents_every_required_limit() -> None:
    documented = {constant for _what, _value, constant in rows()}
    assert documented >= REQUIRED, f"not in docs/limits.md: {sorted(REQUIRED - documented)}"


@pytest.mark.parametrize(("what", "value", "constant"), rows(), ids=[r[2] for r in rows()])
def test_documented_value_equals_the_constant(what: str, value: str, constant: str) -> None:
    actual = resolve(constant)
    stated = first_value(value)
    if isinstance(stated, dt.date):
        assert actual == stated, f"{what}: the page says {value}, {constant} is {actual}"
    else:
        assert float(actual) == stated, f"{what}: the page says {value}, {constant} is {actual!r}"


def test_serve_default_body_limit_is_the_documented_constant() -> None:
    from radiopal.cli import build_parser
    from radiopal.service.settings import DEFAULT_MAX_BODY

    args = build_parser().parse_args(["serve", "--no-auth"])
    assert args.max_body == DEFAULT_MAX_BODY


def test_the_limits_hold_at_their_edges() -> None:
    """One byte over MAX_BYTES, one level over MAX_DEPTH, one value over MAX_NODES: each an InputError."""
    from radiopal.errors import InputError
    from radiopal.yamlio import MAX_BYTES, MAX_DEPTH, MAX_NODES, load_text

    with pytest.raises(InputError, match="more than the limit"):
        load_text(b"a: 1\n" + b"#" * (MAX_BYTES - 4))
    load_text("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    load_text("[" * MAX_DEPTH + "]" * MAX_DEPTH, as_json=True)
    with pytest.raises(InputError, match="nesting is too deep"):
        load_text("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(InputError, match="nesting is too deep"):
        load_text("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), as_json=True)


    def aliased(copies: int) -> str:  # 1 + 1001 + 1 + 1001 × copies values once the aliases are expanded
        return "x: &x [" + ", ".join(["1"] * 1000) + "]\ny: [" + ", ".join(["*x"] * copies) + "]\n"

    below = (MAX_NODES - 1003) // 1001
    load_text(aliased(below))
    with pytest.raises(InputError, match="expands to more than"):
        load_text(aliased(below + 1))
