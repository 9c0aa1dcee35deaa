"""Cohort audit (``radiopal cohort``): Dask and serial runs agree patient by patient, errors are reported and not
fatal, ``--resume`` (even after a kill) gives the same tables, every input shape is read, the summary page is
self-contained and leads with the under-use finding, and no temporary file is left behind.

The runs use a small rule base written here, so these tests exercise the cohort machinery whatever state the shipped
rules are in; one test runs the shipped rules when they compile.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed", reason="cohort tests need the cohort extra: pip install 'radiopal[cohort]'")
pq = pytest.importorskip("pyarrow.parquet", reason="cohort tests need the cohort extra: pip install 'radiopal[cohort]'")

import radiopal  # noqa: E402
from conftest import SR89_RETREATMENT, rule_items  # noqa: E402
from radiopal.cli import main  # noqa: E402
from radiopal.cohort import CohortOptions, CohortReport, run_cohort  # noqa: E402
from radiopal.errors import InputError  # noqa: E402
from radiopal.synth import SyntheticPatient, generate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FHIR_EXAMPLES = sorted((REPO / "examples" / "fhir").glob("*.bundle.json"))

RULES = """\
area: cohort-test
version: "1"
rules:
  - id: DATA-06
    variant: beta
    title: Data the beta-emitters need
    version: 1
    strength: strong
    verification: V
    sources: [contract]
    therapies: [sr89, sm153]
    requires: [pain_nrs, bone_pattern, uptake_at_painful_sites, plt_current, wbc_or_anc_current]
    then: {status: insufficient_data}
  - id: DATA-06
    variant: bha
    title: Data the bone-health agents need
    version: 1
    strength: strong
    verification: V
    sources: [contract]
    therapies: [zoledronic_acid, denosumab]
    requires: [ca_corr, unhealed_oral_lesion]
    then: {status: insufficient_data}
  - id: ELIG-SR-01
    title: Beta-emitter candidate
    version: 1
    strength: strong
    verification: V
    sources: [metastron_uspi]
    therapies: [sr89, sm153]
    when: {fact: pain_distribution, op: "==", value: multifocal}
    then: {status: eligible}
  - id: ELIG-RA-01
    title: Ra-223 candidate
    version: 1
    strength: strong
    verification: U
    unverified: a test rule
    sources: [xofigo_uspi]
    therapies: [ra223]
    when: {fact: castration_resistant, op: "==", value: true}
    then: {status: recommended}
  - id: ELIG-GEN-10
    title: Platelet floor
    version: 1
    strength: strong
    verification: V-sec
    sources: [metastron_uspi]
    therapies: [sr89, sm153]
    when: {fact: plt_current, op: "<", value: 60, unit: "10^9/L"}
    then: {status: contraindicated}
""" + rule_items(SR89_RETREATMENT) + """\
  - id: BHA-01
    title: Bone-health agent candidate
    version: 1
    strength: strong
    verification: V
    sources: [zometa_label]
    therapies: [zoledronic_acid, denosumab]
    when: {fact: lesion_count, op: ">=", value: 1}
    then: {status: eligible, dose_mg: 4}
  - id: BHA-10
    title: Dental healing first
    version: 1
    strength: strong
    verification: V
    sources: [zometa_label]
    therapies: [zoledronic_acid, denosumab]
    when: {fact: unhealed_oral_lesion, op: "==", value: true}
    then: {status: deferred}
"""


# ------------------------------------------------------------------------------------------------ helpers


def cohort_run(input_path: Path, output: Path, rules: Path, **options: Any) -> CohortReport:
    """run_cohort quietly, with the test rule base."""
    return run_cohort(CohortOptions(input=input_path, output=output, rules=rules, progress=False,
                                    log=lambda _text: None, **options))


def therapy_rows(output: Path) -> list[dict[str, Any]]:
    return pq.read_table(output / "therapies.parquet").to_pylist()


def reference_rows(rulebase: radiopal.RuleBase, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a plain serial loop over the patients, one ``evaluate`` call each, gives (invalid ones skipped)."""
    rows = []
    for document in documents:
        try:
            result = rulebase.evaluate(document)
        except InputError:
            continue
        out = result.to_dict()
        for item, decision in zip(out["decisions"], result.decisions, strict=True):
            rows.append({
                "patient_id": out["patient_id"], "therapy": item["therapy"], "status": item["status"],
                "earliest_date": dt.date.fromisoformat(item["earliest_date"]) if item["earliest_date"] else None,
                "dose_mg": item["dose_mg"], "reasons": ";".join(item["reasons"]),
                "missing_data": ";".join(decision.missing_data) if item["status"] != "not_indicated" else "",
                "unverified": bool(item.get("unverified")), "rulebase_version": out["rulebase"]["version"],
            })
    return rows


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.endswith(".sqlite")]


