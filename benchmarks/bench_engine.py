"""Engine benchmark (prints figures; speed is held here, never by a timed test).

Measures, on one core, on the shipped rules and on a generated 1,000-rule base, for both evaluation paths (experta,
the engine of record, and the compiled path):

* compile time until ready to evaluate (parse, validate, type-check, build; the engine's own part shown alone);
* per-patient time, p50 and p95: from a parsed document to the decisions, without and with the reasoning graph, and
  the engine step alone (fact table to decisions: what a CLIPS run does);
* CLIPS (clipspy, the ``bench`` extra) in the same run on a rule base of the same size: the generated rules, or for the
  shipped size rules generated the same way, translated to ``defrule``s; per patient reset, assert the known numeric
  facts, run, read the fired-rule facts back (its trace). CLIPS matches two-valued (an unknown fact is simply absent),
  so it does less than radiopal, which keeps unknowns; the ratios are printed.

The 1-minute load average is recorded with every figure: on a shared machine the figures are inflated. Appends one
JSON line per figure to benchmarks/results/engine.jsonl.

    python benchmarks/bench_engine.py [--patients 300] [--rules 1000]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import radiopal
from radiopal.catalogue import load_catalogue
from radiopal.synth import generate

RESULTS = Path(__file__).resolve().parent / "results" / "engine.jsonl"
NUMERIC = [("plt_current", 20, 300), ("anc_current", 0.5, 8), ("hb_current", 7, 16), ("crcl", 10, 120),
           ("ca_corr", 1.8, 2.8), ("pain_nrs", 0, 10), ("life_expectancy_weeks", 2, 104), ("lesion_count", 0, 30),
           ("ecog", 0, 4), ("total_metastases_count", 0, 30)]
STATUSES = ["recommended", "eligible", "deferred", "contraindicated", "not_indicated"]


def generated_rulebase(folder: Path, n_rules: int, seed: int = 7) -> Path:
    """A synthetic rule base of n_rules rules over the real vocabulary and therapies (for scaling only)."""
    rng = random.Random(seed)
    therapies = list(load_catalogue().therapy_ids)
    lines = ["area: generated", 'version: "1"', "rules:"]
    for i in range(n_rules):
        conds = []
        for _ in range(rng.randint(1, 3)):
            fact, lo, hi = rng.choice(NUMERIC)
            conds.append(f'{{fact: {fact}, op: "{rng.choice(["<", ">=", "<=", ">"])}", value: {round(rng.uniform(lo, hi), 1)}}}')
        lines += [
            f"  - id: ELIG-GEN-{i + 100}",
            f"    title: generated rule {i}",
            "    version: 1",
            "    strength: weak",
            "    verification: U",
            "    sources: [rulebase_derived]",
            f"    therapies: [{', '.join(rng.sample(therapies, rng.randint(1, 3)))}]",
            f"    when: {{all: [{', '.join(conds)}]}}",
            f"    then: {{status: {rng.choice(STATUSES)}}}",
        ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "generated.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return round(1000 * statistics.median(times), 3), round(1000 * times[int(0.95 * (len(times) - 1))], 3)


def _timed(call: Callable[[Any], Any], items: list[Any], rounds: int = 1) -> tuple[float, float]:
    """p50 and p95 in ms of ``call`` over ``items`` (after one warm-up call), best of ``rounds`` per item."""
    call(items[0])
    best = [float("inf")] * len(items)
    for _ in range(rounds):
        for i, item in enumerate(items):
            t = time.perf_counter()
            call(item)
            best[i] = min(best[i], time.perf_counter() - t)
    return _percentiles(best)


def measure(label: str, rules_dir: str | None, documents: list[Any], rows: list[dict[str, Any]]) -> None:
    """Both paths on one rule base: compile, and per-patient p50/p95 without graph, with graph, engine step alone."""
    from radiopal.api import RuleBase
    from radiopal.patient.facts import build_facts
    from radiopal.patient.load import parse_patient
    from radiopal.resolve import collect_advisories, decide, missing_data, resolve_statuses

    t0 = time.perf_counter()
    experta = radiopal.load_rulebase(rules_dir)
    t1 = time.perf_counter()
    experta.prepare()  # the experta engine and its RETE network: part of being ready to evaluate
    t2 = time.perf_counter()
    compiled = RuleBase(experta.loaded, engine="compiled")
    t3 = time.perf_counter()
    load_s = t1 - t0
    parsed = [parse_patient(doc) for doc in documents]
    for engine, rulebase, own_s in (("experta", experta, t2 - t1), ("compiled", compiled, t3 - t2)):
        def engine_step(doc: Any, rulebase: RuleBase = rulebase) -> Any:
            catalogue = rulebase.catalogue
            state = rulebase._runner.run(build_facts(doc, rulebase.vocabulary),
                                         lambda s: resolve_statuses(s, catalogue))
            decisions = decide(state, catalogue)
            return collect_advisories(state, catalogue), missing_data(decisions)

        gc.collect()
        no_graph = _timed(rulebase.evaluate, parsed)
        gc.collect()
        with_graph = _timed(lambda doc, rulebase=rulebase: rulebase.evaluate(doc).graph.to_dict(), parsed)
        gc.collect()
        step = _timed(engine_step, parsed)
        tables = [build_facts(doc, rulebase.vocabulary) for doc in parsed]

        def run_only(table: Any, rulebase: RuleBase = rulebase) -> Any:
            catalogue = rulebase.catalogue
            fresh = type(table)(table.evaluation_date, dict(table.facts))  # a run adds the derived facts to its table
            return rulebase._runner.run(fresh, lambda s: resolve_statuses(s, catalogue))

        gc.collect()
        run = _timed(run_only, tables)
        rows.append({"label": label, "engine": engine, "rules": len(rulebase.rules),
                     "compiled_rules": len(rulebase.compiled.compiled), "compile_s": round(load_s + own_s, 3),
                     "engine_build_s": round(own_s, 4), "patients": len(parsed),
                     "p50_ms": no_graph[0], "p95_ms": no_graph[1], "graph_p50_ms": with_graph[0],
                     "graph_p95_ms": with_graph[1], "engine_step_p50_ms": step[0], "engine_step_p95_ms": step[1],
                     "run_p50_ms": run[0], "run_p95_ms": run[1],
                     "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                     "loadavg_1m": round(os.getloadavg()[0], 2)})


# --- CLIPS on a rule base of the same size -------------------------------------------------------------------------

def clips_rules(n_rules: int, seed: int = 7) -> list[tuple[str, list[tuple[str, str, float]], list[str]]]:
    """The rules :func:`generated_rulebase` writes (same seed, same draws): (id, conditions, therapies)."""
    rng = random.Random(seed)
    therapies = list(load_catalogue().therapy_ids)
    out = []
    for i in range(n_rules):
        conds = []
        for _ in range(rng.randint(1, 3)):
            fact, lo, hi = rng.choice(NUMERIC)
            conds.append((fact, rng.choice(["<", ">=", "<=", ">"]), round(rng.uniform(lo, hi), 1)))
        chosen = rng.sample(therapies, rng.randint(1, 3))
        rng.choice(STATUSES)
        out.append((f"ELIG-GEN-{i + 100}", conds, chosen))
    return out


def clips_environment(n_rules: int) -> Any:
    """A CLIPS environment holding ``n_rules`` generated rules; each firing asserts one ``fired`` fact per therapy."""
    import clips

    env = clips.Environment()
    env.build("(deftemplate datum (slot name) (slot value))")
    env.build("(deftemplate fired (slot rule) (slot therapy))")
    for rule_id, conds, therapies in clips_rules(n_rules):
        patterns = " ".join(f"(datum (name {fact}) (value ?v{j}&:({op} ?v{j} {value})))"
                            for j, (fact, op, value) in enumerate(conds))
        actions = " ".join(f'(assert (fired (rule "{rule_id}") (therapy {t})))' for t in therapies)
        env.build(f"(defrule {rule_id} {patterns} => {actions})")
    return env


def measure_clips(label: str, n_rules: int, documents: list[Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """CLIPS per patient: reset, assert the patient's known numeric facts, run, read the fired facts (the trace)."""
    from radiopal.patient.facts import build_facts
    from radiopal.patient.load import parse_patient

    t0 = time.perf_counter()
    env = clips_environment(n_rules)
    compile_s = time.perf_counter() - t0
    template = env.find_template("datum")
    vocabulary = radiopal.load_rulebase().vocabulary
    patients = []
    for doc in documents:
        table = build_facts(parse_patient(doc), vocabulary)
        patients.append([(name, float(table.value(name))) for name, _, _ in NUMERIC if table.value(name) is not None])

    def run(facts: list[tuple[str, float]]) -> int:
        env.reset()
        for name, value in facts:
            template.assert_fact(name=clips.Symbol(name), value=value)
        return env.run()  # type: ignore[no-any-return]

    def run_with_trace(facts: list[tuple[str, float]]) -> list[tuple[str, str]]:
        run(facts)
        return [(f["rule"], str(f["therapy"])) for f in env.facts() if f.template.name == "fired"]

    import clips

    fired = sum(len(run_with_trace(p)) for p in patients[:50])
    gc.collect()
    p50, p95 = _timed(run, patients)
    gc.collect()
    trace_p50, trace_p95 = _timed(run_with_trace, patients)
    row = {"label": label, "engine": "clips", "rules": n_rules, "compile_s": round(compile_s, 3),
           "patients": len(patients), "engine_step_p50_ms": p50, "engine_step_p95_ms": p95,
           "trace_p50_ms": trace_p50, "trace_p95_ms": trace_p95, "firing_records_first_50": fired,
           "clipspy": _version("clipspy"), "loadavg_1m": round(os.getloadavg()[0], 2)}
    rows.append(row)
    return row


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--rules", type=int, default=1000)
    args = parser.parse_args()
    documents = [p.document for p in generate(args.patients * 2, seed=11) if p.kind != "bad"][: args.patients]
    rows: list[dict[str, Any]] = []
    have_clips = importlib.util.find_spec("clips") is not None
    measure("shipped rules", None, documents, rows)
    shipped_size = rows[-1]["rules"]
    if have_clips:
        measure_clips(f"CLIPS, generated {shipped_size} rules", shipped_size, documents, rows)
    with tempfile.TemporaryDirectory() as tmp:
        measure(f"generated {args.rules}-rule base", str(generated_rulebase(Path(tmp), args.rules)), documents, rows)
    if have_clips:
        measure_clips(f"CLIPS, generated {args.rules} rules", args.rules, documents, rows)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print("ms per patient. 'doc' = parsed document to decisions; '+graph' = and the reasoning graph; 'step' = document "
          "to facts to decisions; 'run' = fact table to firing records (phase-1 resolution included), the part CLIPS "
          "does (CLIPS: reset, assert, run; 'trace' = and the fired facts read back into Python)")
    print(f"{'rule base':<30} {'engine':<9} {'rules':>6} {'compile s':>9} {'doc p50':>7} {'doc p95':>7} "
          f"{'+graph p50':>10} {'+graph p95':>10} {'step p50':>9} {'step p95':>9} {'run p50':>8} {'run p95':>8} "
          f"{'trace p50':>9} {'load':>5}")
    for row in rows:
        print(f"{row['label']:<30} {row['engine']:<9} {row['rules']:>6} {row['compile_s']:>9} "
              f"{row.get('p50_ms', '-'):>7} {row.get('p95_ms', '-'):>7} {row.get('graph_p50_ms', '-'):>10} "
              f"{row.get('graph_p95_ms', '-'):>10} {row['engine_step_p50_ms']:>9} {row['engine_step_p95_ms']:>9} "
              f"{row.get('run_p50_ms', row['engine_step_p50_ms']):>8} {row.get('run_p95_ms', row['engine_step_p95_ms']):>8} "
              f"{row.get('trace_p50_ms', '-'):>9} {row['loadavg_1m']:>5}")
        row.update({"time": stamp, "python": platform.python_version(), "machine": platform.machine(),
                    "radiopal": radiopal.__version__})
    _print_ratios(rows, shipped_size, args.rules)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
    if not have_clips:
        print("CLIPS not measured: install the bench extra (pip install -e '.[bench]', as `make bench` does)")
    print("targets (issue #17): compiled, shipped rules, no graph: p50 <= 1x CLIPS (same size); with graph <= 3x; "
          "compile <= 0.5 s; experta no slower than before")
    return 0


def _print_ratios(rows: list[dict[str, Any]], shipped_size: int, generated_size: int) -> None:
    by = {(r["rules"], r["engine"]): r for r in rows}
    for size in (shipped_size, generated_size):
        clips_row = by.get((size, "clips"))
        if clips_row is None:
            continue
        base = clips_row["engine_step_p50_ms"]
        traced = clips_row["trace_p50_ms"]
        for engine in ("compiled", "experta"):
            row = by.get((size, engine))
            if row is None:
                continue
            print(f"{size} rules, {engine} / CLIPS run (p50 {base} ms): run {row['run_p50_ms'] / base:.2f}x, "
                  f"document to decisions {row['p50_ms'] / base:.2f}x, with graph {row['graph_p50_ms'] / base:.2f}x; "
                  f"/ CLIPS run + trace read back (p50 {traced} ms): run {row['run_p50_ms'] / traced:.2f}x, "
                  f"document to decisions {row['p50_ms'] / traced:.2f}x, with graph "
                  f"{row['graph_p50_ms'] / traced:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
