"""The Python API: one rule base shared by threads gives the same bytes as serial runs; FHIR input keeps provenance.

Patients come from examples/, tests/scenarios (a deterministic sample, to keep the run short), the shared vignettes
when they are beside the checkout, and the synthetic cohort.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import radiopal
from conftest import REPO, VIGNETTES
from radiopal.api import default_rulebase, evaluate_fhir
from radiopal.synth import generate
from radiopal.yamlio import load_document

EXAMPLES = REPO / "examples"
BUNDLES = sorted((EXAMPLES / "fhir").glob("*.bundle.json"))
THREADS = 8


def _document(path: Path) -> dict[str, Any]:
    data = load_document(path).data
    data.pop("expected", None)
    return data


def patients() -> list[tuple[str, dict[str, Any]]]:
    """Every example patient, every 8th scenario, every 4th vignette, and eight synthetic patients."""
    paths = sorted(EXAMPLES.glob("*.yaml")) + sorted((EXAMPLES / "fhir").glob("*.patient.yaml"))
    paths += sorted((REPO / "tests" / "scenarios").glob("*.yaml"))[::8]
    if VIGNETTES.is_dir():
        paths += sorted(VIGNETTES.glob("*.yaml"))[::4]
    out = [(p.name, _document(p)) for p in paths]
    synthetic = [s for s in generate(40, seed=7, bad_fraction=0.0, missing_fraction=0.2)][:8]
    out += [(s.document["patient_id"], s.document) for s in synthetic]
    return out


@pytest.fixture(scope="module")
def rulebase() -> radiopal.RuleBase:
    return default_rulebase()  # compiled once per test process, shared with the other API tests


def _bytes(result: Any) -> tuple[str, str]:
    return result.to_json(), result.graph.to_json()


def test_concurrent_evaluations_give_the_same_bytes_as_serial_ones(rulebase: radiopal.RuleBase) -> None:
    cases = patients()
    assert len(cases) >= 30
    serial = {name: _bytes(rulebase.evaluate(doc)) for name, doc in cases}
    tasks = cases + cases[::2]  # half the patients twice, so the same patient also runs on two threads at once
    random.Random(11).shuffle(tasks)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        concurrent = list(pool.map(lambda case: (case[0], _bytes(rulebase.evaluate(case[1]))), tasks))
    mismatched = sorted({name for name, out in concurrent if out != serial[name]})
    assert not mismatched, f"concurrent output differs from serial for {mismatched}"


def test_concurrent_fhir_evaluations_give_the_same_bytes_as_serial_ones(rulebase: radiopal.RuleBase) -> None:
    assert BUNDLES, "examples/fhir holds the example bundles"
    serial = {p.name: _bytes(evaluate_fhir(p, rulebase)) for p in BUNDLES}
    tasks = BUNDLES * 3
    random.Random(5).shuffle(tasks)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        concurrent = list(pool.map(lambda p: (p.name, _bytes(evaluate_fhir(p, rulebase))), tasks))
    assert all(out == serial[name] for name, out in concurrent)


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def test_results_and_graphs_are_plain_data(rulebase: radiopal.RuleBase) -> None:
    result = evaluate_fhir(BUNDLES[0], rulebase)
    for data in (result.to_dict(), result.graph.to_dict(), result.extra["provenance"]):
        assert _plain(data)
        assert json.loads(json.dumps(data)) == data


def test_evaluate_fhir_keeps_the_provenance_on_the_input_nodes(rulebase: radiopal.RuleBase) -> None:
    path = EXAMPLES / "fhir" / "V05.bundle.json"
    bundle = json.loads(path.read_text(encoding="utf-8"))
    full_urls = {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["fullUrl"] for e in bundle["entry"]}
    result = evaluate_fhir(bundle, rulebase)
    assert result.extra["provenance"]["labs.platelets"]["resource"] == "Observation/plt"
    inputs = [n for n in result.graph.to_dict()["nodes"] if n["kind"] == "input" and n.get("provenance")]
    assert inputs, "some input node carries FHIR provenance"
    for node in inputs:
        for item in node["provenance"]:
            assert item["field"] == node["path"] or item["field"].startswith(node["path"] + "[")
            if item["resource"] is not None:
                assert item["fullUrl"] == full_urls[item["resource"]]
    plain = rulebase.evaluate(EXAMPLES / "fhir" / "V05.patient.yaml")
    assert not any(n.get("provenance") for n in plain.graph.to_dict()["nodes"])


def test_evaluate_fhir_takes_an_evaluation_date_and_defaults_to_the_shipped_rules() -> None:
    path = EXAMPLES / "fhir" / "V05.bundle.json"
    result = evaluate_fhir(path, evaluation_date="2025-03-20")
    assert result.patient.evaluation_date.isoformat() == "2025-03-20"
    assert result.rulebase is default_rulebase()
    assert evaluate_fhir(path.read_text(encoding="utf-8")).patient.evaluation_date.isoformat() == "2025-03-17"


def test_evaluate_fhir_names_the_element_of_an_invalid_bundle(rulebase: radiopal.RuleBase) -> None:
    bundle = json.loads((EXAMPLES / "fhir" / "V05.bundle.json").read_text(encoding="utf-8"))
    index = next(i for i, e in enumerate(bundle["entry"]) if e["resource"].get("id") == "plt")
    bundle["entry"][index]["resource"]["valueQuantity"]["value"] = "lots"
    with pytest.raises(radiopal.InputError) as caught:
        evaluate_fhir(bundle, rulebase)
    assert any(p.path == f"entry[{index}].resource.valueQuantity.value" for p in caught.value.problems)


def test_prepare_builds_this_threads_engine_once_and_other_threads_get_their_own() -> None:
    import threading

    import radiopal

    rulebase = radiopal.load_rulebase()
    rulebase.prepare()
    mine = rulebase._runner._engine()
    rulebase.prepare()
    assert rulebase._runner._engine() is mine  # built once per thread
    theirs: list[object] = []
    thread = threading.Thread(target=lambda: (rulebase.prepare(), theirs.append(rulebase._runner._engine())))
    thread.start()
    thread.join()
    assert theirs and theirs[0] is not mine
