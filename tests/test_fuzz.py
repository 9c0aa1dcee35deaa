"""Fuzzing of the three parsers people feed radiopal: patient documents, rule files and FHIR Bundles.

Hypothesis mutates real inputs — the example patient, shipped rule files, the example FHIR Bundles — at two levels:

* bytes/text: flips, truncation, insertions, duplicated spans, odd unicode, non-UTF-8 bytes;
* structure: deleting, duplicating and renaming keys, type swaps, huge numbers, NaN/Infinity, deep nesting, long and
  odd-unicode strings.

The only acceptable outcomes are success or a :class:`radiopal.errors.RadiopalError` (InputError, RulebaseError,
ScenarioError) carrying at least one :class:`~radiopal.errors.Problem`; any other exception — EngineError included,
which radiopal raises for a state it should never reach — is a crash and fails the test. A document that parses is
also evaluated (and its output serialised as strict JSON), because a value the parser lets through must not crash the
engine either. Dates get their own mutation (any year 1–9999, any UTC offset), since date arithmetic overflows.

The run is bounded for ``make test`` (``DEFAULT_EXAMPLES`` scaled per test, a few hundred in all, derandomised);
``make fuzz`` sets ``RADIOPAL_FUZZ_EXAMPLES=5000`` (random, longer). Every crash found becomes a file in
``tests/bad_inputs/`` (see its manifest); the ones reported and not fixed yet are listed in ``KNOWN_CRASHES``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radiopal.errors import EngineError, RadiopalError
from radiopal.patient import parse_patient
from radiopal.yamlio import load_text

REPO = Path(__file__).resolve().parents[1]
PATIENT_FILE = REPO / "examples" / "patient-mcrpc.yaml"
FHIR_DIR = REPO / "examples" / "fhir"
#: Rule files that load on their own (no derived facts from other files) and load fast.
RULE_FILES = ("data.yaml", "surgery.yaml", "supportive.yaml", "chemosensitisation.yaml")

DEFAULT_EXAMPLES = 50
EXAMPLES = int(os.environ.get("RADIOPAL_FUZZ_EXAMPLES") or DEFAULT_EXAMPLES)


def fuzz_settings(share: float = 1.0) -> settings:
    """Settings for one fuzz test: ``share`` of the example budget, no deadline, no health-check noise."""
    return settings(
        max_examples=max(5, int(EXAMPLES * share)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        derandomize=not os.environ.get("RADIOPAL_FUZZ_EXAMPLES"),  # fixed examples in `make test`, fresh in `make fuzz`
        database=None,
    )


#: Crashes found by this fuzzer that are reported to the owner of the code and not fixed yet: (exception type,
#: message pattern, where). Each has a strict xfail test (here or in tests/bad_inputs/manifest.yaml) that fails once
#: it is fixed; then delete the entry here. ``RADIOPAL_FUZZ_STRICT=1`` tolerates none of them.
#: All the crashes found so far are fixed; their cases stay in tests/bad_inputs/ and at the end of this file.
KNOWN_CRASHES: tuple[tuple[type[BaseException], str, str], ...] = ()
STRICT = bool(os.environ.get("RADIOPAL_FUZZ_STRICT"))


def known_crash(exc: BaseException) -> bool:
    return not STRICT and any(isinstance(exc, kind) and re.search(pattern, str(exc))
                              for kind, pattern, _where in KNOWN_CRASHES)


def accept(call: Callable[[], Any]) -> Any:
    """Run ``call``: success, or an input/rule-base/scenario error with problems. Anything else is a crash —
    including :class:`~radiopal.errors.EngineError`, which radiopal raises for a state it should never reach."""
    try:
        return call()
    except (EngineError, ValueError) as exc:
        if known_crash(exc):
            return None
        raise
    except RadiopalError as exc:
        assert exc.problems, f"{type(exc).__name__} without problems: {exc}"
        for problem in exc.problems:
            assert str(problem), "an empty problem"
        return None


# --- values and mutations ---------------------------------------------------------------------------------------------
ODD_TEXT = st.sampled_from([
    "", " ", "\u00a0", "\u200b", "\ufeff", "\u202e", "e\u0301", "ﬁ", "Ω", "😀", "\U0010ffff", "\x7f", "\t\n",
    "'", '"', "\\", "{", "[", "&a", "*a", "!!python/object:os.system", "%TAG", "---", "...", "- ", ": ", "#",
    "null", "~", "NaN", ".nan", ".inf", "-.inf", "yes", "no", "on", "0x1F", "0o17", "1e400", "2025-02-30",
    "0000-00-00", "9999-12-31", "10000-01-01", "2025-06-02T25:61:00",
])

NASTY_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63), 10**18, 10**308, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]),
    ODD_TEXT,
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=2000),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.sampled_from(["2025-06-02", "1900-01-01", "0001-01-01", "9999-12-31", "2024-02-29", "2025-02-29",
                     "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2025-06-02T24:00:00Z", "2025",
                     "2025-13", "1899-12-31"]),
)


def paths_of(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indexes) in a JSON-like tree, the root included."""
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out.extend(paths_of(value, (*prefix, key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.extend(paths_of(value, (*prefix, i)))
    return out


def get_at(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def swapped_type(value: Any) -> Any:
    """The same information in another JSON type (the classic authoring slip)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return 0


def nested(depth: int, leaf: Any, as_list: bool) -> Any:
    for _ in range(depth):
        leaf = [leaf] if as_list else {"a": leaf}
    return leaf


@st.composite
def mutated_tree(draw: st.DrawFn, original: Any, max_mutations: int = 4) -> Any:
    """``original`` with one to ``max_mutations`` structural mutations."""
    data = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = paths_of(data)
        path = paths[draw(st.integers(0, len(paths) - 1))]
        op = draw(st.sampled_from(["replace", "swap", "delete", "rename", "add", "nest", "duplicate", "null"]))
        if not path:
            if op in ("replace", "swap"):
                data = draw(NASTY_VALUES) if op == "replace" else swapped_type(data)
            continue
        parent = get_at(data, path[:-1])
        key = path[-1]
        if op == "replace":
            parent[key] = draw(NASTY_VALUES)
        elif op == "swap":
            parent[key] = swapped_type(parent[key])
        elif op == "null":
            parent[key] = None
        elif op == "delete":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.one_of(ODD_TEXT, st.text(max_size=12)))] = parent.pop(key)
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.one_of(ODD_TEXT, st.text(min_size=1, max_size=12)))] = draw(NASTY_VALUES)
        elif op == "add" and isinstance(parent, list):
            parent.insert(key, draw(NASTY_VALUES))
        elif op == "nest":
            parent[key] = nested(draw(st.integers(1, 200)), parent[key], draw(st.booleans()))
        elif op == "duplicate" and isinstance(parent, list):
            parent.extend([copy.deepcopy(parent[key])] * draw(st.integers(1, 50)))
    return data


@st.composite
def mutated_bytes(draw: st.DrawFn, original: bytes, max_mutations: int = 4) -> bytes:
    """``original`` with byte-level damage: flips, truncation, insertions, duplicated or deleted spans."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, max_mutations))):
        size = len(data)
        at = draw(st.integers(0, max(size - 1, 0)))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "insert_text", "dup_span", "del_span", "dup_line"]))
        if op == "flip" and size:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "insert_text":
            data[at:at] = draw(st.one_of(ODD_TEXT, st.text(max_size=10))).encode("utf-8", "surrogatepass")
        elif op == "dup_span":
            length = draw(st.integers(1, 200))
            data[at:at] = data[at:at + length]
        elif op == "del_span":
            del data[at:at + draw(st.integers(1, 200))]
        elif op == "dup_line":
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            data = bytearray(b"\n".join(lines))
    return bytes(data)


DATE_LIKE = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T.*)?)?)?$")
OFFSETS = st.builds(lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)), st.integers(-14 * 60, 14 * 60))
ANY_DATE_TEXT: st.SearchStrategy[str] = st.one_of(
    st.dates().map(dt.date.isoformat),
    st.datetimes(timezones=OFFSETS).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.integers(0, 9999).map(lambda y: f"{y:04d}"),
    st.tuples(st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99)).map(lambda t: f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}"),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2025-06-02T24:00:00Z"]),
)


