"""Rule and condition coverage of a scenario suite (``radiopal test --coverage [OUT]``).

*Rule coverage* counts, per rule, the scenarios in which it fired (Drools' "rules fired" report). *Condition
coverage* goes one level down: every node of every rule's condition (``node.cid``: ``when``, ``when.all[1]``, ...) is
evaluated against each scenario's facts and final statuses, and counts as covered when some scenario saw it met and
some scenario saw it not met — a threshold no scenario tests from both sides is a threshold no scenario checks.
For a data-requirement rule each requirement is a node: met when the required fact is missing, not met when present.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .conditions import THERAPY_PLACEHOLDER, Compare, Condition, Env
from .fileio import write_atomic
from .lint.findings import display_path
from .rulebase.model import Rule
from .tri import Tri

__all__ = ["compute_coverage", "render_coverage", "report_coverage"]


@dataclass
class _Node:
    cid: str
    line: int
    test: str
    seen: dict[str, int] = field(default_factory=lambda: {"met": 0, "not_met": 0, "unknown": 0})

    @property
    def covered(self) -> bool:
        return self.seen["met"] > 0 and self.seen["not_met"] > 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.cid, "line": self.line, "test": self.test, **self.seen, "covered": self.covered}


@dataclass
class _RuleCoverage:
    rule: Rule
    nodes: dict[int, _Node]
    scenarios: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        nodes = list(self.nodes.values())
        return {
            "rule": self.rule.key,
            "id": self.rule.id,
            "variant": self.rule.variant or None,
            "file": display_path(self.rule.file),
            "line": self.rule.line,
            "fired": len(self.scenarios),
            "scenarios": self.scenarios,
            "conditions_covered": sum(n.covered for n in nodes),
            "conditions": [n.to_dict() for n in nodes],
        }


def _requirement_key(index: int) -> int:
    return -(index + 1)  # requirement nodes have no object of their own: negative keys never clash with id()


def _nodes(rule: Rule) -> dict[int, _Node]:
    out: dict[int, _Node] = {}
    if rule.when is not None:
        for node in rule.when.nodes():
            out[id(node)] = _Node(node.cid, node.line or rule.line, node.describe())
    for i, req in enumerate(rule.requires):
        out[_requirement_key(i)] = _Node(f"requires[{i}]", rule.line, f"{req.fact} is missing")
        if req.when is not None:
            for node in req.when.nodes():
                out[id(node)] = _Node(f"requires[{i}].{node.cid}", node.line or rule.line, node.describe())
    return out


def _therapies(rule: Rule) -> list[str | None]:
    """The therapies to evaluate a rule for: each one when its condition names ``$therapy``, else one."""
    names_therapy = any(
        isinstance(n, Compare) and (n.value == THERAPY_PLACEHOLDER or (
            isinstance(n.value, tuple) and THERAPY_PLACEHOLDER in n.value))
        for cond in [rule.when, *(r.when for r in rule.requires)] if cond is not None for n in cond.nodes())
    if names_therapy:
        return list(rule.therapies)
    return [rule.therapies[0] if rule.therapies else None]


def _observe(rule: Rule, env: Env) -> Iterator[tuple[int, Tri]]:
    """(node key, value) for every node of ``rule`` evaluated in ``env`` (list-entry nodes once per entry)."""
    def walk(cond: Condition) -> Iterator[tuple[int, Tri]]:
        for outcome in cond.explain(env).walk():
            yield id(outcome.node), outcome.value

    if rule.when is not None:
        yield from walk(rule.when)
    for i, req in enumerate(rule.requires):
        applies = True
        if req.when is not None:
            yield from walk(req.when)
            applies = req.when.truth(env) is not Tri.FALSE
        if applies:
            fact = env.facts.get(req.fact)
            yield _requirement_key(i), Tri.of(fact is None or not fact.known)


def compute_coverage(rulebase: Any, outcomes: Iterable[Any]) -> dict[str, Any]:
    """Coverage of ``rulebase`` by scenario outcomes (``scenarios.ScenarioOutcome``) as plain data."""
    table = {id(rule): _RuleCoverage(rule, _nodes(rule)) for rule in rulebase.rules}
    per_scenario: dict[str, list[str]] = {}
    ran = errors = 0
    for outcome in outcomes:
        result = outcome.result
        if result is None:
            errors += 1
            continue
        ran += 1
        fired = {id(f.compiled.rule) for f in result.firings}
        per_scenario[outcome.path] = sorted({f.compiled.rule.key for f in result.firings})
        statuses = {d.therapy: d.status for d in result.decisions}
        facts = result.facts.facts
        for entry in table.values():
            if id(entry.rule) in fired:
                entry.scenarios.append(outcome.path)
            seen: dict[int, set[Tri]] = {}
            for therapy in _therapies(entry.rule):
                env = Env(facts, result.patient.evaluation_date, therapy, statuses=statuses)
                for key, value in _observe(entry.rule, env):
                    seen.setdefault(key, set()).add(value)
            for key, values in seen.items():
                node = entry.nodes.get(key)
                if node is not None:
                    for value in values:
                        node.seen[value.value] += 1
    rules = [table[id(r)].to_dict() for r in rulebase.rules]
    n_fired = sum(1 for r in rules if r["fired"])
    n_nodes = sum(len(r["conditions"]) for r in rules)
    n_covered = sum(r["conditions_covered"] for r in rules)
    return {
        "rulebase": {"version": rulebase.version, "hash": rulebase.digest},
        "scenarios": ran,
        "scenario_errors": errors,
        "summary": {
            "rules": len(rules),
            "rules_fired": n_fired,
            "rule_coverage": _percent(n_fired, len(rules)),
            "conditions": n_nodes,
            "conditions_covered": n_covered,
            "condition_coverage": _percent(n_covered, n_nodes),
        },
        "never_fired": [r["rule"] for r in rules if not r["fired"]],
        "rules": rules,
        "per_scenario": per_scenario,
    }


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def render_coverage(data: dict[str, Any]) -> str:
    """The coverage as a table for people: per rule the scenarios that fired it and its covered conditions."""
    s = data["summary"]
    lines = [
        f"Rule coverage: {s['rules_fired']}/{s['rules']} rules fired in {data['scenarios']} scenarios "
        f"({s['rule_coverage']}%)",
        f"Condition coverage: {s['conditions_covered']}/{s['conditions']} condition nodes seen both met and not met "
        f"({s['condition_coverage']}%)",
        "",
    ]
    width = max([len("RULE"), *(len(r["rule"]) for r in data["rules"])])
    lines.append(f"{'RULE':<{width}}  FIRED  CONDITIONS  NOT SEEN BOTH WAYS")
    for r in data["rules"]:
        total = len(r["conditions"])
        partial = [c for c in r["conditions"] if not c["covered"]]
        gaps = ", ".join(f"{c['id']} ({_sides(c)})" for c in partial[:3])
        if len(partial) > 3:
            gaps += f", +{len(partial) - 3} more"
        lines.append(f"{r['rule']:<{width}}  {r['fired']:>5}  {r['conditions_covered']:>4}/{total:<5}  {gaps}".rstrip())
    never = data["never_fired"]
    lines.append("")
    if never:
        lines.append(f"Never fired ({len(never)}):")
        by_key = {r["rule"]: r for r in data["rules"]}
        for key in never:
            r = by_key[key]
            lines.append(f"  {key:<{width}}  {r['file']}:{r['line']}")
    else:
        lines.append("Every rule fired in at least one scenario.")
    return "\n".join(lines) + "\n"


def _sides(node: dict[str, Any]) -> str:
    if node["met"] == 0 and node["not_met"] == 0:
        return "only unknown" if node["unknown"] else "never evaluated"
    return "never met" if node["met"] == 0 else "never not met"


def report_coverage(rulebase: Any, outcomes: Iterable[Any], out_path: str | Path | None,
                    stream: TextIO | None) -> dict[str, Any]:
    """Compute coverage, write it as JSON to ``out_path`` (when given) and print the table to ``stream``."""
    data = compute_coverage(rulebase, outcomes)
    if out_path:
        write_atomic(out_path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    if stream is not None:
        stream.write(render_coverage(data))
        if out_path:
            stream.write(f"coverage written to {out_path}\n")
    return data
