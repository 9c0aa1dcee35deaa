"""A rule base that fails lint does not run by accident.

Every command that evaluates (``recommend``, ``explain``, ``questionnaire``, ``test``, ``diff``, ``serve``,
``cohort``) lints the rule base first and refuses one with lint *errors* (exit 2, each finding listed with
file:line); warnings do not block. ``--allow-lint-errors`` runs it anyway for experiments, and every output then says
"rule base failed lint".

Linting the shipped rules takes about a quarter of a second, on every command; a clean result is therefore cached
on disk under a key made of the rule files, the knowledge base and radiopal's version (any change lints again).
The cache holds only "clean" marks (no patient data); a cache folder that cannot be written is simply not used.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import Problem, RulebaseError
from .resources import kb_dir, rules_dir

__all__ = ["LintGate", "cache_dir", "lint_gate"]


@dataclass(frozen=True)
class LintGate:
    """What the gate found: the lint errors (empty when clean) and whether the result came from the cache."""

    errors: tuple[Any, ...] = ()
    cached: bool = False
    findings: tuple[Any, ...] = field(default=(), repr=False)

    @property
    def failed(self) -> bool:
        return bool(self.errors)


def cache_dir() -> Path:
    """``$RADIOPAL_CACHE_DIR``, else ``$XDG_CACHE_HOME/radiopal``, else ``~/.cache/radiopal``."""
    explicit = os.environ.get("RADIOPAL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "radiopal"


def _key(folder: Path) -> str:
    digest = hashlib.sha256(__version__.encode())
    for root in (folder, kb_dir()):
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".json")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def lint_gate(folder: str | Path | None = None, *, allow_errors: bool = False) -> LintGate:
    """Lint ``folder`` (default: the shipped rules). Raises :class:`RulebaseError` listing every lint error unless
    ``allow_errors``; returns what was found."""
    from .lint import lint_rules

    where = Path(folder) if folder is not None else rules_dir()
    if not where.is_dir():  # the loader says what is wrong with a missing folder
        return LintGate()
    try:
        key = _key(where)
    except OSError:
        key = ""
    mark = cache_dir() / f"lint-clean-{key}" if key else None
    if mark is not None and mark.is_file():
        return LintGate(cached=True)
    report = lint_rules(where)
    errors = tuple(report.errors)
    if not errors and mark is not None:
        try:
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.write_text("radiopal lint: clean\n", encoding="utf-8")
        except OSError:
            pass
    if errors and not allow_errors:
        summary = (f"the rule base fails lint ({len(errors)} error(s)): fix them (radiopal lint {where}) or run with "
                   "--allow-lint-errors for an experiment")
        problems = [Problem(summary, file=str(where))]
        problems += [Problem(f"[{f.code}] {f.message}", file=f.file, line=f.line, column=f.column, rule_id=f.rule_id,
                             hint=f.hint, consequence_of=f.consequence_of) for f in errors]
        raise RulebaseError(f"{where}: {summary}", problems)
    return LintGate(errors=errors, findings=tuple(report.findings))