def write_jsonl(path: Path, patients: list[SyntheticPatient], extra_lines: tuple[str, ...] = ()) -> Path:
    lines = [json.dumps(p.document) for p in patients]
    path.write_text("\n".join([*lines, *extra_lines]) + "\n", encoding="utf-8")
    return path


def write_documents(folder: Path, patients: list[SyntheticPatient]) -> Path:
    from radiopal.cli.synth import dumps

    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(patients):
        fmt = "json" if i % 3 == 0 else "yaml"
        (folder / f"p{i:04d}.{fmt}").write_text(dumps(p.document, fmt), encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "cohort.yaml").write_text(RULES, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def rulebase(rules: Path) -> radiopal.RuleBase:
    return radiopal.load_rulebase(rules)


@pytest.fixture(scope="module")
def patients() -> list[SyntheticPatient]:
    """60 synthetic patients, with bad and missing ones among them."""
    out = list(generate(60, seed=11, bad_fraction=0.12, missing_fraction=0.2))
    assert {p.kind for p in out} == {"valid", "missing", "bad"}
    return out


@pytest.fixture(scope="module")
def processes_run(tmp_path_factory: pytest.TempPathFactory, rules: Path,
                  patients: list[SyntheticPatient]) -> tuple[Path, CohortReport]:
    """A folder of documents on a local Dask cluster of 2 worker processes."""
    base = tmp_path_factory.mktemp("processes")
    docs = write_documents(base / "docs", patients)
    out = base / "out"
    report = cohort_run(docs, out, rules, workers=2, processes=True, batch_size=8)
    return out, report


# ------------------------------------------------------------------------------------------------ tests


def test_dask_worker_processes_give_the_rows_of_a_patient_by_patient_serial_loop(
        processes_run: tuple[Path, CohortReport], rulebase: radiopal.RuleBase,
        patients: list[SyntheticPatient]) -> None:
    out, report = processes_run
    assert report.mode == "dask local (processes)" and report.workers == 2
    assert therapy_rows(out) == reference_rows(rulebase, [p.document for p in patients])
    # The rule base is compiled once per worker process, never per patient or per batch.
    assert report.compiles and set(report.compiles.values()) == {1}
    assert report.batches == 8 and report.evaluated_batches == 8
    assert temporaries(out) == []


def test_bad_records_land_in_errors_jsonl_and_the_run_goes_on(processes_run: tuple[Path, CohortReport],
                                                               patients: list[SyntheticPatient]) -> None:
    out, report = processes_run
    bad = [i for i, p in enumerate(patients) if p.kind == "bad"]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert report.errors == len(bad) == len(errors)
    assert report.patients == len(patients) - len(bad)
    assert [Path(e["source"]).name.split(".")[0] for e in errors] == [f"p{i:04d}" for i in bad]
    for entry, i in zip(errors, bad, strict=True):
        assert entry["message"] and entry["problems"]
        assert entry["patient_id"] == patients[i].document.get("patient_id")
    patient_table = pq.read_table(out / "patients.parquet")
    assert patient_table.num_rows == report.patients


def test_summary_page_is_self_contained_and_leads_with_the_underuse_table(
        processes_run: tuple[Path, CohortReport], rulebase: radiopal.RuleBase) -> None:
    out, report = processes_run
    page = (out / "summary.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "<img" in page and all("src='data:image/png;base64," in part.split(">")[0]
                                  for part in page.split("<img")[1:])
    assert page.index("id='underuse-radionuclides-table'") < page.index("id='status-table'")
    assert html.escape(radiopal.DISCLAIMER, quote=True) in page and rulebase.version in page
    for section in ("deferral-months", "deferral-reasons", "missing-table"):
        assert f"id='{section}'" in page
    underuse = pq.read_table(out / "patients.parquet").to_pylist()
    flagged = [p for p in underuse if p["radionuclide_underuse"]]
    assert flagged and report.underuse_radionuclide == len(flagged)
    for p in flagged:
        assert not p["prior_radionuclides"] and p["candidate_radionuclides"]
        assert f"<td>{html.escape(p['patient_id'])}</td>" in page
    lines = (out / "underuse.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + report.underuse_radionuclide + report.underuse_bone_health


def test_thread_cluster_serial_and_process_runs_write_identical_tables(
        tmp_path: Path, rules: Path, patients: list[SyntheticPatient],
        processes_run: tuple[Path, CohortReport]) -> None:
    source = write_jsonl(tmp_path / "patients.jsonl", patients)
    threads = cohort_run(source, tmp_path / "threads", rules, workers=2, processes=False, batch_size=7)
    serial = cohort_run(source, tmp_path / "serial", rules, serial=True, batch_size=25)
    assert threads.mode == "dask local (threads)" and serial.mode == "serial"
    for name in ("therapies.csv", "patients.csv"):
        assert (tmp_path / "threads" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()
    assert therapy_rows(tmp_path / "threads") == therapy_rows(processes_run[0])
    # An existing cluster (--scheduler): here a threads cluster of this process.
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address="127.0.0.1:0") as cluster:
        remote = cohort_run(source, tmp_path / "remote", rules, scheduler=cluster.scheduler_address, batch_size=9)
    assert remote.mode.startswith("dask at ") and remote.workers == 1
    assert therapy_rows(tmp_path / "remote") == therapy_rows(tmp_path / "serial")
    # JSON Lines errors carry the line number.
    errors = [json.loads(line) for line in (tmp_path / "serial" / "errors.jsonl").read_text().splitlines()]
    assert [e["line"] for e in errors] == [i + 1 for i, p in enumerate(patients) if p.kind == "bad"]


def test_unreadable_lines_are_errors_with_their_line_number(tmp_path: Path, rules: Path,
                                                            patients: list[SyntheticPatient]) -> None:
    source = write_jsonl(tmp_path / "p.jsonl", patients[:5], extra_lines=("{not json", "", "[1, 2]"))
    report = cohort_run(source, tmp_path / "out", rules, serial=True)
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert report.records == 7
    assert [e["line"] for e in errors if e["line"] > 5] == [6, 8]
    assert "invalid JSON" in errors[-2]["message"] and "expected a mapping" in errors[-1]["message"]


def test_resume_after_a_kill_gives_the_tables_of_an_uninterrupted_run(tmp_path: Path, rules: Path) -> None:
    source = write_jsonl(tmp_path / "big.jsonl", list(generate(300, seed=5)))
    out = tmp_path / "killed"
    command = [sys.executable, "-c", "import sys; from radiopal.cli import main; sys.exit(main(sys.argv[1:]))",
               "cohort", str(source), "-o", str(out), "--serial", "--batch-size", "5", "--rules", str(rules),
               "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            done = out / "done"
            if done.is_dir() and sum(1 for _ in done.iterdir()) >= 4:
                break
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "running" and not (out / "therapies.parquet").exists()
    done_before = sum(1 for _ in (out / "done").iterdir())
    assert 4 <= done_before < 60

    resumed = cohort_run(source, out, rules, serial=True, resume=True, batch_size=50)  # the run's own size wins
    whole = cohort_run(source, tmp_path / "whole", rules, serial=True, batch_size=5)
    assert resumed.skipped_batches == done_before and resumed.evaluated_batches == 60 - done_before
    for name in ("therapies.parquet", "patients.parquet"):
        assert pq.read_table(out / name).equals(pq.read_table(tmp_path / "whole" / name))
    for name in ("therapies.csv", "patients.csv", "errors.jsonl", "underuse.csv"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert whole.patients == resumed.patients == 300 - whole.errors
    assert temporaries(out) == []


def test_resume_skips_done_batches_and_refuses_a_changed_rule_base(tmp_path: Path, rules: Path,
                                                                   patients: list[SyntheticPatient]) -> None:
    source = write_jsonl(tmp_path / "p.jsonl", patients)
    out = tmp_path / "out"
    first = cohort_run(source, out, rules, workers=2, processes=False, batch_size=10)
    before = therapy_rows(out)
    for index in (1, 4):
        (out / "done" / f"batch-{index:08d}.json").unlink()
    again = cohort_run(source, out, rules, workers=2, processes=False, resume=True)
    assert (again.evaluated_batches, again.skipped_batches) == (2, first.batches - 2)
    assert therapy_rows(out) == before
    nothing = cohort_run(source, out, rules, serial=True, resume=True)
    assert nothing.evaluated_batches == 0 and therapy_rows(out) == before

    original = source.read_text()
    edited = [json.loads(line) for line in original.splitlines()]
    edited[3]["pain"]["score_nrs"] = 0 if edited[3]["pain"]["score_nrs"] else 5  # same keys, other content
    source.write_text("\n".join(json.dumps(d) for d in edited) + "\n")
    with pytest.raises(InputError, match="the input changed"):
        cohort_run(source, out, rules, serial=True, resume=True)
    source.write_text(original)

    foreign = tmp_path / "foreign"
    (foreign / "parts").mkdir(parents=True)
    with pytest.raises(InputError, match=r"no run\.json"):
        cohort_run(source, foreign, rules, serial=True)

    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "cohort.yaml").write_text(RULES.replace('version: "1"', 'version: "2"', 1), encoding="utf-8")
    with pytest.raises(InputError, match="rule base changed"):
        cohort_run(source, out, changed, serial=True, resume=True)


def _bulk_ndjson(folder: Path, bundles: list[Path]) -> list[dict[str, Any]]:
    """Bulk-data NDJSON from example Bundles (ids made unique, urn:uuid references → Type/id). Returns the Bundles
    as the reader should rebuild them (references rewritten), for the reference run."""
    by_type: dict[str, list[str]] = {}
    rebuilt = []
    for path in bundles:
        prefix = path.name.split(".")[0]
        bundle = json.loads(path.read_text(encoding="utf-8"))
        names = {}
        for entry in bundle["entry"]:
            res = entry["resource"]
            new = f"{res['resourceType']}/{prefix}-{res['id']}"
            names[entry.get("fullUrl")] = new
            names[f"{res['resourceType']}/{res['id']}"] = new

        def fix(value: Any, names: dict[str | None, str] = names) -> Any:
            if isinstance(value, dict):
                return {k: names.get(v, v) if k == "reference" and isinstance(v, str) else fix(v)
                        for k, v in value.items()}
            if isinstance(value, list):
                return [fix(v) for v in value]
            return value

        entries = []
        for entry in bundle["entry"]:
            res = fix(entry["resource"])
            res["id"] = f"{prefix}-{res['id']}"
            by_type.setdefault(res["resourceType"], []).append(json.dumps(res))
            entries.append({"resource": res})
        rebuilt.append({"resourceType": "Bundle", "type": "collection", "entry": entries})
    folder.mkdir(parents=True, exist_ok=True)
    for rtype, lines in by_type.items():
        (folder / f"{rtype}.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rebuilt


def test_fhir_bulk_ndjson_is_grouped_into_one_bundle_per_patient(tmp_path: Path, rules: Path,
                                                                 rulebase: radiopal.RuleBase) -> None:
    from radiopal.fhir import bundle_to_document
    from radiopal.patient.load import parse_patient

    assert FHIR_EXAMPLES, "examples/fhir/*.bundle.json are shipped with the repository"
    bundles = _bulk_ndjson(tmp_path / "bulk", FHIR_EXAMPLES)
    with (tmp_path / "bulk" / "Observation.ndjson").open("a", encoding="utf-8") as handle:
        handle.write('{"resourceType": "Observation", "status": \n')
    report = cohort_run(tmp_path / "bulk", tmp_path / "out", rules, serial=True, evaluation_date="2025-06-02")
    assert report.records == len(bundles) + 1
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1 and errors[0]["source"].endswith("Observation.ndjson") and errors[0]["line"]
    documents = [parse_patient(bundle_to_document(b, evaluation_date="2025-06-02").document).data for b in bundles]
    expected = reference_rows(rulebase, [dict(d) for d in documents])
    got = therapy_rows(tmp_path / "out")
    assert sorted(got, key=lambda r: r["patient_id"]) == sorted(expected, key=lambda r: r["patient_id"])
    assert report.patients == len(bundles)
    assert temporaries(tmp_path / "out") == []


def test_cli_writes_decisions_and_graphs_only_when_asked(tmp_path: Path, rules: Path,
                                                         patients: list[SyntheticPatient],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    docs = write_documents(tmp_path / "docs", patients[:12])
    code = main(["cohort", str(docs), "-o", str(tmp_path / "plain"), "--serial", "--rules", str(rules),
                 "--no-progress"])
    assert code == 0 and "under-use" in capsys.readouterr().out
    assert not (tmp_path / "plain" / "decisions").exists() and not (tmp_path / "plain" / "graphs").exists()
    code = main(["cohort", str(docs), "-o", str(tmp_path / "full"), "--serial", "--rules", str(rules), "--graphs",
                 "--no-progress", "--batch-size", "5"])
    assert code == 0
    evaluated = pq.read_table(tmp_path / "full" / "patients.parquet").column("patient_id").to_pylist()
    decisions = sorted(p.stem for p in (tmp_path / "full" / "decisions").glob("*.json"))
    assert decisions == sorted(evaluated) == sorted(p.stem for p in (tmp_path / "full" / "graphs").glob("*.json"))
    one = json.loads((tmp_path / "full" / "decisions" / f"{evaluated[0]}.json").read_text())
    assert one["patient_id"] == evaluated[0] and len(one["decisions"]) == 21
    assert temporaries(tmp_path / "full") == []


def test_shipped_rule_base_runs_through_the_cohort_path(tmp_path: Path) -> None:
    shipped = radiopal.load_rulebase()  # a shipped rule base that does not compile is a failure, not a skip
    patients = list(generate(12, seed=2))
    source = write_jsonl(tmp_path / "p.jsonl", patients)
    run_cohort(CohortOptions(input=source, output=tmp_path / "out", serial=True, progress=False,
                             log=lambda _text: None))
    assert therapy_rows(tmp_path / "out") == reference_rows(shipped, [p.document for p in patients])
