"""``radiopal cohort`` on a FHIR Bulk Data export (issue #15 item 7 and "Bad input").

The exports are built here from real records: the Synthea bundles of ``../shared/fhir-real/synthea`` split by
resource type into NDJSON with ``Patient/<id>``-style references (as a server's ``$export`` writes them), in three
layouts — plain ``<Type>.ndjson`` files, files named as a server likes (split, gzip, mixed types), and a manifest
whose URLs name files without an ``.ndjson`` suffix. Each must give, per patient, what evaluating that patient's own
Bundle gives (``recommend --fhir``): the same evaluated / error split and the same decisions.

The 50 MB file with one corrupt line is generated in the test's tmp dir from the project's own example bundles.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed", reason="cohort tests need the cohort extra: pip install 'radiopal[cohort]'")
pytest.importorskip("fhir.resources.R4B", reason="FHIR input needs the fhir extra: pip install 'radiopal[fhir]'")
pq = pytest.importorskip("pyarrow.parquet", reason="cohort tests need the cohort extra: pip install 'radiopal[cohort]'")

import radiopal  # noqa: E402
from conftest import REPO, SHARED  # noqa: E402
from radiopal.cli import main  # noqa: E402
from radiopal.cohort import CohortOptions, CohortReport, run_cohort  # noqa: E402
from radiopal.cohort.readers import detect_format, open_reader  # noqa: E402
from radiopal.errors import InputError  # noqa: E402

SYNTHEA = SHARED / "fhir-real" / "synthea"
needs_synthea = pytest.mark.skipif(
    not SYNTHEA.is_dir() and not os.environ.get("CI"),
    reason="../shared/fhir-real/synthea (real Synthea bundles) is not beside this checkout",
)
EXAMPLES = sorted((REPO / "examples" / "fhir").glob("*.bundle.json"))
DAY = "2022-06-01"  # after the last date in the Synthea records


# ------------------------------------------------------------------------------------------------ building exports


def type_id_references(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The bundle's resources with ``urn:uuid:`` references rewritten to ``Type/id``, as ``$export`` writes them."""
    urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle["entry"] if e.get("fullUrl")}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (urls.get(v, v) if k == "reference" and isinstance(v, str) else fix(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return [fix(e["resource"]) for e in bundle["entry"]]


def by_type(bundles: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for bundle in bundles:
        for resource in type_id_references(bundle):
            out.setdefault(resource["resourceType"], []).append(json.dumps(resource, separators=(",", ":")))
    return out


def write_lines(path: Path, lines: list[str]) -> None:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)


def plain_export(folder: Path, bundles: list[dict[str, Any]]) -> Path:
    """One ``<Type>.ndjson`` file per resource type."""
    folder.mkdir(parents=True)
    for rtype, lines in by_type(bundles).items():
        write_lines(folder / f"{rtype}.ndjson", lines)
    return folder


def messy_export(folder: Path, bundles: list[dict[str, Any]]) -> Path:
    """Files named as servers name them: a type split over files (one gzip), and the other types mixed in one file."""
    folder.mkdir(parents=True)
    types = by_type(bundles)
    write_lines(folder / "1.Patient.ndjson", types.pop("Patient"))
    observations = types.pop("Observation")
    half = len(observations) // 2
    write_lines(folder / "Observation-1.ndjson", observations[:half])
    write_lines(folder / "observation_file_2.ndjson.gz", observations[half:])
    write_lines(folder / "Condition.000.ndjson.gz", types.pop("Condition"))
    write_lines(folder / "everything-else.ndjson", [line for lines in types.values() for line in lines])
    return folder


def manifest_export(folder: Path, bundles: list[dict[str, Any]], transaction_time: str) -> Path:
    """Files without an ``.ndjson`` name, found only through the manifest; one error file of the server's."""
    folder.mkdir(parents=True)
    output = []
    for i, (rtype, lines) in enumerate(sorted(by_type(bundles).items())):
        name = f"part-{i:04d}" + (".gz" if rtype == "Observation" else "")
        write_lines(folder / name, lines)
        output.append({"type": rtype, "url": f"https://fhir.example.org/bulk/job-7/{name}"})
    outcome = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing", "diagnostics": "Immunization/xyz could not be exported"}]}
    write_lines(folder / "errors-0001", [json.dumps(outcome)])
    manifest = {"transactionTime": transaction_time, "request": "https://fhir.example.org/$export",
                "requiresAccessToken": True, "output": output,
                "error": [{"type": "OperationOutcome", "url": "https://fhir.example.org/bulk/job-7/errors-0001"}]}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------------------------ references


def cohort(input_path: Path, output: Path, **options: Any) -> CohortReport:
    options.setdefault("serial", True)
    return run_cohort(CohortOptions(input=input_path, output=output, progress=False, log=lambda _t: None,
                                    **options))


def errors_of(output: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (output / "errors.jsonl").read_text(encoding="utf-8").splitlines()]


def statuses(output: Path) -> dict[str, dict[str, tuple[str, Any]]]:
    out: dict[str, dict[str, tuple[str, Any]]] = {}
    for row in pq.read_table(output / "therapies.parquet").to_pylist():
        out.setdefault(row["patient_id"], {})[row["therapy"]] = (row["status"], row["reasons"])
    return out


def per_bundle(bundles: list[dict[str, Any]], rulebase: radiopal.RuleBase,
               day: str) -> tuple[dict[str, dict[str, tuple[str, Any]]], set[str]]:
    """What ``recommend --fhir --evaluation-date day`` gives on each bundle: decisions of the evaluated, failed ids."""
    evaluated, failed = {}, set()
    for bundle in bundles:
        pid = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        try:
            result = radiopal.evaluate_fhir(bundle, rulebase, evaluation_date=day)
        except InputError:
            failed.add(pid)
            continue
        evaluated[result.patient.patient_id] = {d.therapy: (d.status, ";".join(d.reasons)) for d in result.decisions}
    return evaluated, failed


@pytest.fixture(scope="module")
def rulebase() -> radiopal.RuleBase:
    return radiopal.load_rulebase()


@pytest.fixture(scope="module")
def synthea_bundles() -> list[dict[str, Any]]:
    bundles = []
    for path in sorted(SYNTHEA.glob("*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            bundles.append(json.load(handle))
    assert len(bundles) >= 15
    return bundles


@pytest.fixture(scope="module")
def expected(synthea_bundles: list[dict[str, Any]],
             rulebase: radiopal.RuleBase) -> tuple[dict[str, dict[str, tuple[str, Any]]], set[str]]:
    return per_bundle(synthea_bundles, rulebase, DAY)


def assert_matches(output: Path, report: CohortReport, expected: tuple[dict[str, Any], set[str]],
                   extra_errors: int = 0) -> None:
    evaluated, failed = expected
    errors = errors_of(output)
    assert report.patients == len(evaluated) and report.errors == len(failed) + extra_errors
    assert statuses(output) == evaluated
    assert {e["patient_id"] for e in errors if e["key"].startswith("Patient/")} == failed


def assert_problems_point_at_the_patients_lines(export: Path, output: Path) -> None:
    """Every ``<file>:<line>`` an error names is a line of that file holding a resource of that error's patient."""
    for error in errors_of(output):
        for problem in error["problems"]:
            found = re.match(r"^(\S+\.ndjson):(\d+) ", problem)
            if found is None:
                continue
            line = (export / found.group(1)).read_text(encoding="utf-8").splitlines()[int(found.group(2)) - 1]
            resource = json.loads(line)
            owner = resource["id"] if resource["resourceType"] == "Patient" else \
                (resource.get("subject") or resource.get("patient"))["reference"].split("/")[-1]
            assert owner == error["patient_id"], problem


# ------------------------------------------------------------------------------------------------ tests


@needs_synthea
def test_a_plain_export_of_the_synthea_patients_gives_what_each_bundle_gives(
        tmp_path: Path, synthea_bundles: list[dict[str, Any]], expected: Any, rulebase: radiopal.RuleBase) -> None:
    export = plain_export(tmp_path / "export", synthea_bundles)
    assert detect_format(export) == "fhir"
    report = cohort(export, tmp_path / "out", evaluation_date=DAY, decisions=True)
    assert report.records == len(synthea_bundles)
    assert report.patients == len(synthea_bundles) and report.errors == 0  # real records are evaluated, not refused
    assert_matches(tmp_path / "out", report, expected)
    # Each patient's decision JSON is recommend --fhir's, byte for byte: decisions, missing data and the warnings
    # naming the values the mapping could not use.
    for bundle in synthea_bundles:
        reference = radiopal.evaluate_fhir(bundle, rulebase, evaluation_date=DAY)
        written = (tmp_path / "out" / "decisions" / f"{reference.patient.patient_id}.json").read_text(encoding="utf-8")
        assert json.loads(written) == reference.to_dict()
    assert any(json.loads(p.read_text(encoding="utf-8"))["warnings"] for p in (tmp_path / "out" / "decisions").iterdir())
    assert_problems_point_at_the_patients_lines(export, tmp_path / "out")
    run = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))
    assert run["input_format"] == "fhir" and run["evaluation_date"] == DAY
    page = (tmp_path / "out" / "summary.html").read_text(encoding="utf-8")
    # What was left out is said, with counts.
    claims = sum(1 for b in synthea_bundles for e in b["entry"] if e["resource"]["resourceType"] == "Claim")
    assert re.search(rf"skipped, not read by the FHIR mapping: [^<]*Claim {claims:,}\b", page)
    assert list((tmp_path / "out").glob(".fhir-*")) == []  # index and spool removed


@needs_synthea
def test_files_named_as_a_server_likes_are_recognised_by_their_content_on_dask(
        tmp_path: Path, synthea_bundles: list[dict[str, Any]], expected: Any) -> None:
    export = messy_export(tmp_path / "export", synthea_bundles)
    report = cohort(export, tmp_path / "out", evaluation_date=DAY, serial=False, processes=False, workers=2,
                    batch_size=4)
    assert report.mode.startswith("dask")
    assert_matches(tmp_path / "out", report, expected)


@needs_synthea
def test_the_manifest_is_followed_and_its_transaction_time_is_the_evaluation_date(
        tmp_path: Path, synthea_bundles: list[dict[str, Any]], expected: Any) -> None:
    export = manifest_export(tmp_path / "export", synthea_bundles, f"{DAY}T09:30:00.000+02:00")
    assert detect_format(export) == "fhir" and detect_format(export / "manifest.json") == "fhir"
    report = cohort(export, tmp_path / "out")  # no --evaluation-date: the export's transactionTime
    assert json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))["evaluation_date"] == DAY
    assert_matches(tmp_path / "out", report, expected, extra_errors=1)
    [server] = [e for e in errors_of(tmp_path / "out") if e["source"].endswith("errors-0001")]
    assert server["line"] == 1 and "Immunization/xyz could not be exported" in server["message"]


