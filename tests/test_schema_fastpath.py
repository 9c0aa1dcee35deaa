"""The jsonschema-rs fast path never accepts a document python-jsonschema rejects, and changes no reported problem.

radiopal.schemacheck lets a document skip python-jsonschema only when jsonschema-rs finds it valid. The risk is a
document jsonschema-rs accepts and python-jsonschema rejects; these tests look for one on the committed bad-input
corpus, on the synthetic cohort's corrupted records, and on hypothesis-mutated documents.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import BASE_PATIENT
from radiopal import schemacheck
from radiopal.synth import patient_at

pytest.importorskip("jsonschema_rs", reason="jsonschema-rs is not installed: python-jsonschema decides alone")

BAD = Path(__file__).resolve().parent / "bad_inputs"


def fast(doc: Any) -> bool:
    check = schemacheck.fast_check("patient")
    assert check is not None
    try:
        return bool(check(doc))
    except Exception:  # what schemacheck.problems does: not accepted
        return False


def python_valid(doc: Any) -> bool:
    return bool(schemacheck.validator("patient").is_valid(doc))


def python_problems(doc: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    with monkeypatch.context() as patch:
        patch.setattr(schemacheck, "fast_check", lambda name: None)
        return schemacheck.problems(doc, "patient")


def _corpus() -> list[Any]:
    manifest = yaml.safe_load((BAD / "manifest.yaml").read_text(encoding="utf-8"))
    docs = []
    for case in manifest["cases"]:
        path = BAD / case["file"]
        if case["kind"] != "patient" or not path.is_file():
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, RecursionError, ValueError):
            continue
        if isinstance(data, dict):
            docs.append(data)
    return docs


def test_the_bad_input_corpus_and_corrupted_synthetic_records(monkeypatch):
    docs = _corpus()
    assert len(docs) >= 20
    docs += [patient_at(i, seed=4, bad_fraction=1.0, missing_fraction=0.0).document for i in range(400)]
    for doc in docs:
        if fast(doc):
            assert python_valid(doc), doc
        assert schemacheck.problems(doc, "patient") == python_problems(doc, monkeypatch)


def test_valid_documents_take_the_fast_path():
    docs = [patient_at(i, seed=4, bad_fraction=0.0, missing_fraction=0.0).document for i in range(50)]
    assert all(fast(d) and python_valid(d) for d in docs)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from(["2025-02-30", "2025-1-01", "２０２５-01-01", "10^9/L", "mmol/L", ""]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(BASE_PATIENT)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(JSON_VALUES)
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return doc


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_documents(doc):
    if fast(doc):
        assert python_valid(doc), doc


def test_a_value_jsonschema_rs_cannot_read_goes_to_python(monkeypatch):
    doc = copy.deepcopy(BASE_PATIENT)
    doc["demographics"]["weight_kg"] = math.nan  # readable; python-jsonschema gives the verdict either way
    doc["labs"]["date"] = object()  # not JSON at all
    assert not fast(doc)
    assert schemacheck.problems(doc, "patient") == python_problems(doc, monkeypatch)
    assert schemacheck.problems(doc, "patient")