@st.composite
def redated(draw: st.DrawFn, original: Any, max_changes: int = 4) -> Any:
    """``original`` with some of its date-like strings replaced by dates anywhere in years 1–9999, any offset."""
    data = copy.deepcopy(original)
    paths = [p for p in paths_of(data) if p and isinstance(get_at(data, p), str) and DATE_LIKE.match(get_at(data, p))]
    if not paths:
        return data
    for _ in range(draw(st.integers(1, max_changes))):
        path = paths[draw(st.integers(0, len(paths) - 1))]
        get_at(data, path[:-1])[path[-1]] = draw(ANY_DATE_TEXT)
    return data


# --- patients ---------------------------------------------------------------------------------------------------------
PATIENT_TEXT = PATIENT_FILE.read_bytes()
PATIENT_DATA = load_text(PATIENT_TEXT, file=str(PATIENT_FILE)).data


@pytest.fixture(scope="module")
def rulebase() -> Any:
    from radiopal.api import default_rulebase

    return default_rulebase()


def evaluate_everything(rulebase: Any, data: Any, source: Any = None) -> None:
    """parse → evaluate → contract output and JSON; a parse error is fine, a crash is not."""
    document = accept(lambda: parse_patient(data, source=source))
    if document is None:
        return
    result = accept(lambda: rulebase.evaluate(document))
    if result is None:
        return
    out = result.to_dict()
    assert len(out["decisions"]) == len(rulebase.catalogue.therapy_ids)
    json.dumps(out, allow_nan=False)


