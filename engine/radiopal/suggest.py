"""'Did you mean' suggestions by string similarity (as rule-engine's suggestions.py does)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to ``word``, or None when nothing is close enough."""
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def hint_for(word: str, candidates: Iterable[str]) -> str:
    """``did you mean 'x'?`` or an empty string."""
    best = did_you_mean(word, candidates)
    return f"did you mean {best!r}?" if best else ""
