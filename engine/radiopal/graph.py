"""The reasoning graph: input values → facts → rule firings (with citations) → decisions, as plain data first.

Nodes have stable ids (``input:labs.platelets``, ``fact:plt_current``, ``rule:ELIG-GEN-10@sr89``,
``decision:sr89``, ``advisory:ADV-FLARE``); edges are ``derived-from`` (input → fact), ``used-by`` (fact → rule),
``derives`` (rule → fact), ``concluded`` (rule → decision), ``overridden`` (rule → decision, a weaker status that
lost) and ``emits`` (rule → advisory). DOT is derived from the data; SVG needs Graphviz's ``dot``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, Problem

STATUS_COLOURS = {
    "recommended": "#1b7837",
    "eligible": "#5aae61",
    "deferred": "#e08214",
    "insufficient_data": "#8073ac",
    "not_indicated": "#878787",
    "contraindicated": "#b2182b",
}


@dataclass
class ReasoningGraph:
    """Nodes and edges as plain dicts, sorted, so the same input gives the same bytes."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[dict[str, str]] = field(default_factory=list)
    _edge_keys: set[tuple[str, ...]] = field(default_factory=set, repr=False, compare=False)

    def add_node(self, node_id: str, kind: str, label: str, **attrs: Any) -> None:
        node = self.nodes.setdefault(node_id, {"id": node_id, "kind": kind, "label": label})
        node.update({k: v for k, v in attrs.items() if v is not None})

    def add_edge(self, source: str, target: str, kind: str, label: str = "") -> None:
        key = (source, target, kind, label)
        if key in self._edge_keys:
            return
        self._edge_keys.add(key)
        edge = {"source": source, "target": target, "kind": kind}
        if label:
            edge["label"] = label
        self.edges.append(edge)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``{"nodes": [...], "edges": [...]}``, sorted by id."""
        return {
            "nodes": [self.nodes[k] for k in sorted(self.nodes)],
            "edges": sorted(self.edges, key=lambda e: (e["source"], e["target"], e["kind"], e.get("label", ""))),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"

    def subgraph(self, therapy: str) -> ReasoningGraph:
        """The part of the graph that leads to one therapy's decision."""
        target = f"decision:{therapy}"
        keep = {target}
        frontier = [target]
        incoming: dict[str, list[dict[str, str]]] = {}
        for e in self.edges:
            incoming.setdefault(e["target"], []).append(e)
        while frontier:
            node = frontier.pop()
            for e in incoming.get(node, []):
                if e["source"] not in keep:
                    keep.add(e["source"])
                    frontier.append(e["source"])
        for e in self.edges:  # advisories emitted by the kept rules
            if e["kind"] == "emits" and e["source"] in keep:
                keep.add(e["target"])
        sub = ReasoningGraph({k: v for k, v in self.nodes.items() if k in keep})
        for e in self.edges:
            if e["source"] in keep and e["target"] in keep:
                sub.add_edge(e["source"], e["target"], e["kind"], e.get("label", ""))
        return sub

    def to_dot(self, title: str = "radiopal reasoning graph") -> str:
        """Graphviz DOT source a person can read: each fact drawn once with the record fields it came from folded into
        it (no separate input nodes), each rule with the outcome of its comparisons on the node (no ``== True: met``
        edge labels), labels bounded, decisions coloured by status, overridden conclusions dashed."""
        import graphviz

        dot = graphviz.Digraph("radiopal", comment=title)
        dot.attr(rankdir="LR", fontname="Helvetica", fontsize="10", label=title, labelloc="t", nodesep="0.15",
                 ranksep="0.6", concentrate="true")
        dot.attr("node", fontname="Helvetica", fontsize="9", shape="box", style="rounded,filled", fillcolor="#ffffff")
        dot.attr("edge", fontname="Helvetica", fontsize="8", arrowsize="0.6", color="#666666")
        data = self.to_dict()
        inputs: dict[str, list[str]] = {}
        deciding = set()  # rules that conclude a status or derive a fact: the ones that decide something
        for edge in data["edges"]:
            if edge["kind"] == "derived-from":
                inputs.setdefault(edge["target"], []).append(edge["source"].removeprefix("input:"))
            elif edge["kind"] in ("concluded", "overridden", "derives"):
                deciding.add(edge["source"])
        # Inputs are folded into their facts; advisory-only rules and advisories are left to the report and the JSON
        # graph (they decide nothing, and drawing them is most of the hairball).
        drawn = {n["id"] for n in data["nodes"] if n["kind"] not in ("input", "advisory")
                 and (n["kind"] != "rule" or n["id"] in deciding)}
        if len(drawn) < len(data["nodes"]):
            dot.attr(label=f"{title}\\n(advisories and advisory-only rules: see the report)")
        groups: dict[str, list[dict[str, Any]]] = {}
        for node in data["nodes"]:
            if node["id"] not in drawn:
                continue
            groups.setdefault(str(node.get("group", "")), []).append(node)
        for group, nodes in sorted(groups.items()):
            target = dot
            sub = None
            if group:
                sub = graphviz.Digraph(name=f"cluster_{_dot_id(group)}")
                sub.attr(label=group, style="rounded", color="#bbbbbb")
                target = sub
            for node in nodes:
                target.node(_dot_id(node["id"]), _dot_label(node, inputs.get(node["id"], [])), **_dot_style(node))
            if sub is not None:
                dot.subgraph(sub)
        for edge in data["edges"]:
            if edge["source"] not in drawn or edge["target"] not in drawn:
                continue
            style = {"overridden": {"style": "dashed", "color": "#999999"},
                     "concluded": {"penwidth": "1.6", "color": "#333333"}}.get(edge["kind"], {})
            label = edge.get("label", "") if edge["kind"] == "used-by" and edge["source"].startswith("decision:") else ""
            dot.edge(_dot_id(edge["source"]), _dot_id(edge["target"]), label=_clip(label, 24), **style)
        return dot.source

    def write(self, path: str | Path, title: str = "radiopal reasoning graph") -> list[Path]:
        """Write the graph by suffix (.json, .dot, .svg). SVG also writes the .dot and .json beside it.

        Returns the files written. Without Graphviz's ``dot`` an .svg request writes DOT and JSON and raises
        :class:`InputError` saying how to install it.
        """
        from .fileio import write_atomic

        target = Path(path)
        suffix = target.suffix.lower()
        if suffix == ".json":
            write_atomic(target, self.to_json())
            return [target]
        if suffix == ".dot":
            write_atomic(target, self.to_dot(title))
            return [target]
        if suffix != ".svg":
            raise InputError(f"{path}: unknown graph format {suffix or '(none)'}",
                             [Problem("unknown graph format; expected .json, .dot or .svg", file=str(path))])
        dot_path, json_path = target.with_suffix(".dot"), target.with_suffix(".json")
        source = self.to_dot(title)
        write_atomic(dot_path, source)
        write_atomic(json_path, self.to_json())
        svg = render_svg(source)
        if svg is None:
            raise InputError(
                f"{path}: Graphviz 'dot' is not installed; wrote {dot_path} and {json_path} instead",
                [Problem("Graphviz 'dot' is not installed, so no SVG was rendered",
                         file=str(path), hint=f"install it with `apt-get install graphviz`; DOT and JSON were "
                                              f"written to {dot_path} and {json_path}")],
            )
        write_atomic(target, svg)
        return [target, dot_path, json_path]


