"""Helpers shared by the subcommands: the rule-base option."""

from __future__ import annotations

import argparse


def add_rules_option(parser: argparse.ArgumentParser) -> None:
    """``--rules DIR``: a rule-base folder other than the shipped one."""
    parser.add_argument("--rules", metavar="DIR", help="rule-base folder (default: the shipped rules)")
