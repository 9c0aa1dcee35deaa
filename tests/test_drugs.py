"""The drug vocabulary (issue #16 item 3): agents matched case-insensitively through kb/drugs.yaml (synonyms, brands,
regimens, ATC codes), shared with the FHIR mapping; rules name agents and classes, not spellings. Clinical
expectations: CHEMO-02 (docetaxel-based induction with response or stable disease → docetaxel + Sm-153 eligible),
CHEMO-04 (TRAPEZE needs an ongoing docetaxel course)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO
from radiopal.drugs import load_drugs
from radiopal.errors import RulebaseError

SCENARIO = REPO / "tests" / "scenarios" / "chemo-03-docetaxel-sm153-stable.yaml"


def _document() -> dict[str, Any]:
    data = yaml.safe_load(SCENARIO.read_text(encoding="utf-8"))
    data.pop("expected")
    return data


@pytest.mark.parametrize(("text", "agents"), [
    ("docetaxel", {"docetaxel"}),
    ("DOCETAXEL", {"docetaxel"}),
    ("Taxotere", {"docetaxel"}),
    ("docetaxel/prednisone", {"docetaxel", "prednisone"}),
    ("Docetaxel-Estramustine", {"docetaxel", "estramustine"}),
    ("docetaxel and estramustine", {"docetaxel", "estramustine"}),
    ("TAX 327: docetaxel 75 mg/m² q3w", {"docetaxel"}),
    ("KA/VE", {"ketoconazole", "doxorubicin", "estramustine", "vinblastine"}),
    ("Adriamycin", {"doxorubicin"}),
    ("nab-paclitaxel", {"paclitaxel"}),
    ("carboplatin", {"carboplatin"}),
    ("investigational cytotoxic", set()),
])
def test_an_agent_is_recognised_whatever_its_spelling(text: str, agents: set[str]):
    assert set(load_drugs().resolve(text)) == agents


def test_an_agent_brings_its_class():
    terms = load_drugs().terms_of("Jevtana")
    assert terms == ("cabazitaxel", "taxane")


@pytest.mark.parametrize("agent", ["docetaxel", "DOCETAXEL", "Taxotere", "docetaxel + prednisone",
                                   "Docetaxel/Estramustine", "docetaxel-estramustine"])
def test_chemo_02_accepts_every_spelling_of_a_docetaxel_induction(agent: str):
    """The scenario's expected answer (docetaxel + Sm-153 eligible after a docetaxel induction with stable disease)
    holds whatever the induction is called."""
    import radiopal

    document = _document()
    document["treatment_history"]["chemotherapy"][0]["agent"] = agent
    result = radiopal.load_rulebase().evaluate(document)
    assert result.decision("docetaxel_sm153").status == "eligible"
    assert result.warnings == []


@pytest.mark.parametrize("agent", ["carboplatin", "investigational cytotoxic"])
def test_an_induction_without_docetaxel_does_not_open_the_protocol(agent: str):
    import radiopal

    document = _document()
    document["treatment_history"]["chemotherapy"][0]["agent"] = agent
    result = radiopal.load_rulebase().evaluate(document)
    assert result.decision("docetaxel_sm153").status != "eligible"
    unknown = [w for w in result.warnings if w["source"] == "treatment_history.chemotherapy[0].agent"]
    assert bool(unknown) == (agent == "investigational cytotoxic")
    if unknown:
        assert "not in radiopal's drug vocabulary" in unknown[0]["message"]
        assert unknown[0] in json.loads(result.to_json())["warnings"]


def _vocabulary(tmp_path: Path, drugs: str, extra: str = "") -> Path:
    path = tmp_path / "drugs.yaml"
    path.write_text('version: "1"\nclasses:\n  taxane: {name: taxanes, atc: L01CD}\ndrugs:\n' + drugs + extra,
                    encoding="utf-8")
    return path


@pytest.mark.parametrize(("drugs", "expected_line", "words"), [
    ("  docetaxel: {group: chemotherapy, class: taxoid}\n", 5, "unknown class 'taxoid'"),
    ("  docetaxel: {group: chemotherapy, brands: [Taxotere]}\n  paclitaxel: {group: chemotherapy, brands: [taxotere]}\n",
     6, "also a name of docetaxel"),
    ("  docetaxel: {group: chemotherapy, atc: {code: L1CD02, verified: secondary, source: x}}\n", 5, "L1CD02"),
])
def test_a_bad_vocabulary_is_refused_with_file_and_line(tmp_path: Path, drugs: str, expected_line: int, words: str):
    path = _vocabulary(tmp_path, drugs)
    with pytest.raises(RulebaseError) as excinfo:
        load_drugs(path)
    (problem,) = excinfo.value.problems
    assert problem.file == str(path) and problem.line == expected_line and words in problem.message


def test_a_rule_naming_an_unknown_drug_or_spelling_it_is_a_load_error(tmp_path: Path):
    import shutil

    from radiopal.rulebase.load import collect_rules

    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    path = rules / "chemosensitisation.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("{field: drugs, op: contains, value: docetaxel}", "{field: drugs, op: contains, value: docetaxol}", 1)
    text = text.replace("{field: drugs, op: contains, value: doxorubicin}", "{field: drugs, op: in, value: [doxorubicin]}", 1)
    path.write_text(text, encoding="utf-8")
    _, staged = collect_rules(rules)
    messages = {p.problem.message: p.problem for p in staged}
    unknown = next(p for m, p in messages.items() if "'docetaxol' is not a drug" in m)
    assert unknown.hint == "did you mean 'docetaxel'?" and unknown.line > 0 and unknown.file.endswith(
        "chemosensitisation.yaml")
    assert any("ask with `op: contains" in m for m in messages)


def test_the_fhir_mapping_reads_the_same_vocabulary():
    """A chemotherapy medication known only by a brand of kb/drugs.yaml, or only by its ATC code there, becomes a
    chemotherapy entry with the vocabulary's class; the FHIR code table defines no chemotherapy agent itself."""
    pytest.importorskip("fhir.resources.R4B", reason="FHIR tests need the fhir extra: pip install 'radiopal[fhir]'")
    from radiopal.fhir import bundle_to_document

    codes = (REPO / "kb" / "fhir" / "codes.yaml").read_text(encoding="utf-8")
    assert all("system: rxnorm" in line for line in codes.splitlines() if "maps_to: chemotherapy." in line)

    def bundle(concept: dict[str, Any]) -> dict[str, Any]:
        statement = {"resourceType": "MedicationStatement", "id": "m", "status": "completed",
                     "medicationCodeableConcept": concept, "subject": {"reference": "Patient/P1"},
                     "effectivePeriod": {"start": "2024-09-01", "end": "2024-12-16"}}
        return {"resourceType": "Bundle", "type": "collection", "timestamp": "2025-06-02T08:00:00Z", "entry": [
            {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "id": "P1", "gender": "male",
                                                  "birthDate": "1954-03-01"}},
            {"fullUrl": "urn:uuid:m", "resource": statement}]}

    by_brand = bundle_to_document(bundle({"text": "JEVTANA 25 mg/m2"}))
    (entry,) = by_brand.document["treatment_history"]["chemotherapy"]
    assert entry["agent"] == "cabazitaxel" and entry["class"] == "taxane"
    by_atc = bundle_to_document(bundle({"coding": [{"system": "http://www.whocc.no/atc", "code": "L01CA01"}]}))
    (entry,) = by_atc.document["treatment_history"]["chemotherapy"]
    assert entry["agent"] == "vinblastine" and entry["myelosuppressive"] is True
    unknown = bundle_to_document(bundle({"text": "Zorbaxin"}))
    assert unknown.document["treatment_history"]["chemotherapy"] == []
    steroid = bundle_to_document(bundle({"text": "prednisone 5 mg"}))
    assert steroid.document["treatment_history"]["chemotherapy"] == []


def test_the_shipped_rules_name_drugs_never_spellings():
    """No rule reads a chemotherapy entry's agent text: agents are named through the vocabulary (`drugs contains`),
    and every agent or class a rule names is in it."""
    from radiopal.conditions import Compare, Exists
    from radiopal.rulebase.load import load_rules

    named = set()
    for rule in load_rules(REPO / "rules").rules:
        for node in rule.when.nodes() if rule.when is not None else ():
            if isinstance(node, Exists) and node.list_name == "chemotherapy":
                for inner in node.where.nodes():
                    if isinstance(inner, Compare) and inner.subject == "field":
                        assert inner.name != "agent", rule.key
                        if inner.name == "drugs":
                            named.add(inner.value)
    assert named == {"docetaxel", "doxorubicin", "estramustine", "vinblastine"}
    assert named <= set(load_drugs().terms)


def test_the_text_output_shows_the_warning_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from radiopal.cli import main

    document = _document()
    document["treatment_history"]["chemotherapy"][0]["agent"] = "Zorbaxin"
    path = tmp_path / "patient.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    assert main(["recommend", str(path), "--format", "text"]) == 0
    assert capsys.readouterr().out.count("'Zorbaxin' is not in radiopal's drug vocabulary") == 1