def render_svg(dot_source: str, timeout: float = 60.0) -> str | None:
    """Render DOT to SVG with Graphviz's ``dot``; None when ``dot`` is not installed."""
    exe = shutil.which("dot")
    if exe is None:
        return None
    proc = subprocess.run([exe, "-Tsvg"], input=dot_source.encode("utf-8"), capture_output=True, timeout=timeout,
                          check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8")


def _dot_id(node_id: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in node_id) + f"_{abs(hash_stable(node_id)) % 100000}"


def hash_stable(text: str) -> int:
    """A hash that does not change between runs (Python's hash() is salted)."""
    value = 0
    for ch in text.encode("utf-8"):
        value = (value * 131 + ch) % 2_147_483_647
    return value


LABEL_WIDTH = 38  # characters per line of a node label
LABEL_LINES = 6  # lines per node label; the JSON graph and the report keep everything


def _clip(text: str, width: int = LABEL_WIDTH) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _dot_label(node: dict[str, Any], inputs: list[str] | None = None) -> str:
    kind = node["kind"]
    lines: list[str]
    if kind == "rule":
        lines = [f"{node.get('rule_id', '')} [{node.get('verification', '')}] {node.get('strength', '')}",
                 str(node["label"])]
        marks = {"met": "✓", "not_met": "✗", "unknown": "?"}
        for condition in node.get("conditions") or []:
            observed = condition.get("observed")
            lines.append(f"{marks.get(condition.get('result'), '·')} {condition.get('test', '')}"
                         + (f" ({observed})" if observed not in (None, "") else ""))
        if node.get("overridden"):
            lines.append("(overridden)")
    elif kind == "decision":
        lines = [f"{node.get('therapy')}: {str(node.get('status', '')).replace('_', ' ')}"]
        if node.get("earliest_date"):
            lines.append(f"from {node['earliest_date']}")
        if node.get("dose_mg") is not None:
            lines.append(f"{node['dose_mg']:g} mg")
    elif kind == "fact":
        lines = [f"{node['label']} = {node.get('display', '')}"]
        lines += [f"← {path}" for path in (inputs or [])[:2]]
        if len(inputs or []) > 2:
            lines.append(f"← … {len(inputs or []) - 2} more")
    else:
        lines = [str(node["label"])]
    if node.get("unverified"):
        lines.append("[U] unverified")
    if len(lines) > LABEL_LINES:
        lines = [*lines[: LABEL_LINES - 1], f"… {len(lines) - LABEL_LINES + 1} more"]
    return "\\n".join(_clip(line).replace("\\", "\\\\").replace('"', "'") for line in lines)


def _dot_style(node: dict[str, Any]) -> dict[str, str]:
    kind = node["kind"]
    if kind == "decision":
        return {"fillcolor": STATUS_COLOURS.get(str(node.get("status")), "#ffffff"), "fontcolor": "#ffffff",
                "shape": "box", "style": "filled,bold"}
    if kind == "rule":
        colour = STATUS_COLOURS.get(str(node.get("status", "")), "#f7f7f7")
        style = "rounded,filled,dashed" if node.get("overridden") else "rounded,filled"
        return {"fillcolor": "#ffffff", "color": colour, "style": style, "penwidth": "1.5"}
    if kind == "advisory":
        return {"shape": "note", "fillcolor": "#fff7bc"}
    if kind == "input":
        return {"shape": "box", "fillcolor": "#deebf7"}
    return {"shape": "ellipse", "fillcolor": "#f0f0f0"}
