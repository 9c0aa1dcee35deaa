"""Engine benchmark (prints figures; speed is held here, never by a timed test).

Measures, on one core: rule-base compile time until ready to evaluate (parse, validate, type-check, build the experta
engine and its RETE network; the network part is also shown alone); per-patient evaluation time including the
reasoning graph (p50, p95);
peak RSS — on the shipped rules and on a generated 1,000-rule base. Appends one JSON line per run to
benchmarks/results/engine.jsonl.

    python benchmarks/bench_engine.py [--patients 300] [--rules 1000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

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


def measure(label: str, rules_dir: str | None, patients: list[dict]) -> dict:
    t0 = time.perf_counter()
    rulebase = radiopal.load_rulebase(rules_dir)
    t1 = time.perf_counter()
    rulebase.prepare()  # the experta engine and its RETE network: part of being ready to evaluate
    t2 = time.perf_counter()
    compile_s, network_s = t2 - t0, t2 - t1
    rulebase.evaluate(patients[0]).graph.to_dict()  # warm caches
    times = []
    for doc in patients:
        t = time.perf_counter()
        result = rulebase.evaluate(doc)
        result.graph.to_dict()
        times.append(time.perf_counter() - t)
    times.sort()
    return {
        "label": label,
        "rules": len(rulebase.rules),
        "experta_rules": len(rulebase.compiled.compiled),
        "compile_s": round(compile_s, 3),
        "network_s": round(network_s, 3),
        "patients": len(patients),
        "p50_ms": round(1000 * statistics.median(times), 2),
        "p95_ms": round(1000 * times[int(0.95 * (len(times) - 1))], 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--rules", type=int, default=1000)
    args = parser.parse_args()
    patients = [p.document for p in generate(args.patients * 2, seed=11) if p.kind != "bad"][: args.patients]
    rows = [measure("shipped rules", None, patients)]
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(measure(f"generated {args.rules}-rule base", str(generated_rulebase(Path(tmp), args.rules)),
                            patients))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{'rule base':<28} {'rules':>6} {'experta':>8} {'compile s':>10} {'of it RETE':>11} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'peak RSS MB':>12}")
    for row in rows:
        print(f"{row['label']:<28} {row['rules']:>6} {row['experta_rules']:>8} {row['compile_s']:>10} "
              f"{row['network_s']:>11} {row['p50_ms']:>8} {row['p95_ms']:>8} {row['peak_rss_mb']:>12}")
        row.update({"time": stamp, "python": platform.python_version(), "machine": platform.machine(),
                    "radiopal": radiopal.__version__})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
    print("targets: p50 ≤ 10 ms per patient with the graph, compile ≤ 2 s, RSS ≤ 200 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
