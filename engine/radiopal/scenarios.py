"""Scenario files (contract §C): a patient document plus ``expected`` decisions, run against a rule base.

A scenario passes when every listed therapy has the expected status (and earliest date / dose when given), and the
``missing_data_includes`` / ``advisories_include`` lists are subsets of the output.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, Problem, ScenarioError
from .patient.load import parse_patient
from .rulebase.model import STATUSES
from .yamlio import SourceMap, load_document

EXPECTED_KEYS = {"decisions", "missing_data_includes", "advisories_include"}
DECISION_KEYS = {"status", "earliest_date", "dose_mg", "why"}


@dataclass
class Check:
    """One comparison of a scenario: what was expected, what came out, and the rules that decided it."""

    what: str
    expected: Any
    actual: Any
    passed: bool
    therapy: str = ""
    reasons: tuple[str, ...] = ()


@dataclass
class ScenarioOutcome:
    """The result of one scenario file."""

    path: str
    patient_id: str
    checks: list[Check] = field(default_factory=list)
    result: Any = None
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and all(c.passed for c in self.checks)


@dataclass
class Scenario:
    """A parsed scenario: the patient document and the expected block."""

    path: str
    document: dict[str, Any]
    expected: dict[str, Any]
    source: SourceMap


def scenario_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files to run: a directory means every ``*.yaml``/``*.yml``/``*.json`` in it (sorted)."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(q for q in path.iterdir() if q.suffix in (".yaml", ".yml", ".json") and q.is_file()))
        elif path.exists():
            out.append(path)
        else:
            raise InputError(f"{p}: no such scenario file or folder", [Problem("no such file or folder", file=str(p))])
    return out


def load_scenario(path: str | Path, therapy_ids: Iterable[str], advisory_ids: Iterable[str]) -> Scenario:
    """Read a scenario and check its ``expected`` block; unknown therapies, statuses or keys are errors."""
    located = load_document(path, kind="scenario")
    data = located.data
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a mapping", [Problem("expected a mapping", file=str(path))])
    expected = data.get("expected")
    document = {k: v for k, v in data.items() if k != "expected"}
    problems = _check_expected(expected, str(path), located.source, set(therapy_ids), set(advisory_ids))
    if problems:
        raise ScenarioError(f"{path}: invalid expected block", problems)
    assert isinstance(expected, dict)  # _check_expected reported anything else
    return Scenario(str(path), document, expected, located.source)


def _check_expected(expected: Any, file: str, source: SourceMap, therapies: set[str],
                    advisories: set[str]) -> list[Problem]:
    from .suggest import hint_for

    def problem(path: tuple[Any, ...], message: str, hint: str = "") -> Problem:
        line, col = source.where(path)
        return Problem(message, path=".".join(str(p) for p in path), file=file, line=line, column=col, hint=hint)

    if not isinstance(expected, Mapping):
        return [problem(("expected",), "missing or not a mapping; a scenario needs an `expected:` block")]
    out = []
    for key in expected:
        if key not in EXPECTED_KEYS:
            out.append(problem(("expected", key), f"unknown key {key!r}", hint_for(str(key), EXPECTED_KEYS)))
    decisions = expected.get("decisions") or {}
    if not isinstance(decisions, Mapping):
        out.append(problem(("expected", "decisions"), "expected a mapping of therapy id → expectation"))
        decisions = {}
    for therapy, spec in decisions.items():
        path = ("expected", "decisions", therapy)
        if therapy not in therapies:
            out.append(problem(path, f"unknown therapy {therapy!r}", hint_for(str(therapy), therapies)))
            continue
        if not isinstance(spec, Mapping) or "status" not in spec:
            out.append(problem(path, "expected a mapping with at least `status`"))
            continue
        for key in spec:
            if key not in DECISION_KEYS:
                out.append(problem((*path, key), f"unknown key {key!r}", hint_for(str(key), DECISION_KEYS)))
        if spec["status"] not in STATUSES:
            out.append(problem((*path, "status"), f"unknown status {spec['status']!r}",
                               hint_for(str(spec["status"]), STATUSES)))
        if spec.get("earliest_date") is not None:
            try:
                dt.date.fromisoformat(str(spec["earliest_date"]))
            except ValueError:
                out.append(problem((*path, "earliest_date"), f"{spec['earliest_date']!r} is not a date (YYYY-MM-DD)"))
        if spec.get("dose_mg") is not None and not isinstance(spec["dose_mg"], (int, float)):
            out.append(problem((*path, "dose_mg"), "expected a number"))
    for key, known in (("advisories_include", advisories), ("missing_data_includes", None)):
        items = expected.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            out.append(problem(("expected", key), "expected a list"))
            continue
        if known is not None:
            for i, item in enumerate(items):
                if item not in known:
                    out.append(problem(("expected", key, i), f"unknown advisory {item!r}", hint_for(str(item), known)))
    return out


def run_scenario(scenario: Scenario, rulebase: Any) -> ScenarioOutcome:
    """Evaluate one scenario and compare with its expectations."""
    patient = parse_patient(scenario.document, source=scenario.source)
    result = rulebase.evaluate(patient)
    outcome = ScenarioOutcome(scenario.path, patient.patient_id, result=result)
    for therapy, spec in (scenario.expected.get("decisions") or {}).items():
        decision = result.decision(therapy)
        reasons = decision.reasons
        outcome.checks.append(Check("status", spec["status"], decision.status, decision.status == spec["status"],
                                    therapy, reasons))
        if "earliest_date" in spec:
            want = str(spec["earliest_date"]) if spec["earliest_date"] is not None else None
            got = decision.earliest_date.isoformat() if decision.earliest_date else None
            outcome.checks.append(Check("earliest_date", want, got, want == got, therapy, reasons))
        if "dose_mg" in spec:
            want_dose, got_dose = spec["dose_mg"], decision.dose_mg
            same = (want_dose is None and got_dose is None) or (
                want_dose is not None and got_dose is not None and abs(float(want_dose) - float(got_dose)) < 1e-9)
            outcome.checks.append(Check("dose_mg", want_dose, got_dose, same, therapy, reasons))
    missing = set(result.missing_data)
    for path in scenario.expected.get("missing_data_includes") or []:
        outcome.checks.append(Check("missing_data", path, sorted(missing), path in missing))
    advisory_ids = {a.id for a in result.advisories}
    for adv in scenario.expected.get("advisories_include") or []:
        outcome.checks.append(Check("advisory", adv, sorted(advisory_ids), adv in advisory_ids))
    return outcome


def run_scenarios(paths: Iterable[str | Path], rulebase: Any) -> list[ScenarioOutcome]:
    """Run every scenario file under ``paths``; a file that cannot be read is a failed outcome, not a crash."""
    therapy_ids = rulebase.catalogue.therapy_ids
    advisory_ids = list(rulebase.catalogue.advisories)
    outcomes = []
    for path in scenario_paths(paths):
        try:
            scenario = load_scenario(path, therapy_ids, advisory_ids)
            outcomes.append(run_scenario(scenario, rulebase))
        except (InputError, ScenarioError) as exc:
            outcomes.append(ScenarioOutcome(str(path), "", error="; ".join(exc.lines())))
    return outcomes


def format_failure(outcome: ScenarioOutcome) -> list[str]:
    """Lines describing what failed in one scenario."""
    if outcome.error:
        return [f"FAIL {outcome.path}: {outcome.error}"]
    lines = [f"FAIL {outcome.path} ({outcome.patient_id})"]
    for c in outcome.checks:
        if c.passed:
            continue
        if c.therapy:
            decided = ", ".join(c.reasons) if c.reasons else "no rule (default)"
            lines.append(f"  {c.therapy}: {c.what} expected {c.expected!r}, got {c.actual!r} (decided by {decided})")
            if outcome.result is not None:
                lines += [f"      {line}" for line in _why(outcome.result, c)]
        else:
            lines.append(f"  {c.what}: expected to include {c.expected!r}; got {c.actual}")
    return lines


def _why(result: Any, check: Check) -> list[str]:
    """What the rules behind a failed check read and whether they fired: the deciding rules with the values they
    compared, the dose rules (or that none fired), and the rules that would have given the expected status."""
    from .result import condition_lines

    decision = result.decision(check.therapy)
    fired = {id(f.compiled.rule) for f in result.firings if f.therapy == check.therapy}
    out = []
    for firing in decision.deciding:
        seen = [f"{c['test']} (value {c['observed']})" for c in condition_lines(firing)
                if c.get("result") == "met" and c.get("observed") not in (None, "")]
        out.append(f"fired {firing.compiled.rule.key}: " + ("; ".join(seen[:3]) or firing.compiled.rule.title))
    rules = [r for r in result.rulebase.rules if check.therapy in r.therapies]
    if check.what == "dose_mg":
        dose_rules = [r for r in rules if r.then.dose_mg is not None]
        if not decision.dosing:
            out.append("no dose rule fired" + (f" (of {', '.join(r.key for r in dose_rules)})" if dose_rules else ""))
        for rule in dose_rules:
            values = ", ".join(f"{name} = {_value(result, name)}" for name in sorted(rule.facts()))
            out.append(f"{'fired' if id(rule) in fired else 'not fired'} {rule.key} ({rule.then.dose_mg:g} mg): {values}")
    elif check.what == "status" and isinstance(check.expected, str):
        for rule in [r for r in rules if r.then.status == check.expected and id(r) not in fired][:4]:
            values = ", ".join(f"{name} = {_value(result, name)}" for name in sorted(rule.facts())[:4])
            out.append(f"not fired {rule.key} ({check.expected}): {values}")
    return out


def _value(result: Any, name: str) -> str:
    fact = result.facts.get(name)
    if fact is None:
        return "?"
    if not fact.known:
        return "unknown"
    from .result import display

    return display(fact.value)
