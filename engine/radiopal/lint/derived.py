"""Derived facts (``derived_facts`` + ``then: {derive: ...}``): cycles, and facts nothing reads.

A derived fact is known once the rule deriving it has fired, and that rule can only fire once every fact it reads is
declared. Derived facts that read each other (directly or through others) therefore never become known, and every
rule reading them stays unknown: an error. A derived fact that no rule reads is dead weight: a warning.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..rulebase.model import Rule
from .context import LintContext
from .findings import Finding


def graph(rules: tuple[Rule, ...]) -> tuple[dict[str, Rule], dict[str, list[str]]]:
    """(derived fact → the rule deriving it, derived fact → the derived facts its rule reads)."""
    makers = {r.then.derive: r for r in rules if r.then.derive}
    deps = {name: sorted(f for f in rule.facts() if f in makers) for name, rule in makers.items()}
    return makers, deps


def cycles(deps: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected groups of derived facts that form a cycle (Tarjan), each in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work: list[tuple[str, int]] = [(start, 0)]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, i = work[-1]
            succ = deps.get(node, [])
            if i < len(succ):
                work[-1] = (node, i + 1)
                nxt = succ[i]
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    item = stack.pop()
                    on_stack.discard(item)
                    group.append(item)
                    if item == node:
                        break
                if len(group) > 1 or node in deps.get(node, []):
                    out.append(sorted(group))

    for name in sorted(deps):
        if name not in index:
            visit(name)
    return out


def check(ctx: LintContext) -> Iterator[Finding]:
    """Cycles among derived facts (error) and derived facts no rule reads (warning)."""
    makers, deps = graph(ctx.rules)
    for group in cycles(deps):
        path = _cycle_path(group, deps)
        first = makers[group[0]]
        yield ctx.finding(
            "derived-cycle",
            f"derived facts depend on each other ({' → '.join(path)}): none of them can ever be known, and every "
            "rule reading them stays unknown", first, None, "then", "derive",
            related=tuple(ctx.related(makers[n]) for n in group[1:]),
            hint="derive one of them from patient facts only, breaking the cycle")
    read = {f for rule in ctx.rules for f in rule.facts()}
    for rule_file in ctx.loaded.files:
        for name in rule_file.derived_facts:
            if name in read or name not in makers:
                continue
            maker = makers[name]
            source = ctx.loaded.sources.get(rule_file.path)
            line, col = source.where(("derived_facts", name)) if source is not None else (0, 0)
            yield Finding("unused-derived", f"derived fact {name!r} is derived by {maker.key} but no rule reads it",
                          rule=maker.key, file=rule_file.path, line=line, column=col, path=f"derived_facts.{name}",
                          hint="use it in a condition, or remove the declaration and the deriving rule")


def _cycle_path(group: list[str], deps: dict[str, list[str]]) -> list[str]:
    """One walk around the cycle, from its first fact back to it."""
    members = set(group)
    path = [group[0]]
    seen = {group[0]}
    node = group[0]
    while True:
        nxt = next((d for d in deps.get(node, []) if d in members and (d == group[0] or d not in seen)), None)
        if nxt is None or nxt == group[0]:
            path.append(group[0])
            return path
        path.append(nxt)
        seen.add(nxt)
        node = nxt