def read_and_evaluate(rulebase: Any, text: bytes | str, *, as_json: bool = False) -> None:
    """The text through the patient reader (YAML, or JSON), then :func:`evaluate_everything` on what it reads."""
    file = "fuzz.json" if as_json else "fuzz.yaml"
    located = accept(lambda: load_text(text, file=file, kind="patient document", as_json=as_json))
    if located is not None:
        evaluate_everything(rulebase, located.data, located.source)


@fuzz_settings(0.8)
@given(raw=mutated_bytes(PATIENT_TEXT))
def test_patient_text_fuzz(rulebase: Any, raw: bytes) -> None:
    read_and_evaluate(rulebase, raw)


@fuzz_settings(0.6)
@given(raw=mutated_bytes(json.dumps(PATIENT_DATA, indent=1).encode()))
def test_patient_json_text_fuzz(rulebase: Any, raw: bytes) -> None:
    read_and_evaluate(rulebase, raw, as_json=True)


@fuzz_settings(1.5)
@given(data=mutated_tree(PATIENT_DATA))
def test_patient_structure_fuzz(rulebase: Any, data: Any) -> None:
    evaluate_everything(rulebase, data)
    # The same tree through the text readers: YAML (as a user would write it) and JSON (as an EHR would send it).
    try:
        yaml_text = yaml.safe_dump(data, allow_unicode=True)
    except (yaml.YAMLError, RecursionError):
        yaml_text = None
    if yaml_text is not None:
        read_and_evaluate(rulebase, yaml_text)
    try:
        json_text = json.dumps(data)
    except (ValueError, RecursionError):
        return
    read_and_evaluate(rulebase, json_text, as_json=True)


@fuzz_settings(0.6)
@given(data=redated(PATIENT_DATA))
def test_patient_dates_fuzz(rulebase: Any, data: Any) -> None:
    evaluate_everything(rulebase, data)


@fuzz_settings(0.4)
@given(depth=st.integers(1, 5000), as_list=st.booleans(), flow=st.booleans())
def test_patient_deep_nesting(rulebase: Any, depth: int, as_list: bool, flow: bool) -> None:
    if flow:
        text = ("[" * depth + "1" + "]" * depth) if as_list else ("{a: " * depth + "1" + "}" * depth)
    else:
        text = "".join(("  " * i) + ("- " if as_list else "a:") + "\n" for i in range(min(depth, 400))) + "x"
    data = {**PATIENT_DATA, "context": nested(depth, 1, as_list)}
    accept(lambda: load_text(text, file="deep.yaml"))
    accept(lambda: load_text(text.replace("{a: ", '{"a": '), file="deep.json", as_json=True))
    evaluate_everything(rulebase, data)


# --- rule files -------------------------------------------------------------------------------------------------------
def _rule_text(name: str) -> bytes:
    return (REPO / "rules" / name).read_bytes()


RULE_TEXTS = {name: _rule_text(name) for name in RULE_FILES}
RULE_DATA = {name: yaml.safe_load(text) for name, text in RULE_TEXTS.items()}


def load_compile_evaluate(folder: Path, patient: dict[str, Any]) -> None:
    from radiopal.api import RuleBase
    from radiopal.rulebase.load import load_rules

    loaded = accept(lambda: load_rules(folder))
    if loaded is None:
        return
    rulebase = accept(lambda: RuleBase(loaded))
    if rulebase is not None:
        result = accept(lambda: rulebase.evaluate(patient))
        if result is not None:
            json.dumps(result.to_dict(), allow_nan=False)


@pytest.fixture(scope="module")
def base_patient() -> dict[str, Any]:
    return copy.deepcopy(PATIENT_DATA)


