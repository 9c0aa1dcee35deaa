"""Contract 1.1 (§D) output and the action summary: dose_reasons, unverified (the dose rule's [U] only where it
applies), advisory severity and order, warnings; the summary's groups, open waits, data needs and urgent-first text.

Expectations come from the brief (BHA-02 bands, SEQ-01 washout, RT-SCC) and contract §D, not from the output.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
import yaml

import radiopal
from conftest import REPO, VIGNETTES, needs_shared
from radiopal.cli.recommend import render_text
from radiopal.explain.summary import action_summary
from radiopal.resources import schema_path

DEMO = REPO / "examples" / "patient-mcrpc.yaml"


@pytest.fixture(scope="module")
def rulebase() -> Any:
    return radiopal.load_rulebase()


@pytest.fixture(scope="module")
def demo() -> dict[str, Any]:
    return json.loads(json.dumps(yaml.safe_load(DEMO.read_text(encoding="utf-8")), default=str))


def _with_crcl(document: dict[str, Any], value: float) -> dict[str, Any]:
    doc = copy.deepcopy(document)
    doc["labs"]["creatinine_clearance"] = {"value": value, "unit": "mL/min", "method": "cockcroft_gault"}
    return doc


def _decision(result: Any, therapy: str) -> dict[str, Any]:
    return next(d for d in result.to_dict()["decisions"] if d["therapy"] == therapy)


def test_the_output_is_contract_1_1_and_valid(rulebase: Any, demo: dict[str, Any]):
    data = rulebase.evaluate(demo).to_dict()
    schema = json.loads(schema_path("decision").read_text(encoding="utf-8"))
    jsonschema.validate(data, schema)
    assert data["schema_version"] == "1.1" and data["warnings"] == []
    for d in data["decisions"]:
        assert isinstance(d["unverified"], bool) and isinstance(d["dose_reasons"], list)
        assert (d["dose_mg"] is None) == (d["dose_reasons"] == [])
    for a in data["advisories"]:
        assert a["severity"] in ("urgent", "caution", "info") and isinstance(a["unverified"], bool)


@pytest.mark.parametrize(("crcl", "dose", "unverified"), [
    (55, 3.5, False),     # inside the label band 50-60
    (45, 3.3, False),     # inside 40-49
    (49.5, 3.3, True),    # between the label's bands: the brief's numeric-interval reading [U]
    (39.5, 3.0, True),    # between 30-39 and 40-49 [U]
    (35, 3.0, False),
])
def test_the_dose_rule_is_named_and_its_u_mark_follows_the_band_reading(rulebase: Any, demo: dict[str, Any],
                                                                      crcl: float, dose: float, unverified: bool):
    result = rulebase.evaluate(_with_crcl(demo, crcl))
    za = _decision(result, "zoledronic_acid")
    assert za["dose_mg"] == dose and za["dose_reasons"] == ["BHA-02"]
    # BHA-01/crpc (the indication) is [V-sec]: only the dose rule can make the decision [U].
    assert za["unverified"] is unverified
    assert result.decision("zoledronic_acid").dose_unverified is unverified


def test_advisories_are_listed_urgent_then_caution_then_info(rulebase: Any, demo: dict[str, Any]):
    doc = copy.deepcopy(demo)
    doc["bone_disease"]["spinal_cord_compression"] = "established"
    advisories = rulebase.evaluate(doc).to_dict()["advisories"]
    order = {"urgent": 0, "caution": 1, "info": 2}
    ranks = [order[a["severity"]] for a in advisories]
    assert ranks == sorted(ranks)
    assert advisories[0]["id"] == "ADV-SCC-URGENT" and advisories[0]["severity"] == "urgent"


def test_the_summary_groups_what_is_chosen_one_of(rulebase: Any, demo: dict[str, Any]):
    summary = action_summary(rulebase.evaluate(demo))
    give = {g.choice: g for g in summary.give}
    # Demo: Ra-223 recommended, Sr-89 and Sm-153 eligible -> one radionuclide, with the two as alternatives.
    assert [o.therapy for o in give["one radionuclide"].options] == ["ra223"]
    assert {o.therapy for o in give["one radionuclide"].alternatives} == {"sr89", "sm153"}
    # Zoledronic acid and denosumab both recommended (BHA-01) -> one bone-health agent, choose one.
    assert {o.therapy for o in give["one bone-health agent"].options} == {"zoledronic_acid", "denosumab"}
    assert not any(o.therapy in ("sr89", "sm153") for g in summary.alternatives for o in g.options)


def test_an_open_deferral_says_what_it_waits_for_and_gives_no_date(rulebase: Any, demo: dict[str, Any]):
    doc = copy.deepcopy(demo)
    doc["treatment_history"]["chemotherapy"][0].update(ongoing=True, last_dose_date="2025-09-08")
    result = rulebase.evaluate(doc)
    waits = {w.option.therapy: w for w in action_summary(result).wait}
    # SEQ-01: myelosuppressive chemotherapy ongoing -> deferred with no earliest date; 28 days after it stops.
    assert waits["sr89"].until is None
    assert waits["sr89"].open_text.startswith("until docetaxel stops, then 28 days")
    text = render_text(result)
    assert "open: until docetaxel stops, then 28 days" in text
    from radiopal.explain import explain
    from radiopal.explain import render_text as explain_text

    shown = explain_text(explain(result, therapy="sr89"))
    assert "to lift SEQ-01" not in shown and "becomes not met on" not in shown


def test_data_needed_is_listed_once_with_the_therapies_it_would_decide(rulebase: Any, demo: dict[str, Any]):
    doc = copy.deepcopy(demo)
    del doc["labs"]["platelets"]
    summary = action_summary(rulebase.evaluate(doc))
    paths = [n.path for n in summary.cannot_decide]
    assert paths.count("labs.platelets") == 1
    need = next(n for n in summary.cannot_decide if n.path == "labs.platelets")
    assert any("Strontium-89" in name for name in need.unlocks)


@needs_shared
def test_the_urgent_advisory_comes_before_the_summary_in_text(rulebase: Any):
    from radiopal.scenarios import load_scenario

    v08 = load_scenario(VIGNETTES / "V08.yaml", rulebase.catalogue.therapy_ids, rulebase.catalogue.advisories)
    text = render_text(rulebase.evaluate(v08.document))
    assert text.index("URGENT — ADV-SCC-URGENT") < text.index("Action summary")
