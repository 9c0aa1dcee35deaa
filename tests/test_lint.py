"""radiopal lint: one injected fault of each kind in a copy of the shipped rules is caught with its rule and line;
the shipped rules lint clean of errors; no file — binary, empty, huge, deeply nested, an alias bomb — crashes lint."""

from __future__ import annotations

import json
import resource
import shutil
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO
from radiopal.cli import main
from radiopal.lint import CODES, lint_rules
from radiopal.lint.domains import IntervalSet
from radiopal.rulebase.load import collect_rules

FAULT_FILE = "zz-lint-fault.yaml"
MARK = "#<-"  # marks the line a finding must point at

HEAD = """\
# yaml-language-server: $schema=../kb/schemas/rulefile.schema.json
area: lint-fixture
version: "1"
"""


def rule(rule_id: str, when: str, then: str, *, variant: str = "", therapies: str = "[sn117m]",
         extra: str = "", verification: str = "V") -> str:
    """One rule as YAML text (indented for the `rules:` list); `when`/`then` may carry the MARK."""
    lines = [f"  - id: {rule_id}"]
    if variant:
        lines.append(f"    variant: {variant}")
    lines += ["    title: Lint fixture rule", "    version: 1", "    strength: weak"]
    if verification:
        lines.append(f"    verification: {verification}")
    lines.append("    sources: [contract]")
    if therapies:
        lines.append(f"    therapies: {therapies}")
    lines.append(textwrap.indent(when.strip("\n"), "    "))
    lines.append(textwrap.indent(then.strip("\n"), "    "))
    if extra:
        lines.append(textwrap.indent(extra.strip("\n"), "    "))
    return "\n".join(lines) + "\n"


def rules_file(*rules: str, derived: str = "") -> str:
    return HEAD + (derived if derived else "") + "rules:\n" + "".join(rules)


PLT = 'when: {fact: plt_current, op: "<", value: 5, unit: "10^9/L"}'
ADVISE = "then: {advisories: [ADV-HEME-CAUTION]}"

