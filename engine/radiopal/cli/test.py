"""``radiopal test [PATHS...]``: run scenario files (contract §C) and report ``N passed, M failed``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import add_engine_option, add_rules_option, gated_rulebase


def register(sub: Any) -> None:
    parser = sub.add_parser("test", help="run scenario files against the rule base",
                            description="Run scenario files (a folder means every *.yaml in it). Prints each "
                                        "failure with expected vs actual and the deciding rules; exits 1 on failure.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or folders")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    parser.add_argument("--coverage", action="store_true",
                        help="also report rule and condition coverage (the table; --coverage-out writes the JSON)")
    parser.add_argument("--coverage-out", metavar="FILE",
                        help="write the coverage as JSON to FILE (implies --coverage); paths are never taken as a file")
    parser.add_argument("--coverage-html", metavar="FILE",
                        help="write the coverage as one HTML page to FILE (implies --coverage): each rule file's text "
                             "with the rules never fired and the condition branches never seen both ways highlighted")
    add_rules_option(parser)
    add_engine_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..scenarios import format_failure, run_scenarios

    rulebase = gated_rulebase(args.rules, args, engine=args.engine)
    outcomes = run_scenarios(args.paths, rulebase)
    passed = sum(1 for o in outcomes if o.passed)
    failed = len(outcomes) - passed
    for outcome in outcomes:
        if outcome.passed:
            if not args.quiet:
                print(f"ok   {outcome.path} ({outcome.patient_id})")
        else:
            print("\n".join(format_failure(outcome)))
    if args.coverage or args.coverage_out or args.coverage_html:
        from ..coverage import report_coverage

        data = report_coverage(rulebase, outcomes, args.coverage_out, sys.stdout)
        if args.coverage_html:
            from ..coverage_html import render_coverage_html
            from ..fileio import write_atomic

            write_atomic(args.coverage_html, render_coverage_html(data, rulebase))
            print(f"coverage page written to {args.coverage_html}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1
