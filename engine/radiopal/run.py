"""Run a compiled rule base on one patient's facts: reset → declare → run (phase 1) → resolve → run (phase 2).

Engines are expensive to build (experta builds its RETE network per instance) and not thread-safe, so each thread
keeps its own engine per compiled rule base and reuses it for every patient (``reset()`` clears it).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .conditions import Env, Outcome
from .errors import EngineError
from .patient.facts import FactTable, FactValue
from .rulebase.compile import (
    DERIVED_PREFIX,
    SECTION_PREFIX,
    STATUSES,
    CompiledRule,
    CompiledRuleBase,
    Section,
    missing_requirements,
)
from .rulebase.model import DateSpec
from .tri import Tri


@dataclass
class Firing:
    """One rule firing for one therapy (or none): the rule, the experta facts it was bound to, what it concluded."""

    compiled: CompiledRule
    therapy: str | None
    fact_ids: dict[str, int]
    env: Env | None = None
    missing_facts: tuple[str, ...] = ()
    missing_paths: tuple[str, ...] = ()
    earliest_date: dt.date | None = None
    date_unknown: bool = False
    derived: FactValue | None = None
    phase: int = 1

    # Shared by the per-therapy records of one experta firing (dataclasses.replace copies the reference): they saw
    # the same facts, so what is computed from the outcome is computed once for all of them.
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def rule_id(self) -> str:
        return self.compiled.rule.id

    @property
    def outcome(self) -> Outcome | None:
        """The condition's evaluation with the values it saw (computed on first use: only explanations need it)."""
        memo = self.memo
        if "outcome" not in memo:
            when = self.compiled.rule.when
            memo["outcome"] = when.explain(self.env) if self.env is not None and when is not None else None
        return memo["outcome"]


@dataclass
class RunState:
    """Everything one evaluation produced before resolution."""

    table: FactTable
    firings: list[Firing] = field(default_factory=list)
    phase: int = 1


class Runner:
    """Evaluates patients against one compiled rule base; safe to share between threads."""

    def __init__(self, compiled: CompiledRuleBase) -> None:
        self.compiled = compiled
        self._local = threading.local()
        self.has_phase2 = any(c.phase == 2 for c in compiled.compiled)
        self.order = {c.name: i for i, c in enumerate(compiled.compiled)}

    def _engine(self) -> Any:
        engine = getattr(self._local, "engine", None)
        if engine is None:
            assert self.compiled.engine_class is not None, "an experta Runner needs the experta engine class"
            engine = self.compiled.engine_class()
            self._local.engine = engine
        return engine

    def prepare(self) -> None:
        """Build this thread's experta engine now (its RETE network)."""
        self._engine()

    def run(self, table: FactTable, resolve_phase1: Any) -> RunState:
        """Fire every rule that applies to ``table``. ``resolve_phase1(state)`` gives statuses before phase 2."""
        engine = self._engine()
        datum = self.compiled.datum_class
        assert datum is not None, "an experta Runner needs the experta datum class"
        state = RunState(table)
        engine.reset()
        engine._radiopal_state = state
        try:
            for name, section in sections(table, self.compiled.loaded.vocabulary):
                engine.declare(datum(name=name, fv=section))
            engine.run()
            if self.has_phase2:
                state.phase = 2
                statuses: Mapping[str, str] = resolve_phase1(state)
                engine.declare(datum(name=STATUSES, fv=FactValue.of(STATUSES, dict(statuses))))
                engine.run()
        finally:
            engine._radiopal_state = None
        put_in_rule_order(state, self.order)
        return state


def sections(table: FactTable, vocabulary: Any) -> list[tuple[str, Section]]:
    """The patient's facts grouped by vocabulary group, one :class:`Section` per group, in name order: the facts
    declared before phase 1 (both paths)."""
    grouped: dict[str, dict[str, FactValue]] = {}
    for fv in list(table):
        grouped.setdefault(vocabulary[fv.name].group, {})[fv.name] = fv
    return [(SECTION_PREFIX + group, Section(SECTION_PREFIX + group, grouped[group], table.evaluation_date))
            for group in sorted(grouped)]


