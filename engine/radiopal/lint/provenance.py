"""Provenance checks the schema cannot make: an unverified [U] rule must say what is unverified."""

from __future__ import annotations

from collections.abc import Iterator

from .context import LintContext
from .findings import Finding


def check(ctx: LintContext) -> Iterator[Finding]:
    """``verification: U`` without ``unverified:`` (warning); ``unverified:`` on a rule not tagged U (info)."""
    for rule in ctx.rules:
        text = rule.unverified.strip()
        if rule.verification == "U" and not text:
            yield ctx.finding(
                "unverified-unexplained", "the rule is tagged verification U but does not say what is unverified",
                rule, None, "verification",
                hint="add `unverified: \"...\"` naming the [U] number or reading (shown with every output using it)")
        elif rule.verification != "U" and text:
            yield ctx.finding(
                "unverified-text-unused",
                f"the rule has an `unverified:` text but is tagged {rule.verification}: the [U] mark will not be shown",
                rule, None, "unverified",
                hint="tag it `verification: U` if part of it is unverified, or drop the text")
