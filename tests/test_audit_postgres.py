"""The audit log on a real PostgreSQL server (issue #17 item 6), for several service nodes: one hash chain under
concurrent writers, JWT replay protection that holds across processes, nothing committed lost when the server crashes
and restarts, `radiopal serve --workers 2` on it, and clear one-line errors without the password. The server is
started by the test on 127.0.0.1 (tests/pgserver.py) from the Debian `postgresql` package that `make install`
installs."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO
from pgserver import PostgresServer, binaries

pytest.importorskip("psycopg", reason="the PostgreSQL audit log needs the service extra: pip install 'radiopal[service]'")

WRITERS = 4
PER_WRITER = 40


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    if binaries() is None:
        pytest.skip("PostgreSQL is not installed: `make install` installs the Debian package postgresql")
    # Under /tmp itself, not pytest's private (0700, root's) folder: the server runs as the postgres user.
    root = Path(tempfile.mkdtemp(prefix="radiopal-pg-"))
    try:
        pg = PostgresServer(root)
        try:
            yield pg
        finally:
            pg.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database(server: PostgresServer) -> str:
    return server.create_database(f"audit_{uuid.uuid4().hex[:12]}")


def _append(url: str, writer: int, count: int, ready: mp.Queue, start: mp.synchronize.Event,  # type: ignore[type-arg]
            progress: mp.synchronize.Event, done: mp.Queue) -> None:  # type: ignore[type-arg]
    """Append ``count`` records; report (writer, committed (seq, hash) pairs, error name or None). Every failure is
    reported, so the test never waits for a writer that died."""
    committed: list[tuple[int, str]] = []
    log = None
    try:
        from radiopal.audit import AuditLog

        log = AuditLog(url)
        ready.put(writer)
        start.wait(60)
        for i in range(count):
            entry = log.record_event("feedback", caller=f"writer-{writer}", context={"writer": writer, "i": i})
            committed.append((entry.seq, entry.row_hash))  # append returned: the transaction committed
            if len(committed) == 10:
                progress.set()
    except Exception as exc:  # the server went away under us (the crash test): report what committed
        done.put((writer, committed, type(exc).__name__))
        return
    finally:
        if log is not None:
            log.dispose()
    done.put((writer, committed, None))


def _run_writers(url: str, count: int, during=None) -> list[tuple[int, list[tuple[int, str]], str | None]]:
    """WRITERS processes appending at once. ``during`` runs once they have all connected and some have committed."""
    context = mp.get_context("spawn")  # fresh processes: no engine or connection crosses a fork
    ready, start, progress, done = context.Queue(), context.Event(), context.Event(), context.Queue()
    procs = [context.Process(target=_append, args=(url, w, count, ready, start, progress, done))
             for w in range(WRITERS)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=180)  # every writer has imported radiopal and connected (slow on a loaded machine)
        start.set()
        if during is not None:
            assert progress.wait(120), "no writer committed anything"
            during()
        return [done.get(timeout=300) for _ in procs]
    finally:
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()


def test_concurrent_writers_keep_one_hash_chain(database: str):
    from radiopal.audit import AuditLog

    AuditLog(database).dispose()  # the tables exist before the writers race (they would also create them safely)
    results = _run_writers(database, PER_WRITER)
    assert all(error is None for _, _, error in results)
    seqs = sorted(seq for _, committed, _ in results for seq, _ in committed)
    assert seqs == list(range(1, WRITERS * PER_WRITER + 1))  # no gap, no duplicate
    log = AuditLog(database, create=False)
    try:
        report = log.verify()
        assert report.ok and report.records == WRITERS * PER_WRITER
        writers = {r.caller for r in log.recent(limit=1000)}
        assert writers == {f"writer-{w}" for w in range(WRITERS)}
    finally:
        log.dispose()


def _claim(url: str, ids: list[str], ready: mp.Queue, start: mp.synchronize.Event,  # type: ignore[type-arg]
           done: mp.Queue) -> None:  # type: ignore[type-arg]
    import time

    try:
        from radiopal.audit import AuditLog

        log = AuditLog(url)
        ready.put(True)
        start.wait(60)
        done.put([log.claim_token_id("https://ehr.example", jti, time.time() + 300) for jti in ids])
        log.dispose()
    except Exception as exc:
        ready.put(True)
        done.put(type(exc).__name__)


IDS = [f"jti-{i}" for i in range(30)]


def _claim_at_once(database: str) -> list[list[bool] | str]:
    """Six processes, each with its own AuditLog, claim the JWT ids ``IDS`` in turn, starting at the same moment; their
    answers (one list per process, or the name of the error that stopped it)."""
    context = mp.get_context("spawn")
    ready, start, done = context.Queue(), context.Event(), context.Queue()
    procs = [context.Process(target=_claim, args=(database, IDS, ready, start, done)) for _ in range(6)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=180)
    start.set()  # all six claim at once
    answers = [done.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
    return answers


def test_a_jwt_id_is_accepted_once_across_processes(database: str):
    from radiopal.audit import AuditLog

    AuditLog(database).dispose()
    _each_granted_once(_claim_at_once(database))


def _each_granted_once(answers: list[list[bool] | str]) -> None:
    assert all(isinstance(a, list) for a in answers), answers
    for i, jti in enumerate(IDS):
        assert sum(bool(a[i]) for a in answers) == 1, jti  # accepted by exactly one process


def test_an_expired_jwt_id_claimed_again_at_once_is_accepted_once(database: str):
    """An id whose earlier use has expired may be used again, by one claimant only. (Reading the expired entry and then
    updating it let every process that read it accept the token; one INSERT ... ON CONFLICT DO UPDATE ... WHERE expired
    cannot.)"""
    import time

    from radiopal.audit import AuditLog

    log = AuditLog(database)
    assert all(log.claim_token_id("https://ehr.example", jti, time.time() - 1) for jti in IDS)  # used, expired
    log.dispose()
    _each_granted_once(_claim_at_once(database))


def test_an_expired_jwt_id_may_be_used_again_on_postgresql(database: str):
    from radiopal.audit import AuditLog
    from test_service import check_expired_ids_renew

    check_expired_ids_renew(AuditLog(database))


def test_tables_created_by_several_nodes_at_once(database: str):
    """Nodes starting together: one creates the tables (under an advisory lock), none fails, one head row."""
    results = _run_writers(database, 1)
    assert all(error is None for _, _, error in results)
    from radiopal.audit import AuditLog

    log = AuditLog(database, create=False)
    try:
        assert log.verify().ok and log.verify().records == WRITERS
    finally:
        log.dispose()


def test_a_server_crash_loses_nothing_committed(server: PostgresServer, database: str):
    """Writers append while the server is stopped at once (as a crash: no checkpoint); after the restart every record
    whose append returned is there with the same hash, and the chain verifies."""
    import time

    from radiopal.audit import AuditLog

    AuditLog(database).dispose()

    def crash_midway() -> None:
        time.sleep(0.3)
        server.crash()

    try:
        results = _run_writers(database, 10_000, during=crash_midway)
    finally:
        server.start()  # whatever happened, the later tests get their server back
        server.wait_ready()
    assert any(error is not None for _, _, error in results), "the crash did not interrupt the writers"
    committed = {seq: row_hash for _, done, _ in results for seq, row_hash in done}
    assert committed, "nothing committed before the crash"
    log = AuditLog(database, create=False)
    try:
        report = log.verify()
        assert report.ok, report
        for seq, row_hash in committed.items():
            record = log.get(seq)
            assert record is not None and record.row_hash == row_hash, seq
        assert report.records >= len(committed)
        # The service keeps going after the restart: the next append continues the chain.
        after = log.record_event("feedback", caller="after-restart", context={})
        assert after.seq == report.records + 1 and log.verify().ok
    finally:
        log.dispose()


def test_a_server_gone_after_the_log_was_opened_is_one_clear_error(server: PostgresServer, database: str):
    """Reads and appends on a log whose server went away: an InputError naming the log on one line, the password
    masked (not the driver's multi-line message, which the CLI reported as a bug); after the restart all works."""
    from radiopal.audit import AuditLog
    from radiopal.errors import InputError

    log = AuditLog(database.replace("postgres@", "postgres:pw-7q@", 1))  # trust auth: the password is not checked
    log.record_event("feedback", caller="t", context={})
    try:
        server.crash()
        for call, action in ((log.verify, "read"), (lambda: log.record_event("feedback", caller="t", context={}),
                                                    "write to")):
            with pytest.raises(InputError) as caught:
                call()
            lines = caught.value.lines()
            assert len(lines) == 1 and "\n" not in lines[0], lines
            assert f"cannot {action} the audit log" in lines[0] and "pw-7q" not in lines[0] and "***" in lines[0]
    finally:
        server.start()
        server.wait_ready()
    assert log.verify().ok and log.verify().records == 1
    log.dispose()


def test_the_records_cannot_be_edited_on_postgresql(database: str):
    import psycopg

    from radiopal.audit import AuditLog

    log = AuditLog(database)
    log.record_event("feedback", caller="t", context={})
    log.dispose()
    url = database.replace("postgresql://", "postgresql://", 1)
    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("UPDATE audit_records SET caller = 'someone else'")


@pytest.mark.parametrize("command", [["audit", "verify", "--db"],
                                     ["serve", "--no-auth", "--workers", "2", "--port", "0", "--audit-db"]],
                         ids=["audit-verify", "serve-workers"])
def test_an_unreachable_server_is_one_line_without_the_password(free_port_url: str, command: list[str]):
    """Also ``serve --workers 2``: the log is opened before the workers start, so the error is one line and exit 2
    (before, every worker failed with a traceback and uvicorn restarted them without end)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "engine")}
    done = subprocess.run([sys.executable, "-m", "radiopal", *command, free_port_url],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip() and "authentication is OFF" not in line]
    assert len(lines) <= 2 and "cannot open the audit log" in lines[0], done.stderr
    assert "s3cret" not in done.stderr + done.stdout and "Traceback" not in done.stderr
    assert "***" in done.stderr


@pytest.fixture
def free_port_url() -> str:
    from radiopal.service.sandbox import free_port

    return f"postgresql://radiopal:s3cret@127.0.0.1:{free_port()}/audit"


def test_serve_with_two_workers_on_postgresql(database: str, tmp_path: Path):
    from radiopal.audit import AuditLog
    from test_serve_workers import serve_twenty_patient_views

    serve_twenty_patient_views(database)
    log = AuditLog(database, create=False)
    try:
        assert len(log.recent(limit=100, kind="evaluation")) == 20
        report = log.verify()
        assert report.ok and report.records == 20
    finally:
        log.dispose()
