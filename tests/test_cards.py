"""Cards an EHR can show (issue #14 item 3), with the shipped rules: the indicator levels, bounded summary and detail,
the leading options named in words, a guideline source with an absolute address, suggestions that replace a
contraindicated drafted radionuclide, a warning card for a drafted radionuclide whose counts are stale, and links to
radiopal's page and report. Expectations come from the brief (ELIG-GEN-05 / RT-SCC, DATA-04, ELIG-GEN-10) and the
vignettes."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

import radiopal
from conftest import REPO, VIGNETTES, needs_shared
from radiopal.service.cards import (
    DETAIL_LIMIT,
    SUMMARY_LIMIT,
    DraftOrder,
    order_cards,
    page_url,
    patient_view_card,
    therapy_views,
)

DEMO = REPO / "examples" / "patient-mcrpc.yaml"


@pytest.fixture(scope="module")
def rulebase() -> Any:
    return radiopal.load_rulebase()


def _demo() -> dict[str, Any]:
    return json.loads(json.dumps(yaml.safe_load(DEMO.read_text(encoding="utf-8")), default=str))


def _shape(card: dict[str, Any]) -> None:
    assert len(card["summary"]) <= SUMMARY_LIMIT and len(card["detail"]) <= DETAIL_LIMIT
    assert 0 < len(card["source"]["label"]) <= 60
    assert card["source"].get("url", "https://").startswith(("https://", "http://"))
    assert all(link["url"].startswith("http") and link["type"] == "absolute" for link in card.get("links", []))
    assert "../" not in json.dumps(card)


def _orders(result: Any, therapy: str) -> list[dict[str, Any]]:
    views = therapy_views(result, [therapy])
    return order_cards(result, views, [DraftOrder("MedicationRequest/d1", (therapy,), "drafted")],
                       report_url="https://cds.example/reports/1", page=page_url("https://cds.example", "1"))


def test_info_for_an_ordinary_patient_naming_the_leading_options(rulebase: Any):
    card = patient_view_card(rulebase.evaluate(_demo()), page=page_url("https://cds.example/", "r1"))
    _shape(card)
    assert card["indicator"] == "info"
    # Demo: Ra-223 recommended (Sr-89, Sm-153 eligible); zoledronic acid 3.5 mg or denosumab recommended.
    assert card["summary"].startswith("Give Ra-223 (or Sr-89, Sm-153)")
    assert "zoledronic acid 3.5 mg or denosumab" in card["summary"]
    assert card["links"][0]["url"] == "https://cds.example/page/record/r1"
    assert card["source"]["topic"]["code"] == "ELIG-RA-12" and card["source"]["url"].startswith("https://")


@needs_shared
def test_critical_only_for_the_urgent_advisory_of_v08(rulebase: Any):
    from radiopal.scenarios import load_scenario

    v08 = load_scenario(VIGNETTES / "V08.yaml", rulebase.catalogue.therapy_ids, rulebase.catalogue.advisories)
    card = patient_view_card(rulebase.evaluate(v08.document))
    _shape(card)
    assert card["indicator"] == "critical" and card["summary"].startswith("URGENT")
    assert card["detail"].startswith("**URGENT")


def test_a_contraindication_alone_is_not_critical(rulebase: Any):
    doc = _demo()
    doc["labs"]["platelets"] = {"value": 40, "unit": "10^9/L"}  # ELIG-GEN-10: below the beta floor
    result = rulebase.evaluate(doc)
    assert result.decision("sr89").status == "contraindicated"
    card = patient_view_card(result)
    assert card["indicator"] == "info" and "**Do not give**" in card["detail"]


def test_warning_for_a_drafted_contraindicated_radionuclide_with_a_replacement(rulebase: Any):
    doc = _demo()
    doc["treatment_history"]["hypersensitivity"] = ["phosphonates"]  # ELIG-SM-03: Sm-153 (EDTMP) contraindicated
    result = rulebase.evaluate(doc)
    assert result.decision("sm153").status == "contraindicated"
    [card] = _orders(result, "sm153")
    _shape(card)
    assert card["indicator"] == "warning" and card["summary"].startswith("Sm-153 order: contraindicated")
    assert "**Instead:** Radium-223" in card["detail"]  # the recommended radionuclide first
    replace = next(s for s in card["suggestions"] if s["label"].startswith("Replace"))
    kinds = [a["type"] for a in replace["actions"]]
    assert kinds == ["delete", "create"] and replace["actions"][0]["resourceId"] == ["MedicationRequest/d1"]
    created = replace["actions"][1]["resource"]
    assert created["resourceType"] == "MedicationRequest" and created["status"] == "draft"
    assert "Radium-223" in created["medicationCodeableConcept"]["text"]  # the recommended one comes first


def test_a_drafted_radionuclide_with_stale_counts_gets_a_warning_card_naming_the_data(rulebase: Any):
    doc = _demo()
    doc["labs"]["date"] = "2025-09-05"  # 10 days before the evaluation: DATA-04 makes the counts absent
    result = rulebase.evaluate(doc)
    assert result.decision("sr89").status == "insufficient_data"
    [card] = _orders(result, "sr89")
    _shape(card)
    assert card["indicator"] == "warning" and "data needed" in card["summary"] and "labs.date" in card["summary"]
    assert "7 days" in card["detail"]


def test_no_card_for_a_drafted_order_that_is_fine(rulebase: Any):
    assert _orders(rulebase.evaluate(_demo()), "ra223") == []


@needs_shared
@pytest.mark.parametrize("name", sorted(p.stem for p in VIGNETTES.glob("V*.yaml")) if VIGNETTES.is_dir() else [])
def test_every_vignette_card_is_within_bounds(rulebase: Any, name: str):
    from radiopal.scenarios import load_scenario

    scenario = load_scenario(VIGNETTES / f"{name}.yaml", rulebase.catalogue.therapy_ids,
                             rulebase.catalogue.advisories)
    result = rulebase.evaluate(copy.deepcopy(scenario.document))
    card = patient_view_card(result, page=page_url("https://cds.example", "x"))
    _shape(card)
    urgent = any(a.severity == "urgent" for a in result.advisories)
    assert card["indicator"] == ("critical" if urgent else "info")
