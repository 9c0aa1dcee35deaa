"""Compile a type-checked rule base into one experta engine class (built once, reused for every patient).

Each rule becomes one experta rule per therapy it concludes on. Every fact the rule reads is a *bound* pattern
(``f_i << Datum(name=...)``), so a firing records exactly which patient facts it used; the three-valued condition
runs in a ``TEST``. Rules that read another therapy's final status (``status_of``) belong to phase 2: they can only
match once the phase-1 statuses are resolved and declared, all together, as one ``statuses`` fact (therapy → status).
One fact rather than one per therapy: a rule reading several statuses then needs one join, not one per status.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json
from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._experta import engine_base, experta
from ..conditions import THERAPY_PLACEHOLDER, Env
from ..tri import Tri
from .load import LoadedRules
from .model import Rule

STATUSES = "statuses"
SECTION_PREFIX = "section:"
DERIVED_PREFIX = "derived:"


class Section:
    """The facts of one section of the patient document, declared to experta as one fact.

    Declaring ~10 sections instead of ~100 single facts keeps experta's RETE network small (each declared fact is
    tested against every alpha node); which facts a firing actually read comes from its condition's evaluation.
    Hashed by identity, so it can ride inside an experta fact. It also keeps the evaluation environment of the rules
    that read nothing but this section, one per therapy, so the ~200 such rules of a patient share them.
    """

    __slots__ = ("_envs", "evaluation_date", "facts", "name")

    def __init__(self, name: str, facts: dict[str, Any], evaluation_date: Any = None) -> None:
        self.name = name
        self.facts = facts
        self.evaluation_date = evaluation_date
        self._envs: dict[str | None, Env] = {}

    def env(self, therapy: str | None) -> Env:
        """The environment for a rule that binds only this section (``therapy``: the rule's ``$therapy``)."""
        env = self._envs.get(therapy)
        if env is None:
            env = self._envs[therapy] = Env(self.facts, self.evaluation_date, therapy, statuses={})
        return env


@dataclass(frozen=True)
class CompiledRule:
    """One experta rule: a rule of the rule base, for all its therapies at once or — when its condition names
    ``$therapy`` — for one therapy."""

    rule: Rule
    therapies: tuple[str | None, ...]
    phase: int
    fact_names: tuple[str, ...]
    name: str
    patterns: tuple[str, ...] = ()

    @property
    def therapy(self) -> str | None:
        """The therapy a per-therapy compilation is for (None when one experta rule serves all its therapies)."""
        return self.therapies[0] if len(self.therapies) == 1 else None

    def env(self, bindings: Mapping[str, Any]) -> Env:
        """The evaluation environment built from the facts experta bound for this rule (no copying of the patient)."""
        if len(bindings) == 1:  # the patient section alone: the section keeps one shared environment per therapy
            (datum,) = bindings.values()
            return datum["fv"].env(self.therapy)
        patient: Mapping[str, Any] = {}
        extra: dict[str, Any] = {}
        statuses: dict[str, str] = {}
        evaluation_date: dt.date | None = None
        for datum in bindings.values():
            name = datum["name"]
            fv = datum["fv"]
            if name.startswith(SECTION_PREFIX):
                patient = fv.facts
                evaluation_date = fv.evaluation_date
            elif name == STATUSES:
                statuses = fv.value
            else:
                extra[name[len(DERIVED_PREFIX):]] = fv
        facts = ChainMap(extra, patient) if extra else patient  # type: ignore[arg-type]
        assert evaluation_date is not None, "every binding carries the patient section"
        return Env(facts, evaluation_date, self.therapy, statuses=statuses)

    def truth(self, env: Env) -> Tri:
        """Whether the rule fires: its condition is met, or (a requirement rule) a required fact is unknown."""
        rule = self.rule
        if rule.requires:
            return Tri.of(bool(missing_requirements(rule, env)))
        if rule.then.derive:
            return Tri.TRUE  # a derivation always fires; the derived fact carries the condition's three values
        assert rule.when is not None
        return rule.when.truth(env)


def missing_requirements(rule: Rule, env: Env) -> list[str]:
    """Names of the required facts that are unknown (a requirement whose `when` is unknown counts: safer)."""
    out = []
    for req in rule.requires:
        if req.when is not None and req.when.truth(env) is Tri.FALSE:
            continue
        fact = env.facts.get(req.fact)
        if fact is None or not fact.known:
            out.append(req.fact)
    return out


@dataclass
class CompiledRuleBase:
    """The output of compilation: rules, the experta engine class (None on the compiled path), and a content hash
    for the audit trail."""

    loaded: LoadedRules
    compiled: tuple[CompiledRule, ...]
    engine_class: type | None
    datum_class: type | None
    version: str
    digest: str
    by_name: dict[str, CompiledRule] = field(default_factory=dict)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.loaded.rules


def _names_therapy(rule: Rule) -> bool:
    """Whether the rule's condition compares with ``$therapy`` (then it is compiled once per therapy)."""
    conditions = [rule.when] if rule.when is not None else []
    conditions += [r.when for r in rule.requires if r.when is not None]
    return any(
        getattr(node, "value", None) == THERAPY_PLACEHOLDER
        or (isinstance(getattr(node, "value", None), tuple) and THERAPY_PLACEHOLDER in getattr(node, "value", ()))
        for cond in conditions
        for node in cond.nodes()
    )


def _phase(rule: Rule) -> int:
    return 2 if rule.statuses() else 1


def plan_rules(loaded: LoadedRules) -> tuple[CompiledRule, ...]:
    """The engine-neutral plan of ``loaded``: one :class:`CompiledRule` per rule, or per therapy for a rule whose
    condition names ``$therapy``, each with the facts it binds (``patterns``) and its phase.

    Both evaluation paths run these same records (experta: :func:`compile_rules`; the compiled path:
    :mod:`radiopal.compiled`), so their firing records name the same rules, therapies and phases.
    """
    compiled: list[CompiledRule] = []
    for index, rule in enumerate(loaded.rules):
        per_therapy = _names_therapy(rule)
        for therapies in ([(t,) for t in rule.therapies] if per_therapy else [rule.therapies or (None,)]):
            therapy = therapies[0] if per_therapy else None
            names = sorted(rule.facts())
            # Every rule binds the patient fact (it carries the evaluation date), plus any derived facts it reads.
            groups = {loaded.vocabulary[n].group for n in names} | {"patient"}
            patterns = sorted(
                (SECTION_PREFIX + g) if not g.startswith(DERIVED_PREFIX) else g for g in groups
            ) + ([STATUSES] if rule.statuses() else [])
            safe_key = rule.key.replace("-", "_").replace("/", "__")
            name = f"r{index:04d}_{safe_key}" + (f"__{therapy}" if therapy else "")
            compiled.append(CompiledRule(rule, tuple(therapies), _phase(rule), tuple(names), name, tuple(patterns)))
    return tuple(compiled)


def compile_rules(loaded: LoadedRules, on_fire: Callable[[Any, CompiledRule, Mapping[str, Any]], None], *,
                  streamlined: bool = True) -> CompiledRuleBase:
    """Build the experta engine class for ``loaded``. ``on_fire(engine, compiled, bindings)`` runs on each firing.

    ``streamlined=False`` builds on experta's own RETE nodes (see :func:`radiopal._experta.engine_base`).
    """
    xp = experta()
    datum_class = type("Datum", (xp.Fact,), {"__doc__": "One patient fact: its name and its FactValue."})
    attrs: dict[str, Any] = {"_radiopal_datum": datum_class}
    compiled = plan_rules(loaded)
    for item in compiled:
        attrs[item.name] = _experta_rule(xp, datum_class, item, on_fire)
    engine_class = type("RadiopalEngine", (engine_base(streamlined),), attrs)
    return planned_rulebase(loaded, compiled, engine_class, datum_class)


def planned_rulebase(loaded: LoadedRules, compiled: tuple[CompiledRule, ...], engine_class: type | None = None,
                     datum_class: type | None = None) -> CompiledRuleBase:
    """A :class:`CompiledRuleBase` of the plan ``compiled`` (with no experta classes for the compiled path)."""
    base = CompiledRuleBase(loaded, compiled, engine_class, datum_class, _version(loaded), _digest(loaded))
    base.by_name = {c.name: c for c in compiled}
    return base


def _experta_rule(xp: Any, datum_class: type, item: CompiledRule, on_fire: Callable[..., None]) -> Any:
    patterns = [f"f_{i}" << datum_class(name=n) for i, n in enumerate(item.patterns)]
    bound = [f"f_{i}" for i in range(len(patterns))]

    def test(**bindings: Any) -> bool:
        return item.truth(item.env(bindings)) is Tri.TRUE

    # experta fills a TEST's parameters by name from the bindings: declare exactly the bound names.
    test.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(b, inspect.Parameter.KEYWORD_ONLY) for b in bound]
    )

    def fire(engine: Any, **bindings: Any) -> None:
        on_fire(engine, item, bindings)

    fire.__name__ = item.name
    return xp.Rule(*patterns, xp.TEST(test))(fire)


def _version(loaded: LoadedRules) -> str:
    parts = [f"{f.area}@{f.version}" for f in sorted(loaded.files, key=lambda f: f.area)]
    if loaded.thresholds.version:
        parts.append(f"thresholds@{loaded.thresholds.version}")
    return "+".join(parts)


def _digest(loaded: LoadedRules) -> str:
    payload: list[Any] = [(f.area, f.version, [r.raw for r in f.rules])
                          for f in sorted(loaded.files, key=lambda f: f.area)]
    if loaded.thresholds.raw is not None:  # a number changed behind a name changes the rule base
        payload.append(("thresholds", loaded.thresholds.raw))
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
