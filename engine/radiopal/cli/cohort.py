"""``radiopal cohort INPUT -o OUT_DIR``: audit a whole population, serially or on Dask (see :mod:`radiopal.cohort`)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from ._common import add_engine_option, add_rules_option

EPILOG = """\
outputs in OUT_DIR:
  therapies.parquet, therapies.csv   one row per patient and therapy: patient_id, therapy, status, earliest_date,
                                     dose_mg, reasons (';'), missing_data (';'), unverified, rulebase_version
  patients.parquet, patients.csv     one row per evaluated patient: source, evaluation date, primary site, prior and
                                     candidate radionuclides / bone-health agents, under-use flags, missing data
  underuse.csv                       the patients of the under-use finding (radionuclide or bone-health agent)
  errors.jsonl                       one line per record that could not be evaluated (source, line, patient id, message)
  summary.html                       self-contained summary page (under-use, statuses, deferrals, missing data)
  run.json                           manifest: input, rule base version and digest, counts
  parts/, done/                      per-batch parts and the done-ledger used by --resume
  decisions/<patient_id>.json        with --decisions: the contract §B output of each patient
  graphs/<patient_id>.json           with --graphs: the reasoning graph of each patient (implies --decisions)
                                     (file names are the patient ids made file-safe; ids are expected unique)

A run killed at any point leaves no half-written file; --resume then evaluates only the batches not yet done and
gives the same tables as an uninterrupted run. radiopal is decision support for clinicians, not a prescriber.
"""


def register(subparsers: Any) -> None:
    """Add the ``cohort`` subcommand to the ``radiopal`` parser."""
    parser = subparsers.add_parser(
        "cohort",
        help="audit a whole cohort (Dask or serial): who could benefit, who is deferred, what data is missing",
        description="Evaluate every patient of INPUT — a folder of patient documents (YAML/JSON), a JSON Lines file "
        "of them, or a FHIR Bulk Data export (a folder of NDJSON files such as Patient.ndjson, Observation.ndjson, "
        ".ndjson.gz too, with or without the $export manifest; files are recognised by the resourceType inside) — on "
        "a local Dask cluster, an existing one (--scheduler), or in this process (--serial). Invalid records are "
        "reported in errors.jsonl (for NDJSON: file and line) and the run goes on.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT",
                        help="folder of patient documents, .jsonl file, or FHIR Bulk Data export folder (or manifest)")
    parser.add_argument("-o", "--output", metavar="OUT_DIR", required=True, help="output folder (created if absent)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="connect to an existing Dask scheduler (tcp://host:8786) instead of starting a local "
                       "cluster; its workers need radiopal installed (the rules travel with the tasks)")
    where.add_argument("--serial", action="store_true", help="evaluate in this process, without Dask")
    parser.add_argument("--workers", metavar="N", type=int,
                        help="local cluster size: N worker processes, one thread each (default: the CPU count)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in OUT_DIR: skip the batches its done-ledger lists")
    parser.add_argument("--decisions", action="store_true",
                        help="also write each patient's decision JSON (contract §B) to OUT_DIR/decisions/")
    parser.add_argument("--graphs", action="store_true",
                        help="also write each patient's reasoning graph to OUT_DIR/graphs/ (implies --decisions)")
    add_rules_option(parser)
    add_engine_option(parser, default="compiled")
    parser.add_argument("--recheck-every", metavar="N", type=int, default=500,
                        help="with --engine compiled, re-evaluate about 1 record in N on experta and stop the run "
                             "at the first difference, writing both results to OUT_DIR/engine-mismatch/ "
                             "(default 500; 0 = off)")
    parser.add_argument("--batch-size", metavar="N", type=int, default=250,
                        help="patients per task and per part file (default 250; fixed for a run, kept by --resume)")
    parser.add_argument("--input-format", choices=("auto", "dir", "jsonl", "fhir"), default="auto",
                        help="input shape (default: detected from INPUT)")
    parser.add_argument("--evaluation-date", metavar="YYYY-MM-DD",
                        help="FHIR input: the day every interval is counted to (default: the export manifest's "
                        "transactionTime, else today; kept by --resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the cohort audit and print where the results are."""
    from ..cohort.run import CohortOptions, run_cohort
    from ..extras import require

    require("radiopal cohort", "pyarrow", "matplotlib", *(() if args.serial else ("dask", "distributed")))
    from ..lintgate import lint_gate

    gate = lint_gate(args.rules, allow_errors=args.allow_lint_errors)
    if gate.failed:
        print(f"radiopal cohort: WARNING: rule base failed lint ({len(gate.errors)} error(s)); results are for "
              "experiments only", file=sys.stderr)
    options = CohortOptions(
        input=Path(args.input), output=Path(args.output), scheduler=args.scheduler, workers=args.workers,
        serial=args.serial, resume=args.resume, decisions=args.decisions, graphs=args.graphs,
        rules=Path(args.rules) if args.rules else None, batch_size=args.batch_size, input_format=args.input_format,
        evaluation_date=args.evaluation_date, progress=not args.no_progress, engine=args.engine,
        recheck_every=args.recheck_every,
    )
    previous = _terminate_as_interrupt()
    try:
        report = run_cohort(options)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    rate = report.patients / report.seconds if report.seconds else 0.0
    print(f"radiopal cohort: {report.records:,} record(s): {report.patients:,} evaluated, {report.errors:,} error(s) "
          f"({report.evaluated_batches} batch(es) evaluated, {report.skipped_batches} already done) in "
          f"{report.seconds:.1f} s ({rate:,.0f} patients/s, {report.mode}, {report.engine} path"
          + (f", {report.rechecked:,} re-checked on experta" if report.engine != "experta" else "") + ")")
    print(f"under-use: {report.underuse_radionuclide:,} patient(s) with a radionuclide recommended or eligible and "
          f"none in their history; {report.underuse_bone_health:,} likewise for bone-health agents")
    print(f"rule base {report.rulebase_version}; results in {report.output} (summary: {report.summary_path})")
    return 0


def _terminate_as_interrupt() -> Any:
    """Turn SIGTERM into KeyboardInterrupt so a terminated run still shuts its cluster down cleanly."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not in the main thread
        return None


if __name__ == "__main__":  # pragma: no cover
    from . import main

    sys.exit(main(["cohort", *sys.argv[1:]]))
