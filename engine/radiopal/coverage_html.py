"""``radiopal test --coverage-html FILE``: the coverage of a scenario suite as one self-contained page for authors.

Like coverage.py's HTML report, but for rules: a summary (rules fired, condition nodes seen both met and not met,
per rule file), the list of gaps, then each rule file's text with line numbers, where a rule no scenario fired is
shaded over its whole extent and a condition node no scenario saw both ways is marked on its line with what is
missing (``never met``, ``never not met``, ``only unknown``). No script, no external request: it opens offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from . import DISCLAIMER, __version__
from .lint.findings import display_path

__all__ = ["render_coverage_html"]


@dataclass
class _Line:
    number: int
    text: str
    rule: str = ""  # the key of the never-fired rule this line belongs to
    gaps: list[str] = field(default_factory=list)  # "when.any[1]: never met"
    anchor: str = ""


@dataclass
class _File:
    name: str
    anchor: str
    rules: int = 0
    fired: int = 0
    conditions: int = 0
    covered: int = 0
    lines: list[_Line] = field(default_factory=list)


def render_coverage_html(data: dict[str, Any], rulebase: Any) -> str:
    """The page for ``data`` (:func:`radiopal.coverage.compute_coverage`) of ``rulebase``."""
    by_key = {r["rule"]: r for r in data["rules"]}
    starts: dict[str, list[tuple[int, str]]] = {}
    for rule in rulebase.rules:
        starts.setdefault(rule.file, []).append((rule.line, rule.key))
    files: list[_File] = []
    gaps: list[dict[str, Any]] = []
    for index, (path, rule_starts) in enumerate(starts.items()):
        text = Path(path).read_text(encoding="utf-8").splitlines()
        item = _File(display_path(path), f"f{index}", lines=[_Line(n, t) for n, t in enumerate(text, start=1)])
        rule_starts.sort()
        for i, (start, key) in enumerate(rule_starts):
            entry = by_key[key]
            end = (rule_starts[i + 1][0] - 1) if i + 1 < len(rule_starts) else len(text)
            item.rules += 1
            item.fired += bool(entry["fired"])
            item.conditions += len(entry["conditions"])
            item.covered += entry["conditions_covered"]
            if not entry["fired"]:
                for line in item.lines[start - 1:_last_code_line(item.lines, start, end)]:
                    line.rule = key
                gaps.append({"rule": key, "what": "never fired", "file": item.name, "line": start,
                             "anchor": f"{item.anchor}-L{start}"})
            for node in entry["conditions"]:
                if node["covered"]:
                    continue
                sides = _sides(node)
                number = min(max(node["line"], 1), len(text))
                item.lines[number - 1].gaps.append(f"{node['id']}: {sides} ({node['test']})")
                if entry["fired"]:  # a never-fired rule is listed once, above
                    gaps.append({"rule": key, "what": f"{node['id']} {sides}", "file": item.name, "line": number,
                                 "anchor": f"{item.anchor}-L{number}"})
        for line in item.lines:
            line.anchor = f"{item.anchor}-L{line.number}"
        files.append(item)
    return _environment().get_template("coverage.html.j2").render(
        data=data, summary=data["summary"], files=files, gaps=gaps, disclaimer=DISCLAIMER, version=__version__)


def _last_code_line(lines: list[_Line], start: int, end: int) -> int:
    """The end of a rule's extent without the blank and comment lines that separate it from the next rule."""
    while end > start and (not lines[end - 1].text.strip() or lines[end - 1].text.lstrip().startswith("#")):
        end -= 1
    return end


def _sides(node: dict[str, Any]) -> str:
    if node["met"] == 0 and node["not_met"] == 0:
        return "only unknown" if node["unknown"] else "never evaluated"
    return "never met" if node["met"] == 0 else "never not met"


@cache
def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(loader=PackageLoader("radiopal", "templates"), autoescape=True, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
