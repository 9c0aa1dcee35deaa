"""Stage 1 of lint: read, validate and type-check with the rule loader, turning its problems into findings.

The loader (radiopal.rulebase.load.collect_rules) already reports YAML, schema and type errors with file:line:column
and a did-you-mean, and keeps every rule that checks; this module only names each problem with a finding code and
adds the one check a loader has no business making (the editor schema line).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..rulebase.load import StagedProblem
from .findings import Finding

SCHEMA_LINE = "# yaml-language-server: $schema=../kb/schemas/rulefile.schema.json"

_READ_CODES = (
    ("no rule files", "no-rule-files"),
    ("not UTF-8", "not-text"),
    ("NUL bytes", "not-text"),
    ("is empty", "empty-file"),
    ("more than the limit", "too-large"),
    ("expands to more than", "too-many-values"),
    ("nesting is too deep", "too-deep"),
    ("cannot read", "unreadable"),
    ("is a directory", "unreadable"),
)
_TYPE_CODES = (
    ("unknown threshold", "unknown-threshold"),
    ("threshold '", "threshold-unit"),
    ("unknown fact", "unknown-fact"),
    ("unknown field", "unknown-field"),
    ("unknown therapy", "unknown-therapy"),
    ("unknown advisory", "unknown-advisory"),
    ("unknown source key", "unknown-source"),
    ("has no unit", "wrong-unit"),
    ("is not a value of", "bad-value"),
    ("is not a status", "bad-value"),
    ("is a date; compare", "bad-value"),
    ("does not fit", "bad-value"),
    ("not a finite number", "bad-value"),
    ("is out of range", "bad-value"),
)
_PROVENANCE = re.compile(r"^missing required field '(sources|strength|verification)'$")


def code_for(staged: StagedProblem) -> str:
    """The finding code of one loader problem."""
    message = staged.problem.message
    if staged.stage == "read":
        return next((code for text, code in _READ_CODES if text in message), "yaml-syntax")
    if staged.stage == "schema":
        if _PROVENANCE.match(message) or re.fullmatch(r"rules\[\d+\]\.sources", staged.problem.path):
            return "missing-provenance"
        return "schema"
    if staged.stage == "type":
        if message.startswith("unit ") and "does not fit" in message:
            return "wrong-unit"
        return next((code for text, code in _TYPE_CODES if text in message), "type")
    if staged.stage == "thresholds":
        return "relation-cycle" if "form a cycle" in message else "thresholds-file"
    if message.startswith("duplicate rule id"):
        return "duplicate-id"
    return "derived-fact"


def loader_findings(staged: list[StagedProblem]) -> Iterator[Finding]:
    """One error finding per loader problem, in the loader's order (schema problems are ranked by relevance)."""
    for rank, item in enumerate(staged, start=1):
        p = item.problem
        yield Finding(code_for(item), p.message, rule=item.rule_key or p.rule_id, file=p.file, line=p.line,
                      column=p.column, path=p.path, hint=p.hint, rank=rank, consequence_of=p.consequence_of)


def schema_line_findings(files: list[Path], unreadable: set[str]) -> Iterator[Finding]:
    """A warning for each readable rule file whose first line is not the yaml-language-server schema line."""
    for path in files:
        if str(path) in unreadable:
            continue
        try:
            with path.open("rb") as handle:
                first = handle.readline(512).decode("utf-8", errors="replace").rstrip("\r\n")
        except OSError:
            continue
        if first.strip() != SCHEMA_LINE:
            yield Finding("missing-schema-line", "the file does not start with the editor schema line", file=str(path),
                          line=1, column=1,
                          hint=f"make the first line `{SCHEMA_LINE}` (completion and checking in editors)")
