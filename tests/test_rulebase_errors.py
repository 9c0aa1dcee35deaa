"""Authoring errors: file, line, column, rule id and a did-you-mean — at load time, before any patient is seen."""

from __future__ import annotations

import pytest

import radiopal
from conftest import REPO, write_rulebase
from radiopal.cli import main

DEMO = str(REPO / "examples" / "patient-mcrpc.yaml")  # tests run from any directory

GOOD = """\
area: demo
version: "1"
rules:
  - id: ELIG-GEN-10
    title: Platelet floor
    version: 1
    strength: strong
    verification: V-sec
    sources: [metastron_uspi]
    therapies: [sr89]
    when: {fact: plt_current, op: "<", value: 60, unit: "10^9/L"}
    then: {status: contraindicated, advisories: [ADV-HEME-CAUTION]}
"""


def load_error(tmp_path, text):
    folder = write_rulebase(tmp_path / "rules", text)
    with pytest.raises(radiopal.RulebaseError) as info:
        radiopal.load_rulebase(folder)
    return info.value.problems


def test_the_good_rule_loads(tmp_path):
    rb = radiopal.load_rulebase(write_rulebase(tmp_path / "rules", GOOD))
    assert [r.id for r in rb.rules] == ["ELIG-GEN-10"]


def test_a_typo_in_a_fact_name_gives_file_line_column_and_a_suggestion(tmp_path):
    (problem,) = load_error(tmp_path, GOOD.replace("fact: plt_current", "fact: plt_curent"))
    assert problem.file.endswith("r0.yaml")
    assert (problem.line, problem.column) == (11, 18)
    assert problem.rule_id == "ELIG-GEN-10"
    assert "unknown fact 'plt_curent'" in problem.message
    assert problem.hint == "did you mean 'plt_current'?"


def test_the_cli_prints_the_typo_as_one_line_and_exits_2(tmp_path, capsys):
    folder = write_rulebase(tmp_path / "rules", GOOD.replace("fact: plt_current", "fact: plt_curent"))
    assert main(["recommend", "--rules", str(folder), DEMO]) == 2
    err = capsys.readouterr().err
    assert "r0.yaml:11:18 rule ELIG-GEN-10" in err and "did you mean 'plt_current'?" in err


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('unit: "10^9/L"', 'unit: "g/dL"', "unit 'g/dL' does not fit 'plt_current'"),
        ("therapies: [sr89]", "therapies: [sr-89]", "unknown therapy 'sr-89'"),
        ("sources: [metastron_uspi]", "sources: [metastron]", "unknown source key 'metastron'"),
        ("ADV-HEME-CAUTION", "ADV-HEME-CAUTIOUS", "unknown advisory 'ADV-HEME-CAUTIOUS'"),
        ('op: "<"', 'op: "=<"', "'=<' is not allowed"),
        ("value: 60,", "value: sixty,", "does not fit 'plt_current'"),
        ("verification: V-sec", "verification: V-second", "'V-second' is not allowed"),
        ("    strength: strong\n", "", "missing required field 'strength'"),
    ],
)
def test_each_authoring_mistake_is_named(tmp_path, old, new, expected):
    problems = load_error(tmp_path, GOOD.replace(old, new))
    assert any(expected in p.message for p in problems), [str(p) for p in problems]
    assert all(p.line > 0 and p.file for p in problems)


def test_an_enum_value_that_does_not_exist_is_caught(tmp_path):
    text = GOOD.replace('{fact: plt_current, op: "<", value: 60, unit: "10^9/L"}', "{fact: site, op: '==', value: prostrate}")
    (problem,) = load_error(tmp_path, text)
    assert "'prostrate' is not a value of 'site'" in problem.message and "prostate" in problem.hint


def test_duplicate_rule_ids_are_caught(tmp_path):
    text = GOOD + GOOD.split("rules:\n", 1)[1]
    problems = load_error(tmp_path, text)
    assert any("duplicate rule id 'ELIG-GEN-10'" in p.message for p in problems)


def test_malformed_yaml_in_a_rule_file_names_the_line(tmp_path):
    (problem,) = load_error(tmp_path, GOOD.replace("title: Platelet floor", "title: [Platelet floor"))
    assert "invalid YAML" in problem.message and problem.line >= 5


def test_a_misspelt_key_in_a_condition_is_named_with_a_suggestion(tmp_path):
    problems = load_error(tmp_path, GOOD.replace('value: 60, unit: "10^9/L"', 'valu: 60, unit: "10^9/L"'))
    assert any("unknown field 'valu'" in p.message and p.hint == "did you mean 'value'?" for p in problems), [
        str(p) for p in problems]
