"""``radiopal lint``: static analysis of a rule base for guideline authors.

Stages, each a module with ``check(ctx) -> Iterator[Finding]`` (the loading stage excepted):

========================  ===============================================================================
``loading``               YAML, schema and type errors from the rule loader (with did-you-mean), editor line
``provenance``            ``verification: U`` without an ``unverified:`` explanation
``satisfiability``        conditions (or branches) that can never be met
``redundancy``            shadowed rules, duplicate rules, subsumed rules
``thresholds``            dose/status gaps, conflicting dose overlaps, near-miss thresholds
``derived``               cycles among derived facts, derived facts nothing reads
``named``                 declared relations between named thresholds, unused thresholds, numbers written out
========================  ===============================================================================

The logic analyses work on the condition model (radiopal.conditions) turned into constraints
(:mod:`radiopal.lint.logic`); they run on every rule that loads, even when other rules or files have errors.
Lint never raises on a rule file's content: an unreadable file is a finding, and an analysis that fails is an
``internal-error`` finding while the others still run.

Typical use::

    from radiopal.lint import lint_rules
    report = lint_rules("rules")
    print(report.to_text()); raise SystemExit(report.exit_code)
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..catalogue import Catalogue
from ..resources import rules_dir
from ..rulebase.load import collect_rules, rule_files
from ..vocabulary import Vocabulary
from . import derived, named, provenance, redundancy, satisfiability, thresholds
from .context import LintContext
from .findings import CODES, SEVERITIES, Finding, LintReport, Related
from .loading import SCHEMA_LINE, loader_findings, schema_line_findings
from .logic import Logic

__all__ = ["ANALYSES", "CODES", "SCHEMA_LINE", "SEVERITIES", "Finding", "LintReport", "Related", "lint_rules"]

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

Analysis = Callable[[LintContext], Iterable[Finding]]

#: The analyses run after loading, in order.
ANALYSES: tuple[tuple[str, Analysis], ...] = (
    ("provenance", provenance.check),
    ("satisfiability", satisfiability.check),
    ("redundancy", redundancy.check),
    ("thresholds", thresholds.check),
    ("derived", derived.check),
    ("named thresholds", named.check),
)


def lint_rules(folder: str | Path | None = None, *, vocabulary: Vocabulary | None = None,
               catalogue: Catalogue | None = None) -> LintReport:
    """Lint a rule-base folder (default: the shipped ``rules/``) and return every finding.

    Raises :class:`radiopal.RulebaseError` only when ``folder`` does not exist.
    """
    where = str(folder) if folder is not None else str(rules_dir())
    files = rule_files(where)
    loaded, staged = collect_rules(where, vocabulary=vocabulary, catalogue=catalogue)
    findings = list(loader_findings(staged))
    unreadable = {s.problem.file for s in staged if s.stage == "read"}
    findings.extend(schema_line_findings(files, unreadable))
    ctx = LintContext(where, files, loaded, Logic(loaded.rules, loaded.vocabulary))
    for name, analysis in ANALYSES:
        findings.extend(_guarded(name, analysis, ctx))
    unread = next((s.problem for s in staged if s.stage in ("read", "schema")), None)
    if unread is not None:
        # With rules missing, "nothing uses it" may only mean "the rule that uses it did not load".
        cause = f"{unread.file}:{unread.line}" if unread.line else unread.file
        findings = [dataclasses.replace(f, consequence_of=cause) if f.code in _FOLLOW_MISSING_RULES else f
                    for f in findings]
    return LintReport(where, findings, files=len(files), rules=len(loaded.rules))


#: Findings about something no rule uses: with a file or rule left out, the user may be in the missing part.
_FOLLOW_MISSING_RULES = frozenset({"unused-threshold", "unused-derived"})


def _guarded(name: str, analysis: Analysis, ctx: LintContext) -> Iterator[Finding]:
    """Run one analysis; a crash becomes one ``internal-error`` finding instead of stopping lint."""
    try:
        yield from list(analysis(ctx))
    except Exception as exc:
        logger.debug("lint analysis %s failed", name, exc_info=True)
        where = traceback.extract_tb(exc.__traceback__)[-1]
        yield Finding("internal-error", f"the {name} analysis failed: {type(exc).__name__}: {exc} "
                      f"({Path(where.filename).name}:{where.lineno})", file=ctx.folder,
                      hint="please report this with the rule file; the other analyses ran")
