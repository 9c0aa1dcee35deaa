"""`radiopal serve --workers N` (issue #17 item 6): several processes answer, sharing one audit log whose hash chain stays
one chain. The server is started as a subprocess on a free 127.0.0.1 port and stopped by the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from conftest import REPO
from radiopal.service.sandbox import ehr_bundle, free_port, prefetch_for


def _children(pid: int) -> set[int]:
    out = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        ppid = next((line.split()[1] for line in text.splitlines() if line.startswith("PPid:")), "0")
        if int(ppid) == pid:
            out.add(int(status.parent.name))
    return out


def serve_twenty_patient_views(audit: str) -> None:
    """Start `radiopal serve --workers 2` on ``audit`` (a SQLite path or a database URL), answer 20 patient-view
    calls, stop it, and check that `radiopal audit verify` accepts the log."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "engine")}
    proc = subprocess.Popen([sys.executable, "-m", "radiopal", "serve", "--no-auth", "--port", str(port),
                             "--workers", "2", "--audit-db", audit, "--evaluation-date", "2025-06-02",
                             "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        templates = None
        while time.monotonic() < deadline:
            try:
                templates = httpx.get(f"{base}/cds-services", timeout=2).json()["services"][0]["prefetch"]
                break
            except (httpx.HTTPError, ValueError, KeyError):
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                time.sleep(0.3)
        assert templates is not None, "the server did not start"
        workers = _children(proc.pid) - {proc.pid}
        assert len(workers) >= 2, workers  # uvicorn's supervisor spawned the worker processes
        bundle = ehr_bundle(json.loads((REPO / "examples" / "fhir" / "V05.bundle.json").read_text(encoding="utf-8")))
        patient_id = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        prefetch = prefetch_for(bundle, templates)
        with httpx.Client(timeout=30) as client:
            for _ in range(20):
                body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "prefetch": prefetch,
                        "context": {"patientId": patient_id, "userId": "Practitioner/1"}}
                response = client.post(f"{base}/cds-services/radiopal-patient-view", json=body)
                assert response.status_code == 200, response.text
                assert response.json()["cards"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    verify = subprocess.run([sys.executable, "-m", "radiopal", "audit", "verify", "--db", audit],
                            capture_output=True, text=True, env=env, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_two_workers_answer_and_share_one_audit_chain(tmp_path: Path):
    audit = tmp_path / "audit.db"
    serve_twenty_patient_views(str(audit))
    from radiopal.audit import AuditLog

    log = AuditLog(str(audit))
    try:
        assert len(log.recent(limit=100, kind="evaluation")) == 20  # every call recorded
        report = log.verify()
        assert report.ok and report.records == 20  # one hash chain across both processes
    finally:
        log.dispose()


def test_the_open_loop_load_test_sends_on_schedule(tmp_path: Path):
    """benchmarks/loadtest_service.py --open-loop: every scheduled call is sent and answered (figures are the bench's;
    this checks the mechanism, not the speed)."""
    from conftest import load_benchmark

    bench = load_benchmark("loadtest_service")
    with bench.serving(tmp_path / "audit.db") as server:
        bodies = bench.patient_view_bodies(server.base)
        started = time.monotonic()
        run = bench.run_open_loop(server.base, bodies, rate=8, seconds=1.5)
        elapsed = time.monotonic() - started
    assert run["sent"] == 12 and run["ok"] == 12 and run["status_counts"] == {"200": 12}
    assert elapsed >= 1.3  # the arrivals were spread over the period, not fired at once
    assert run["p50_ms"] is not None and run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"]
