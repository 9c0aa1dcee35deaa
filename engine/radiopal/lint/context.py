"""What every analysis works on: the loaded (possibly partial) rule base, its logic, and a locator for findings."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conditions import Condition
from ..rulebase.load import LoadedRules
from ..rulebase.model import Rule
from ..yamlio import dotted
from .findings import Finding, Related
from .logic import Logic

_CID_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def cid_path(cid: str) -> tuple[Any, ...]:
    """``when.all[1].not`` → ``("when", "all", 1, "not")``."""
    return tuple(int(m.group(2)) if m.group(2) is not None else m.group(1) for m in _CID_PART.finditer(cid))


@dataclass
class LintContext:
    """The rule base under analysis. Analyses read it and yield findings; it places them in the files."""

    folder: str
    files: list[Path]
    loaded: LoadedRules
    logic: Logic
    _when_nodes: dict[int, set[int]] = field(default_factory=dict, repr=False)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.loaded.rules

    def order(self, rule: Rule) -> tuple[str, int]:
        """Position of a rule in the rule base (file, line): 'later' rules are reported, earlier ones referred to."""
        return (rule.file, rule.line)

    def where(self, rule: Rule, node: Condition | None = None, *sub: Any) -> tuple[int, int, str]:
        """(line, column, YAML path) of ``rule`` — or of one of its condition nodes, or a key below it."""
        base = self.loaded.rule_paths.get(id(rule), ())
        if node is not None:
            if rule.when is not None and id(node) in self._nodes_of(rule):
                path = cid_path(node.cid)
                line, col = self.loaded.where(rule, *path)
                return line, col, dotted((*base, *path))
            return node.line or rule.line, 0, ""
        line, col = self.loaded.where(rule, *sub)
        return line, col, dotted((*base, *sub))

    def _nodes_of(self, rule: Rule) -> set[int]:
        key = id(rule)
        if key not in self._when_nodes:
            self._when_nodes[key] = {id(n) for n in rule.when.nodes()} if rule.when is not None else set()
        return self._when_nodes[key]

    def finding(self, code: str, message: str, rule: Rule, node: Condition | None = None, *sub: Any,
                hint: str = "", severity: str = "", related: tuple[Related, ...] = ()) -> Finding:
        """A finding placed at ``rule`` (or one of its nodes / keys)."""
        line, col, path = self.where(rule, node, *sub)
        return Finding(code, message, severity=severity, rule=rule.key, file=rule.file, line=line, column=col,
                       path=path, hint=hint, related=related)

    def related(self, rule: Rule, node: Condition | None = None) -> Related:
        line, _, _ = self.where(rule, node)
        return Related(rule.key, rule.file, line)

    def therapy_rules(self) -> Iterator[tuple[str, list[Rule]]]:
        """(therapy, the rules concluding on it) for every therapy some rule names, in catalogue order."""
        by: dict[str, list[Rule]] = {}
        for rule in self.rules:
            for therapy in rule.therapies:
                by.setdefault(therapy, []).append(rule)
        order = {t: i for i, t in enumerate(self.loaded.catalogue.therapy_ids)}
        for therapy in sorted(by, key=lambda t: order.get(t, len(order))):
            yield therapy, by[therapy]
