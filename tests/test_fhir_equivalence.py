"""Every example FHIR bundle gives the same decisions as its contract YAML twin, through the CLI and the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import radiopal
import radiopal.api
from conftest import REPO
from radiopal.api import default_rulebase, evaluate_fhir
from radiopal.cli import main
from radiopal.result import Result

EXAMPLES = REPO / "examples" / "fhir"
PAIRS = sorted((p, p.with_name(p.name.replace(".bundle.json", ".patient.yaml"))) for p in EXAMPLES.glob("*.bundle.json"))


def test_every_example_bundle_has_a_yaml_twin() -> None:
    assert PAIRS, "examples/fhir holds example bundles"
    missing = [b.name for b, y in PAIRS if not y.is_file()]
    assert not missing, f"bundles without a <V>.patient.yaml twin: {missing}"


def _recommend(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["recommend", *argv]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def rulebase() -> radiopal.RuleBase:
    return default_rulebase()  # compiled once per test process


@pytest.mark.parametrize(("bundle", "yaml_twin"), PAIRS, ids=[b.name.split(".")[0] for b, _ in PAIRS])
def test_fhir_and_yaml_give_identical_decisions_in_the_cli(bundle: Path, yaml_twin: Path, rulebase: radiopal.RuleBase,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The shipped rule base, compiled once for all the runs instead of once per command.
    monkeypatch.setattr(radiopal.api, "load_rulebase", lambda path=None, **_kw: rulebase if path is None else None)
    from_fhir = _recommend(capsys, str(bundle), "--fhir")
    from_yaml = _recommend(capsys, str(yaml_twin))
    by_therapy = {d["therapy"]: d for d in from_yaml["decisions"]}
    differing = [d["therapy"] for d in from_fhir["decisions"] if by_therapy.get(d["therapy"]) != d]
    assert not differing, f"{bundle.name}: decisions differ for {differing}"
    assert from_fhir == from_yaml  # advisories, missing data, normalised labs, rule base: the whole output


@pytest.mark.parametrize(("bundle", "yaml_twin"), PAIRS, ids=[b.name.split(".")[0] for b, _ in PAIRS])
def test_fhir_and_yaml_give_identical_results_and_graph_decisions_in_the_api(
        bundle: Path, yaml_twin: Path, rulebase: radiopal.RuleBase) -> None:
    from_fhir = evaluate_fhir(bundle, rulebase)
    from_yaml = rulebase.evaluate(yaml_twin)
    assert from_fhir.to_json() == from_yaml.to_json()

    def decision_nodes(result: Result) -> list[dict]:
        return [n for n in result.graph.to_dict()["nodes"] if n["kind"] in ("decision", "rule")]

    assert decision_nodes(from_fhir) == decision_nodes(from_yaml)