FAULTS = {
    "typo in a fact name": (
        rules_file(rule("MON-LINT-01", 'when: {fact: plt_curent, op: "<", value: 5}  ' + MARK, ADVISE)),
        "unknown-fact", "MON-LINT-01", "did you mean 'plt_current'?"),
    "unknown advisory": (
        rules_file(rule("MON-LINT-01", PLT, "then: {advisories: [ADV-HEME-CAUTIOUS]}  " + MARK)),
        "unknown-advisory", "MON-LINT-01", "ADV-HEME-CAUTION"),
    "unknown source": (
        rules_file(rule("MON-LINT-01", PLT, ADVISE).replace("sources: [contract]", f"sources: [metastron_uspy]  {MARK}")),
        "unknown-source", "MON-LINT-01", "metastron_uspi"),
    "unknown therapy": (
        rules_file(rule("MON-LINT-01", PLT, ADVISE, therapies=f"[sn117]  {MARK}")),
        "unknown-therapy", "MON-LINT-01", "sn117m"),
    "wrong unit": (
        rules_file(rule("MON-LINT-01", f'when: {{fact: plt_current, op: "<", value: 5, unit: "g/dL"}}  {MARK}', ADVISE)),
        "wrong-unit", "MON-LINT-01", "10^9/L"),
    "missing verification": (
        rules_file(rule("MON-LINT-01", PLT, ADVISE, verification="").replace("  - id: MON-LINT-01",
                                                                             f"  - id: MON-LINT-01  {MARK}")),
        "missing-provenance", "MON-LINT-01", ""),
    "unverified without explanation": (
        rules_file(rule("MON-LINT-01", PLT, ADVISE, verification=f"U  {MARK}")),
        "unverified-unexplained", "MON-LINT-01", "unverified:"),
    "unsatisfiable condition": (
        rules_file(rule("MON-LINT-01", f"""
when:
  all:  {MARK}
    - {{fact: crcl, op: "<", value: 30}}
    - {{fact: crcl, op: ">=", value: 40}}
""", "then: {status: deferred}")),
        "unsatisfiable", "MON-LINT-01", ""),
    "shadowed rule": (
        rules_file(
            rule("MON-LINT-01", "when: {all: [{fact: age_years, op: '>', value: 100}, {fact: pain_nrs, op: '>=', value: 3}]}",
                 f"then: {{status: eligible}}  {MARK}"),
            rule("MON-LINT-02", "when: {fact: age_years, op: '>', value: 90}", "then: {status: contraindicated}")),
        "shadowed", "MON-LINT-01", ""),
    "duplicate rule": (
        rules_file(
            rule("MON-LINT-01", "when: {fact: wbc_current, op: '<', value: 3}", ADVISE, variant="a"),
            rule("MON-LINT-01", f"when: {{not: {{fact: wbc_current, op: '>=', value: 3}}}}  {MARK}", ADVISE, variant="b")),
        "duplicate-rule", "MON-LINT-01/b", ""),
    "dose-band gap": (
        rules_file(
            rule("MON-LINT-01", "when: {fact: crcl, op: '>=', value: 40}", "then: {dose_mg: 10}", variant="a"),
            rule("MON-LINT-01", f"""
when:
  all:
    - {{fact: crcl, op: '>=', value: 30}}
    - {{fact: crcl, op: '<=', value: 39}}  {MARK}
""", "then: {dose_mg: 5}", variant="b"),
            rule("MON-LINT-01", "when: {fact: crcl, op: '<', value: 30}", "then: {status: contraindicated}", variant="c")),
        "dose-gap", "MON-LINT-01/b", ""),
    "dose-band overlap": (
        rules_file(
            rule("MON-LINT-01", "when: {fact: crcl, op: '>=', value: 40}", "then: {dose_mg: 10}", variant="a"),
            rule("MON-LINT-01", "when: {all: [{fact: crcl, op: '>=', value: 30}, {fact: crcl, op: '<=', value: 45}]}",
                 f"then:\n  dose_mg: 5  {MARK}", variant="b")),
        "dose-overlap", "MON-LINT-01/b", "[40, 45]"),
    "near-miss threshold": (
        rules_file(
            rule("MON-LINT-01", "when: {fact: hb_current, op: '<', value: 7.25}", ADVISE, variant="a"),
            rule("MON-LINT-01", f"when: {{fact: hb_current, op: '<=', value: 7.25}}  {MARK}",
                 "then: {advisories: [ADV-MARROW-RISK]}", variant="b")),
        "near-miss", "MON-LINT-01/b", "7.25"),
    "derived-fact cycle": (
        rules_file(
            rule("MON-LINT-01", "when: {fact: lint_b, op: '==', value: true}", f"then: {{derive: lint_a}}  {MARK}",
                 therapies=""),
            rule("MON-LINT-02", "when: {fact: lint_a, op: '==', value: true}", "then: {derive: lint_b}", therapies=""),
            rule("MON-LINT-03", "when: {fact: lint_a, op: '==', value: true}", ADVISE),
            derived="derived_facts:\n  lint_a: {description: a}\n  lint_b: {description: b}\n"),
        "derived-cycle", "MON-LINT-01", "lint_a → lint_b → lint_a"),
    "unused derived fact": (
        rules_file(
            rule("MON-LINT-01", "when: {fact: pain_nrs, op: '>', value: 3}", "then: {derive: lint_unused}", therapies=""),
            derived=f"derived_facts:\n  lint_unused: {{description: nobody reads it}}  {MARK}\n"),
        "unused-derived", "MON-LINT-01", ""),
    "NaN threshold": (
        rules_file(rule("MON-LINT-01", f'when: {{fact: plt_current, op: "<", value: .nan, unit: "10^9/L"}}  {MARK}', ADVISE)),
        "bad-value", "MON-LINT-01", "not a finite number"),
    "deferral beyond any date": (
        rules_file(rule("MON-LINT-01", "when: {days_since: last_sr89_date, op: '<', value: 90}",
                        f"then: {{status: deferred, earliest_date: {{fact: last_sr89_date, plus_days: 10000000000}}}}  {MARK}")),
        "bad-value", "MON-LINT-01", "plus_days"),
    "YAML syntax error": (
        rules_file(rule("MON-LINT-01", PLT, ADVISE)).replace("title: Lint fixture rule",
                                                             f"title: Lint: fixture rule  {MARK}"),
        "yaml-syntax", "", ""),
}