def test_a_manifest_naming_a_file_that_is_not_there_is_refused_naming_it(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text(json.dumps({
        "transactionTime": "2025-06-02T00:00:00Z", "request": "x",
        "output": [{"type": "Patient", "url": "https://fhir.example.org/out/Patient-1.ndjson"}]}), encoding="utf-8")
    assert main(["cohort", str(export), "-o", str(tmp_path / "out"), "--serial", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "manifest.json output[0].url: 'https://fhir.example.org/out/Patient-1.ndjson': no such file next to the " \
           "manifest (expected 'Patient-1.ndjson'" in err
    assert "Traceback" not in err and not (tmp_path / "out" / "therapies.parquet").exists()


def example_bundles() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in EXAMPLES]


def test_mapping_errors_name_the_ndjson_file_and_line(tmp_path: Path, rulebase: radiopal.RuleBase) -> None:
    bundles = example_bundles()
    export = plain_export(tmp_path / "export", bundles)
    lines = (export / "Observation.ndjson").read_text(encoding="utf-8").splitlines()
    target = next(i for i, line in enumerate(lines) if '"valueQuantity"' in line)
    broken = json.loads(lines[target])
    broken["valueQuantity"]["value"] = "twelve"  # not an R4 decimal: invalid FHIR, an error for this patient
    lines[target] = json.dumps(broken)
    write_lines(export / "Observation.ndjson", lines)
    owner = broken["subject"]["reference"].split("/")[1]
    report = cohort(export, tmp_path / "out", evaluation_date="2025-06-02")
    assert report.patients == len(bundles) - 1 and report.errors == 1
    [error] = errors_of(tmp_path / "out")
    assert error["patient_id"] == owner and error["key"] == f"Patient/{owner}"
    assert error["source"].endswith("Patient.ndjson") and error["line"] >= 1
    assert error["message"].startswith(f"Patient/{owner}: ")
    assert any(p.startswith(f"Observation.ndjson:{target + 1} valueQuantity.value:") for p in error["problems"]), \
        error["problems"]
    assert_problems_point_at_the_patients_lines(export, tmp_path / "out")


def test_resources_of_a_patient_missing_from_the_export_and_stray_lines_are_errors(tmp_path: Path) -> None:
    bundles = example_bundles()[:2]
    export = plain_export(tmp_path / "export", bundles)
    with (export / "Condition.ndjson").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"resourceType": "Condition", "id": "c-ghost",
                                 "subject": {"reference": "Patient/ghost"}}) + "\n")
        handle.write(json.dumps({"resourceType": "Condition", "id": "c-nobody"}) + "\n")
        handle.write("[1, 2]\n")
    n = len((export / "Condition.ndjson").read_text(encoding="utf-8").splitlines())
    report = cohort(export, tmp_path / "out", evaluation_date="2025-06-02")
    assert report.patients == 2
    errors = {(e["source"].rsplit("/", 1)[1], e["line"]): e["message"] for e in errors_of(tmp_path / "out")}
    assert errors == {
        ("Condition.ndjson", n - 2): "1 resource(s) refer to Patient/ghost, which is in no file of the export "
                                     f"(first: Condition.ndjson:{n - 2})",
        ("Condition.ndjson", n - 1): "Condition without a reference to a Patient in subject/patient: not joined to "
                                     "any patient",
        ("Condition.ndjson", n): "not a FHIR resource (no resourceType)",
    }


