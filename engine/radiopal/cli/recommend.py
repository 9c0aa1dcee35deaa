"""``radiopal recommend PATIENT``: one decision per therapy (contract §B), as JSON or text, and the graph."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import DISCLAIMER
from ..fileio import write_atomic
from ._common import add_engine_option, add_rules_option


def register(sub: Any) -> None:
    parser = sub.add_parser("recommend", help="decide every therapy for one patient document",
                            description="Decide every therapy for one patient (contract §A YAML/JSON, or a FHIR R4 "
                                        "Bundle with --fhir). Decision support for clinicians, not a prescription.")
    parser.add_argument("patient", metavar="PATIENT", help="patient document (YAML or JSON)")
    parser.add_argument("--fhir", action="store_true", help="PATIENT is a FHIR R4 Bundle (JSON)")
    parser.add_argument("--format", choices=("json", "text"), default="json", help="output format (default json)")
    parser.add_argument("--graph", metavar="OUT", help="write the reasoning graph (.json, .dot or .svg)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the decisions to FILE instead of stdout")
    parser.add_argument("--audit-db", metavar="PATH",
                        help="also record the evaluation in this audit log (SQLite file or SQLAlchemy URL; default off)")
    add_rules_option(parser)
    add_engine_option(parser)
    parser.set_defaults(func=run)


def load_patient_argument(args: argparse.Namespace) -> Any:
    """The patient argument as a validated document (YAML/JSON, or FHIR when --fhir is given)."""
    from ..patient.load import load_patient, parse_patient

    if getattr(args, "fhir", False):
        from ..fhir import bundle_to_document

        return parse_patient(bundle_to_document(args.patient).document)
    return load_patient(args.patient)


def run(args: argparse.Namespace) -> int:
    from ..api import evaluate_fhir, load_rulebase

    rulebase = load_rulebase(args.rules, engine=args.engine)
    # With --fhir, evaluate_fhir keeps the resource id and fullUrl of every input on the graph.
    result = evaluate_fhir(args.patient, rulebase) if args.fhir else rulebase.evaluate(load_patient_argument(args))
    if args.audit_db:
        from ..audit import AuditLog

        entry = AuditLog(args.audit_db).record(result, caller="cli")
        print(f"radiopal: recorded as {entry.record_id} (record {entry.seq}) in {args.audit_db}", file=sys.stderr)
    text = result.to_json() if args.format == "json" else render_text(result)
    if args.graph:
        title = f"radiopal — patient {result.patient.patient_id}, {result.patient.evaluation_date.isoformat()}"
        result.graph.write(args.graph, title=title)
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def render_text(result: Any) -> str:
    """A compact terminal table: therapy, status, date or dose, and the rules behind it."""
    lines = [
        f"radiopal — patient {result.patient.patient_id}, evaluated {result.patient.evaluation_date.isoformat()}",
        f"rule base {result.rulebase.version}",
        "",
        f"{'therapy':<25} {'status':<18} {'when / dose':<14} reasons",
        "-" * 100,
    ]
    for d in result.decisions:
        extra = ""
        if d.earliest_date:
            extra = f"from {d.earliest_date.isoformat()}"
        elif d.dose_mg is not None:
            extra = f"{d.dose_mg:g} mg"
        reasons = ", ".join(d.reasons) if d.reasons else "(no rule proposes it)"
        mark = " [U]" if d.unverified else ""
        lines.append(f"{d.therapy:<25} {d.status + mark:<18} {extra:<14} {reasons}")
    if result.advisories:
        lines += ["", "Advisories:"]
        for a in result.advisories:
            mark = " [U]" if a.unverified else ""
            lines.append(f"  {a.id}{mark} ({a.rule}): {a.text}")
    if result.missing_data:
        lines += ["", "Missing data: " + ", ".join(result.missing_data)]
    lines += ["", "[U] = rests on an unverified fact (see the rule base).", DISCLAIMER, ""]
    return "\n".join(lines)
