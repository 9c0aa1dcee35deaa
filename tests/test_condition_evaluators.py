"""Every condition node has two evaluators: ``truth`` (what the engine fires on) and ``explain`` (what the explanation,
the graph and coverage show). They must agree on every node, for every rule, therapy and patient, or an explanation
could show a rule met that did not fire (or the reverse).

The patients are seeded synthetic ones — complete, thinned (required fields removed: unknowns) — at their own
evaluation dates, and each is checked against the statuses it really received (phase-2 rules read them).
"""

from __future__ import annotations

from typing import Any

import pytest

import radiopal
from radiopal.conditions import AllOf, Condition, Env, Exists, Not
from radiopal.synth import patient_at
from radiopal.tri import Tri


def _check(node: Condition, env: Env, where: str, mismatches: list[str]) -> None:
    quick, explained = node.truth(env), node.explain(env).value
    if quick is not explained:
        mismatches.append(f"{where} {node.cid or type(node).__name__}: truth {quick.name}, explain {explained.name}")
    if isinstance(node, AllOf):  # AnyOf is an AllOf
        for child in node.children:
            _check(child, env, where, mismatches)
    elif isinstance(node, Not):
        _check(node.child, env, where, mismatches)
    elif isinstance(node, Exists):
        known, entries, _ = node._entries(env)
        if known:
            path = node._item_path(env)
            for entry in entries:
                _check(node.where, env.with_item(entry, path), where, mismatches)


def _conditions(rule: Any) -> list[Condition]:
    found = [rule.when] if rule.when is not None else []
    found += [req.when for req in rule.requires if req.when is not None]
    if rule.then.earliest_date is not None and rule.then.earliest_date.none_if is not None:
        found.append(rule.then.earliest_date.none_if)
    return found


def _mismatches(rulebase: Any, documents: list[dict[str, Any]]) -> tuple[list[str], dict[Tri, int]]:
    mismatches: list[str] = []
    seen = dict.fromkeys(Tri, 0)
    for document in documents:
        result = rulebase.evaluate(document)
        statuses = {d.therapy: d.status for d in result.decisions}
        for rule in rulebase.rules:
            for therapy in rule.therapies or (None,):
                env = Env(result.facts.facts, result.patient.evaluation_date, therapy, statuses=statuses)
                for condition in _conditions(rule):
                    seen[condition.truth(env)] += 1
                    _check(condition, env, f"{document['patient_id']} {rule.key} [{therapy}]", mismatches)
    return mismatches, seen


@pytest.fixture(scope="module")
def rulebase() -> Any:
    return radiopal.load_rulebase()


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    return [patient_at(i, seed=29, bad_fraction=0.0, missing_fraction=0.3).document for i in range(80)]


def test_truth_and_explain_agree_on_every_node_of_every_rule(rulebase: Any, documents: list[dict[str, Any]]):
    mismatches, seen = _mismatches(rulebase, documents)
    assert not mismatches, mismatches[:10]
    # The patients reach all three values, so agreement is not agreement on one value only.
    assert min(seen.values()) > 500, seen


def test_the_check_catches_an_evaluator_that_disagrees(rulebase: Any, documents: list[dict[str, Any]],
                                                      monkeypatch: pytest.MonkeyPatch):
    """A deliberately wrong ``truth`` for one operator (``<`` read as ``<=``) must be caught."""
    from radiopal.conditions import Compare

    honest = Compare._test

    def off_by_one(self: Compare, value: Any, env: Env) -> bool:
        if self.op == "<" and value == self.value:
            return True
        return honest(self, value, env)

    original_truth = Compare.truth

    def truth(self: Compare, env: Env) -> Tri:
        monkeypatch.setattr(Compare, "_test", off_by_one)
        try:
            return original_truth(self, env)
        finally:
            monkeypatch.setattr(Compare, "_test", honest)

    monkeypatch.setattr(Compare, "truth", truth)
    edge = dict(documents[0])
    edge["labs"] = dict(edge.get("labs") or {}, platelets={"value": 60, "unit": "10^9/L"})
    mismatches, _ = _mismatches(rulebase, [edge])
    assert any("ELIG-GEN-10" in m for m in mismatches), mismatches[:5]
