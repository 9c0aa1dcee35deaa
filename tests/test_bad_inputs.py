"""The bad-input corpus (``tests/bad_inputs/``): every file through the real command line or the real service.

Each case of ``tests/bad_inputs/manifest.yaml`` names a file, its kind, the message it must give and the exit code
(or HTTP status). Command-line cases run ``python -m radiopal ...`` in a subprocess and check the exit code, the
message, and that no traceback reaches the user. CDS Hooks request bodies are posted to ``radiopal serve --no-auth``
started here on 127.0.0.1; no answer may be a 500.

Speed: importing radiopal and parsing the shipped rule base take about a second of CPU, which times 150 cases is
too long for ``make test``. So one driver subprocess imports radiopal and warms its caches once, then forks one child
per case; each child runs ``radiopal.cli.main(argv)`` — what ``python -m radiopal`` runs — with its own stdout and
stderr, and exits with its exit code. The children run in parallel. One case of each kind also runs as a plain
``python -m radiopal`` subprocess, and platforms without ``fork`` run every case that way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from conftest import load_benchmark

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "bad_inputs"
MANIFEST = yaml.safe_load((CORPUS / "manifest.yaml").read_text(encoding="utf-8"))["cases"]
EXAMPLE_PATIENT = REPO / "examples" / "patient-mcrpc.yaml"
KINDS = ("patient", "rules", "scenario", "fhir", "cds-request")
CLI_KINDS = ("patient", "rules", "scenario", "fhir")


def case_id(case: dict[str, Any]) -> str:
    return str(case["file"])


def params(kinds: tuple[str, ...]) -> list[Any]:
    out = []
    for case in MANIFEST:
        if case["kind"] not in kinds:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=case["xfail"])] if case.get("xfail") else []
        out.append(pytest.param(case, id=case_id(case), marks=marks))
    return out


# --- the corpus itself ------------------------------------------------------------------------------------------------
def test_manifest_is_complete_and_consistent() -> None:
    listed = {c["file"] for c in MANIFEST}
    on_disk = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file()} - {"manifest.yaml"}
    assert len(listed) == len(MANIFEST), "a file is listed twice"
    assert on_disk - listed == set(), "files in tests/bad_inputs/ that the manifest does not list"
    missing = {c["file"] for c in MANIFEST if "generate" not in c} - on_disk
    assert not missing, f"listed but not committed: {sorted(missing)}"
    assert len(on_disk) >= 60
    for case in MANIFEST:
        assert case["kind"] in KINDS, case
        assert isinstance(case["expect"], str) and case["expect"], case
        if case["kind"] == "cds-request":
            assert isinstance(case.get("status"), int) and case["status"] != 500, case
            assert case["status"] != 200 or case.get("note"), case  # an answered input says why it is here
        else:
            assert case.get("exit") in (0, 1, 2), case
            assert case["exit"] != 0 or case.get("note"), case
    assert {c["kind"] for c in MANIFEST} == set(KINDS)


# --- generated (huge) inputs -----------------------------------------------------------------------------------------
def generate(kind: str, target: Path) -> None:
    """Write a huge input at test time instead of committing megabytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "huge-yaml":
        text = EXAMPLE_PATIENT.read_text(encoding="utf-8")
        with target.open("w", encoding="utf-8") as handle:
            handle.write(text)
            for _ in range(9 * 1024):
                handle.write("# " + "x" * 1021 + "\n")
    elif kind == "huge-json":
        target.write_text(json.dumps({"schema_version": "1.0", "padding": list(range(1_500_000))}), encoding="utf-8")
    elif kind == "huge-cds":
        body = {"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "V01"}, "pad": "x" * (2 << 20)}
        target.write_text(json.dumps(body), encoding="utf-8")
    else:  # pragma: no cover - a manifest typo
        raise AssertionError(f"unknown generator {kind!r}")


def case_path(case: dict[str, Any], workdir: Path) -> Path:
    if "generate" in case:
        target = workdir / "generated" / case["file"]
        if not target.exists():
            generate(case["generate"], target)
        return target
    return CORPUS / case["file"]


# --- command line ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


ENV = {**os.environ, "PYTHONIOENCODING": "utf-8"}
ENV.pop("RADIOPAL_DEBUG", None)


def radiopal(*args: str, cwd: Path) -> Run:
    """``python -m radiopal ARGS`` in a subprocess."""
    done = subprocess.run([sys.executable, "-m", "radiopal", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, check=False, env=ENV)
    return Run(tuple(args), done.returncode, done.stdout, done.stderr)


#: Imports radiopal once, warms the rule-base cache, then forks a child per job that runs the CLI entry point.
DRIVER = r"""
import json, os, sys, traceback
jobs = json.load(sys.stdin)
from radiopal.cli import main
from radiopal.api import load_rulebase
import radiopal.fhir.mapping, radiopal.scenarios
load_rulebase()
try:
    from fhir.resources.R4B import bundle
except ImportError:
    pass
sys.stdout.flush(); sys.stderr.flush()
results, running, pending = {}, {}, list(jobs)
limit = max(2, os.cpu_count() or 2)
while pending or running:
    while pending and len(running) < limit:
        job = pending.pop(0)
        out, err = job["out"], job["err"]
        pid = os.fork()
        if pid == 0:
            code = 98
            try:
                os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
                os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
                code = main(job["argv"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 99
            finally:
                sys.stdout.flush(); sys.stderr.flush()
                os._exit(code)
        running[pid] = job
    pid, status = os.wait()
    job = running.pop(pid)
    results[job["name"]] = os.waitstatus_to_exitcode(status)
json.dump(results, sys.stdout)
"""


def run_all(jobs: dict[str, list[str]], cwd: Path) -> dict[str, Run]:
    """Run every job's CLI arguments; forked from one warmed-up driver where the platform can fork."""
    if not hasattr(os, "fork"):
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            futures = {name: pool.submit(radiopal, *argv, cwd=cwd) for name, argv in jobs.items()}
            return {name: future.result() for name, future in futures.items()}
    spool = cwd / "spool"
    spool.mkdir(exist_ok=True)
    payload = [{"name": name, "argv": argv, "out": str(spool / f"{i}.out"), "err": str(spool / f"{i}.err")}
               for i, (name, argv) in enumerate(jobs.items())]
    done = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(payload), capture_output=True, text=True,
                          cwd=cwd, timeout=900, check=False, env=ENV)
    assert done.returncode == 0, f"the driver failed:\n{done.stderr[-5000:]}"
    codes = json.loads(done.stdout)
    return {job["name"]: Run(tuple(job["argv"]), codes[job["name"]],
                             Path(job["out"]).read_text(encoding="utf-8", errors="replace"),
                             Path(job["err"]).read_text(encoding="utf-8", errors="replace"))
            for job in payload}


def command_for(case: dict[str, Any], path: Path, workdir: Path) -> list[str]:
    kind = case["kind"]
    if kind == "patient":
        return ["recommend", str(path)]
    if kind == "fhir":
        return ["recommend", "--fhir", str(path)]
    if kind == "scenario":
        return ["test", str(path)]
    return ["recommend", "--rules", str(rule_folder(case, path, workdir, "rule-folders")), str(EXAMPLE_PATIENT)]


def rule_folder(case: dict[str, Any], path: Path, workdir: Path, under: str) -> Path:
    """A folder holding only the case's rule file."""
    folder = workdir / under / Path(case["file"]).stem
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, folder / Path(case["file"]).name)
    return folder


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad-inputs")


