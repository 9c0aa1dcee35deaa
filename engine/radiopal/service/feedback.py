"""CDS Hooks feedback (``POST /cds-services/{id}/feedback``): what the clinician did with a card.

Each item says whether a card was ``accepted`` (with the suggestions taken) or ``overridden`` (with the reason
Coding chosen from the card's ``overrideReasons`` and a free comment). radiopal stores every item in the audit log,
tied to the evaluation that made the card, so overrides can be read back per rule.
"""

from __future__ import annotations

from typing import Any

from .errors import ServiceError

__all__ = ["OUTCOMES", "parse_feedback"]

OUTCOMES = ("accepted", "overridden")
MAX_ITEMS = 100


def _bad(where: str, message: str) -> ServiceError:
    return ServiceError(400, "bad-request", f"{where}: {message}")


def parse_feedback(body: Any) -> list[dict[str, Any]]:
    """Validate a feedback request and return its items as plain data; a 400 naming the field otherwise."""
    if not isinstance(body, dict):
        raise ServiceError(400, "bad-request", "the request body must be a JSON object")
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        raise _bad("feedback", "required (a non-empty list)")
    if len(items) > MAX_ITEMS:
        raise _bad("feedback", f"at most {MAX_ITEMS} items per request")
    out = []
    for i, item in enumerate(items):
        where = f"feedback[{i}]"
        if not isinstance(item, dict):
            raise _bad(where, "expected an object")
        card = item.get("card")
        if not isinstance(card, str) or not card:
            raise _bad(f"{where}.card", "required (the card's uuid)")
        outcome = item.get("outcome")
        if outcome not in OUTCOMES:
            raise _bad(f"{where}.outcome", f"must be one of {', '.join(OUTCOMES)}")
        timestamp = item.get("outcomeTimestamp")
        if not isinstance(timestamp, str) or not timestamp:
            raise _bad(f"{where}.outcomeTimestamp", "required (ISO 8601)")
        entry: dict[str, Any] = {"card": card, "outcome": outcome, "outcomeTimestamp": timestamp}
        accepted = item.get("acceptedSuggestions")
        if accepted is not None:
            if not isinstance(accepted, list) or not all(isinstance(a, dict) and isinstance(a.get("id"), str)
                                                         for a in accepted):
                raise _bad(f"{where}.acceptedSuggestions", "expected a list of {\"id\": ...}")
            entry["acceptedSuggestions"] = [{"id": a["id"]} for a in accepted]
        elif outcome == "accepted":
            entry["acceptedSuggestions"] = []
        override = item.get("overrideReason")
        if override is not None:
            if not isinstance(override, dict):
                raise _bad(f"{where}.overrideReason", "expected an object")
            reason = override.get("reason")
            kept: dict[str, Any] = {}
            if reason is not None:
                if not isinstance(reason, dict) or not isinstance(reason.get("code"), str):
                    raise _bad(f"{where}.overrideReason.reason", "expected a Coding with a code")
                kept["reason"] = {k: reason[k] for k in ("system", "code", "display") if isinstance(reason.get(k), str)}
            comment = override.get("userComment")
            if comment is not None:
                if not isinstance(comment, str):
                    raise _bad(f"{where}.overrideReason.userComment", "expected a string")
                kept["userComment"] = comment[:2000]
            entry["overrideReason"] = kept
        out.append(entry)
    return out
