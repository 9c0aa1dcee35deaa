"""FHIR Bulk Data export benchmark (prints figures; not a test): the cohort reader and ``radiopal cohort`` on exports
built from real Synthea records.

Input: a folder of Synthea patient Bundles (gzip JSON, e.g. ``../shared/fhir-real/synthea``; ``--bundles DIR``). Each
bundle is split by resource type into ``<Type>.ndjson`` files with ``Patient/<id>`` references, as ``$export`` writes
them; ``--copies N`` repeats every patient N times under new ids (all their resources, Claims and Encounters
included), so the export grows as a real one does.

Measured, per export size:

* ``read``: the reader alone in a fresh process — index pass over every file, then every patient's Bundle rebuilt
  (no evaluation): wall time, MB/s and peak RSS (``ru_maxrss``). Peak RSS that stays flat as the export grows is the
  point: the reader keeps an on-disk index and one patient in memory;
* ``cohort``: the real command line (``--serial`` and local Dask) on the uncopied export, wall time and peak RSS of
  the driver.

Results are appended as JSON lines to ``benchmarks/results/bulk.jsonl``.

    python benchmarks/bench_bulk.py --bundles ../shared/fhir-real/synthea [--copies 10 40] [--workers 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "bulk.jsonl"
READ = """
import resource, sys, time
from pathlib import Path
from radiopal.cohort.readers import open_reader
started = time.perf_counter()
with open_reader(Path(sys.argv[1]), workdir=Path(sys.argv[2])) as reader:
    total = reader.count()
    indexed = time.perf_counter() - started
    patients = sum(1 for record in reader if record.error is None)
print(total, patients, indexed, time.perf_counter() - started,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""
COHORT = "import sys; from radiopal.cli import main; sys.exit(main(sys.argv[1:]))"


def write_export(bundles: list[Path], folder: Path, copies: int) -> int:
    """Split the bundles into ``<Type>.ndjson`` (``Type/id`` references), each patient ``copies`` times; bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    handles: dict[str, Any] = {}
    try:
        for path in bundles:
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                bundle = json.load(handle)
            urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
            patient = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
            lines = []
            for entry in bundle["entry"]:
                text = json.dumps(entry["resource"], separators=(",", ":"))
                for url, ref in urls.items():
                    if url in text:
                        text = text.replace(f'"{url}"', f'"{ref}"')
                lines.append((entry["resource"]["resourceType"], text))
            for copy in range(copies):
                for rtype, text in lines:
                    out = handles.get(rtype) or handles.setdefault(rtype, (folder / f"{rtype}.ndjson").open("w"))
                    out.write((text.replace(patient, f"{patient}-{copy}") if copies > 1 else text) + "\n")
    finally:
        for out in handles.values():
            out.close()
    return sum(p.stat().st_size for p in folder.glob("*.ndjson"))


def measure_read(export: Path, work: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", READ, str(export), str(work)], capture_output=True, text=True,
                          check=True)
    total, patients, indexed, seconds, rss = done.stdout.split()
    return {"records": int(total), "patients": int(patients), "index_s": round(float(indexed), 2),
            "seconds": round(float(seconds), 2), "peak_rss_mb": round(int(rss) / 2**20, 1)}


def measure_cohort(export: Path, out: Path, mode: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-c", COHORT, "cohort", str(export),
                           "-o", str(out), "--no-progress", "--evaluation-date", "2022-06-01", *mode],
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    run = json.loads((out / "run.json").read_text(encoding="utf-8")) if (out / "run.json").is_file() else {}
    return {"exit": done.returncode, "seconds": round(seconds, 2), "counts": run.get("counts", {}),
            "driver_peak_rss_mb": round(int(done.stderr.strip().splitlines()[-1]) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", type=Path, required=True, help="folder of Synthea bundles (*.json.gz)")
    parser.add_argument("--copies", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    bundles = sorted(args.bundles.glob("*.json.gz"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="radiopal-bulk-") as tmp:
        base = Path(tmp)
        size = write_export(bundles, base / "x1", 1)
        for name, mode in (("serial", ["--serial"]), ("dask", ["--workers", str(args.workers)])):
            row = {"kind": "cohort", "mode": name, "patients": len(bundles), "mb": round(size / 2**20, 1),
                   **measure_cohort(base / "x1", base / f"out-{name}", mode)}
            rows.append(row)
        for copies in args.copies:
            size = write_export(bundles, base / f"x{copies}", copies)
            rows.append({"kind": "read", "copies": copies, "mb": round(size / 2**20, 1),
                         **measure_read(base / f"x{copies}", base / f"work{copies}")})
            rows[-1]["mb_per_s"] = round(rows[-1]["mb"] / rows[-1]["seconds"], 1)
    stamp = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "python": platform.python_version(),
             "machine": platform.machine()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({**stamp, **row}) + "\n")
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