@pytest.fixture(scope="module")
def shipped_names() -> list[str]:
    return sorted(p.name for p in (REPO / "rules").glob("*.yaml"))


def shipped_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    for path in (REPO / "rules").glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    return folder


def marked_line(text: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if MARK in line)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_one_injected_fault_of_each_kind_is_caught_with_its_rule_and_line(tmp_path, fault):
    text, code, rule_key, in_text = FAULTS[fault]
    folder = shipped_copy(tmp_path)
    (folder / FAULT_FILE).write_text(text, encoding="utf-8")
    report = lint_rules(folder)
    found = [f for f in report.findings if f.code == code and f.file.endswith(FAULT_FILE)]
    assert found, report.to_text()
    line = marked_line(text)
    hit = [f for f in found if f.rule == rule_key and f.line == line]
    assert hit, f"expected {code} on {rule_key} at line {line}; got " + "; ".join(f.text() for f in found)
    assert in_text in hit[0].text()
    assert report.exit_code == (1 if hit[0].severity == "error" else 0)  # the shipped rules add no error


def test_a_duplicate_of_a_shipped_rule_id_is_caught_at_the_copy(tmp_path):
    folder = shipped_copy(tmp_path)
    loaded, _ = collect_rules(folder)
    first = loaded.rules[0]
    text = HEAD + "rules:\n" + rule(first.id, PLT, ADVISE, variant=first.variant).replace(
        f"  - id: {first.id}\n", f"  - id: {first.id}  {MARK}\n")
    (folder / FAULT_FILE).write_text(text, encoding="utf-8")
    report = lint_rules(folder)
    (dup,) = [f for f in report.by_code("duplicate-id") if f.file.endswith(FAULT_FILE)]
    assert dup.rule == first.key and dup.line == marked_line(text) and dup.severity == "error"
    assert f"first defined at {first.file}" in dup.message


def _bomb() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


