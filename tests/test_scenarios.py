"""The scenario suites: the shared vignettes (when ../shared is there) and our own tests/scenarios, one test each."""

from __future__ import annotations

from pathlib import Path

import pytest

import radiopal
from conftest import VIGNETTES
from radiopal.scenarios import format_failure, load_scenario, run_scenario

OWN = Path(__file__).resolve().parent / "scenarios"


@pytest.fixture(scope="module")
def rulebase() -> radiopal.RuleBase:
    return radiopal.load_rulebase()


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def _run(path: Path, rulebase: radiopal.RuleBase) -> None:
    scenario = load_scenario(path, rulebase.catalogue.therapy_ids, list(rulebase.catalogue.advisories))
    outcome = run_scenario(scenario, rulebase)
    assert outcome.passed, "\n".join(format_failure(outcome))


@pytest.mark.skipif(not VIGNETTES.is_dir(), reason="../shared/vignettes is not beside this checkout (CI has it)")
@pytest.mark.parametrize("path", _files(VIGNETTES), ids=lambda p: p.stem)
def test_shared_vignette(path, rulebase):
    _run(path, rulebase)


@pytest.mark.parametrize("path", _files(OWN), ids=lambda p: p.stem)
def test_own_scenario(path, rulebase):
    _run(path, rulebase)


def test_there_are_own_scenarios():
    assert len(_files(OWN)) >= 40, "tests/scenarios should hold at least 40 scenarios written from the brief"
