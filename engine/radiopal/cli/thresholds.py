"""``radiopal thresholds [RULES_DIR]``: every named clinical number of a rule base, with the rules that use it.

For a guideline author about to change one number: its value, unit, verification tag and sources, the relations
lint will hold it to, and every rule (file:line) whose meaning changes with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "thresholds", help="list the named thresholds of a rule base and the rules that use each",
        description="List every named threshold (thresholds.yaml beside the rule files): value, unit, verification "
                    "tag, sources, the declared relations it takes part in, and the rules (file:line) that use it. "
                    "Exit status 0, or 2 when the rule base cannot be loaded.")
    parser.add_argument("rules_dir", nargs="?", metavar="RULES_DIR", help="rule-base folder (default: shipped)")
    parser.add_argument("--name", metavar="NAME", action="append",
                        help="only this threshold (repeatable); an unknown name is an error")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; the exit status is described in its help."""
    from ..errors import Problem, RulebaseError
    from ..resources import rules_dir
    from ..rulebase.load import load_rules
    from ..suggest import hint_for

    folder = args.rules_dir or str(rules_dir())
    loaded = load_rules(folder)
    table = loaded.thresholds
    names = list(table.thresholds)
    for name in args.name or ():
        if name not in table.thresholds:
            raise RulebaseError(f"{folder}: no threshold {name!r}",
                                [Problem(f"no threshold {name!r}", file=table.file or folder,
                                         hint=hint_for(name, names))])
    if args.name:
        names = [n for n in names if n in args.name]
    listing = thresholds_listing(loaded, names)
    if args.format == "json":
        sys.stdout.write(json.dumps(listing, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(_text(listing))
    return 0


def thresholds_listing(loaded: Any, names: list[str]) -> dict[str, Any]:
    """The listing as data: each threshold with its relations and the rules that use it."""
    from ..lint.findings import display_path
    from ..rulebase.thresholds import usage

    table = loaded.thresholds
    used = usage(loaded.rules)
    items = []
    for name in names:
        threshold = table.thresholds[name]
        entry = threshold.to_dict()
        entry["file"] = display_path(threshold.file)
        entry["citation"] = threshold.citation
        entry["relations"] = [{"id": r.id, "order": list(r.order), "strict": r.strict}
                              for r in table.relations if name in r.order]
        entry["rules"] = [{"rule": r.key, "file": display_path(r.file), "line": r.line, "title": r.title}
                          for r in used.get(name, [])]
        items.append(entry)
    return {"rules": display_path(loaded.folder), "file": display_path(table.file) if table.file else None,
            "version": table.version, "thresholds": items,
            "relations": [{"id": r.id, "order": list(r.order), "strict": r.strict, "note": r.note, "line": r.line,
                           **({"tiles": {"therapy": r.tiles[0], "fact": r.tiles[1]}} if r.tiles else {})}
                          for r in table.relations]}


def _text(listing: dict[str, Any]) -> str:
    if listing["file"] is None:
        return f"{listing['rules']}: no thresholds file (thresholds.yaml); every number is written in the rules\n"
    lines = [f"{listing['file']} (version {listing['version']}): {len(listing['thresholds'])} thresholds"]
    for t in listing["thresholds"]:
        value = t["value"] if not float(t["value"]).is_integer() else int(t["value"])
        unit = "" if t["unit"] == "1" else f" {t['unit']}"
        lines.append("")
        lines.append(f"{t['name']} = {value}{unit}   {t['citation']}   {t['file']}:{t['line']}")
        if t["unverified"]:
            lines.append(f"    [U] {t['unverified']}")
        for r in t["relations"]:
            sign = " < " if r["strict"] else " <= "
            lines.append(f"    relation {r['id']}: {sign.join(r['order'])}")
        rules = t["rules"]
        lines.append(f"    used by {len(rules)} rule{'s' if len(rules) != 1 else ''}"
                     + (":" if rules else " (lint: unused-threshold)"))
        for r in rules:
            lines.append(f"      {r['rule']:<28} {r['file']}:{r['line']}  {r['title']}")
    return "\n".join(lines) + "\n"
