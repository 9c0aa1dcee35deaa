"""The compiled evaluation path: the rule base's conditions turned into Python closures once, run without experta.

experta is radiopal's engine of record (see README, "Two evaluation paths"). This package is the second path: the
same plan of rules (:func:`radiopal.rulebase.compile.plan_rules`), the same three-valued conditions, evaluated in
the order their dependencies impose (derived facts first, ``status_of`` rules after the phase-1 statuses are
resolved), and the same firing records, so everything built from them — decisions, graphs, explanations — is built
by the same code on either path. ``tests/test_compiled_differential.py`` holds the two paths to identical output.
"""

from __future__ import annotations

from .conditions import compile_condition
from .runner import CompiledRunner

__all__ = ["CompiledRunner", "compile_condition"]