@fuzz_settings(0.6)
@given(name=st.sampled_from(RULE_FILES), data=st.data())
def test_rule_file_text_fuzz(tmp_path_factory: pytest.TempPathFactory, base_patient: dict[str, Any], name: str,
                             data: st.DataObject) -> None:
    folder = tmp_path_factory.mktemp("rules")
    (folder / name).write_bytes(data.draw(mutated_bytes(RULE_TEXTS[name])))
    load_compile_evaluate(folder, base_patient)
    shutil.rmtree(folder)


@fuzz_settings(0.8)
@given(name=st.sampled_from(RULE_FILES), data=st.data())
def test_rule_file_structure_fuzz(tmp_path_factory: pytest.TempPathFactory, base_patient: dict[str, Any], name: str,
                                  data: st.DataObject) -> None:
    tree = data.draw(mutated_tree(RULE_DATA[name]))
    folder = tmp_path_factory.mktemp("rules")
    try:
        text = yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, RecursionError):
        return
    (folder / name).write_text(text, encoding="utf-8")
    load_compile_evaluate(folder, base_patient)
    shutil.rmtree(folder)


# --- FHIR Bundles -----------------------------------------------------------------------------------------------------
BUNDLE_FILES = sorted(FHIR_DIR.glob("*.bundle.json"))
BUNDLES = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in BUNDLE_FILES}
SMALL_BUNDLES = sorted(BUNDLES, key=lambda n: len(json.dumps(BUNDLES[n])))[:3]


def map_and_evaluate(rulebase: Any, bundle: Any) -> None:
    from radiopal.fhir import bundle_to_document

    mapped = accept(lambda: bundle_to_document(bundle))
    if mapped is not None:
        json.dumps(mapped.document)
        evaluate_everything(rulebase, mapped.document)


@fuzz_settings(1.2)
@given(name=st.sampled_from(SMALL_BUNDLES), data=st.data())
def test_fhir_structure_fuzz(rulebase: Any, name: str, data: st.DataObject) -> None:
    map_and_evaluate(rulebase, data.draw(mutated_tree(BUNDLES[name], max_mutations=6)))


@fuzz_settings(0.6)
@given(name=st.sampled_from(SMALL_BUNDLES), data=st.data())
def test_fhir_text_fuzz(rulebase: Any, name: str, data: st.DataObject) -> None:
    raw = data.draw(mutated_bytes(json.dumps(BUNDLES[name], indent=1).encode()))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        located = accept(lambda: load_text(raw, file="fuzz.bundle.json", kind="FHIR Bundle", as_json=True))
        assert located is None or isinstance(located.data, (dict, list, str, int, float, bool, type(None)))
        return
    if text.lstrip().startswith("{"):
        map_and_evaluate(rulebase, text)


@fuzz_settings(0.8)
@given(name=st.sampled_from(SMALL_BUNDLES), data=st.data())
def test_fhir_dates_fuzz(rulebase: Any, name: str, data: st.DataObject) -> None:
    map_and_evaluate(rulebase, data.draw(redated(BUNDLES[name])))


def test_a_path_with_a_nul_byte_is_an_input_error(tmp_path: Path) -> None:
    from radiopal.errors import InputError
    from radiopal.patient import load_patient

    with pytest.raises(InputError, match="not a usable file name"):
        load_patient(str(tmp_path / "a\x00b.yaml"))


def test_a_bundle_path_with_a_nul_byte_is_an_input_error(tmp_path: Path) -> None:
    """Found by test_fhir_structure_fuzz (a string root is taken as a path): ValueError (fixed in fhir/parse.py)."""
    from radiopal.errors import InputError
    from radiopal.fhir import bundle_to_document

    with pytest.raises(InputError, match="not a usable file name"):
        bundle_to_document(str(tmp_path / "a\x00b.json"))


def test_a_deeply_nested_patient_given_as_data_is_an_input_error(rulebase: Any) -> None:
    """Found by test_patient_deep_nesting: a dict 2,865 levels deep crashed the schema check (RecursionError)."""
    from radiopal.errors import InputError

    with pytest.raises(InputError) as caught:
        parse_patient({**PATIENT_DATA, "context": nested(5000, 1, as_list=True)})
    assert "nesting is too deep (limit 64)" in caught.value.lines()[0]


def test_a_deeply_nested_bundle_given_as_data_is_an_input_error() -> None:
    """Found with the service: 200 nested extensions made pydantic raise RecursionError (fixed in fhir/parse.py)."""
    from radiopal.errors import InputError
    from radiopal.fhir import bundle_to_document

    bundle = copy.deepcopy(BUNDLES[SMALL_BUNDLES[0]])
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "v"}
    for _ in range(200):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["extension"] = [extension]
    with pytest.raises(InputError):
        bundle_to_document(bundle)