def test_urn_uuid_references_join_a_patient_whose_id_is_that_uuid(tmp_path: Path,
                                                                  rulebase: radiopal.RuleBase) -> None:
    """An export from a system that keeps Bundle-style ``urn:uuid:`` references (Synthea's) joins the same way."""
    bundle = copy.deepcopy(json.loads(EXAMPLES[0].read_text(encoding="utf-8")))
    uuid_of = {}
    for n, entry in enumerate(bundle["entry"]):
        new = f"3f2b8c1e-0000-4000-8000-{n:012d}"
        uuid_of[f"{entry['resource']['resourceType']}/{entry['resource']['id']}"] = new
        uuid_of[entry.get("fullUrl")] = new
        entry["resource"]["id"] = new

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (f"urn:uuid:{uuid_of[v]}" if k == "reference" and v in uuid_of else fix(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    resources = [fix(e["resource"]) for e in bundle["entry"]]
    export = tmp_path / "export"
    export.mkdir()
    write_lines(export / "all.ndjson", [json.dumps(r) for r in resources])
    report = cohort(export, tmp_path / "out", evaluation_date="2025-06-02")
    assert report.patients == 1 and report.errors == 0
    reference = radiopal.evaluate_fhir(bundle, rulebase, evaluation_date="2025-06-02")
    [(pid, got)] = statuses(tmp_path / "out").items()
    assert pid == reference.patient.patient_id
    assert got == {d.therapy: (d.status, ";".join(d.reasons)) for d in reference.decisions}


def test_a_50_mb_ndjson_file_with_one_corrupt_line_loses_only_that_line(tmp_path: Path,
                                                                          rulebase: radiopal.RuleBase) -> None:
    """Each example patient is copied (new ids) with old body-height Observations padded by a long note, until
    Observation.ndjson passes 50 MB; one line in its middle is cut in half."""
    templates = example_bundles()
    copies = 2
    pad = "x" * 100_000
    export = tmp_path / "export"
    export.mkdir()
    patients, observations, others = [], [], []
    expected = {}
    for template in templates:
        reference = radiopal.evaluate_fhir(template, rulebase, evaluation_date="2025-06-02")
        decided = {d.therapy: (d.status, ";".join(d.reasons)) for d in reference.decisions}
        for c in range(copies):
            for resource in type_id_references(template):
                resource = json.loads(json.dumps(resource).replace(
                    f'Patient/{reference.patient.patient_id}"', f'Patient/{reference.patient.patient_id}-c{c}"'))
                if resource["resourceType"] == "Patient":
                    resource["id"] = f"{resource['id']}-c{c}"
                    patients.append(json.dumps(resource))
                    expected[resource["id"]] = decided
                elif resource["resourceType"] == "Observation":
                    resource["id"] = f"{resource['id']}-c{c}"
                    observations.append(json.dumps(resource))
                else:
                    resource["id"] = f"{resource['id']}-c{c}"
                    others.append(json.dumps(resource))
            for k in range(40):
                observations.append(json.dumps({
                    "resourceType": "Observation", "id": f"height-{reference.patient.patient_id}-c{c}-{k}",
                    "status": "final", "subject": {"reference": f"Patient/{reference.patient.patient_id}-c{c}"},
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
                    "effectiveDateTime": f"{2000 + k % 20}-01-01",
                    "valueQuantity": {"value": 170, "unit": "cm", "system": "http://unitsofmeasure.org",
                                      "code": "cm"},
                    "note": [{"text": pad}]}))
    middle = len(observations) // 2
    while '"8302-2"' not in observations[middle]:
        middle += 1
    observations[middle] = observations[middle][: len(observations[middle]) // 2]
    write_lines(export / "Patient.ndjson", patients)
    write_lines(export / "Observation.ndjson", observations)
    write_lines(export / "Other.ndjson", others)
    assert (export / "Observation.ndjson").stat().st_size > 50 * 1024 * 1024

    report = cohort(export, tmp_path / "out", evaluation_date="2025-06-02")
    [error] = errors_of(tmp_path / "out")
    assert error["source"].endswith("Observation.ndjson") and error["line"] == middle + 1
    assert error["message"].startswith("not a JSON resource")
    assert report.patients == len(templates) * copies and report.errors == 1
    assert statuses(tmp_path / "out") == expected


def test_a_gzip_file_damaged_midway_keeps_the_lines_before_the_damage(tmp_path: Path) -> None:
    bundles = example_bundles()
    export = plain_export(tmp_path / "export", bundles)
    (export / "Patient.ndjson").unlink()
    lines = [json.dumps(e["resource"]) for b in bundles for e in b["entry"] if e["resource"]["resourceType"] == "Patient"]
    packed = gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0)
    (export / "Patient.ndjson.gz").write_bytes(packed[: len(packed) - 12])  # the end of the stream is lost
    with open_reader(export, workdir=tmp_path / "work") as reader:
        records = list(reader)
    damaged = [r for r in records if r.error and "gzip" in r.error]
    assert len(damaged) == 1 and damaged[0].source.endswith("Patient.ndjson.gz")
    assert "Bulk Data export" in reader.describe()
    assert not list((tmp_path / "work").glob(".fhir-*"))  # spool and index are removed on close


def test_the_command_line_reads_an_export_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundles = example_bundles()
    export = plain_export(tmp_path / "export", bundles)
    assert main(["cohort", str(export), "-o", str(tmp_path / "out"), "--serial", "--no-progress",
                 "--evaluation-date", "2025-06-02"]) == 0
    assert f"{len(bundles)} record(s): {len(bundles)} evaluated, 0 error(s)" in capsys.readouterr().out


def test_an_export_organised_by_patient_with_a_patient_continued_in_the_next_file(
        tmp_path: Path, rulebase: radiopal.RuleBase) -> None:
    """STU 4 ``outputOrganizedBy: Patient``: each file holds whole patients, one continued in the next file."""
    bundles = example_bundles()[:3]
    blocks = [[json.dumps(r) for r in type_id_references(b)] for b in bundles]
    first = blocks[0] + blocks[1][: len(blocks[1]) // 2]
    second = blocks[1][len(blocks[1]) // 2:] + blocks[2]
    export = tmp_path / "export"
    export.mkdir()
    write_lines(export / "p1", first)
    write_lines(export / "p2", second)
    (export / "manifest.json").write_text(json.dumps({
        "transactionTime": "2025-06-02T00:00:00Z", "request": "x", "outputOrganizedBy": "Patient",
        "output": [{"type": "Patient", "url": "https://s/p1", "continuesInFile": "https://s/p2"},
                   {"type": "Patient", "url": "https://s/p2"}]}), encoding="utf-8")
    report = cohort(export, tmp_path / "out")
    assert report.patients == 3 and report.errors == 0
    expected, failed = per_bundle(bundles, rulebase, "2025-06-02")
    assert not failed and statuses(tmp_path / "out") == expected
