"""The CDS Hooks service under a short load and a crash (the ``make loadtest`` run, shortened).

``benchmarks/loadtest_service.py`` starts ``radiopal serve --no-auth`` on 127.0.0.1 with a temporary audit DB,
runs 5 clients for 5 s of patient-view calls (no 5xx allowed), kills the server with SIGKILL while it is loaded,
checks with ``radiopal audit verify`` that the hash chain is intact and that every evaluation answered 200 before
the kill is in the log, then restarts the server on the same DB and checks that it answers again.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from conftest import load_benchmark

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")


def test_short_load_then_sigkill_keeps_the_audit_log(tmp_path: Path) -> None:
    result = load_benchmark("loadtest_service").run(clients=5, seconds=5, kill_after=2.5, workdir=tmp_path)
    report = json.dumps(result, indent=2)
    load, fault = result["load"], result["fault"]
    assert load["five_xx"] == 0 and load["connection_errors"] == 0, report
    assert load["ok_200"] > 0 and load["status_counts"] == {"200": load["requests"]}, report
    assert fault["five_xx_before_kill"] == 0, report
    assert fault["ok_before_kill"] > 0, f"the kill came before any answer; nothing was tested\n{report}"
    assert fault["verify_exit"] == 0, report
    assert fault["records_after_kill"] - fault["records_before_load"] >= fault["ok_before_kill"], report
    assert fault["restarted_status"] == 200 and fault["verify_after_restart_exit"] == 0, report
    assert fault["records_after_restart"] == fault["records_after_kill"] + 1, report
    assert result["passed"], report
