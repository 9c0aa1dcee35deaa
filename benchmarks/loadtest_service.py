"""Load and fault test of the CDS Hooks service (``make loadtest``).

1. Starts ``radiopal serve`` on a free 127.0.0.1 port (``--no-auth``, loopback only, a temporary audit DB).
2. Runs a bounded load: ``--clients`` concurrent clients (threads with their own httpx client) posting patient-view
   hooks with prefetch built from the example FHIR Bundles (``examples/fhir/``, answered as an EHR would by
   :mod:`radiopal.service.sandbox`) for ``--seconds``; reports throughput and p50/p95/p99 latency; any 5xx (or a
   dropped connection) fails the run (exit 1).
3. Fault: starts the load again and kills the server with SIGKILL in the middle of it (after ``--kill-after`` s and
   at least 5 answers); then runs ``radiopal audit verify`` on the DB (must pass: hash chain intact) and checks that
   no committed record was lost — the log gained at least as many evaluation records as 200 answers were received
   during that load.
4. Restarts the server on the same DB, checks that it answers again and that the chain still verifies.

Results are printed and appended to ``benchmarks/results/service.jsonl``. ``tests/test_service_faults.py`` runs a
short version (5 clients x 5 s) through :func:`run`.

    python benchmarks/loadtest_service.py                   # 50 clients x 60 s, then the kill test
    python benchmarks/loadtest_service.py --clients 5 --seconds 5 --kill-after 2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from radiopal.service.sandbox import discover_templates, ehr_bundle, free_port, patient_resource, prefetch_for

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "fhir"
RESULTS = REPO / "benchmarks" / "results" / "service.jsonl"
PATIENT_VIEW = "radiopal-patient-view"
#: Each example bundle's own evaluation date (Bundle.timestamp) — the server counts intervals to one fixed day.
EVALUATION_DATE = "2025-06-02"


# --- the server ------------------------------------------------------------------------------------------------------
def radiopal_command() -> list[str]:
    """``radiopal`` of this interpreter (the venv's), run as a module so no PATH lookup is needed."""
    return [sys.executable, "-m", "radiopal"]


@dataclass
class Server:
    """A ``radiopal serve`` subprocess on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    base: str
    audit_db: Path
    log: Path

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, exactly like a crash or an OOM kill."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(audit_db: Path, *, port: int | None = None, log: Path | None = None, timeout: float = 90.0,
                 extra: list[str] | None = None) -> Server:
    """Start ``radiopal serve --no-auth`` on 127.0.0.1 and wait until discovery answers."""
    port = port or free_port()
    log = log or audit_db.with_suffix(f".{port}.log")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [*radiopal_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-auth",
               "--audit-db", str(audit_db), "--evaluation-date", EVALUATION_DATE, "--log-level", "warning",
               *(extra or [])]
    handle = log.open("ab")
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    handle.close()
    server = Server(process, f"http://127.0.0.1:{port}", audit_db, log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"radiopal serve exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{server.base}/cds-services", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"radiopal serve did not answer within {timeout:.0f} s:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


@contextlib.contextmanager
def serving(audit_db: Path, **kwargs: Any) -> Iterator[Server]:
    server = start_server(audit_db, **kwargs)
    try:
        yield server
    finally:
        server.stop()


# --- requests as an EHR sends them -----------------------------------------------------------------------------------
def patient_view_bodies(base: str) -> list[dict[str, Any]]:
    """One patient-view request per example bundle (hookInstance filled in per call)."""
    templates = discover_templates(base, PATIENT_VIEW)
    bodies = []
    for path in sorted(EXAMPLES.glob("*.bundle.json")):
        bundle = ehr_bundle(json.loads(path.read_text(encoding="utf-8")))
        bodies.append({"hook": "patient-view", "hookInstance": "",
                       "context": {"userId": "Practitioner/load", "patientId": patient_resource(bundle)["id"]},
                       "prefetch": prefetch_for(bundle, templates)})
    return bodies


# --- load ------------------------------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What one load phase saw."""

    clients: int
    seconds: float
    requests: int = 0
    ok: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    connection_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    server_errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(p) - 1]

    @property
    def five_xx(self) -> int:
        return sum(n for status, n in self.status_counts.items() if status.startswith("5"))

    def summary(self) -> dict[str, Any]:
        return {
            "clients": self.clients, "seconds": round(self.seconds, 2), "requests": self.requests, "ok_200": self.ok,
            "throughput_rps": round(self.throughput, 2), "p50_ms": round(self.percentile(50), 1),
            "p95_ms": round(self.percentile(95), 1), "p99_ms": round(self.percentile(99), 1),
            "status_counts": dict(sorted(self.status_counts.items())), "five_xx": self.five_xx,
            "connection_errors": self.connection_errors, "server_errors": self.server_errors[:5],
        }


