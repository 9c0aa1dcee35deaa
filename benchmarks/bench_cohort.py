"""Cohort benchmark (prints figures; not a test): ``radiopal cohort`` on synthetic cohorts, serial vs local Dask.

For each cohort size (default 10,000 and 100,000 synthetic patients, written once as JSON Lines) and each mode
(``serial``: in one process; ``dask``: a local cluster of ``--workers`` processes), runs the real command line in a
subprocess and measures:

* wall time, from process start to the summary page written (start-up, rule compilation and consolidation included),
  and patients per second over it;
* CPU seconds (user + system) of the whole process tree, and patients per CPU-second: on a shared machine the
  wall-clock figures depend on the other load (the 1-minute load average before and after is recorded too);
* peak RSS: the whole process tree (driver + Dask nanny/worker processes, sampled every 0.1 s with psutil), the driver
  alone, and the largest single worker.

Decisions and reasons are computed for every patient (no per-patient graphs or decision files). Each result is
appended as one JSON line to ``benchmarks/results/cohort.jsonl``; a table is printed at the end. The target is
100,000 patients in at most 10 minutes.

    python benchmarks/bench_cohort.py [--sizes 10000 100000] [--modes serial dask] [--workers 2] [--batch-size 250]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

import radiopal
from radiopal.synth import generate

RESULTS = Path(__file__).resolve().parent / "results" / "cohort.jsonl"
TARGET_SECONDS_100K = 600.0
ENTRY = "import sys; from radiopal.cli import main; sys.exit(main(sys.argv[1:]))"


def write_cohort(path: Path, n: int, seed: int) -> Path:
    """``n`` synthetic patients (2 % bad, 10 % missing — the generator's defaults) as JSON Lines, streamed."""
    if path.is_file():
        return path
    tmp = path.with_suffix(".partial")
    with tmp.open("w", encoding="utf-8") as handle:
        for patient in generate(n, seed=seed):
            handle.write(json.dumps(patient.document, separators=(",", ":")) + "\n")
    tmp.replace(path)
    return path


class TreeSampler:
    """Samples the RSS of a process and all its descendants until stopped; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_total = 0
        self.peak_driver = 0
        self.peak_child = 0
        self.processes = 1
        self.timeline: list[float] = []  # total RSS of the tree at each sample (bytes)
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _cpu(self, process: psutil.Process) -> None:
        times = process.cpu_times()
        self.cpu[process.pid] = times.user + times.system

    @property
    def cpu_seconds(self) -> float:
        """User + system CPU time of every process of the tree (each one's own, last sample before it ended)."""
        return sum(self.cpu.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                driver = self.root.memory_info().rss
                self._cpu(self.root)
                children = []
                for child in self.root.children(recursive=True):
                    try:
                        children.append(child.memory_info().rss)
                        self._cpu(child)
                    except psutil.Error:
                        continue
            except psutil.Error:
                break
            self.peak_driver = max(self.peak_driver, driver)
            self.peak_child = max([self.peak_child, *children])
            self.peak_total = max(self.peak_total, driver + sum(children))
            self.timeline.append(driver + sum(children))
            self.processes = max(self.processes, 1 + len(children))
            self._stop.wait(self.interval)


def flatness(timeline: list[float]) -> dict[str, int]:
    """Peak total RSS (MB) in each quarter of the run: flat memory means the last quarter is not above the second."""
    if not timeline:
        return {}
    quarter = max(1, len(timeline) // 4)
    parts = [timeline[i * quarter:(i + 1) * quarter] or timeline[-1:] for i in range(3)] + [timeline[3 * quarter:]]
    return {f"q{i + 1}": round(max(part or [0]) / (1024 * 1024)) for i, part in enumerate(parts)}


def run_one(source: Path, n: int, mode: str, workers: int, batch_size: int, workdir: Path,
            rules: str | None, engine: str = "compiled", recheck_every: int = 500) -> dict[str, Any]:
    """One ``radiopal cohort`` run in a subprocess; returns the measured figures."""
    out = workdir / f"out-{n}-{mode}-{engine}"
    command = [sys.executable, "-c", ENTRY, "cohort", str(source), "-o", str(out), "--no-progress",
               "--batch-size", str(batch_size), "--engine", engine, "--recheck-every", str(recheck_every)]
    command += ["--serial"] if mode == "serial" else ["--workers", str(workers)]
    if rules:
        command += ["--rules", rules]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with TreeSampler(process.pid) as sampler:
        stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"radiopal cohort failed ({process.returncode}):\n{stderr[-4000:]}")
    manifest = json.loads((out / "run.json").read_text(encoding="utf-8"))
    counts = manifest["counts"]
    mb = 1024 * 1024
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "radiopal": radiopal.__version__, "commit": _commit(), "rulebase": manifest["rulebase"]["version"],
        "rulebase_digest": manifest["rulebase"]["digest"], "n": n, "mode": mode, "engine": engine,
        "recheck_every": recheck_every, "rechecked_on_experta": manifest["last_run"].get("rechecked_on_experta"),
        "workers": 1 if mode == "serial" else workers, "batch_size": batch_size,
        "seconds": round(seconds, 1), "patients_per_s": round(counts["records"] / seconds, 1),
        "cpu_seconds": round(sampler.cpu_seconds, 1),
        "patients_per_cpu_s": round(counts["records"] / sampler.cpu_seconds, 1) if sampler.cpu_seconds else None,
        "load_avg_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "evaluated": counts["patients"], "errors": counts["errors"],
        "peak_rss_total_mb": round(sampler.peak_total / mb), "peak_rss_driver_mb": round(sampler.peak_driver / mb),
        "peak_rss_largest_child_mb": round(sampler.peak_child / mb), "processes": sampler.processes,
        "peak_rss_by_quarter_mb": flatness(sampler.timeline),
        "underuse_radionuclide": counts["underuse_radionuclide"], "summary": stdout.strip().splitlines()[0],
        "target_100k_in_10_min": seconds <= TARGET_SECONDS_100K if n >= 100_000 else None,
    }


def _commit() -> str | None:
    """The checkout's commit (figures belong to a version of the code), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--modes", nargs="+", choices=("serial", "dask"), default=["serial", "dask"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", help="rule-base folder (default: the shipped rules)")
    parser.add_argument("--engine", nargs="+", choices=("compiled", "experta"), default=["compiled"],
                        help="evaluation path(s) to measure (default: compiled, the cohort default)")
    parser.add_argument("--recheck-every", type=int, default=500, help="compiled path: re-check 1 in N on experta")
    parser.add_argument("--workdir", help="folder for the cohorts and outputs (default: a temporary folder)")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"JSON Lines file to append to (default {RESULTS})")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="radiopal-bench-cohort-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        rows = []
        for n in args.sizes:
            t0 = time.perf_counter()
            source = write_cohort(workdir / f"cohort-{n}-seed{args.seed}.jsonl", n, args.seed)
            print(f"cohort of {n:,}: {source} ({time.perf_counter() - t0:.0f} s to write)", file=sys.stderr)
            for mode in args.modes:
                for engine in args.engine:
                    row = run_one(source, n, mode, args.workers, args.batch_size, workdir, args.rules, engine,
                                  args.recheck_every)
                    rows.append(row)
                    args.results.parent.mkdir(parents=True, exist_ok=True)
                    with args.results.open("a", encoding="utf-8") as handle:
                        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    print(f"  {mode:<6} {engine:<9} {row['seconds']:>8.1f} s  {row['patients_per_s']:>7.1f} "
                          f"patients/s  peak RSS {row['peak_rss_total_mb']} MB", file=sys.stderr)
    print(f"\nradiopal cohort benchmark — {os.cpu_count()} CPU(s), rule base {rows[0]['rulebase'] if rows else '?'}")
    header = f"{'patients':>9} {'mode':<7} {'engine':<9} {'workers':>7} {'seconds':>9} {'patients/s':>11} " \
             f"{'peak RSS total':>15} {'driver':>8} {'largest child':>14} {'CPU s':>8} {'pat/CPU s':>10} {'load':>5}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['n']:>9,} {r['mode']:<7} {r['engine']:<9} {r['workers']:>7} {r['seconds']:>9.1f} {r['patients_per_s']:>11.1f} "
              f"{r['peak_rss_total_mb']:>12} MB {r['peak_rss_driver_mb']:>5} MB {r['peak_rss_largest_child_mb']:>11} MB "
              f"{r['cpu_seconds']:>8.0f} {r['patients_per_cpu_s'] or 0:>10.1f} {r['load_avg_1min']['before']:>5.1f}")
    for r in rows:
        print(f"{r['n']:,} {r['mode']} {r['engine']}: peak RSS by quarter of the run {r['peak_rss_by_quarter_mb']} MB")
        if r["n"] >= 1_000_000:
            verdict = "met" if r["seconds"] <= 900 else "NOT met"
            print(f"target 1M ≤ 15 min on 2 cores ({r['mode']}, {r['engine']}): {verdict} ({r['seconds'] / 60:.1f} min)")
        if r["n"] >= 100_000:
            verdict = "met" if r["seconds"] <= TARGET_SECONDS_100K else "NOT met"
            print(f"target 100k ≤ 10 min ({r['mode']}): {verdict} ({r['seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
