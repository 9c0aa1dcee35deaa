"""``radiopal audit verify|show|list``: check the hash chain of an audit log and read its records."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..audit_text import render_record
from ..errors import InputError, Problem


def register(sub: Any) -> None:
    parser = sub.add_parser("audit", help="verify and read the tamper-evident audit log",
                            description="Verify the hash chain of an audit log (exit 1 when a record was edited, "
                                        "deleted or reordered) and show its records.")
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION")

    def db_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", metavar="PATH",
                       help="audit log: SQLite file or SQLAlchemy URL (default $RADIOPAL_AUDIT_DB or radiopal-audit.db)")

    verify = actions.add_parser("verify", help="check every record against the hash chain")
    db_option(verify)
    verify.set_defaults(func=run_verify)

    show = actions.add_parser("show", help="print one stored evaluation: decisions and the rules behind them")
    show.add_argument("id", metavar="ID", help="record id (uuid) or record number")
    show.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    db_option(show)
    show.set_defaults(func=run_show)

    listing = actions.add_parser("list", help="list the newest records")
    listing.add_argument("--limit", type=int, default=50, help="how many records (default 50)")
    listing.add_argument("--patient", metavar="ID", help="only this patient id")
    db_option(listing)
    listing.set_defaults(func=run_list)
    parser.set_defaults(func=lambda _args: (parser.print_help(sys.stderr), 2)[1])


def _open(args: argparse.Namespace) -> Any:
    from ..audit import AuditLog, default_audit_db
    from ..extras import require

    require("radiopal audit", "sqlalchemy")

    return AuditLog(args.db or default_audit_db(), create=False)


def run_verify(args: argparse.Namespace) -> int:
    log = _open(args)
    report = log.verify()
    if report.ok:
        print(f"{log.target}: {report.records} record(s), hash chain intact; head {report.head_hash}")
        return 0
    where = f"record {report.first_bad}" + (f" ({report.first_bad_id})" if report.first_bad_id else "")
    print(f"{log.target}: TAMPERED — first bad record: {where}", file=sys.stderr)
    for problem in report.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def run_show(args: argparse.Namespace) -> int:
    log = _open(args)
    record = log.get(args.id)
    if record is None:
        raise InputError(f"no audit record {args.id!r} in {log.target}",
                         [Problem(f"no audit record {args.id!r}", file=log.target, hint="see `radiopal audit list`")])
    if args.format == "json":
        sys.stdout.write(json.dumps(record.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_record(record))
    return 0


def run_list(args: argparse.Namespace) -> int:
    log = _open(args)
    rows = log.recent(limit=args.limit, patient_id=args.patient)
    print(f"{'#':>5}  {'recorded (UTC)':<24}  {'kind':<10}  {'patient':<12}  {'caller':<28}  id")
    for r in rows:
        print(f"{r.seq:>5}  {r.recorded_at:<24}  {r.kind:<10}  {(r.patient_id or '-'):<12}  {r.caller[:28]:<28}  "
              f"{r.record_id}")
    return 0
