"""Editor support: every shipped rule file names its JSON Schema for the YAML language server, the schema is a valid
Draft 2020-12 schema, and every shipped file validates against it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from conftest import REPO
from radiopal.lint import SCHEMA_LINE
from radiopal.yamlio import load_document

SCHEMA = REPO / "kb" / "schemas" / "rulefile.schema.json"
RULE_FILES = sorted(p for p in (REPO / "rules").glob("*.yaml") if p.name != "thresholds.yaml")
THRESHOLDS = REPO / "rules" / "thresholds.yaml"
THRESHOLDS_SCHEMA = REPO / "kb" / "schemas" / "thresholds.schema.json"


def test_the_rule_file_schema_is_a_valid_draft_2020_12_schema():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_there_are_shipped_rule_files():
    assert RULE_FILES


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_each_shipped_rule_file_starts_with_the_editor_schema_line(path: Path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == SCHEMA_LINE
    target = (path.parent / first.split("$schema=", 1)[1]).resolve()
    assert target == SCHEMA.resolve()


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_each_shipped_rule_file_validates_against_the_schema(path: Path):
    validator = Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(load_document(path).data)]
    assert errors == []


def test_the_thresholds_file_names_its_schema_and_validates_against_it():
    schema = json.loads(THRESHOLDS_SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    first = THRESHOLDS.read_text(encoding="utf-8").splitlines()[0]
    assert (THRESHOLDS.parent / first.split("$schema=", 1)[1]).resolve() == THRESHOLDS_SCHEMA.resolve()
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in Draft202012Validator(schema).iter_errors(load_document(THRESHOLDS).data)]
    assert errors == []
