"""``radiopal synth N -o DIR``: write a seeded synthetic cohort of patient documents (see :mod:`radiopal.synth`)."""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError, Problem
from ..fileio import write_atomic
from ..synth import KINDS, generate

FORMATS = ("yaml", "json", "jsonl")


def register(subparsers: Any) -> None:
    """Add the ``synth`` subcommand to the ``radiopal`` parser."""
    parser = subparsers.add_parser(
        "synth",
        help="write a seeded synthetic patient cohort",
        description="Write N synthetic patient documents (contract §A): mostly valid, some with required fields "
        "missing, a few schema-invalid on purpose. The same seed always writes the same bytes; patient i depends "
        "only on the seed and i.",
    )
    parser.add_argument("n", metavar="N", type=int, help="number of patients (>= 1)")
    parser.add_argument("-o", "--output", metavar="DIR", required=True, help="output folder (created if absent)")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    parser.add_argument("--format", choices=FORMATS, default="yaml",
                        help="yaml or json: one <patient_id> file per patient; jsonl: one DIR/patients.jsonl "
                        "(default yaml)")
    parser.add_argument("--bad-fraction", metavar="F", type=float, default=0.02,
                        help="expected share of schema-invalid patients (default 0.02)")
    parser.add_argument("--missing-fraction", metavar="F", type=float, default=0.1,
                        help="expected share of patients with required fields removed (default 0.1)")
    parser.add_argument("--start", metavar="I", type=int, default=0,
                        help="index of the first patient, to split or resume a cohort (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the cohort, write it, and print one summary line with the count of each kind."""
    _check_arguments(args)
    out = _output_folder(args.output)
    patients = generate(args.n, seed=args.seed, bad_fraction=args.bad_fraction,
                        missing_fraction=args.missing_fraction, start=args.start)
    counts: Counter[str] = Counter()
    if args.format == "jsonl":
        lines = []
        for synthetic in patients:
            counts[synthetic.kind] += 1
            lines.append(json.dumps(synthetic.document, ensure_ascii=False, separators=(",", ":")) + "\n")
        target = out / "patients.jsonl"
        write_atomic(target, "".join(lines))
    else:
        for synthetic in patients:
            counts[synthetic.kind] += 1
            name = synthetic.document.get("patient_id") or f"SYN-{args.seed}-unnamed-{sum(counts.values()):07d}"
            write_atomic(out / f"{name}.{args.format}", dumps(synthetic.document, args.format))
        target = out
    per_kind = ", ".join(f"{counts[kind]} {kind}" for kind in KINDS)
    print(f"wrote {args.n} synthetic patients to {target} (seed {args.seed}: {per_kind})")
    return 0


def dumps(document: dict[str, Any], fmt: str) -> str:
    """Serialise one patient document as ``yaml`` or ``json`` text, in the order the contract lists the fields."""
    if fmt == "json":
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def _check_arguments(args: argparse.Namespace) -> None:
    problems = []
    if args.n < 1:
        problems.append(Problem(f"must be at least 1 (got {args.n})", path="N"))
    if args.start < 0:
        problems.append(Problem(f"must be >= 0 (got {args.start})", path="--start"))
    for option, value in (("--bad-fraction", args.bad_fraction), ("--missing-fraction", args.missing_fraction)):
        if not 0.0 <= value <= 1.0:
            problems.append(Problem(f"must be between 0 and 1 (got {value})", path=option))
    if args.bad_fraction + args.missing_fraction > 1.0:
        total = args.bad_fraction + args.missing_fraction
        problems.append(Problem(f"the two fractions must not add up to more than 1 (got {total})",
                                path="--bad-fraction + --missing-fraction"))
    if problems:
        raise InputError(f"synth: {len(problems)} bad argument(s)", problems)


def _output_folder(name: str) -> Path:
    out = Path(name)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder", [Problem("exists and is not a folder", file=str(out))])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create folder: {exc.strerror}",
                         [Problem(f"cannot create folder: {exc.strerror}", file=str(out))]) from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"{out}: folder is not writable", [Problem("folder is not writable", file=str(out))])
    return out


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for small leaf mappings and scalar lists (as the vignettes are written)."""


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    leaf = all(not isinstance(value, dict | list) for value in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=leaf and 0 < len(data) <= 6)


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    leaf = all(not isinstance(value, dict | list) for value in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=leaf)


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(list, _represent_list)
