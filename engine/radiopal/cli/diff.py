"""``radiopal diff OLD_RULES NEW_RULES``: version impact of a rule-base change (rules and decisions)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import add_engine_option, add_lint_option, gated_rulebase


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "diff", help="compare two rule-base versions: rule changes and the decisions they change",
        description="Compare two rule-base folders: rules added, removed and changed (changed thresholds side by "
                    "side), and — for the scenarios or patient documents given — every decision whose status, "
                    "earliest date or dose changes, with the rules responsible in each version. "
                    "Exit status: 0 whether or not anything changed (it is a report), 2 when a rule base or a "
                    "folder cannot be loaded.")
    parser.add_argument("old", metavar="OLD_RULES", help="the earlier rule-base folder")
    parser.add_argument("new", metavar="NEW_RULES", help="the later rule-base folder")
    parser.add_argument("--scenarios", nargs="+", metavar="PATH", default=[],
                        help="scenario files or folders (or plain patient documents) to re-decide with both")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    parser.add_argument("--cohort", metavar="INPUT",
                        help="also evaluate a population with both versions (any input radiopal cohort reads, on "
                             "Dask) and count whose advice changes, by therapy and status transition")
    parser.add_argument("--html", metavar="FILE", help="with --cohort: write the impact as an HTML page")
    parser.add_argument("--serial", action="store_true", help="with --cohort: evaluate in this process, without Dask")
    add_engine_option(parser)
    add_lint_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; the exit status is described in its help."""
    from ..diff import diff_rulebases

    report = diff_rulebases(gated_rulebase(args.old, args, engine=args.engine),
                            gated_rulebase(args.new, args, engine=args.engine),
                            args.scenarios)
    if not args.cohort:
        sys.stdout.write(report.to_json() if args.format == "json" else report.to_text())
        return 0
    import json

    from ..extras import require
    from ..fileio import write_atomic
    from ..impact import cohort_impact

    require("radiopal diff --cohort", "pyarrow", *(() if args.serial else ("dask", "distributed")))
    impact = cohort_impact(args.old, args.new, args.cohort, serial=args.serial)
    if args.html:
        write_atomic(args.html, impact.to_html())
    if args.format == "json":
        sys.stdout.write(json.dumps({"rules": json.loads(report.to_json()), "cohort": impact.to_dict()},
                                    indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(report.to_text() + "\n" + impact.to_text())
    return 0
