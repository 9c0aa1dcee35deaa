"""JSON Schema validation that reports every error with its field path and what was expected.

python-jsonschema is the authority: it decides every document it sees and words every error. A document is first
offered to jsonschema-rs (a compiled validator, ~150× faster) when it is installed; only a document it finds valid
skips the python validator — so the verdict can differ from python-jsonschema's only if jsonschema-rs accepts what
python-jsonschema rejects, which the test suite checks does not happen on the bad-input corpus and on fuzzed
documents. Anything jsonschema-rs rejects or cannot read (YAML dates, odd keys) goes to python-jsonschema.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, relevance

from .errors import Problem
from .resources import schema_path
from .suggest import hint_for
from .yamlio import SourceMap, dotted


@cache
def validator(name: str) -> Draft202012Validator:
    """A validator for ``kb/schemas/<name>.schema.json`` (checked once, cached)."""
    return validator_for_file(schema_path(name))


@cache
def fast_check(name: str) -> Callable[[Any], bool] | None:
    """jsonschema-rs's ``is_valid`` for ``kb/schemas/<name>.schema.json`` (formats asserted), or None without it."""
    try:
        import jsonschema_rs
    except ImportError:  # optional speed-up: python-jsonschema alone gives the same verdicts
        return None
    # The schema python-jsonschema already read and checked: one file read, one source of truth for both.
    return jsonschema_rs.validator_for(validator(name).schema, validate_formats=True).is_valid


def validator_for_file(path: Path) -> Draft202012Validator:
    schema = json.loads(Path(path).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def problems(
    instance: Any, schema_name: str, *, source: SourceMap | None = None, limit: int = 50
) -> list[Problem]:
    """Every schema violation of ``instance`` as a :class:`Problem`, most useful first (jsonschema relevance)."""
    fast = fast_check(schema_name)
    if fast is not None:
        try:
            if fast(instance):
                return []
        except Exception:  # a value jsonschema-rs cannot convert: python-jsonschema decides
            pass
    errors = sorted((_specific(e) for e in validator(schema_name).iter_errors(instance)), key=relevance)
    out = []
    for error in errors[:limit]:
        out.append(to_problem(error, source))
    return out


def _specific(error: ValidationError) -> ValidationError:
    """For a ``oneOf``/``anyOf`` failure, the error of the branch the author evidently meant.

    That is a branch whose required keys the instance has (an unknown key there is then the author's mistake and is
    reported as such, with a did-you-mean); among those, the one with the fewest errors. Without such a branch the
    general error stays.
    """
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return error
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.schema_path[0] if sub.schema_path else None, []).append(sub)
    meant = [
        errs for errs in branches.values()
        if not any(e.validator == "required" and not e.relative_path for e in errs)
    ]
    if not meant:
        return error
    best = min(meant, key=lambda errs: (len(errs), sum(e.validator == "additionalProperties" for e in errs)))
    return _specific(sorted(best, key=relevance)[0])


def to_problem(error: ValidationError, source: SourceMap | None = None) -> Problem:
    """Turn one jsonschema error into a Problem with a dotted path and a plain-language message."""
    path = tuple(error.absolute_path)
    message = _message(error)
    hint = ""
    if error.validator == "additionalProperties":
        allowed = list((error.schema.get("properties") or {}).keys())
        extra = _extra_keys(error)
        if extra:
            path = (*path, extra[0])
            hint = hint_for(extra[0], allowed)
    elif error.validator == "enum" and isinstance(error.instance, str):
        hint = hint_for(error.instance, [str(v) for v in error.validator_value])
    line = column = 0
    file = ""
    if source is not None:
        line, column = source.where(path)
        file = source.file
    return Problem(message, path=dotted(path) or "(document)", file=file, line=line, column=column, hint=hint)


def _extra_keys(error: ValidationError) -> list[str]:
    allowed = set((error.schema.get("properties") or {}).keys())
    if isinstance(error.instance, dict):
        return sorted(str(k) for k in error.instance if k not in allowed)
    return []


def _message(error: ValidationError) -> str:
    v = error.validator
    inst = error.instance
    if v == "additionalProperties":
        extra = _extra_keys(error)
        return f"unknown field {extra[0]!r}" if extra else error.message
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"missing required field {missing!r}"
    if v == "enum":
        allowed = ", ".join(repr(x) for x in error.validator_value)
        return f"{inst!r} is not allowed; expected one of {allowed}"
    if v == "const":
        return f"{inst!r} is not allowed; expected {error.validator_value!r}"
    if v == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"expected {expected}, got {type(inst).__name__} {_short(inst)}"
    if v in {"minimum", "exclusiveMinimum"}:
        word = "at least" if v == "minimum" else "more than"
        return f"{_short(inst)} is impossible here; expected {word} {error.validator_value}"
    if v in {"maximum", "exclusiveMaximum"}:
        word = "at most" if v == "maximum" else "less than"
        return f"{_short(inst)} is impossible here; expected {word} {error.validator_value}"
    if v == "format":
        return f"{_short(inst)} is not a valid {error.validator_value} (expected YYYY-MM-DD)"
    if v == "pattern":
        return f"{_short(inst)} does not match the expected form {error.validator_value!r}"
    if v in {"minItems", "maxItems", "minLength", "maxLength", "minProperties"}:
        return f"{error.message}"
    return error.message


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
