"""The compiled path (engine="compiled") against experta, the engine of record: the same firings, decision documents,
reasoning graphs and explanations, byte for byte.

Inputs: every scenario of tests/scenarios, every clinical vignette, every example (patient documents and FHIR
Bundles), 5,000 ``radiopal synth`` patients (missing data and stale labs included), fact tables drawn by hypothesis
around every threshold of the rule base (each threshold itself, one step either side, unknown facts, ``days since``
exactly at its limit), and a generated 1,000-rule base.

The check is shown to have teeth by :func:`test_a_miscompiled_operator_is_caught`: it compiles ``>=`` as ``>`` in the
compiled path only, and the same comparison finds the difference (at an exact threshold); likewise a cohort run with
that defect stops at its re-check on experta and writes both results out.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import radiopal
from conftest import REPO, VIGNETTES, load_benchmark, needs_shared, vignette_document
from radiopal.api import RuleBase, evaluate_fhir
from radiopal.compiled import conditions as compiled_conditions
from radiopal.conditions import Compare
from radiopal.explain import explain, render_text
from radiopal.patient.facts import FactTable, FactValue, build_facts
from radiopal.patient.load import parse_patient
from radiopal.scenarios import load_scenario
from radiopal.synth import generate

OWN = Path(__file__).resolve().parent / "scenarios"
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="module")
def pair() -> tuple[RuleBase, RuleBase]:
    experta = radiopal.load_rulebase()
    return experta, experta.on_engine("compiled")


def trace(result: radiopal.Result) -> list[tuple[Any, ...]]:
    """Every firing record: rule, therapy, phase, facts bound, date, missing data, derived fact."""
    out = []
    for f in result.firings:
        derived = (f.derived.name, f.derived.known, f.derived.value, f.derived.missing) if f.derived else None
        out.append((f.compiled.name, f.therapy, f.phase, tuple(sorted(f.fact_ids)), f.earliest_date, f.date_unknown,
                    f.missing_facts, f.missing_paths, derived))
    return out


def differences(a: radiopal.Result, b: radiopal.Result, *, full: bool = True) -> list[str]:
    """What differs between two results of one patient (empty: identical). ``full`` adds graphs and explanations."""
    out = []
    if trace(a) != trace(b):
        out.append("firings")
    if a.to_json() != b.to_json():
        out.append("decision document")
    if full:
        if a.graph.to_json() != b.graph.to_json():
            out.append("graph")
        if a.graph.to_dot() != b.graph.to_dot():
            out.append("graph (DOT)")
        ea, eb = explain(a), explain(b)
        if json.dumps(ea.to_dict(), sort_keys=True, default=str) != json.dumps(eb.to_dict(), sort_keys=True,
                                                                                 default=str):
            out.append("explanation")
        if render_text(ea) != render_text(eb):
            out.append("explanation text")
    return out


def compare_documents(pair: tuple[RuleBase, RuleBase], documents: list[tuple[str, Any]],
                      full_every: int = 1) -> dict[str, list[str]]:
    """Evaluate each document on both rule bases; name → what differed, for those that differed."""
    experta, compiled = pair
    found = {}
    for i, (name, document) in enumerate(documents):
        diff = differences(experta.evaluate(document), compiled.evaluate(document), full=i % full_every == 0)
        if diff:
            found[name] = diff
    return found


def _scenario_documents(rulebase: RuleBase) -> list[tuple[str, Any]]:
    docs = []
    for path in sorted(OWN.glob("*.yaml")):
        scenario = load_scenario(path, rulebase.catalogue.therapy_ids, list(rulebase.catalogue.advisories))
        docs.append((path.stem, scenario.document))
    return docs


def test_scenarios_give_identical_results(pair):
    documents = _scenario_documents(pair[0])
    assert len(documents) >= 150
    assert compare_documents(pair, documents) == {}


@needs_shared
def test_vignettes_give_identical_results(pair):
    documents = [(p.stem, vignette_document(p)) for p in sorted(VIGNETTES.glob("*.yaml"))]
    assert documents
    assert compare_documents(pair, documents) == {}


def test_examples_give_identical_results(pair):
    documents = [(p.name, p) for p in sorted(EXAMPLES.rglob("*.yaml"))]
    assert len(documents) >= 2
    assert compare_documents(pair, documents) == {}
    bundles = sorted(EXAMPLES.rglob("*.bundle.json"))
    assert bundles
    experta, compiled = pair
    for path in bundles:
        assert differences(evaluate_fhir(path, experta), evaluate_fhir(path, compiled)) == [], path.name


def test_five_thousand_synthetic_patients_give_identical_results(pair):
    """Firings and decision documents for all 5,000; graphs and explanations for every 50th (they are built from
    the same firings by the same code, and cost most of the time)."""
    documents = [(p.document["patient_id"], p.document)
                 for p in generate(5000, seed=17, bad_fraction=0.0, missing_fraction=0.2)]
    assert len(documents) == 5000
    assert compare_documents(pair, documents, full_every=50) == {}
    fired = {f.compiled.rule.key for _, doc in documents[:500] for f in pair[1].evaluate(doc).firings}
    assert len(fired) >= 0.9 * len(pair[0].rules)  # the patients exercise nearly every rule


# --- fact tables at the thresholds ------------------------------------------------------------------------------

def _thresholds(rulebase: RuleBase) -> dict[str, list[tuple[str, Any]]]:
    """Per fact, the values worth trying: each numeric threshold and one step either side, each literal compared
    with, and (for dates) the day a ``days since`` limit is reached and the days either side (as offsets)."""
    found: dict[str, set[tuple[str, Any]]] = {}

    def conditions(rule: Any) -> Iterator[Any]:
        if rule.when is not None:
            yield rule.when
        for req in rule.requires:
            if req.when is not None:
                yield req.when
        if rule.then.earliest_date is not None and rule.then.earliest_date.none_if is not None:
            yield rule.then.earliest_date.none_if

    for rule in rulebase.rules:
        for condition in conditions(rule):
            for node in condition.nodes():
                if not isinstance(node, Compare) or node.subject not in ("fact", "days_since"):
                    continue
                values = found.setdefault(node.name, set())
                value = node.value
                if node.subject == "days_since" and isinstance(value, int):
                    values.update(("days", value + d) for d in (-1, 0, 1))
                elif isinstance(value, bool | str):
                    values.add(("value", value))
                elif isinstance(value, int | float):
                    step = 1 if isinstance(value, int) else 0.1
                    values.update(("value", v) for v in (value - step, value, value + step))
                elif isinstance(value, tuple | list):
                    values.update(("value", v) for v in value if isinstance(v, str | int | float))
    return {name: sorted(values, key=repr) for name, values in found.items()}


@pytest.fixture(scope="module")
def boundary_material(pair):
    experta = pair[0]
    bases = [parse_patient(p.document) for p in generate(40, seed=5, bad_fraction=0.0, missing_fraction=0.1)]
    thresholds = _thresholds(experta)
    assert len(thresholds) >= 20
    return bases, thresholds


def _table(rulebase: RuleBase, doc: Any, changes: dict[str, tuple[str, Any]]) -> FactTable:
    """A fresh fact table of ``doc`` with ``changes`` applied (each path gets its own: a run adds derived facts)."""
    table = build_facts(doc, rulebase.vocabulary)
    for name, (kind, value) in changes.items():
        if kind == "unknown":
            table.facts[name] = FactValue.unknown(name, (name,))
        elif kind == "days":
            table.facts[name] = FactValue.of(name, table.evaluation_date - dt.timedelta(days=value))
        else:
            table.facts[name] = FactValue.of(name, value)
    return table


def _boundary_case(data: Any, bases: list[Any], thresholds: dict[str, list[tuple[str, Any]]]) -> tuple[Any, dict]:
    doc = bases[data.draw(st.integers(0, len(bases) - 1), label="base patient")]
    names = data.draw(st.lists(st.sampled_from(sorted(thresholds)), min_size=1, max_size=8, unique=True),
                      label="facts changed")
    changes = {}
    for name in names:
        if data.draw(st.integers(0, 4), label=f"{name} unknown?") == 0:
            changes[name] = ("unknown", None)
        else:
            changes[name] = data.draw(st.sampled_from(thresholds[name]), label=name)
    return doc, changes


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_exact_thresholds_and_unknown_facts_give_identical_results(pair, boundary_material, data):
    experta, compiled = pair
    bases, thresholds = boundary_material
    doc, changes = _boundary_case(data, bases, thresholds)
    a = experta.evaluate_facts(doc, _table(experta, doc, changes))
    b = compiled.evaluate_facts(doc, _table(compiled, doc, changes))
    assert differences(a, b, full=data.draw(st.integers(0, 7), label="graphs too?") == 0) == []


# --- a generated 1,000-rule base ---------------------------------------------------------------------------------

def test_a_generated_thousand_rule_base_gives_identical_results(tmp_path):
    bench = load_benchmark("bench_engine")
    experta = radiopal.load_rulebase(bench.generated_rulebase(tmp_path / "rules", 1000))
    assert len(experta.rules) == 1000
    compiled = experta.on_engine("compiled")
    documents = [(p.document["patient_id"], p.document)
                 for p in generate(150, seed=23, bad_fraction=0.0, missing_fraction=0.2)]
    assert compare_documents((experta, compiled), documents, full_every=10) == {}
    assert sum(len(compiled.evaluate(doc).firings) for _, doc in documents[:20]) > 100  # rules do fire


def _rich_rulebase(folder: Path, n_rules: int, seed: int = 31) -> Path:
    """A generated rule base using every construct of the condition language: all/any/not, numeric and boolean and
    enum comparisons, ``in``, ``known``/``unknown``, ``days_since``, ``exists`` over chemotherapy entries with field
    tests, ``status_of`` (phase-2 rules), requirement rules and dated deferrals (by a date fact and by list entries)."""
    import random

    rng = random.Random(seed)
    numeric = [("plt_current", 20, 300), ("anc_current", 0.5, 8), ("hb_current", 7, 16), ("crcl", 10, 120),
               ("pain_nrs", 0, 10), ("life_expectancy_weeks", 2, 104), ("lesion_count", 0, 30), ("ecog", 0, 4)]
    booleans = ["castration_resistant", "primary_controlled", "pregnant", "uptake_at_painful_sites"]
    enums = {"site": ["prostate", "breast", "lung", "renal"], "bone_pattern": ["osteoblastic", "osteolytic", "mixed"],
             "sex": ["male", "female"]}
    dates = ["labs_date", "last_ra223_date", "last_sr89_date", "bone_scan_date"]
    phase1 = ["sr89", "sm153", "ra223", "ebrt_single_8gy", "sbrt", "surgery_referral", "pamidronate"]
    read_status = ["zoledronic_acid", "denosumab"]

    def atom() -> str:
        kind = rng.choice(["num", "num", "bool", "enum", "in", "presence", "days", "exists"])
        if kind == "num":
            fact, lo, hi = rng.choice(numeric)
            value = rng.randint(int(lo), int(hi)) if rng.random() < 0.5 else round(rng.uniform(lo, hi), 1)
            return f'{{fact: {fact}, op: "{rng.choice(["<", "<=", ">", ">=", "==", "!="])}", value: {value}}}'
        if kind == "bool":
            return f'{{fact: {rng.choice(booleans)}, op: "{rng.choice(["==", "!="])}", value: {rng.choice(["true", "false"])}}}'
        if kind == "enum":
            fact = rng.choice(sorted(enums))
            return f'{{fact: {fact}, op: "{rng.choice(["==", "!="])}", value: {rng.choice(enums[fact])}}}'
        if kind == "in":
            fact = rng.choice(sorted(enums))
            values = rng.sample(enums[fact], 2)
            return f'{{fact: {fact}, op: {rng.choice(["in", "not_in"])}, value: [{", ".join(values)}]}}'
        if kind == "presence":
            fact = rng.choice([n for n, _, _ in numeric] + booleans + dates)
            return f'{{fact: {fact}, op: {rng.choice(["known", "unknown"])}}}'
        if kind == "days":
            return f'{{days_since: {rng.choice(dates)}, op: "{rng.choice(["<", ">="])}", value: {rng.randint(7, 120)}}}'
        return ('{exists: chemotherapy, where: {any: [{field: myelosuppressive, op: "==", value: true}, '
                f'{{days_since_field: last_dose_date, op: "<", value: {rng.randint(14, 60)}}}]}}}}')

    def tree(depth: int) -> str:
        if depth == 0 or rng.random() < 0.35:
            return atom()
        kind = rng.choice(["all", "any", "not"])
        if kind == "not":
            return f"{{not: {tree(depth - 1)}}}"
        return f"{{{kind}: [{', '.join(tree(depth - 1) for _ in range(rng.randint(2, 3)))}]}}"

    lines = ["area: generated", 'version: "1"', "rules:"]
    for i in range(n_rules):
        shape = rng.random()
        therapies = rng.sample(phase1, rng.randint(1, 3))
        header = [f"  - id: ELIG-GEN-{i + 100}", f"    title: generated rule {i}", "    version: 1",
                  "    strength: weak", "    verification: U", "    sources: [rulebase_derived]"]
        if shape < 0.05:
            facts = rng.sample([n for n, _, _ in numeric] + booleans, 2)
            body = [f"    therapies: [{', '.join(therapies)}]", f"    requires: [{', '.join(facts)}]",
                    "    then: {status: insufficient_data}"]
        elif shape < 0.15:
            fact = rng.choice(dates)
            body = [f"    therapies: [{', '.join(therapies)}]",
                    f'    when: {{all: [{{days_since: {fact}, op: "<", value: 60}}, {tree(1)}]}}',
                    f"    then: {{status: deferred, earliest_date: {{fact: {fact}, plus_days: 60}}}}"]
        elif shape < 0.2:
            body = [f"    therapies: [{', '.join(therapies)}]",
                    '    when: {exists: chemotherapy, where: {days_since_field: last_dose_date, op: "<", value: 28}}',
                    "    then: {status: deferred, earliest_date: {of: chemotherapy, field: last_dose_date, "
                    "plus_days: 28, none_if: {field: ongoing, op: \"==\", value: true}}}"]
        elif shape < 0.35:
            status = rng.choice(read_status)
            body = [f"    therapies: [{', '.join(therapies)}]",
                    f"    when: {{all: [{{status_of: {status}, op: in, value: [recommended, eligible]}}, {tree(2)}]}}",
                    f"    then: {{status: {rng.choice(['recommended', 'eligible', 'deferred', 'contraindicated'])}}}"]
        else:
            targets = therapies if rng.random() < 0.8 else rng.sample(read_status, 1)
            body = [f"    therapies: [{', '.join(targets)}]", f"    when: {tree(3)}",
                    f"    then: {{status: {rng.choice(['recommended', 'eligible', 'not_indicated', 'contraindicated'])}}}"]
        lines += header + body
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "generated.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_a_generated_rule_base_with_every_construct_gives_identical_results(tmp_path):
    experta = radiopal.load_rulebase(_rich_rulebase(tmp_path / "rich", 600))
    compiled = experta.on_engine("compiled")
    assert sum(1 for c in compiled.compiled.compiled if c.phase == 2) >= 60
    documents = [(p.document["patient_id"], p.document)
                 for p in generate(100, seed=29, bad_fraction=0.0, missing_fraction=0.3)]
    assert compare_documents((experta, compiled), documents, full_every=10) == {}
    fired = {f.compiled.rule.key for _, doc in documents for f in compiled.evaluate(doc).firings}
    assert len(fired) >= 0.5 * len(experta.rules)  # the patients exercise the generated rules


# --- the check has teeth -----------------------------------------------------------------------------------------

def test_a_miscompiled_operator_is_caught(pair, boundary_material, monkeypatch):
    """``>=`` compiled as ``>`` (in the compiled path only): the comparison above finds it at an exact threshold."""
    experta = pair[0]
    monkeypatch.setitem(compiled_conditions.OPERATORS, ">=", operator.gt)
    broken = RuleBase(experta.loaded, engine="compiled")
    monkeypatch.undo()
    bases, thresholds = boundary_material
    doc = bases[0]
    caught = []
    for name, values in sorted(thresholds.items()):
        for change in values:
            a = experta.evaluate_facts(doc, _table(experta, doc, {name: change}))
            b = broken.evaluate_facts(doc, _table(broken, doc, {name: change}))
            if differences(a, b, full=False):
                caught.append((name, change))
    assert caught, "a mis-compiled >= went unnoticed"
    # and the healthy compiled path agrees on the same inputs
    sound = pair[1]
    name, change = caught[0]
    assert differences(experta.evaluate_facts(doc, _table(experta, doc, {name: change})),
                       sound.evaluate_facts(doc, _table(sound, doc, {name: change}))) == []


def test_a_cohort_stops_at_a_recheck_that_differs(tmp_path, monkeypatch):
    """A cohort on a mis-compiled path: the re-check on experta stops the run and writes both results out."""
    from radiopal.cohort import CohortError, CohortOptions, run_cohort
    from radiopal.cohort import evaluate as cohort_evaluate

    monkeypatch.setattr(cohort_evaluate, "_CACHE", {})  # compile afresh, with the defect
    monkeypatch.setitem(compiled_conditions.OPERATORS, ">=", operator.gt)
    monkeypatch.setitem(compiled_conditions.OPERATORS, "<", operator.le)
    records = tmp_path / "patients.jsonl"
    lines = []
    for p in generate(300, seed=9, bad_fraction=0.0):
        document = p.document
        if isinstance(document.get("labs"), dict):
            document["labs"]["platelets"] = {"value": 100, "unit": "10^9/L"}  # exactly at the Sm-153/Sr-89 floor
        lines.append(json.dumps(document, default=str))
    records.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(CohortError, match="disagree"):
        run_cohort(CohortOptions(input=records, output=out, serial=True, progress=False, recheck_every=1,
                                 log=lambda _text: None))
    written = sorted(p.name for p in (out / "engine-mismatch").iterdir())
    assert len(written) == 2 and written[0].endswith(".compiled.json") and written[1].endswith(".experta.json")
    ours, theirs = (json.loads((out / "engine-mismatch" / name).read_text()) for name in written)
    assert ours != theirs and "decisions" in theirs


def test_a_cohort_on_the_compiled_path_rechecks_and_agrees(tmp_path):
    from radiopal.cohort import CohortOptions, run_cohort

    records = tmp_path / "patients.jsonl"
    records.write_text("".join(json.dumps(p.document, default=str) + "\n" for p in generate(120, seed=2)),
                       encoding="utf-8")
    report = run_cohort(CohortOptions(input=records, output=tmp_path / "out", serial=True, progress=False,
                                      recheck_every=3, log=lambda _text: None))
    assert report.engine == "compiled"
    assert 20 <= report.rechecked <= 80  # about 1 in 3 of 120
    assert not (tmp_path / "out" / "engine-mismatch").exists()


# --- the graph only when asked ------------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["experta", "compiled"])
def test_the_graph_and_the_explanations_are_built_only_when_asked(pair, engine):
    """A cohort row reads decisions only: no graph is built and no condition is explained for it. What the graph
    needs (the firings with their environments) is kept, and the graph is built from it on first use."""
    rulebase = pair[0] if engine == "experta" else pair[1]
    result = rulebase.evaluate(_scenario_documents(pair[0])[0][1])
    result.to_json()
    assert "graph" not in result.__dict__
    plain = [f for f in result.firings if not f.compiled.rule.then.derive and f.compiled.rule.then.earliest_date is None]
    assert plain and all("outcome" not in f.memo and "graph_texts" not in f.memo for f in plain)
    assert all(f.env is not None for f in result.firings)
    graph = result.graph
    assert "graph" in result.__dict__ and graph.to_dict()["nodes"]
    assert any("graph_texts" in f.memo for f in plain)


def test_the_statuses_declared_for_phase_two_are_the_statuses_decide_gives(pair):
    """``resolve_statuses`` (between the phases, on both paths) is §13's strongest status without the rest of
    ``decide``: the two agree on every therapy, for patients that reach every status."""
    from radiopal.resolve import decide, resolve_statuses

    experta = pair[0]
    seen = set()
    for _, document in _scenario_documents(experta)[:80]:
        state = experta.evaluate(document).state
        statuses = resolve_statuses(state, experta.catalogue)
        assert statuses == {d.therapy: d.status for d in decide(state, experta.catalogue)}
        seen.update(statuses.values())
    assert len(seen) == 6
