"""The streamlined RETE network (radiopal._rete) matches exactly what experta's own network matches.

The reference is experta 1.9.4's own nodes (``streamlined=False``): same rule base, same patients, the firings
(rule, therapy, phase, facts bound), the decision document and the reasoning graph must be identical.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import radiopal
from conftest import VIGNETTES, vignette_document
from radiopal.api import RuleBase
from radiopal.scenarios import load_scenario
from radiopal.synth import generate

OWN = Path(__file__).resolve().parent / "scenarios"


@pytest.fixture(scope="module")
def pair() -> tuple[RuleBase, RuleBase]:
    fast = radiopal.load_rulebase()
    return fast, RuleBase(fast.loaded, streamlined=False)


def _documents(rulebase: RuleBase) -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(OWN.glob("*.yaml")):
        scenario = load_scenario(path, rulebase.catalogue.therapy_ids, list(rulebase.catalogue.advisories))
        docs.append((path.stem, scenario.document))
    if VIGNETTES.is_dir():
        docs += [(p.stem, vignette_document(p)) for p in sorted(VIGNETTES.glob("*.yaml"))]
    docs += [(p.document["patient_id"], p.document) for p in generate(150, seed=11, bad_fraction=0.0)]
    return docs


def _trace(result: radiopal.Result) -> list[tuple]:
    return [(f.rule_id, f.therapy, f.phase, f.compiled.name, tuple(sorted(f.fact_ids)), f.earliest_date,
             f.missing_paths) for f in result.firings]


def test_the_engine_runs_on_the_streamlined_network(pair):
    fast, plain = pair
    fast.evaluate(_documents(fast)[0][1])
    plain.evaluate(_documents(plain)[0][1])
    fast_root = fast._runner._engine().matcher.root_node
    plain_root = plain._runner._engine().matcher.root_node
    assert type(fast_root).__module__ == "radiopal._rete"
    assert type(plain_root).__module__.startswith("experta.")


def test_same_firings_decisions_and_graphs_as_experta_own_network(pair):
    fast, plain = pair
    documents = _documents(fast)
    assert len(documents) >= 300
    fired = set()
    for name, document in documents:
        a, b = fast.evaluate(document), plain.evaluate(document)
        assert _trace(a) == _trace(b), name
        assert a.to_json() == b.to_json(), name
        assert a.graph.to_json() == b.graph.to_json(), name
        fired.update(f.compiled.rule.key for f in a.firings)
    # The comparison is only worth something if it exercised the rule base: most rules fired somewhere.
    assert len(fired) >= 0.9 * len(fast.rules)


def _tiny_engines():
    """One tiny rule set on experta's own engine and on radiopal's streamlined one: literals of several types."""
    from radiopal._experta import engine_base, experta

    xp = experta()
    fired: list[str] = []

    def rule(name, *patterns):
        def rhs(self, **_):
            fired.append(name)

        rhs.__name__ = name
        return xp.Rule(*patterns)(rhs)

    attrs = {
        "kind_a": rule("kind_a", xp.Fact(kind="a")),
        "kind_b": rule("kind_b", xp.Fact(kind="b")),
        "kind_1": rule("kind_1", xp.Fact(kind=1)),
        "kind_a_and_b": rule("kind_a_and_b", xp.AS.x << xp.Fact(kind="a"), xp.AS.y << xp.Fact(kind="b")),
        "kind_a_not_c": rule("kind_a_not_c", xp.Fact(kind="a"), xp.NOT(xp.Fact(kind="c"))),
        "size_big": rule("size_big", xp.Fact(size=xp.P(lambda v: isinstance(v, int) and v > 10))),
        # Bindings and joins on them (issue #17's counterexample: a=0, b=1 must not fire).
        "same_v": rule("same_v", xp.Fact(k="a", v=xp.MATCH.v), xp.Fact(k="b", v=xp.MATCH.v)),
        "a_v_not_c_same_v": rule("a_v_not_c_same_v", xp.Fact(k="a", v=xp.MATCH.v),
                                 xp.NOT(xp.Fact(k="c", v=xp.MATCH.v))),
        "a_v_test": rule("a_v_test", xp.Fact(k="a", v=xp.MATCH.v),
                         xp.TEST(lambda v: isinstance(v, int) and v >= 5)),
        "a_b_test_join": rule("a_b_test_join", xp.Fact(k="a", v=xp.MATCH.x), xp.Fact(k="b", v=xp.MATCH.y),
                              xp.TEST(lambda x, y: x == y + 1)),
        "a_not_v": rule("a_not_v", xp.Fact(k="a", v=xp.MATCH.v), xp.Fact(k="b", v=~xp.MATCH.v)),
    }
    plain = type("Plain", (engine_base(False),), dict(attrs))()
    fast = type("Fast", (engine_base(True),), dict(attrs))()
    return xp, plain, fast, fired


@pytest.mark.parametrize("facts", [
    [{"kind": "a"}],
    [{"kind": "a"}, {"kind": "b"}],
    [{"kind": "a"}, {"kind": "c"}],
    [{"kind": 1}],
    [{"kind": True}],  # True == 1 in Python: experta's equality test matches it, so must the dispatch
    [{"kind": 1.0}],
    [{"kind": ["a"]}],  # unhashable: equal to no literal
    [{"other": "a"}],  # no such field
    [{"kind": "a", "size": 12}, {"size": 3}],
    # Bindings: the dispatching node's own test binds v; the join must see it.
    [{"k": "a", "v": 0}, {"k": "b", "v": 1}],
    [{"k": "a", "v": 1}, {"k": "b", "v": 1}],
    [{"k": "a", "v": 7}, {"k": "b", "v": 6}],
    [{"k": "a", "v": 7}, {"k": "b", "v": 7}, {"k": "c", "v": 7}],
    [{"k": "a", "v": 7}, {"k": "c", "v": 8}],
    [{"k": "a", "v": 2}, {"k": "a", "v": 3}, {"k": "b", "v": 3}, {"k": "b", "v": 2}, {"k": "c", "v": 2}],
    [{"k": "b", "v": 1}],
])
def test_dispatch_and_joins_match_like_experta(facts):
    xp, plain, fast, fired = _tiny_engines()
    outcomes = []
    for engine in (plain, fast):
        fired.clear()
        for _ in range(2):  # a reset must leave nothing behind
            engine.reset()
            engine.declare(*[xp.Fact(**f) for f in facts])
            engine.run()
        outcomes.append(sorted(fired))
    assert outcomes[0] == outcomes[1]


def test_a_binding_made_by_a_dispatching_node_reaches_the_join():
    """Issue #17: ``Fact(k="a", v=MATCH.v), Fact(k="b", v=MATCH.v)`` on a=0, b=1 fired on the streamlined network
    (the dispatch dropped the binding of ``v``); experta's own nodes never fire it, nor may ours."""
    xp, plain, fast, fired = _tiny_engines()
    for engine in (plain, fast):
        fired.clear()
        engine.reset()
        engine.declare(xp.Fact(k="a", v=0), xp.Fact(k="b", v=1))
        engine.run()
        assert "same_v" not in fired
        fired.clear()
        engine.reset()
        engine.declare(xp.Fact(k="a", v=1), xp.Fact(k="b", v=1))
        engine.run()
        assert "same_v" in fired


def test_a_retraction_undoes_a_match_like_experta():
    xp, plain, fast, fired = _tiny_engines()
    outcomes = []
    for engine in (plain, fast):
        fired.clear()
        engine.reset()
        a = engine.declare(xp.Fact(kind="a"))
        engine.declare(xp.Fact(kind="c"))
        engine.retract(a)
        engine.run()
        outcomes.append(sorted(fired))
    assert outcomes[0] == outcomes[1] == []