@pytest.fixture(scope="module")
def cli_runs(workdir: Path) -> dict[str, Run]:
    """Every command-line case (and ``radiopal lint`` of every rules case), run up front in parallel."""
    jobs = {}
    for case in MANIFEST:
        if case["kind"] in CLI_KINDS:
            path = case_path(case, workdir)
            jobs[case["file"]] = command_for(case, path, workdir)
            if case["kind"] == "rules":
                jobs["lint:" + case["file"]] = ["lint", str(rule_folder(case, path, workdir, "lint-folders"))]
    return run_all(jobs, workdir)


def check_cli(case: dict[str, Any], run: Run) -> None:
    where = f"radiopal {' '.join(run.argv)}\n--- stdout\n{run.stdout[-2000:]}\n--- stderr\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr, where
    assert "Traceback" not in run.stdout, where
    output = run.stdout + run.stderr if case["kind"] == "scenario" or case["exit"] == 0 else run.stderr
    assert case["expect"] in output, where
    assert run.returncode == case["exit"], where
    if case["exit"] == 2:
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert lines and all(line.startswith("radiopal: error: ") for line in lines), where


@pytest.mark.parametrize("case", params(CLI_KINDS))
def test_bad_input_on_the_command_line(case: dict[str, Any], cli_runs: dict[str, Run]) -> None:
    check_cli(case, cli_runs[case["file"]])