BAD_FILES = {
    "binary file": (lambda p: p.write_bytes(bytes(range(256)) * 8), "not-text"),
    "empty file": (lambda p: p.write_bytes(b""), "empty-file"),
    "alias bomb": (lambda p: p.write_text(_bomb()), "too-many-values"),
    "10 MB file": (lambda p: p.write_bytes(b"area: x\nnote: '" + b"x" * (10 * 1024 * 1024) + b"'\n"), "too-large"),
    "deeply nested": (lambda p: p.write_text("area: " + "[" * 5000 + "]" * 5000 + "\n"), "too-deep"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_hostile_file_is_a_finding_in_bounded_time_and_memory(tmp_path, kind):
    write, code = BAD_FILES[kind]
    folder = shipped_copy(tmp_path)
    write(folder / FAULT_FILE)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    started = time.monotonic()
    report = lint_rules(folder)
    assert time.monotonic() - started < 30
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 300 * 1024
    (finding,) = [f for f in report.findings if f.file.endswith(FAULT_FILE)]
    assert finding.code == code and finding.severity == "error", finding.text()
    assert report.rules > 100  # the rest of the rule base is still analysed


def test_the_shipped_rules_lint_clean_of_errors():
    report = lint_rules()
    assert report.errors == [], report.to_text()
    assert all(f.code in CODES and f.file and f.line > 0 for f in report.findings), report.to_text()


def test_every_shipped_warning_is_a_kind_the_docs_explain():
    lint_doc = (REPO / "docs" / "lint.md").read_text(encoding="utf-8")
    for finding in lint_rules().findings:
        assert f"`{finding.code}`" in lint_doc


def test_a_broken_rule_does_not_hide_the_findings_on_the_others(tmp_path):
    text = rules_file(
        rule("MON-LINT-01", 'when: {fact: plt_current, op: "<<", value: 5}', ADVISE),
        rule("MON-LINT-02", "when: {all: [{fact: crcl, op: '<', value: 30}, {fact: crcl, op: '>', value: 40}]}",
             "then: {status: deferred}"))
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(text, encoding="utf-8")
    report = lint_rules(folder)
    assert [f.rule for f in report.by_code("schema")] == ["MON-LINT-01"]
    assert [f.rule for f in report.by_code("unsatisfiable")] == ["MON-LINT-02"]
    assert report.rules == 1


def test_schema_errors_of_a_file_come_most_useful_first(tmp_path):
    text = rules_file(
        rule("MON-LINT-01", 'when: {all: [{fact: plt_current, op: "=<", value: 5}]}', ADVISE),
        rule("MON-LINT-02", PLT, ADVISE).replace("    then: {advisories: [ADV-HEME-CAUTION]}\n", ""))
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(text, encoding="utf-8")
    schema = lint_rules(folder).by_code("schema")
    # the missing `then` of the second rule (a shallow error) ranks before the bad operator deep in the first
    assert [f.rule for f in schema] == ["MON-LINT-02", "MON-LINT-01"]
    assert schema[0].line > schema[1].line


def test_lint_cli_prints_json_for_editors_and_exits_1_on_an_error(tmp_path, capsys):
    folder = shipped_copy(tmp_path)
    (folder / FAULT_FILE).write_text(FAULTS["unsatisfiable condition"][0], encoding="utf-8")
    assert main(["lint", str(folder), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["error"] >= 1
    finding = next(f for f in data["findings"] if f["code"] == "unsatisfiable")
    assert {"severity", "code", "message", "rule", "file", "line", "column", "hint"} <= set(finding)


def test_lint_cli_exits_0_when_there_are_only_warnings(tmp_path, capsys):
    folder = shipped_copy(tmp_path)
    (folder / FAULT_FILE).write_text(FAULTS["dose-band gap"][0], encoding="utf-8")
    assert main(["lint", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "warning [dose-gap] MON-LINT-01/b:" in out and "hint:" in out


def test_lint_of_a_folder_that_does_not_exist_exits_2(tmp_path, capsys):
    assert main(["lint", str(tmp_path / "nope")]) == 2
    assert "no such rule file or folder" in capsys.readouterr().err


def test_a_file_without_the_editor_schema_line_gets_a_warning(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(rules_file(rule("MON-LINT-01", PLT, ADVISE)).split("\n", 1)[1], encoding="utf-8")
    (finding,) = lint_rules(folder).by_code("missing-schema-line")
    assert finding.severity == "warning" and finding.line == 1


def test_implication_respects_unknown_values(tmp_path):
    # `any: [y > 5, y <= 5]` is always true for a known y, but unknown when y is: x > 5 does not imply it.
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(rules_file(
        rule("MON-LINT-01", "when: {fact: age_years, op: '>', value: 5}", "then: {status: eligible}"),
        rule("MON-LINT-02", "when: {any: [{fact: pain_nrs, op: '>', value: 5}, {fact: pain_nrs, op: '<=', value: 5}]}",
             "then: {status: contraindicated}")), encoding="utf-8")
    assert lint_rules(folder).by_code("shadowed") == []


def test_a_condition_on_a_derived_fact_is_checked_through_its_derivation(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(rules_file(
        rule("MON-LINT-01", "when: {fact: crcl, op: '<', value: 30}", "then: {derive: lint_low}", therapies=""),
        rule("MON-LINT-02", "when: {all: [{fact: lint_low, op: '==', value: true}, {fact: crcl, op: '>', value: 60}]}",
             "then: {status: deferred}"),
        derived="derived_facts:\n  lint_low: {description: low clearance}\n"), encoding="utf-8")
    (finding,) = lint_rules(folder).by_code("unsatisfiable")
    assert finding.rule == "MON-LINT-02"


def test_integer_facts_have_no_values_between_integers():
    assert IntervalSet.of("<", 4, integral=True).intersect(IntervalSet.of(">", 3, integral=True)).is_empty()
    assert not IntervalSet.of("<", 4).intersect(IntervalSet.of(">", 3)).is_empty()
    band = IntervalSet.of("<=", 39).union(IntervalSet.of(">=", 40))
    assert band.complement().describe() == "(39, 40)"
    assert IntervalSet.of("<=", 39, True).union(IntervalSet.of(">=", 40, True)).is_full()