def put_in_rule_order(state: RunState, order: Mapping[str, int]) -> None:
    """Sort the firings by rule-base order, then therapy.

    experta's agenda order among equal keys depends on hashes that vary between processes; the firings are put in
    rule-base order so that everything built from them (explanations, graphs) is byte-stable, on either path.
    """
    state.firings.sort(key=lambda f: (order[f.compiled.name], f.therapy or ""))


def on_fire(engine: Any, compiled: CompiledRule, bindings: Mapping[str, Any]) -> None:
    """Record a firing (called from inside experta's RHS)."""
    state: RunState | None = getattr(engine, "_radiopal_state", None)
    if state is None:  # pragma: no cover - only if experta fires outside run()
        raise EngineError(f"rule {compiled.rule.key} fired outside an evaluation")
    fact_ids = {d["name"]: int(d["__factid__"]) for d in bindings.values()}  # the experta facts this firing used
    derived = record_firing(state, compiled, compiled.env(bindings), fact_ids)
    if derived is not None:
        engine.declare(engine.__class__._radiopal_datum(name=DERIVED_PREFIX + derived.name, fv=derived))


def record_firing(state: RunState, compiled: CompiledRule, env: Env, fact_ids: dict[str, int],
                  derived_value: Tri | None = None) -> FactValue | None:
    """Append the firing records of ``compiled`` (one per therapy) to ``state``; return the fact it derived, if any,
    for the caller to declare. The one place a firing's content is computed, whichever path fired it.

    ``derived_value``: for a derivation, its condition's three-valued value when the caller has it (the compiled
    path); otherwise it is read from the condition's explanation. The explanation is computed only when something
    needs it: an unknown derived fact (its missing data), a deferral dated by list entries, or a graph.
    """
    firing = Firing(compiled, None, fact_ids, env, phase=state.phase)
    rule = compiled.rule
    if rule.requires:
        firing.missing_facts = tuple(missing_requirements(rule, env))
        paths: set[str] = set()
        for name in firing.missing_facts:
            fact = env.facts.get(name)
            paths.update(fact.missing if fact is not None and fact.missing else (name,))
        firing.missing_paths = tuple(sorted(paths))
    elif rule.when is not None:
        if rule.then.derive:
            firing.derived = _derived_fact(rule.then.derive, firing, derived_value)
            state.table.facts[firing.derived.name] = firing.derived
        elif rule.then.earliest_date is not None:
            firing.earliest_date, firing.date_unknown = _earliest(rule.then.earliest_date, env, firing)
    therapies = compiled.therapies
    firing.therapy = therapies[0]
    state.firings.append(firing)
    for therapy in therapies[1:]:  # one record per therapy; they share everything else (the memo too)
        state.firings.append(Firing(compiled, therapy, fact_ids, env, firing.missing_facts, firing.missing_paths,
                                    firing.earliest_date, firing.date_unknown, firing.derived, firing.phase,
                                    firing.memo))
    return firing.derived


def _derived_fact(name: str, firing: Firing, value: Tri | None) -> FactValue:
    if value is None:
        value = firing.outcome.value  # type: ignore[union-attr]
    if value is Tri.UNKNOWN:
        outcome: Outcome = firing.outcome  # type: ignore[assignment]
        missing = sorted({p for o in outcome.walk() for p in o.missing})
        return FactValue.unknown(name, tuple(missing), note="derived: its condition could not be judged")
    return FactValue.of(name, value is Tri.TRUE, note="derived by a rule")


def _earliest(spec: DateSpec, env: Env, firing: Firing) -> tuple[dt.date | None, bool]:
    """The earliest date of a deferral, and whether it could not be computed (e.g. chemotherapy still ongoing)."""
    delta = dt.timedelta(days=spec.plus_days)
    if spec.fact:
        fact = env.facts.get(spec.fact)
        if fact is None or not fact.known:
            return None, True
        return fact.value + delta, False
    outcome = firing.outcome
    witnesses = outcome.witnesses.get(spec.of or "", []) if outcome is not None else []
    if not witnesses:
        return None, True
    dates = []
    for entry in witnesses:
        if spec.none_if is not None and spec.none_if.truth(env.with_item(entry, f"{spec.of}[]")) is not Tri.FALSE:
            return None, True
        value = entry.get(spec.field or "")
        if value is None:
            return None, True
        dates.append(value + delta)
    return max(dates), False
