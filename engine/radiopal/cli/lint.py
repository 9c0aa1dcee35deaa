"""``radiopal lint [RULES_DIR]``: static analysis of a rule base (errors, gaps, conflicts) for guideline authors."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "lint", help="check a rule base: errors, unreachable rules, threshold gaps and conflicts",
        description="Check a rule-base folder (default: the shipped rules): YAML and schema errors, unknown facts, "
                    "therapies, advisories and sources (with did-you-mean), wrong units, duplicate ids, missing "
                    "provenance, unsatisfiable conditions, shadowed / duplicate / subsumed rules, dose and status "
                    "gaps, conflicting dose overlaps, near-miss thresholds and derived-fact cycles. "
                    "Exit status: 0 when there is no error (warnings and information allowed), 1 when there is any "
                    "error, 2 when the folder does not exist.",
        epilog="Findings are `file:line:column: severity [code] RULE: message`; docs/lint.md explains every code.")
    parser.add_argument("rules_dir", nargs="?", metavar="RULES_DIR", help="rule-base folder or file (default: shipped)")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text for people (default), json for editors and CI")
    parser.add_argument("--severity", choices=("error", "warning", "info"), default="info",
                        help="text output: show findings of this severity and worse (default info: all)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; the exit status is described in its help."""
    from ..lint import lint_rules

    report = lint_rules(args.rules_dir)
    if args.format == "json":
        sys.stdout.write(report.to_json())
    else:
        sys.stdout.write(report.to_text(min_severity=args.severity))
    return report.exit_code