def run_load(base: str, bodies: list[dict[str, Any]], *, clients: int, seconds: float,
             stop: threading.Event | None = None, tolerate_disconnect: bool = False,
             report: LoadReport | None = None) -> LoadReport:
    """``clients`` threads post patient-view calls for ``seconds`` (or until ``stop`` is set).

    ``report`` (filled while the load runs) lets another thread watch the counts.
    """
    report = report or LoadReport(clients, seconds)
    lock = threading.Lock()
    stop = stop or threading.Event()
    started = time.monotonic()
    deadline = started + seconds
    url = f"{base}/cds-services/{PATIENT_VIEW}"
    encoded = [json.dumps(b) for b in bodies]

    def client(index: int) -> None:
        with httpx.Client(timeout=60, headers={"Content-Type": "application/json"}) as http:
            i = index
            while not stop.is_set() and time.monotonic() < deadline:
                body = encoded[i % len(encoded)].replace('"hookInstance": ""', f'"hookInstance": "{uuid.uuid4()}"', 1)
                i += 1
                t0 = time.perf_counter()
                try:
                    response = http.post(url, content=body)
                except httpx.HTTPError as exc:
                    with lock:
                        report.connection_errors += 1
                        if not tolerate_disconnect:
                            report.server_errors.append(f"connection: {type(exc).__name__}: {exc}")
                    if tolerate_disconnect:
                        return
                    continue
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    report.requests += 1
                    key = str(response.status_code)
                    report.status_counts[key] = report.status_counts.get(key, 0) + 1
                    if response.status_code == 200:
                        report.ok += 1
                        report.latencies_ms.append(elapsed)
                    elif response.status_code >= 500:
                        report.server_errors.append(f"{response.status_code}: {response.text[:300]}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.seconds = time.monotonic() - started
    return report


# --- open loop: a fixed arrival rate -------------------------------------------------------------------------------
def run_open_loop(base: str, bodies: list[dict[str, Any]], *, rate: float, seconds: float,
                  max_in_flight: int = 400) -> dict[str, Any]:
    """Send patient-view calls at ``rate`` per second for ``seconds``, each on its schedule whatever the answers
    (an open loop: a slow server does not slow the arrivals). Latency counts from the scheduled send time, so a call
    that could not even be sent on time is charged for its wait (no coordinated omission)."""
    import concurrent.futures

    url = f"{base}/cds-services/{PATIENT_VIEW}"
    encoded = [json.dumps(b) for b in bodies]
    total = int(rate * seconds)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    lock = threading.Lock()
    local = threading.local()

    def one(index: int, scheduled: float) -> None:
        nonlocal errors
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=60, headers={"Content-Type": "application/json"})
        body = encoded[index % len(encoded)].replace('"hookInstance": ""', f'"hookInstance": "{uuid.uuid4()}"', 1)
        try:
            response = client.post(url, content=body)
        except httpx.HTTPError:
            with lock:
                errors += 1
            return
        done = time.monotonic()
        with lock:
            statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
            if response.status_code == 200:
                latencies.append((done - scheduled) * 1000)

    start = time.monotonic() + 0.2
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_in_flight) as pool:
        for index in range(total):
            scheduled = start + index / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, index, scheduled)
    latencies.sort()

    def pct(p: float) -> float | None:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1) if latencies else None

    return {"rate_rps": rate, "seconds": seconds, "sent": total, "ok": len(latencies), "status_counts": statuses,
            "connection_errors": errors, "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "loadavg": list(os.getloadavg())}


def open_loop(rates: list[float], seconds: float, workers: int) -> dict[str, Any]:
    """One server with ``workers`` processes; each rate in turn, after a warm-up."""
    folder = Path(tempfile.mkdtemp(prefix="radiopal-openloop-"))
    with serving(folder / "audit.db", extra=["--workers", str(workers)] if workers > 1 else None) as server:
        bodies = patient_view_bodies(server.base)
        for body in bodies * 2:
            warm = copy.deepcopy(body)
            warm["hookInstance"] = str(uuid.uuid4())
            httpx.post(f"{server.base}/cds-services/{PATIENT_VIEW}", json=warm, timeout=120)
        runs = [run_open_loop(server.base, bodies, rate=rate, seconds=seconds) for rate in rates]
    return {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "mode": "open-loop", "workers": workers,
            "runs": runs}


# --- the audit log after a crash ----------------------------------------------------------------------------------
def audit_verify(db: Path) -> tuple[int, str]:
    """``radiopal audit verify --db DB``: exit code and output."""
    done = subprocess.run([*radiopal_command(), "audit", "verify", "--db", str(db)], capture_output=True, text=True,
                          cwd=str(REPO), timeout=300, check=False)
    return done.returncode, (done.stdout + done.stderr).strip()


def evaluation_records(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM audit_records WHERE kind = 'evaluation'").fetchone()[0])


@dataclass
class FaultReport:
    records_before_load: int = 0
    ok_before_kill: int = 0
    requests_before_kill: int = 0
    five_xx_before_kill: int = 0
    records_after_kill: int = 0
    verify_exit: int = -1
    verify_output: str = ""
    restarted_status: int = 0
    verify_after_restart_exit: int = -1
    records_after_restart: int = 0

    @property
    def passed(self) -> bool:
        return (self.ok_before_kill > 0 and self.verify_exit == 0
                and self.records_after_kill - self.records_before_load >= self.ok_before_kill
                and self.five_xx_before_kill == 0 and self.restarted_status == 200
                and self.verify_after_restart_exit == 0 and self.records_after_restart > self.records_after_kill)


def kill_mid_load(server: Server, bodies: list[dict[str, Any]], *, clients: int, kill_after: float,
                  min_answers: int = 5, max_wait: float = 180.0) -> FaultReport:
    """Load the server and SIGKILL it once ``kill_after`` seconds have passed and at least ``min_answers`` calls have
    been answered (so the kill lands among committed and in-flight calls; at most ``max_wait`` s); then check the
    audit log and restart on it."""
    fault = FaultReport(records_before_load=evaluation_records(server.audit_db))
    report = LoadReport(clients, 0)
    load = threading.Thread(target=run_load, args=(server.base, bodies), daemon=True, kwargs={
        "clients": clients, "seconds": max_wait + 60, "tolerate_disconnect": True, "report": report})
    started = time.monotonic()
    load.start()
    while time.monotonic() - started < max_wait and (time.monotonic() - started < kill_after or report.ok < min_answers):
        time.sleep(0.05)
    server.kill()
    load.join(timeout=120)
    fault.ok_before_kill = report.ok
    fault.requests_before_kill = report.requests
    fault.five_xx_before_kill = report.five_xx
    fault.verify_exit, fault.verify_output = audit_verify(server.audit_db)
    fault.records_after_kill = evaluation_records(server.audit_db)
    with serving(server.audit_db) as again:
        body = json.loads(json.dumps(bodies[0]))
        body["hookInstance"] = str(uuid.uuid4())
        fault.restarted_status = httpx.post(f"{again.base}/cds-services/{PATIENT_VIEW}", json=body, timeout=60).status_code
    fault.verify_after_restart_exit, _ = audit_verify(server.audit_db)
    fault.records_after_restart = evaluation_records(server.audit_db)
    return fault


# --- the whole run ---------------------------------------------------------------------------------------------------
def run(*, clients: int = 50, seconds: float = 60.0, kill_clients: int | None = None, kill_after: float = 5.0,
        workdir: Path | None = None) -> dict[str, Any]:
    """Load phase, then the kill phase; returns the results as plain data (``passed`` says whether all held)."""
    own = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="radiopal-loadtest-")) if own else Path(workdir)  # type: ignore[arg-type]
    db = folder / "audit.db"
    server = start_server(db)
    try:
        bodies = patient_view_bodies(server.base)
        for body in bodies:  # warm up: every example once
            warm = copy.deepcopy(body)
            warm["hookInstance"] = str(uuid.uuid4())
            response = httpx.post(f"{server.base}/cds-services/{PATIENT_VIEW}", json=warm, timeout=120)
            if response.status_code != 200:
                raise RuntimeError(f"warm-up call answered {response.status_code}: {response.text[:500]}")
        load = run_load(server.base, bodies, clients=clients, seconds=seconds)
        # The same server, loaded again, is killed in the middle of it.
        fault = kill_mid_load(server, bodies, clients=kill_clients or clients, kill_after=kill_after)
    finally:
        server.stop()
    load_ok = load.five_xx == 0 and load.connection_errors == 0 and load.ok > 0
    result = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load": load.summary(),
        "fault": {**asdict(fault), "passed": fault.passed},
        "passed": load_ok and fault.passed,
        "audit_db": str(db),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load phase (default 60)")
    parser.add_argument("--kill-clients", type=int, help="clients during the kill phase (default: --clients)")
    parser.add_argument("--kill-after", type=float, default=5.0, help="SIGKILL the server after this many seconds "
                                                                        "of the second load and at least 5 answers "
                                                                        "(default 5)")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results/service.jsonl")
    parser.add_argument("--open-loop", metavar="RPS", type=float, nargs="+",
                        help="open-loop mode: fixed arrival rates (requests per second), one after the other")
    parser.add_argument("--workers", type=int, default=2, help="with --open-loop: server worker processes (default 2)")
    args = parser.parse_args(argv)
    if args.open_loop:
        result = open_loop(args.open_loop, args.seconds, args.workers)
        for run_ in result["runs"]:
            print(f"open loop {run_['rate_rps']:g} req/s x {run_['seconds']:g} s ({result['workers']} workers): "
                  f"{run_['ok']}/{run_['sent']} answered 200; p50 {run_['p50_ms']} ms, p95 {run_['p95_ms']} ms, "
                  f"p99 {run_['p99_ms']} ms; status {run_['status_counts']}; connection errors "
                  f"{run_['connection_errors']}; load average {run_['loadavg'][0]:.2f}")
        if not args.no_record:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            with RESULTS.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(result, sort_keys=True) + "\n")
        return 0
    result = run(clients=args.clients, seconds=args.seconds, kill_clients=args.kill_clients, kill_after=args.kill_after)
    load, fault = result["load"], result["fault"]
    print(f"load: {load['clients']} clients x {load['seconds']} s: {load['requests']} requests, "
          f"{load['throughput_rps']} req/s; latency p50 {load['p50_ms']} ms, p95 {load['p95_ms']} ms, "
          f"p99 {load['p99_ms']} ms; status {load['status_counts']}; 5xx {load['five_xx']}; "
          f"connection errors {load['connection_errors']}")
    for line in load["server_errors"]:
        print(f"  server error: {line}")
    print(f"kill: SIGKILL during the second load with {fault['ok_before_kill']} answers 200 received; "
          f"{fault['records_after_kill'] - fault['records_before_load']} new evaluation records "
          f"({fault['records_after_kill']} in all) in the audit log; audit verify exit "
          f"{fault['verify_exit']} ({fault['verify_output'].splitlines()[0] if fault['verify_output'] else ''})")
    print(f"restart: patient-view answered {fault['restarted_status']}; audit verify exit "
          f"{fault['verify_after_restart_exit']}; {fault['records_after_restart']} records")
    print("PASSED" if result["passed"] else "FAILED")
    if not args.no_record:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(result, sort_keys=True) + "\n")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
