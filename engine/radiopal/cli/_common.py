"""Helpers shared by the subcommands: the rule-base and engine options."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..api import RuleBase


def add_rules_option(parser: argparse.ArgumentParser) -> None:
    """``--rules DIR``: a rule-base folder other than the shipped one; ``--allow-lint-errors``."""
    parser.add_argument("--rules", metavar="DIR", help="rule-base folder (default: the shipped rules)")
    add_lint_option(parser)


def add_lint_option(parser: argparse.ArgumentParser) -> None:
    """``--allow-lint-errors``: run a rule base that fails lint anyway (an experiment; every output says so)."""
    parser.add_argument("--allow-lint-errors", action="store_true",
                        help="run a rule base with lint errors anyway (for experiments); every output is marked "
                             "'rule base failed lint'")


def gated_rulebase(folder: str | None, args: argparse.Namespace, **options: Any) -> RuleBase:
    """Lint ``folder`` first (a rule base with lint errors is refused unless --allow-lint-errors), then load it."""
    from ..api import load_rulebase
    from ..lintgate import lint_gate

    gate = lint_gate(folder, allow_errors=bool(getattr(args, "allow_lint_errors", False)))
    rulebase = load_rulebase(folder, **options)
    rulebase.lint_errors = len(gate.errors)
    return rulebase


def add_engine_option(parser: argparse.ArgumentParser, default: str = "experta") -> None:
    """``--engine experta|compiled``: the evaluation path (experta is the engine of record; see README)."""
    parser.add_argument("--engine", choices=("experta", "compiled"), default=default,
                        help=f"evaluation path (default {default}): experta, the engine of record, or compiled, the "
                             "same decisions, graphs and explanations from conditions compiled to Python closures")
