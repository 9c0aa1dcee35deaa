"""The audit log: hash chain, tamper detection (edit, delete, reorder), transactions, concurrent writers, CLI."""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import radiopal
from conftest import write_rulebase
from radiopal.audit import GENESIS_HASH, AuditLog, canonical_json, input_hash
from radiopal.cli import main

RULES = """
area: audit-test
version: "1"
rules:
  - id: ELIG-GEN-10
    variant: audit
    title: Platelets below the floor
    version: 1
    strength: strong
    verification: V
    sources: [snm_bone_pain]
    therapies: [sr89]
    when: {fact: plt, op: "<", value: 100, unit: "10^9/L"}
    then: {status: contraindicated}
  - id: ELIG-RA-01
    variant: audit
    title: Ra-223 for castration-resistant prostate cancer
    version: 1
    strength: strong
    verification: V
    sources: [xofigo_uspi]
    therapies: [ra223]
    when: {fact: castration_resistant, op: "==", value: true}
    then: {status: recommended}
"""


@pytest.fixture(scope="module")
def rulebase(tmp_path_factory: pytest.TempPathFactory) -> radiopal.RuleBase:
    return radiopal.load_rulebase(write_rulebase(tmp_path_factory.mktemp("rules"), RULES))


@pytest.fixture
def filled(tmp_path: Path, rulebase: radiopal.RuleBase, patient: dict[str, Any]) -> tuple[Path, list[str]]:
    """An audit log with five evaluations; returns its path and the record ids in order."""
    db = tmp_path / "audit.db"
    log = AuditLog(db)
    ids = []
    for i in range(5):
        doc = {**patient, "patient_id": f"P{i}"}
        ids.append(log.record(rulebase.evaluate(doc), caller="test").record_id)
    log.dispose()
    return db, ids


def tamper(db: Path, *statements: str) -> None:
    """Change the file as an attacker with sqlite3 would: drop the append-only triggers first."""
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER IF EXISTS audit_records_no_update")
    con.execute("DROP TRIGGER IF EXISTS audit_records_no_delete")
    for statement in statements:
        con.execute(statement)
    con.commit()
    con.close()


