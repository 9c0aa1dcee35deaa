"""Lint findings: what is wrong, where (file:line:column, rule, YAML path), how bad, and how to fix it."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("error", "warning", "info")

#: Every finding code, with its default severity and a one-line meaning (docs/lint.md is generated from it).
CODES: dict[str, tuple[str, str]] = {
    # reading and validating
    "yaml-syntax": ("error", "The file is not valid YAML (or uses a YAML feature rule files do not allow)."),
    "not-text": ("error", "The file is not UTF-8 text (a binary file, or another encoding)."),
    "empty-file": ("error", "The file is empty."),
    "too-large": ("error", "The file is larger than a rule file can be."),
    "too-many-values": ("error", "The file expands to too many values (e.g. a YAML alias bomb)."),
    "too-deep": ("error", "The file is nested too deeply."),
    "unreadable": ("error", "The file cannot be read."),
    "no-rule-files": ("error", "The folder holds no *.yaml rule files."),
    "schema": ("error", "The file does not follow the rule-file schema (kb/schemas/rulefile.schema.json)."),
    "missing-provenance": ("error", "A rule lacks its citation (sources), strength or verification tag."),
    # type check against the vocabulary and catalogue
    "unknown-fact": ("error", "A condition names a fact that is not in kb/facts.yaml or derived_facts."),
    "unknown-field": ("error", "A condition names a field that entries of that list fact do not have."),
    "unknown-therapy": ("error", "A therapy id that is not in the therapy catalogue (kb/therapies.yaml)."),
    "unknown-advisory": ("error", "An advisory id that is not in the advisory catalogue (kb/therapies.yaml)."),
    "unknown-source": ("error", "A source key that is not in kb/references.yaml."),
    "wrong-unit": ("error", "A unit that does not fit the fact (or a unit on a fact without one)."),
    "bad-value": ("error", "A value that does not fit the fact's type or values."),
    "type": ("error", "Any other type-check problem of a rule (operator, conclusion, structure)."),
    "duplicate-id": ("error", "Two rules share an id (and variant)."),
    "derived-fact": ("error", "A derived fact is declared twice, or not derived by exactly one rule."),
    # named thresholds (rules/thresholds.yaml)
    "thresholds-file": ("error", "The thresholds file is not valid (YAML, schema, source keys, units, relation names)."),
    "unknown-threshold": ("error", "A rule names a threshold that the thresholds file does not define."),
    "threshold-unit": ("error", "A named threshold whose unit does not fit what it is compared with (a fact, days)."),
    "relation-cycle": ("error", "Relations declared between thresholds form a cycle: no values can satisfy them."),
    "relation-violated": ("error", "Named thresholds break a declared relation (a caution zone's floor at or above "
                          "its ceiling, dose bands out of order)."),
    "unused-threshold": ("warning", "A named threshold that no rule uses."),
    "unnamed-number": ("warning", "A rule writes a clinical number itself instead of naming a threshold (a literal 0 "
                       "is structure and exempt)."),
    "missing-schema-line": ("warning", "The file does not start with the yaml-language-server schema line."),
    # provenance
    "unverified-unexplained": ("warning", "A rule tagged verification U has no `unverified:` explanation."),
    "unverified-text-unused": ("info", "A rule has an `unverified:` text but is not tagged U (the [U] mark is not shown)."),
    # logic
    "unsatisfiable": ("error", "A condition can never be met, so the rule can never fire."),
    "shadowed": ("warning", "A stronger status always wins whenever the rule fires: its status never decides."),
    "duplicate-rule": ("warning", "Two rules conclude the same thing under equivalent conditions (information when "
                       "they encode different brief rules)."),
    "subsumed": ("info", "A rule concludes the same as a broader rule: whenever it fires, the broader one does too."),
    "dose-gap": ("warning", "A range of a numeric fact in which no dose band (and no block) applies."),
    "dose-open-end": ("info", "Beyond the last dose band nothing gives a dose and nothing blocks the therapy."),
    "dose-overlap": ("error", "Two rules with different doses can fire together for one therapy."),
    "status-gap": ("warning", "A range of a numeric fact, between the bands the rules of a therapy use, that no rule decides."),
    "near-miss": ("warning", "The same threshold written once strict and once inclusive (`< 100` here, `<= 100` there)."),
    "derived-cycle": ("error", "Derived facts that depend on each other: none of them can ever be known."),
    "unused-derived": ("warning", "A derived fact that no rule reads."),
    "too-complex": ("info", "A condition too large for the logic analyses; they skipped it."),
    "internal-error": ("error", "An analysis failed; please report it (the other analyses still ran)."),
}


@dataclass(frozen=True)
class Related:
    """Another place a finding refers to (the other rule of a pair)."""

    rule: str
    file: str = ""
    line: int = 0

    def location(self) -> str:
        return f"{display_path(self.file)}:{self.line}" if self.line else display_path(self.file)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule}
        if self.file:
            out["file"] = display_path(self.file)
        if self.line:
            out["line"] = self.line
        return out


@dataclass(frozen=True)
class Finding:
    """One lint finding. ``rule`` is the rule key (``id`` or ``id/variant``); ``path`` the YAML path in the file."""

    code: str
    message: str
    severity: str = ""
    rule: str = ""
    file: str = ""
    line: int = 0
    column: int = 0
    path: str = ""
    hint: str = ""
    related: tuple[Related, ...] = field(default_factory=tuple)
    rank: int = 0  # loader findings: their order from the loader (schema errors most relevant first); else 0
    consequence_of: str = ""  # file:line of the error this finding only follows from (listed after the causes)

    def __post_init__(self) -> None:
        if not self.severity:
            object.__setattr__(self, "severity", CODES.get(self.code, ("error", ""))[0])

    @property
    def rule_id(self) -> str:
        """The brief rule id (the key without its variant)."""
        return self.rule.split("/", 1)[0]

    @property
    def variant(self) -> str:
        return self.rule.split("/", 1)[1] if "/" in self.rule else ""

    def location(self) -> str:
        loc = display_path(self.file) if self.file else "<rules>"
        if self.line:
            loc += f":{self.line}"
            if self.column:
                loc += f":{self.column}"
        return loc

    def sort_key(self) -> tuple[Any, ...]:
        """Errors first; per file, the loader's findings in its order (most useful first), then by position."""
        return (SEVERITIES.index(self.severity), bool(self.consequence_of), self.file, 0 if self.rank else 1,
                self.rank, self.line, self.column, self.code, self.message)

    def text(self) -> str:
        """``file:line:col: severity [code] RULE: message`` then the hint on its own line."""
        who = f" {self.rule}:" if self.rule else ""
        out = f"{self.location()}: {self.severity} [{self.code}]{who} {self.message}"
        if self.consequence_of:
            out += f" (follows from the error at {display_path(self.consequence_of)})"
        if self.hint:
            out += f"\n    hint: {self.hint}"
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "message": self.message}
        if self.rule:
            out["rule"] = self.rule
            out["rule_id"] = self.rule_id
            if self.variant:
                out["variant"] = self.variant
        out["file"] = display_path(self.file) if self.file else ""
        out["line"] = self.line
        out["column"] = self.column
        if self.path:
            out["path"] = self.path
        if self.hint:
            out["hint"] = self.hint
        if self.related:
            out["related"] = [r.to_dict() for r in self.related]
        if self.consequence_of:
            out["consequence_of"] = display_path(self.consequence_of)
        return out


