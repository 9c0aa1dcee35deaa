"""One exception root for radiopal, with structured subclasses.

Every error a user can cause carries *where* (a file, line and column, or a field path) and *what was expected*,
so the CLI can print one line per problem and never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "EngineError",
    "InputError",
    "Problem",
    "RadiopalError",
    "RulebaseError",
    "ScenarioError",
]


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with an input: where it is and what was expected.

    ``path`` is a JSON-path-like field path (``labs.platelets.unit``) for documents, or a YAML path for rule files.
    ``file``/``line``/``column`` locate it in a source file when known (1-based).
    """

    message: str
    path: str = ""
    file: str = ""
    line: int = 0
    column: int = 0
    rule_id: str = ""
    severity: str = "error"
    hint: str = ""
    consequence_of: str = ""  # ``file:line`` of the error this one follows from (e.g. a file that did not parse)

    def location(self) -> str:
        """``file:line:column`` (or the parts that are known), then the field path."""
        parts = []
        if self.file:
            loc = self.file
            if self.line:
                loc += f":{self.line}"
                if self.column:
                    loc += f":{self.column}"
            parts.append(loc)
        if self.rule_id:
            parts.append(f"rule {self.rule_id}")
        if self.path:
            parts.append(self.path)
        return " ".join(parts)

    def __str__(self) -> str:
        loc = self.location()
        text = f"{loc}: {self.message}" if loc else self.message
        if self.hint:
            text += f" ({self.hint})"
        if self.consequence_of:
            text += f" (follows from the error at {self.consequence_of})"
        return text

    def to_dict(self) -> dict[str, object]:
        """Plain-data form for JSON output."""
        out: dict[str, object] = {"severity": self.severity, "message": self.message}
        for key in ("path", "file", "line", "column", "rule_id", "hint", "consequence_of"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


class RadiopalError(Exception):
    """Root of every error radiopal raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, problems: Iterable[Problem] = ()) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(message)

    def lines(self) -> list[str]:
        """One line per problem (or the message when there are none), for terminal output."""
        if not self.problems:
            return [str(self)]
        return [str(p) for p in self.problems]


class InputError(RadiopalError):
    """A patient document (or other user input) is unreadable or invalid."""


class RulebaseError(RadiopalError):
    """A rule base failed to parse, validate, type-check or compile."""


class ScenarioError(RadiopalError):
    """A scenario file's ``expected:`` block is malformed."""


class EngineError(RadiopalError):
    """The engine reached a state it should not (a bug, reported with context rather than a traceback)."""

    exit_code = 3
