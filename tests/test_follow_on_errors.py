"""After an error in one rule file, the errors that only follow from it are marked as its consequences and listed
after it (issue #16 item 5): a YAML error in the file that declares a derived fact made every rule reading that fact
elsewhere report "unknown fact", hiding the cause."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO
from radiopal.cli import main
from radiopal.lint import lint_rules


def _broken(tmp_path: Path, file: str, edit) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    path = rules / file
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return rules


def _yaml_error_in_surgery(text: str) -> str:
    """An unclosed bracket in surgery.yaml, which declares `fracture_needs_surgery` (read by radiotherapy.yaml)."""
    at = text.index("derived_facts:")
    end = text.index("\n", at)
    return text[:end] + "\n  broken: [unclosed" + text[end:]


def test_a_yaml_error_comes_first_and_the_unknown_facts_it_causes_are_marked(tmp_path: Path):
    rules = _broken(tmp_path, "surgery.yaml", _yaml_error_in_surgery)
    report = lint_rules(rules)
    errors = report.errors
    assert errors[0].code == "yaml-syntax" and errors[0].file.endswith("surgery.yaml") and not errors[0].consequence_of
    cause = f"{errors[0].file}:{errors[0].line}"
    follow = [f for f in errors if f.code == "unknown-fact"]
    assert len(follow) >= 3 and all("fracture_needs_surgery" in f.message for f in follow)
    assert all(f.consequence_of == cause for f in follow)
    assert all(f.consequence_of for f in report.findings if f.code == "unused-threshold")
    text = report.to_text()
    assert text.index("[yaml-syntax]") < text.index("[unknown-fact]")
    assert "(follows from the error at" in text and "only follow from another error" in text
    data = json.loads(report.to_json())
    assert any(f.get("consequence_of") for f in data["findings"])


def test_the_commands_list_the_cause_first_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rules = _broken(tmp_path, "surgery.yaml", _yaml_error_in_surgery)
    assert main(["recommend", str(REPO / "examples" / "patient-mcrpc.yaml"), "--rules", str(rules)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "surgery.yaml" in line or "unknown fact" in line]
    assert "surgery.yaml:" in lines[0] and "unknown fact" not in lines[0]
    assert all("follows from the error at" in line for line in lines if "unknown fact" in line)
    assert "Traceback" not in err


def test_a_deriving_rule_left_out_by_the_schema_explains_the_underived_fact(tmp_path: Path):
    def break_deriver(text: str) -> str:
        start = text.index("    then:\n      derive: fracture_needs_surgery")
        return text[:start] + "    strenght: strong\n" + text[start:]

    rules = _broken(tmp_path, "surgery.yaml", break_deriver)
    report = lint_rules(rules)
    schema = next(f for f in report.errors if f.code == "schema")
    underived = [f for f in report.errors if "no rule derives it" in f.message]
    assert underived and all(f.consequence_of == f"{schema.file}:{schema.line}" for f in underived)
