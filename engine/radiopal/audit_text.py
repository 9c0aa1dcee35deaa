"""An audit record as terminal text, for `radiopal audit show` and the service's page for an evicted evaluation."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["render_record"]


def render_record(record: Any) -> str:
    """A stored record as terminal text: who, when, which rule base, each decision with the rules behind it."""
    lines = [
        f"audit record {record.seq} ({record.record_id}) — {record.kind}",
        f"recorded  {record.recorded_at}",
        f"caller    {record.caller}",
    ]
    if record.kind != "evaluation":
        lines += ["", json.dumps(record.context, indent=2, ensure_ascii=False), ""]
        return "\n".join(lines)
    decisions = record.decisions or {}
    lines += [
        f"patient   {record.patient_id}  (evaluated {decisions.get('evaluation_date', '?')})",
        f"input     {record.input_hash}",
        f"rule base {record.rulebase_version}  {record.rulebase_hash}",
        f"chain     prev {record.prev_hash[:16]}…  row {record.row_hash[:16]}…",
        "",
        f"{'therapy':<25} {'status':<18} {'when / dose':<16} reasons",
        "-" * 100,
    ]
    for d in decisions.get("decisions", []):
        extra = f"from {d['earliest_date']}" if d.get("earliest_date") else (
            f"{d['dose_mg']:g} mg" if d.get("dose_mg") is not None else "")
        mark = " [U]" if d.get("unverified") else ""
        lines.append(f"{d['therapy']:<25} {d['status'] + mark:<18} {extra:<16} {', '.join(d.get('reasons', []))}")
    rules = [n for n in (record.graph or {}).get("nodes", []) if n.get("kind") == "rule"]
    if rules:
        lines += ["", "Rules that fired:"]
        for n in rules:
            target = f" → {n['therapy']}: {n.get('conclusion', '')}" if n.get("therapy") else f" → {n.get('conclusion', '')}"
            lost = " (overridden)" if n.get("overridden") else ""
            lines.append(f"  {n.get('rule_id', '')} [{n.get('verification', '')}] {n.get('label', '')}{target}{lost}")
            for c in n.get("conditions") or []:
                lines.append(f"      {c['test']}: {c['result']} (observed {c['observed']})")
    if decisions.get("advisories"):
        lines += ["", "Advisories:"]
        lines += [f"  {a['id']} ({a['rule']}): {a['text']}" for a in decisions["advisories"]]
    if decisions.get("missing_data"):
        lines += ["", "Missing data: " + ", ".join(decisions["missing_data"])]
    if record.context:
        lines += ["", "Context: " + json.dumps(record.context, ensure_ascii=False, sort_keys=True)[:2000]]
    return "\n".join(lines) + "\n"