def verify_cli(db: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "verify", "--db", str(db)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_record_holds_the_input_hash_rule_base_decisions_graph_time_and_caller(
        tmp_path: Path, rulebase: radiopal.RuleBase, patient: dict[str, Any]) -> None:
    result = rulebase.evaluate(patient)
    log = AuditLog(tmp_path / "a.db")
    entry = log.record(result, caller="api:test", context={"purpose": "unit test"})
    record = log.get(entry.record_id)
    assert record is not None and log.get(entry.seq) == record
    assert record.input_hash == input_hash(patient) and record.input_hash.startswith("sha256:")
    assert record.rulebase_version == rulebase.version and record.rulebase_hash == rulebase.digest
    assert record.decisions == json.loads(canonical_json(result.to_dict()))
    assert record.graph == json.loads(canonical_json(result.graph.to_dict()))
    assert record.recorded_at.endswith("Z") and record.caller == "api:test"
    assert record.context == {"purpose": "unit test"}
    assert record.prev_hash == GENESIS_HASH and record.kind == "evaluation"


def test_the_input_hash_does_not_depend_on_key_order(patient: dict[str, Any]) -> None:
    shuffled = dict(reversed(list(patient.items())))
    assert input_hash(shuffled) == input_hash(patient)
    assert input_hash({**patient, "patient_id": "other"}) != input_hash(patient)


def test_an_untouched_log_verifies_and_each_record_chains_to_the_previous(
        filled: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    db, ids = filled
    log = AuditLog(db, create=False)
    report = log.verify()
    assert report.ok and report.records == 5
    records = [log.get(i) for i in ids]
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.row_hash for a, b in itertools.pairwise(records))
    code, text = verify_cli(db, capsys)
    assert code == 0 and "5 record(s), hash chain intact" in text and records[-1].row_hash in text


def test_an_edited_record_is_detected_and_named(filled: tuple[Path, list[str]],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    db, ids = filled
    tamper(db, "UPDATE audit_records SET decisions_json = replace(decisions_json, 'recommended', 'eligible') "
               "WHERE seq = 3")
    code, text = verify_cli(db, capsys)
    assert code == 1
    assert "first bad record: record 3" in text and ids[2] in text and "edited" in text


def test_an_edit_that_also_rewrites_its_own_hash_breaks_the_next_link(filled: tuple[Path, list[str]],
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    db, _ids = filled
    tamper(db, "UPDATE audit_records SET caller = 'someone else', row_hash = 'f' || substr(row_hash, 2) WHERE seq = 2")
    code, text = verify_cli(db, capsys)
    assert code == 1 and "record 2" in text


def test_a_deleted_record_is_detected_and_the_gap_named(filled: tuple[Path, list[str]],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    db, ids = filled
    tamper(db, "DELETE FROM audit_records WHERE seq = 2")
    code, text = verify_cli(db, capsys)
    assert code == 1
    assert "first bad record: record 3" in text and ids[2] in text and "2..2 were deleted" in text


def test_a_deleted_and_renumbered_record_is_detected(filled: tuple[Path, list[str]],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    db, _ids = filled
    tamper(db, "DELETE FROM audit_records WHERE seq = 2", "UPDATE audit_records SET seq = seq - 1 WHERE seq > 2")
    code, text = verify_cli(db, capsys)
    assert code == 1 and "first bad record: record 2" in text


def test_deleting_the_newest_records_is_detected_by_the_head(filled: tuple[Path, list[str]],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    db, _ids = filled
    tamper(db, "DELETE FROM audit_records WHERE seq >= 4")
    code, text = verify_cli(db, capsys)
    assert code == 1 and "the head says 5 record(s)" in text and "record 4" in text


def test_reordered_records_are_detected(filled: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    db, _ids = filled
    tamper(db, "UPDATE audit_records SET seq = 100 WHERE seq = 2", "UPDATE audit_records SET seq = 2 WHERE seq = 3",
           "UPDATE audit_records SET seq = 3 WHERE seq = 100")
    code, text = verify_cli(db, capsys)
    assert code == 1 and "first bad record: record 2" in text


def test_sqlite_refuses_updates_and_deletes(filled: tuple[Path, list[str]]) -> None:
    db, _ids = filled
    con = sqlite3.connect(db)
    for statement in ("UPDATE audit_records SET caller = 'x' WHERE seq = 1", "DELETE FROM audit_records WHERE seq = 1"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute(statement)
    con.close()
    assert AuditLog(db, create=False).verify().ok


def test_a_failed_write_leaves_no_partial_record(tmp_path: Path, rulebase: radiopal.RuleBase,
                                                 patient: dict[str, Any]) -> None:
    log = AuditLog(tmp_path / "t.db")
    result = rulebase.evaluate(patient)
    log.record(result, caller="test", cards={"card-1": "svc"})
    with pytest.raises(Exception, match="UNIQUE"):
        log.record(result, caller="test", cards={"card-1": "svc"})  # the card index insert fails after the record
    report = log.verify()
    assert report.ok and report.records == 1
    assert [r.seq for r in log.recent()] == [1]
    assert log.record(result, caller="test").seq == 2


def test_concurrent_writers_in_threads_are_serialised(tmp_path: Path, rulebase: radiopal.RuleBase,
                                                      patient: dict[str, Any]) -> None:
    log = AuditLog(tmp_path / "c.db")
    result = rulebase.evaluate(patient)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(5):
                log.record(result, caller=threading.current_thread().name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = log.verify()
    assert report.ok and report.records == 40


WRITER = """
import sys
from radiopal.audit import AuditLog
log = AuditLog(sys.argv[1])
for i in range(15):
    log.record_event("feedback", caller="process-" + sys.argv[2], context={"i": i})
"""


def test_concurrent_writer_processes_are_serialised(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    AuditLog(db).dispose()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(n)]) for n in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    report = AuditLog(db, create=False).verify()
    assert report.ok and report.records == 45


def test_a_sqlalchemy_url_selects_the_database(tmp_path: Path, rulebase: radiopal.RuleBase,
                                               patient: dict[str, Any]) -> None:
    url = f"sqlite:///{tmp_path / 'url.db'}"
    log = AuditLog(url)
    log.record(rulebase.evaluate(patient), caller="test")
    assert (tmp_path / "url.db").is_file() and log.verify().ok


def test_recommend_records_when_asked_and_audit_show_prints_the_trace(
        tmp_path: Path, rulebase: radiopal.RuleBase, patient: dict[str, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "p.json"
    doc.write_text(json.dumps({**patient, "labs": {**patient["labs"], "platelets": {"value": 80, "unit": "10^9/L"}}}))
    db = tmp_path / "cli.db"
    rules = str(rulebase.folder)
    assert main(["recommend", str(doc), "--rules", rules]) == 0
    assert not db.exists()  # off by default
    assert main(["recommend", str(doc), "--rules", rules, "--audit-db", str(db)]) == 0
    captured = capsys.readouterr()
    assert "recorded as" in captured.err
    assert main(["audit", "list", "--db", str(db)]) == 0
    assert "T-BASE" in capsys.readouterr().out
    assert main(["audit", "show", "1", "--db", str(db)]) == 0
    shown = capsys.readouterr().out
    assert "sr89" in shown and "contraindicated" in shown and "ELIG-GEN-10" in shown
    assert "plt < 100" in shown and "observed 80" in shown
    assert main(["audit", "show", "1", "--db", str(db), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["caller"] == "cli"


def test_audit_commands_on_a_missing_log_or_record_are_errors(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--db", str(tmp_path / "none.db")]) == 2
    assert "no audit log" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()
    AuditLog(tmp_path / "empty.db").dispose()
    assert main(["audit", "show", "nope", "--db", str(tmp_path / "empty.db")]) == 2
    assert "no audit record 'nope'" in capsys.readouterr().err


def test_a_new_sqlite_log_is_readable_by_its_owner_only_whatever_the_umask(
        tmp_path: Path, rulebase: radiopal.RuleBase, patient: dict[str, Any]) -> None:
    import os
    import stat

    old = os.umask(0o022)  # the usual umask, which would give 0644
    try:
        db = tmp_path / "private" / "audit.db"
        log = AuditLog(db)
        log.record(rulebase.evaluate(patient), caller="test")
        files = [p for p in db.parent.iterdir() if p.name.startswith("audit.db")]
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
        log.dispose()
    finally:
        os.umask(old)
    assert modes["audit.db"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes  # -wal/-shm follow the database file


def test_an_existing_log_keeps_the_permissions_its_owner_chose(tmp_path: Path, filled: tuple[Path, list[str]]) -> None:
    import stat

    db, _ = filled
    db.chmod(0o640)
    AuditLog(db).dispose()
    assert stat.S_IMODE(db.stat().st_mode) == 0o640
