"""``radiopal explain PATIENT``: why, why not and what would change each decision — as text, JSON or an HTML report."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..fileio import write_atomic
from ._common import add_engine_option, add_rules_option, gated_rulebase
from .recommend import add_fhir_options, evaluate_argument


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "explain", help="explain the decisions for one patient (why, why not, what would change it)",
        description="Explain every therapy's decision for one patient, or one therapy with --therapy: the rules that "
                    "decided it with the patient's values against their thresholds, the rules that blocked it or did "
                    "not fire, the dates and thresholds that would change it and the data to collect. Text for the "
                    "terminal, JSON (kb/schemas/explanation.schema.json) or one self-contained HTML audit report. "
                    "Decision support for clinicians, not a prescription.")
    parser.add_argument("patient", metavar="PATIENT", help="patient document (YAML or JSON)")
    parser.add_argument("--therapy", metavar="ID", help="explain only this therapy id (e.g. sm153)")
    parser.add_argument("--format", choices=("text", "json", "html"), default="text",
                        help="output format (default text)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument("--fhir", action="store_true", help="PATIENT is a FHIR R4 Bundle (JSON)")
    add_fhir_options(parser)
    add_rules_option(parser)
    add_engine_option(parser)
    parser.set_defaults(func=run)


def use_colour(stream: Any) -> bool:
    """ANSI colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def run(args: argparse.Namespace) -> int:
    import json

    from ..explain import check_therapy, explain, render_html, render_text

    rulebase = gated_rulebase(args.rules, args, engine=args.engine)
    if args.therapy is not None:
        check_therapy(rulebase.catalogue, args.therapy)  # before the patient is read: a typo fails fast
    result = evaluate_argument(rulebase, args)
    explanation = explain(result, therapy=args.therapy)
    if args.format == "json":
        text = json.dumps(explanation.to_dict(), indent=2, ensure_ascii=False) + "\n"
    elif args.format == "html":
        text = render_html(explanation, result)
    else:
        from ..explain.summary import action_summary, render_summary_text

        summary = render_summary_text(action_summary(result)) if args.therapy is None else None
        text = render_text(explanation, colour=not args.output and use_colour(sys.stdout), summary=summary)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0
