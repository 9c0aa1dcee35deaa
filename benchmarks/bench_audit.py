"""Audit log appends per second: SQLite vs PostgreSQL, with 1 and 4 writer processes appending at once.

Each writer is its own process with its own :class:`radiopal.audit.AuditLog` (as service nodes or ``serve --workers``
processes are) and appends ``--records`` feedback records; the figure is all records over the wall time from the moment
every writer had connected to the last commit. Afterwards the chain is verified (one chain, seq 1..N). PostgreSQL is a
throw-away server started on 127.0.0.1 (tests/pgserver.py; the Debian ``postgresql`` package), or ``--url`` for your
own. Both keep their durable defaults (SQLite WAL as radiopal opens it, PostgreSQL fsync and synchronous_commit on).
One JSON line per run is appended to benchmarks/results/audit.jsonl.

    python benchmarks/bench_audit.py [--records 1000] [--writers 1 4] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "audit.jsonl"


def _writer(target: str, count: int, ready: Any, start: Any, done: Any) -> None:
    from radiopal.audit import AuditLog

    log = AuditLog(target)
    ready.put(True)
    start.wait(120)
    for i in range(count):
        log.record_event("feedback", caller="bench", context={"i": i})
    done.put(time.perf_counter())
    log.dispose()


def appends_per_second(target: str, writers: int, records: int) -> dict[str, Any]:
    """``writers`` processes append ``records`` records each to ``target`` at once; the rate and the chain check."""
    from radiopal.audit import AuditLog

    AuditLog(target).dispose()  # tables made before the clock starts
    context = mp.get_context("spawn")
    ready, start, done = context.Queue(), context.Event(), context.Queue()
    per_writer = records // writers
    procs = [context.Process(target=_writer, args=(target, per_writer, ready, start, done)) for _ in range(writers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=180)
    began = time.perf_counter()
    start.set()
    ended = max(done.get(timeout=600) for _ in procs)
    for p in procs:
        p.join(60)
    log = AuditLog(target, create=False)
    report = log.verify()
    log.dispose()
    total = per_writer * writers
    return {"writers": writers, "records": total, "seconds": round(ended - began, 3),
            "appends_per_s": round(total / (ended - began), 1), "chain_ok": report.ok and report.records == total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1000, help="records per run (default 1000)")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4], help="writer processes (default 1 4)")
    parser.add_argument("--url", help="an existing PostgreSQL database URL (default: start a throw-away server)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    folder = Path(tempfile.mkdtemp(prefix="radiopal-bench-audit-"))
    pg_folder = Path(tempfile.mkdtemp(prefix="radiopal-bench-pg-"))  # its own, under /tmp: the server may run as postgres
    server = None
    try:
        if args.url:
            new_database = lambda: args.url  # noqa: E731 - the same database each run: give an empty one
        else:
            from pgserver import PostgresServer

            server = PostgresServer(pg_folder)
            new_database = lambda: server.create_database(f"bench_{uuid.uuid4().hex[:8]}")  # noqa: E731
        rows = []
        for writers in args.writers:
            for backend in ("sqlite", "postgresql"):
                target = str(folder / f"audit-{writers}.db") if backend == "sqlite" else new_database()
                row = {"backend": backend, **appends_per_second(target, writers, args.records)}
                rows.append(row)
                print(f"{backend:<10} {row['writers']} writer(s): {row['appends_per_s']:>8.1f} appends/s "
                      f"({row['records']} records in {row['seconds']} s; chain intact: {row['chain_ok']})", flush=True)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(pg_folder, ignore_errors=True)
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with RESULTS.open("a", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps({"time": stamp, **row}) + "\n")
    return 0 if all(r["chain_ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