def display_path(path: str) -> str:
    """A path relative to the working folder when it lies inside it (as editors and terminals link it)."""
    if not path:
        return path
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover - another drive on Windows
        return path
    return path if rel.startswith("..") else rel


@dataclass
class LintReport:
    """Every finding of one lint run, sorted (errors first, then by file and line)."""

    folder: str
    findings: list[Finding]
    files: int = 0
    rules: int = 0

    def __post_init__(self) -> None:
        self.findings = sorted(set(self.findings), key=Finding.sort_key)

    def counts(self) -> dict[str, int]:
        """Number of findings per severity."""
        found = Counter(f.severity for f in self.findings)
        return {s: found.get(s, 0) for s in SEVERITIES}

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def exit_code(self) -> int:
        """1 when any finding is an error, else 0."""
        return 1 if self.errors else 0

    def by_code(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (``--format json``): folder, counts and every finding."""
        return {
            "rules_dir": display_path(self.folder),
            "files": self.files,
            "rules": self.rules,
            "summary": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def to_text(self, *, min_severity: str = "info") -> str:
        """One finding per line (and its hint below), then a summary line; ``min_severity`` hides milder ones."""
        limit = SEVERITIES.index(min_severity)
        lines = [f.text() for f in self.findings if SEVERITIES.index(f.severity) <= limit]
        counts = self.counts()
        summary = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items())
        following = sum(1 for f in self.findings if f.consequence_of)
        if following:
            summary += f" ({following} only follow from another error: fix the first ones and lint again)"
        lines.append(f"{display_path(self.folder)}: {self.files} files, {self.rules} rules: {summary}")
        return "\n".join(lines) + "\n"

