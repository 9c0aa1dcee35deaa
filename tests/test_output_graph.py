"""Contract output and the reasoning graph: schema-valid JSON, traceable decisions, DOT/SVG export."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from jsonschema import Draft202012Validator

import radiopal
from conftest import REPO, VIGNETTES, needs_shared, vignette_document
from radiopal.cli import main
from radiopal.resources import schema_path

DEMO = str(REPO / "examples" / "patient-mcrpc.yaml")  # tests run from any directory


@pytest.fixture(scope="module")
def rulebase():
    return radiopal.load_rulebase()


def decision_validator():
    return Draft202012Validator(json.loads(schema_path("decision").read_text()))


def test_the_output_of_the_example_is_valid_against_the_decision_schema(rulebase):
    out = rulebase.evaluate(DEMO).to_dict()
    errors = list(decision_validator().iter_errors(out))
    assert not errors, [e.message for e in errors]


def test_graph_node_ids_are_stable_and_edges_point_at_nodes(rulebase):
    graph = rulebase.evaluate(DEMO).graph.to_dict()
    ids = {n["id"] for n in graph["nodes"]}
    assert all(e["source"] in ids and e["target"] in ids for e in graph["edges"])
    assert {f"decision:{t}" for t in rulebase.catalogue.therapy_ids} <= ids
    again = rulebase.evaluate(DEMO).graph.to_dict()
    assert again == graph


def test_every_input_node_names_its_field_path(rulebase):
    graph = rulebase.evaluate(DEMO).graph.to_dict()
    for node in graph["nodes"]:
        if node["kind"] == "input":
            assert node["id"] == f"input:{node['path']}"


@needs_shared
def test_v01_ra223_decision_traces_to_its_rules_and_citations(rulebase, tmp_path):
    doc = vignette_document(VIGNETTES / "V01.yaml")
    result = rulebase.evaluate(doc)
    out = result.to_dict()
    assert not list(decision_validator().iter_errors(out))
    ra223 = next(d for d in out["decisions"] if d["therapy"] == "ra223")
    assert ra223["status"] == "recommended"
    graph = result.graph.to_dict()
    nodes = {n["id"]: n for n in graph["nodes"]}
    into_decision = [e for e in graph["edges"] if e["target"] == "decision:ra223" and e["kind"] == "concluded"]
    rule_ids = {nodes[e["source"]]["rule_id"] for e in into_decision}
    assert set(ra223["reasons"]) <= rule_ids
    for edge in into_decision:
        rule = nodes[edge["source"]]
        assert rule["sources"] and all(s["citation"] and s["url"] for s in rule["sources"])
        assert rule["strength"] and rule["verification"] in ("V", "V-sec", "U")
        feeding = [e for e in graph["edges"] if e["target"] == edge["source"] and e["kind"] == "used-by"]
        assert feeding, f"{edge['source']} has no input facts"


def test_recommend_writes_the_graph_as_json_and_dot(tmp_path, capsys):
    for suffix in (".json", ".dot"):
        target = tmp_path / f"g{suffix}"
        assert main(["recommend", DEMO, "--graph", str(target)]) == 0
        assert target.stat().st_size > 0
    assert json.loads((tmp_path / "g.json").read_text())["nodes"]
    assert (tmp_path / "g.dot").read_text().startswith("// radiopal") or "digraph" in (tmp_path / "g.dot").read_text()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed (apt-get install graphviz)")
def test_recommend_renders_svg_when_dot_is_present(tmp_path):
    target = tmp_path / "g.svg"
    assert main(["recommend", DEMO, "--format", "text", "--graph", str(target)]) == 0
    assert target.read_text().lstrip().startswith(("<?xml", "<svg"))
    assert (tmp_path / "g.dot").exists() and (tmp_path / "g.json").exists()


def test_without_dot_an_svg_request_still_writes_dot_and_json_and_says_how(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    target = tmp_path / "g.svg"
    assert main(["recommend", DEMO, "--graph", str(target)]) == 2
    assert "apt-get install graphviz" in capsys.readouterr().err
    assert (tmp_path / "g.dot").exists() and (tmp_path / "g.json").exists() and not target.exists()


def test_every_firing_that_reads_a_status_has_an_edge_from_that_decision():
    """Phase-2 rules (SEQ-10 reading sr89, RT-01b reading the 8 Gy decision, …) read other therapies' statuses:
    each such firing must trace to those decisions (it used to stand with no input)."""
    from radiopal.conditions import THERAPY_PLACEHOLDER
    from radiopal.synth import patient_at

    rulebase = radiopal.load_rulebase()
    checked = 0
    for index in range(40):
        result = rulebase.evaluate(patient_at(index, seed=5, bad_fraction=0.0).document)
        graph = result.graph.to_dict()
        edges = {(e["source"], e["target"]) for e in graph["edges"]}
        for firing in result.firings:
            rule = firing.compiled.rule
            node = f"rule:{rule.key}" + (f"@{firing.therapy}" if firing.therapy else "")
            for therapy in rule.statuses():
                read = firing.therapy if therapy == THERAPY_PLACEHOLDER else therapy
                assert (f"decision:{read}", node) in edges, (rule.key, read)
                checked += 1
    assert checked > 100


def test_the_drawn_graph_is_readable_and_a_therapy_can_be_drawn_alone(tmp_path):
    """Issue #14 item 6: inputs folded into their facts, outcomes on the rule nodes instead of `== True: met` edge
    labels, bounded labels; `--therapy ID` draws only what leads to that decision."""
    from radiopal.graph import LABEL_LINES, LABEL_WIDTH

    whole = tmp_path / "whole.dot"
    assert main(["recommend", DEMO, "--graph", str(whole)]) == 0
    source = whole.read_text(encoding="utf-8")
    assert "input:" not in source and "== True: met" not in source and "met\"" not in source
    labels = [x for x in re.findall(r'label="([^"]*)"', source) if not x.startswith("radiopal —")]  # nodes, edges
    for label in labels:
        lines = label.split("\\n")
        assert len(lines) <= LABEL_LINES and all(len(line) <= LABEL_WIDTH for line in lines), label
    assert "← labs.platelets" in source  # the record field folded into its fact
    one = tmp_path / "sr89.dot"
    assert main(["recommend", DEMO, "--graph", str(one), "--therapy", "sr89"]) == 0
    alone = one.read_text(encoding="utf-8")
    assert "sr89: eligible" in alone and "ra223: recommended" not in alone
    assert alone.count(" -> ") < source.count(" -> ") / 3
    assert main(["recommend", DEMO, "--graph", str(one), "--therapy", "sr-89"]) == 2  # an unknown id is refused
