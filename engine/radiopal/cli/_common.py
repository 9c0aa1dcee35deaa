"""Helpers shared by the subcommands: the rule-base and engine options."""

from __future__ import annotations

import argparse


def add_rules_option(parser: argparse.ArgumentParser) -> None:
    """``--rules DIR``: a rule-base folder other than the shipped one."""
    parser.add_argument("--rules", metavar="DIR", help="rule-base folder (default: the shipped rules)")


def add_engine_option(parser: argparse.ArgumentParser, default: str = "experta") -> None:
    """``--engine experta|compiled``: the evaluation path (experta is the engine of record; see README)."""
    parser.add_argument("--engine", choices=("experta", "compiled"), default=default,
                        help=f"evaluation path (default {default}): experta, the engine of record, or compiled, the "
                             "same decisions, graphs and explanations from conditions compiled to Python closures")
