"""Read a FHIR R4 Bundle (dict, JSON text or file) and validate it with ``fhir.resources.R4B``.

R4B stands in for R4 (fhir.resources ships no R4 package since 7.0; the R5 default rejects R4 data). Every failure
becomes an :class:`~radiopal.errors.InputError` whose problems carry element paths such as
``entry[1].resource.valueQuantity.value``; no traceback reaches the user.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, Problem, RadiopalError
from ..yamlio import check_depth, load_text
from .common import Entry

__all__ = ["ParsedBundle", "element_path", "read_bundle", "require_fhir"]


@dataclass(frozen=True)
class ParsedBundle:
    """A validated R4B Bundle and its entries that carry a resource."""

    bundle: Any
    entries: tuple[Entry, ...]
    file: str


def element_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """A pydantic error location as a FHIR element path: ``('entry', 1, 'resource', 'id')`` → ``entry[1].resource.id``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _fail(file: str, message: str, path: str = "") -> InputError:
    return InputError(f"{file}: {message}", [Problem(message, path=path, file=file)])


def _load(bundle: dict[str, Any] | str | Path) -> tuple[Any, str]:
    if isinstance(bundle, dict):
        return bundle, "<bundle>"
    if isinstance(bundle, str) and bundle.lstrip("\ufeff \t\r\n").startswith("{"):
        return load_text(bundle, file="<bundle>", kind="FHIR Bundle", as_json=True).data, "<bundle>"
    if isinstance(bundle, (str, Path)):
        path = Path(bundle)
        name = str(bundle)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise _fail(name, f"cannot read: {exc.strerror or exc}") from exc
        except ValueError as exc:  # e.g. a NUL byte in the path
            raise _fail(name.replace("\x00", "\\x00"), "not a usable file name") from exc
        as_json = path.suffix.lower() not in {".yaml", ".yml"}
        return load_text(raw, file=name, kind="FHIR Bundle", as_json=as_json).data, name
    raise _fail("<bundle>", f"expected a FHIR Bundle as a dict, JSON text or a file path, got {type(bundle).__name__}")


def require_fhir() -> Any:
    """The ``fhir.resources.R4B`` package, or a clear :class:`RadiopalError` when the ``fhir`` extra is missing."""
    try:
        from fhir.resources import R4B
    except ImportError as exc:
        raise RadiopalError(
            "FHIR input needs the fhir.resources package: pip install 'radiopal[fhir]'",
            [Problem("fhir.resources is not installed", hint="pip install 'radiopal[fhir]'")],
        ) from exc
    return R4B


_DATE_TEXT = re.compile(r"^(\d{4})(-\d{2}(-\d{2}(T.*)?)?)?$")


def _check_date_range(data: Any, file: str) -> list[Problem]:
    """Dates and date-times outside the range a patient document accepts, named by element path.

    Year 1 or 9999 with a time-zone offset is valid FHIR but cannot be turned into an instant; no clinical date of
    this contract lies outside 1900–2199 either.
    """
    from ..patient.load import MAX_DATE, MIN_DATE

    problems: list[Problem] = []
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
        elif isinstance(node, str) and path.rsplit(".", 1)[-1] in _DATE_ELEMENTS:
            match = _DATE_TEXT.match(node)
            if match and not MIN_DATE.year <= int(match.group(1)) <= MAX_DATE.year:
                problems.append(Problem(f"{node} is out of range; expected a date from {MIN_DATE} to {MAX_DATE}",
                                        path=path, file=file))
    return sorted(problems, key=lambda p: p.path)


_DATE_ELEMENTS = frozenset({
    "timestamp", "birthDate", "effectiveDateTime", "issued", "start", "end", "authoredOn", "occurrenceDateTime",
    "performedDateTime", "recordedDate", "onsetDateTime", "abatementDateTime", "dateAsserted", "effectiveInstant",
    "valueDateTime", "date", "lastUpdated",
})


def _check_resource_types(data: dict[str, Any], file: str) -> list[Problem]:
    """Unknown ``resourceType`` values make fhir.resources raise a bare KeyError; report them as paths instead."""
    get_fhir_model_class = require_fhir().get_fhir_model_class
    problems: list[Problem] = []

    def check(resource: Any, path: str) -> None:
        if not isinstance(resource, dict):
            problems.append(Problem("expected a resource (a JSON object)", path=path, file=file))
            return
        name = resource.get("resourceType")
        if not isinstance(name, str) or not name:
            problems.append(Problem("missing resourceType", path=f"{path}.resourceType", file=file))
            return
        try:
            get_fhir_model_class(name)
        except (ValueError, KeyError, AttributeError):
            problems.append(Problem(f"{name!r} is not an R4 resource type", path=f"{path}.resourceType", file=file))
            return
        contained = resource.get("contained")
        if isinstance(contained, list):
            for j, inner in enumerate(contained):
                check(inner, f"{path}.contained[{j}]")

    entries = data.get("entry")
    if entries is None:
        return problems
    if not isinstance(entries, list):
        return [Problem("expected a list of entries", path="entry", file=file)]
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(Problem("expected an entry (a JSON object)", path=f"entry[{i}]", file=file))
        elif "resource" in entry:
            check(entry["resource"], f"entry[{i}].resource")
    return problems


def read_bundle(bundle: dict[str, Any] | str | Path) -> ParsedBundle:
    """Load and validate an R4 Bundle; raise :class:`InputError` with element paths when it is not one."""
    data, file = _load(bundle)
    if not isinstance(data, dict):
        raise _fail(file, f"expected a FHIR Bundle (a JSON object), got {type(data).__name__}")
    kind = data.get("resourceType")
    if kind != "Bundle":
        got = f"resourceType {kind!r}" if kind is not None else "no resourceType"
        raise _fail(file, f"expected a FHIR Bundle, got {got}", "resourceType")
    problems = _check_resource_types(data, file)
    if problems:
        raise InputError(f"{file}: not a valid FHIR R4 Bundle: {len(problems)} problem(s)", problems)
    # A bundle handed over as data (the API, the service) has not been through radiopal.yamlio's limits; the model
    # validation recurses per level, so bound the nesting first.
    check_depth(data, file)
    problems = _check_date_range(data, file)
    if problems:
        raise InputError(f"{file}: not a usable FHIR R4 Bundle: {len(problems)} problem(s)", problems)

    require_fhir()
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    try:
        parsed = Bundle.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = str(err.get("msg", "invalid")).replace("\n", " ")
            value = err.get("input")
            if isinstance(value, (str, int, float, bool)) and not isinstance(value, dict):
                message += f" (got {json.dumps(value)})"
            problems.append(Problem(message, path=element_path(err.get("loc", ())), file=file))
        raise InputError(f"{file}: not a valid FHIR R4 Bundle: {len(problems)} problem(s)", problems) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(file, f"not a valid FHIR R4 Bundle: {exc}") from exc
    except RecursionError as exc:
        raise _fail(file, "not a valid FHIR R4 Bundle: nesting is too deep") from exc

    entries = tuple(
        Entry(i, e.fullUrl, e.resource) for i, e in enumerate(parsed.entry or ()) if e.resource is not None
    )
    return ParsedBundle(parsed, entries, file)