def _first_of_each_kind() -> list[Any]:
    seen: set[str] = set()
    out = []
    for case in MANIFEST:
        if case["kind"] in CLI_KINDS and case["kind"] not in seen and not case.get("xfail") \
                and "generate" not in case:
            seen.add(case["kind"])
            out.append(pytest.param(case, id=case_id(case)))
    return out


@pytest.mark.parametrize("case", _first_of_each_kind())
def test_same_error_from_python_m_radiopal(case: dict[str, Any], workdir: Path) -> None:
    """A plain ``python -m radiopal`` subprocess gives what the forked entry point gives."""
    check_cli(case, radiopal(*command_for(case, case_path(case, workdir), workdir), cwd=workdir))


def _lint_params() -> list[Any]:
    return [pytest.param(c, id=case_id(c)) for c in MANIFEST if c["kind"] == "rules" and not c.get("xfail")]


@pytest.mark.parametrize("case", _lint_params())
def test_lint_reports_bad_rule_files_without_a_traceback(case: dict[str, Any], cli_runs: dict[str, Run]) -> None:
    run = cli_runs["lint:" + case["file"]]
    where = f"radiopal {' '.join(run.argv)}\n--- stdout\n{run.stdout[-2000:]}\n--- stderr\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr + run.stdout, where
    assert run.returncode == 1, where


# --- CDS Hooks request bodies ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service(workdir: Path) -> Iterator[tuple[str, Path, ModuleType]]:
    bench = load_benchmark("loadtest_service")
    db = workdir / "audit.db"
    server = bench.start_server(db, log=workdir / "serve.log")
    try:
        yield server.base, db, bench
    finally:
        server.stop()


@pytest.mark.parametrize("case", params(("cds-request",)))
def test_bad_cds_hooks_request(case: dict[str, Any], service: tuple[str, Path, ModuleType], workdir: Path) -> None:
    import httpx

    base, _db, _bench = service
    body = case_path(case, workdir).read_bytes()
    service_id = case.get("service", "radiopal-patient-view")
    response = httpx.post(f"{base}/cds-services/{service_id}", content=body, timeout=120,
                          headers={"Content-Type": "application/json"})
    where = f"POST {case['file']}: HTTP {response.status_code}: {response.text[:1000]}"
    assert response.status_code != 500, where
    assert response.status_code == case["status"], where
    if case["status"] != 200:
        error = response.json()
        assert set(error) >= {"error", "message"}, where
    assert case["expect"] in response.text, where


def test_bad_requests_leave_the_audit_log_intact(service: tuple[str, Path, ModuleType]) -> None:
    """After the corpus (run first), a good call still works and the hash chain verifies."""
    import httpx

    base, db, bench = service
    body = bench.patient_view_bodies(base)[0]
    body["hookInstance"] = "b8a8b6a0-5d8c-4a8e-9d41-2f5b1d6c2e11"
    assert httpx.post(f"{base}/cds-services/radiopal-patient-view", json=body, timeout=120).status_code == 200
    code, output = bench.audit_verify(db)
    assert code == 0, output
