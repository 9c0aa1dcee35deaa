"""``radiopal recommend PATIENT``: one decision per therapy (contract §B), as JSON or text, and the graph."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import DISCLAIMER
from ..fileio import write_atomic
from ._common import add_engine_option, add_rules_option, gated_rulebase


def register(sub: Any) -> None:
    parser = sub.add_parser("recommend", help="decide every therapy for one patient document",
                            description="Decide every therapy for one patient (contract §A YAML/JSON, or a FHIR R4 "
                                        "Bundle with --fhir). Decision support for clinicians, not a prescription.")
    parser.add_argument("patient", metavar="PATIENT", help="patient document (YAML or JSON)")
    parser.add_argument("--fhir", action="store_true", help="PATIENT is a FHIR R4 Bundle (JSON)")
    add_fhir_options(parser)
    parser.add_argument("--format", choices=("json", "text"), default="json", help="output format (default json)")
    parser.add_argument("--graph", metavar="OUT", help="write the reasoning graph (.json, .dot or .svg)")
    parser.add_argument("--therapy", metavar="ID", help="with --graph: only the part that leads to this therapy")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the decisions to FILE instead of stdout")
    parser.add_argument("--audit-db", metavar="PATH",
                        help="also record the evaluation in this audit log (SQLite file or SQLAlchemy URL; default off)")
    add_rules_option(parser)
    add_engine_option(parser)
    parser.set_defaults(func=run)


def add_fhir_options(parser: argparse.ArgumentParser) -> None:
    """``--evaluation-date`` and ``--patient`` (FHIR input)."""
    parser.add_argument("--evaluation-date", metavar="YYYY-MM-DD",
                        help="with --fhir: the day to evaluate on (default Bundle.timestamp, else today; the output "
                             "says which). Only data known on that day count")
    parser.add_argument("--patient", metavar="ID", dest="patient_id",
                        help="with --fhir: the Patient (id or identifier) to evaluate in a Bundle that holds several")
    parser.add_argument("--answers", metavar="QR",
                        help="a FHIR QuestionnaireResponse (JSON) answering radiopal's questionnaire (radiopal "
                             "questionnaire): its answers supply or replace those fields before the evaluation")


def check_fhir_options(args: argparse.Namespace) -> None:
    """``--evaluation-date`` and ``--patient`` only make sense for a FHIR Bundle: say so rather than ignore them."""
    options = {"evaluation_date": "--evaluation-date", "patient_id": "--patient"}
    given = [flag for name, flag in options.items() if getattr(args, name, None) is not None]
    if given and not getattr(args, "fhir", False):
        from ..errors import InputError, Problem

        message = (f"{' and '.join(given)} need{'s' if len(given) == 1 else ''} --fhir: a patient document carries "
                   "its own evaluation_date and patient_id")
        raise InputError(message, [Problem(message)])


def evaluate_argument(rulebase: Any, args: argparse.Namespace) -> Any:
    """Evaluate the patient argument; with --fhir keep the mapping's provenance, warnings and date origin, and say
    on stderr where the evaluation date came from when it was not given."""
    from ..patient.load import load_patient

    check_fhir_options(args)
    answers = _read_answers(args.answers) if getattr(args, "answers", None) else None
    if not args.fhir:
        if answers is None:
            return rulebase.evaluate(load_patient(args.patient))
        from ..fhir.questionnaire import apply_answers
        from ..patient.load import parse_patient
        from ..yamlio import load_document

        located = load_document(args.patient, kind="patient document")
        return rulebase.evaluate(parse_patient(apply_answers(located.data, answers)))
    from ..api import evaluate_fhir

    result = evaluate_fhir(args.patient, rulebase, evaluation_date=args.evaluation_date, patient=args.patient_id,
                           answers=answers)
    origin = result.extra.get("evaluation_date_from")
    if origin != "argument":
        print(f"radiopal: evaluated as of {result.patient.evaluation_date.isoformat()} (from {origin}; set another day "
              "with --evaluation-date)", file=sys.stderr)
    return result


def _read_answers(path: str) -> Any:
    from ..yamlio import load_document

    return load_document(path, kind="QuestionnaireResponse").data


def run(args: argparse.Namespace) -> int:

    rulebase = gated_rulebase(args.rules, args, engine=args.engine)
    if args.therapy is not None:
        from ..explain import check_therapy

        check_therapy(rulebase.catalogue, args.therapy)  # before the patient is read: a typo fails fast
    # With --fhir, evaluate_fhir keeps the resource id and fullUrl of every input on the graph.
    result = evaluate_argument(rulebase, args)
    if args.audit_db:
        from ..audit import AuditLog

        entry = AuditLog(args.audit_db).record(result, caller="cli")
        print(f"radiopal: recorded as {entry.record_id} (record {entry.seq}) in {args.audit_db}", file=sys.stderr)
    text = result.to_json() if args.format == "json" else render_text(result)
    if args.graph:
        title = f"radiopal — patient {result.patient.patient_id}, {result.patient.evaluation_date.isoformat()}"
        graph = result.graph if args.therapy is None else result.graph.subgraph(args.therapy)
        graph.write(args.graph, title=title + (f" — {args.therapy}" if args.therapy else ""))
    if args.output:
        write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def render_text(result: Any) -> str:
    """The action summary first (urgent advisories above it), then the table of every therapy: status, date or dose,
    and the rules behind it (the dose rule after ``dose:``)."""
    from ..explain.summary import action_summary, render_summary_text

    lines = [
        f"radiopal — patient {result.patient.patient_id}, evaluated {result.patient.evaluation_date.isoformat()}",
        f"rule base {result.rulebase.version}",
        *([f"!! rule base failed lint ({result.rulebase.lint_errors} error(s)): run with --allow-lint-errors, for "
           "experiments only"] if getattr(result.rulebase, "lint_errors", 0) else []),
        "",
        *render_summary_text(action_summary(result)),
        "",
        f"{'therapy':<25} {'status':<18} {'when / dose':<14} reasons",
        "-" * 100,
    ]
    for d in result.decisions:
        extra = ""
        if d.earliest_date:
            extra = f"from {d.earliest_date.isoformat()}"
        elif d.dose_mg is not None:
            extra = f"{d.dose_mg:g} mg" + (" [U]" if d.dose_unverified else "")
        elif d.status == "deferred":
            extra = "open"
        reasons = ", ".join(d.reasons) if d.reasons else "(no rule proposes it)"
        if d.dose_reasons:
            reasons += "; dose: " + ", ".join(d.dose_reasons)
        mark = " [U]" if d.status_unverified else ""
        lines.append(f"{d.therapy:<25} {d.status + mark:<18} {extra:<14} {reasons}")
    if result.advisories:
        lines += ["", "Advisories (urgent, then caution, then information):"]
        for a in result.advisories:
            mark = " [U]" if a.unverified else ""
            lines.append(f"  {a.severity:<7} {a.id}{mark} ({a.rule}): {a.text}")
    if result.missing_data:
        lines += ["", "Missing data: " + ", ".join(result.missing_data)]
    if result.warnings:
        lines += ["", "Record warnings (a value not used leaves its field unknown):"]
        lines += [f"  {w['source']} {w['element']}: {w['message']}" for w in result.warnings]
    if result.extra.get("evaluation_date_from"):
        lines += ["", f"Evaluation date from {result.extra['evaluation_date_from']}."]
    lines += ["", "[U] = rests on an unverified fact (see the rule base).", DISCLAIMER, ""]
    return "\n".join(lines)
