"""Run a rule base's plan on one patient without experta: each rule once, in dependency order, in two phases.

What experta does for radiopal — declare the patient's sections, let every rule whose facts are all declared test
its condition, fire those whose condition is met, declare what a derivation derives, then (phase 2) declare the
resolved statuses and let the ``status_of`` rules do the same — is done here by a plain loop. Each rule of the plan
binds every fact it reads, and every fact is declared once, so each rule is tested at most once per phase-free
evaluation: order among rules changes no firing, only *when* a rule can be tested (after the facts it binds). The
loop visits the rules in an order where every derivation comes before the rules reading what it derives; a rule
whose facts are not all declared yet waits for phase 2; one whose facts never all appear never fires (as in
experta). The firing records are made by :func:`radiopal.run.record_firing`, the same function experta's firings
call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import RulebaseError
from ..patient.facts import FactTable, FactValue
from ..rulebase.compile import (
    DERIVED_PREFIX,
    STATUSES,
    CompiledRule,
    CompiledRuleBase,
)
from ..run import RunState, put_in_rule_order, record_firing, sections
from ..tri import Tri
from .conditions import TRUE, Compiled, compile_condition

Fires = Callable[[Any], bool]


class _Step:
    """One rule of the plan, ready to run: the facts it binds and the compiled test of whether it fires."""

    __slots__ = ("compiled", "condition", "derive", "env_key", "fires", "patterns", "single", "therapy")

    def __init__(self, compiled: CompiledRule) -> None:
        self.compiled = compiled
        # A plain rule fires when its compiled condition is met (tested inline); requirement rules and derivations
        # have their own test.
        rule = compiled.rule
        plain = not rule.requires and not rule.then.derive and rule.when is not None
        self.condition: Compiled | None = compile_condition(rule.when) if plain and rule.when is not None else None
        self.fires = None if plain else _fires(compiled)
        # A derivation's value (the derived fact) is its condition's value, from the same compiled closure.
        derives = bool(rule.then.derive) and not rule.requires and rule.when is not None
        self.derive: Compiled | None = compile_condition(rule.when) if derives and rule.when is not None else None
        self.patterns = compiled.patterns
        self.single = compiled.patterns[0] if len(compiled.patterns) == 1 else None
        self.therapy = compiled.therapy
        self.env_key = (compiled.patterns, self.therapy)


class CompiledRunner:
    """Evaluates patients on the compiled path; holds no per-patient state, so threads may share it."""

    def __init__(self, compiled: CompiledRuleBase) -> None:
        self.compiled = compiled
        self.has_phase2 = any(c.phase == 2 for c in compiled.compiled)
        self.order = {c.name: i for i, c in enumerate(compiled.compiled)}
        self.steps = [_Step(c) for c in _dependency_order(compiled.compiled)]

    def prepare(self) -> None:
        """Nothing to build per thread (the closures were built with the runner)."""

    def run(self, table: FactTable, resolve_phase1: Any) -> RunState:
        """Fire every rule that applies to ``table``. ``resolve_phase1(state)`` gives statuses before phase 2."""
        state = RunState(table)
        declared: dict[str, Any] = {}
        ids: dict[str, int] = {}
        for name, section in sections(table, self.compiled.loaded.vocabulary):
            declared[name] = section
            ids[name] = len(ids) + 1  # experta's fact 0 is its initial fact
        envs: dict[tuple[Any, ...], Any] = {}
        waiting = self._pass(self.steps, state, declared, ids, envs)
        if self.has_phase2:
            state.phase = 2
            statuses: Mapping[str, str] = resolve_phase1(state)
            declared[STATUSES] = FactValue.of(STATUSES, dict(statuses))
            ids[STATUSES] = len(ids) + 1
            self._pass(waiting, state, declared, ids, envs)
        put_in_rule_order(state, self.order)
        return state

    @staticmethod
    def _pass(steps: list[_Step], state: RunState, declared: dict[str, Any], ids: dict[str, int],
              envs: dict[tuple[Any, ...], Any]) -> list[_Step]:
        """Test and fire, in order, every step whose facts are declared; return the steps still waiting.

        ``envs`` keeps one environment per (facts bound, therapy) for the evaluation: rules binding the same facts
        see the same environment (as the rules binding the patient section alone share the section's, on experta).
        """
        waiting = []
        for step in steps:
            single = step.single
            if single is not None:
                section = declared.get(single)
                if section is None:
                    waiting.append(step)
                    continue
                env = section.env(step.therapy)
            else:
                env = envs.get(step.env_key)
                if env is None:
                    if not all(p in declared for p in step.patterns):
                        waiting.append(step)
                        continue
                    env = envs[step.env_key] = step.compiled.env(
                        {p: {"name": p, "fv": declared[p]} for p in step.patterns})
            condition = step.condition
            if (condition(env, None) is TRUE) if condition is not None else step.fires(env):  # type: ignore[misc]
                derive = step.derive
                derived = record_firing(state, step.compiled, env, {p: ids[p] for p in step.patterns},
                                        derive(env, None) if derive is not None else None)
                if derived is not None:
                    name = DERIVED_PREFIX + derived.name
                    declared[name] = derived
                    ids[name] = len(ids) + 1
        return waiting


def _fires(compiled: CompiledRule) -> Fires:
    """Whether the rule fires in ``env``, as :meth:`CompiledRule.truth` decides it, with compiled conditions."""
    rule = compiled.rule
    if rule.requires:
        requirements = [(req.fact, compile_condition(req.when) if req.when is not None else None)
                        for req in rule.requires]

        def any_missing(env: Any) -> bool:
            facts = env.facts
            for name, when in requirements:
                if when is not None and when(env, None) is Tri.FALSE:
                    continue
                fact = facts.get(name)
                if fact is None or not fact.known:
                    return True
            return False

        return any_missing
    if rule.then.derive:
        return lambda env: True  # a derivation always fires; the derived fact carries the three values
    if rule.when is None:  # pragma: no cover - the loader gives every non-requirement rule a condition
        raise RulebaseError(f"rule {rule.key} has no condition")
    condition: Compiled = compile_condition(rule.when)
    true = Tri.TRUE
    return lambda env: condition(env, None) is true


def _dependency_order(plan: tuple[CompiledRule, ...]) -> list[CompiledRule]:
    """The plan with every derivation before the rules that read what it derives (otherwise in plan order)."""
    makers: dict[str, list[CompiledRule]] = {}
    for item in plan:
        if item.rule.then.derive and not item.rule.requires:
            makers.setdefault(DERIVED_PREFIX + item.rule.then.derive, []).append(item)
    for name, items in makers.items():
        if len(items) > 1:  # experta would hold one derived fact per maker: not a shape the plan loop models
            raise RulebaseError(f"derived fact {name[len(DERIVED_PREFIX):]!r} is derived by {len(items)} compiled "
                                f"rules ({', '.join(i.name for i in items)}); the compiled path needs exactly one")
    order: list[CompiledRule] = []
    state: dict[str, int] = {}  # 1 = being placed, 2 = placed

    def place(item: CompiledRule) -> None:
        mark = state.get(item.name)
        if mark == 2:
            return
        if mark == 1:
            raise RulebaseError(f"derived facts depend on each other in a circle through rule {item.rule.key}")
        state[item.name] = 1
        for pattern in item.patterns:
            for maker in makers.get(pattern, ()):
                place(maker)
        state[item.name] = 2
        order.append(item)

    for item in plan:
        place(item)
    return order
