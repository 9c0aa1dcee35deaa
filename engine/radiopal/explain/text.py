"""The explanation as terminal text: readable without colour; ANSI colour only when the caller asks for it."""

from __future__ import annotations

from collections.abc import Callable

from .build import STATUS_WORDS
from .model import MET, NOT_MET, UNKNOWN, ConditionExplanation, Explanation, RuleExplanation, TherapyExplanation

_SYMBOL = {MET: "✓", NOT_MET: "✗", UNKNOWN: "?"}
_WORD = {MET: "met", NOT_MET: "not met", UNKNOWN: "unknown"}
_ANSI = {
    "met": "32", "not_met": "31", "unknown": "33",
    "recommended": "1;32", "eligible": "32", "deferred": "33", "contraindicated": "1;31",
    "not_indicated": "2", "insufficient_data": "35", "U": "1;35", "head": "1", "dim": "2",
}  # fmt: skip
LEAVES = ("compare", "requirement", "exists")


def render_text(explanation: Explanation, *, colour: bool = False, width: int = 100,
                summary: list[str] | None = None) -> str:
    """Render ``explanation`` for a terminal. ``colour`` adds ANSI escapes (the CLI decides: TTY and no NO_COLOR).
    ``summary``: the action summary's lines (:func:`radiopal.explain.summary.render_summary_text`), shown first."""
    paint = _painter(colour)
    e = explanation
    lines = [
        paint("head", f"radiopal explanation — patient {e.patient_id}, evaluated {e.evaluation_date}"),
        f"rule base {e.rulebase_version} ({e.rulebase_hash}); radiopal {e.radiopal_version}",
        "",
    ]
    if summary:
        lines += [*summary, ""]
    if len(e.therapies) > 1:
        lines.append(f"{'therapy':<25} {'status':<22} {'when / dose':<16} reasons")
        lines.append("-" * width)
        for t in e.therapies:
            status = STATUS_WORDS.get(t.status, t.status) + (" [U]" if t.unverified else "")
            extra = f"from {t.earliest_date}" if t.earliest_date else (f"{t.dose_mg:g} mg" if t.dose_mg is not None else "")
            reasons = ", ".join(t.reasons) if t.reasons else "(no rule proposes it)"
            lines.append(f"{t.therapy:<25} {paint(t.status, f'{status:<22}')} {extra:<16} {reasons}")
        lines.append("")
    for t in e.therapies:
        lines += _therapy(t, paint, width)
    if e.advisories and len(e.therapies) > 1:
        lines += [paint("head", "Advisories"), *(f"  • {a.id}{' [U]' if a.unverified else ''} ({a.rule}): {a.text}"
                                                 for a in e.advisories), ""]
    if e.missing_data:
        lines += [paint("head", "Missing data (whole patient)"), "  " + ", ".join(e.missing_data), ""]
    if e.warnings:
        lines += [paint("head", "Record warnings (a value not used leaves its field unknown)"),
                  *(f"  • {w['source']} {w['element']}: {w['message']}" for w in e.warnings), ""]
    if e.evaluation_date_from:
        lines += [f"Evaluation date {e.evaluation_date} from {e.evaluation_date_from}.", ""]
    if e.references:
        lines.append(paint("head", "References"))
        for r in e.references:
            number = f"[{r.number}] " if r.number is not None else ""
            url = f" — {r.url}" if r.url else ""
            lines.append(f"  {r.key}: {number}{r.citation}{url}")
        lines.append("")
    lines += ["✓ met  ✗ not met  ? unknown (data missing).  [U] = rests on an unverified fact or rule; "
              "check it against the source before relying on it.", e.disclaimer, ""]
    return "\n".join(lines)


def _painter(colour: bool) -> Callable[[str, str], str]:
    def paint(kind: str, text: str) -> str:
        code = _ANSI.get(kind)
        return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text

    return paint


def _therapy(t: TherapyExplanation, paint: Callable[[str, str], str], width: int) -> list[str]:
    mark = " " + paint("U", "[U]") if t.unverified else ""
    title = f"{t.therapy} — {t.name}"
    lines = [
        paint("head", "═" * 3 + f" {title} " + "═" * max(3, width - len(title) - 5)),
        f"Status: {paint(t.status, STATUS_WORDS.get(t.status, t.status).upper())} — {t.headline}{mark}",
        *([f"Dose: {t.dose_text}"] if t.dose_text else []),
        *([f"Wait: open — {t.open_wait}"] if t.open_wait else []),
        "",
        paint("head", "Why"),
        f"  {t.why.summary}" if t.why.summary else "  (no summary)",
    ]
    for r in t.why.rules:
        lines += _rule(r, paint, full=True)
    if t.why.overridden:
        lines.append(paint("head", "  Overridden by a stronger status"))
        for r in t.why.overridden:
            lines += _rule(r, paint, full=True)
    if t.why_not is not None:
        lines += ["", paint("head", t.why_not.question), f"  {t.why_not.summary}"]
        for r in t.why_not.blocking:
            if r.kind == "requirement":
                lines += _rule(r, paint, full=False, label="blocking; data missing:")
            else:
                lines += _rule(r, paint, full=False, label="blocking; the conditions that made it fire:")
        for r in t.why_not.would_enable:
            lines += _rule(r, paint, full=False, label="did not fire; conditions not met or unknown:")
    if t.what_would_change:
        lines += ["", paint("head", "What would change it")]
        for c in t.what_would_change:
            lines.append(f"  • {c.text}" + (" " + paint("U", "[U]") if c.unverified else ""))
    if t.data_to_collect:
        lines += ["", paint("head", "Data to collect")]
        for d in t.data_to_collect:
            need = "required" if d.required else "would let a rule be judged"
            facts = f"{', '.join(d.facts)}; " if d.facts else ""
            lines.append(f"  • {d.path} — {need} ({facts}{', '.join(d.rules)})")
    if t.unresolved:
        lines += ["", paint("head", "Could not be judged (data missing)")]
        for r in t.unresolved:
            lines += _rule(r, paint, full=False, label="unknown:")
    if t.advisories:
        lines += ["", paint("head", "Advisories")]
        for a in t.advisories:
            lines.append(f"  • {a.id}{' [U]' if a.unverified else ''} ({a.rule}): {a.text}")
    lines.append("")
    return lines


def _rule(r: RuleExplanation, paint: Callable[[str, str], str], *, full: bool, keep: tuple[str, ...] = (),
          label: str = "") -> list[str]:
    mark = " " + paint("U", "[U]") if r.unverified else ""
    status = STATUS_WORDS.get(r.status or "", r.status or "")
    head = f"  ▸ {r.key}{mark} → {paint(r.status or 'dim', status)} · {r.strength} · [{r.verification}] · " \
           f"sources: {', '.join(r.sources)}"
    if r.overridden_by:
        head += f" · overridden by {STATUS_WORDS.get(r.overridden_by, r.overridden_by)}"
        if r.overridden_by_rules:
            head += f" ({', '.join(r.overridden_by_rules)})"
    lines = [head, f"      {r.text}"]
    if r.unverified and r.unverified_note:
        lines.append(f"      {paint('U', '[U]')} unverified: {r.unverified_note}")
    if r.earliest_date:
        how = f" ({r.earliest_date_rule})" if r.earliest_date_rule else ""
        lines.append(f"      earliest date from this rule: {r.earliest_date}{how}")
    elif r.date_unknown:
        lines.append("      earliest date: cannot be computed yet")
    if r.missing:
        lines.append(f"      missing: {', '.join(r.missing)}")
    if r.conditions is None:
        return lines
    if full:
        lines += _tree(r.conditions, paint, 6)
    else:
        leaves = [n for n in r.conditions.walk() if n.decisive and (not keep or n.result in keep)]
        if label:
            lines.append(f"      {label}")
        lines += [_leaf(n, paint, 8) for n in leaves] or ["        (none)"]
    return lines


def _tree(n: ConditionExplanation, paint: Callable[[str, str], str], indent: int) -> list[str]:
    lines = [_leaf(n, paint, indent)]
    for child in n.children:
        lines += _tree(child, paint, indent + 2)
    return lines


def _leaf(n: ConditionExplanation, paint: Callable[[str, str], str], indent: int) -> str:
    word = paint(n.result, f"{_SYMBOL[n.result]} {_WORD[n.result]:<8}")
    text = f"{' ' * indent}{word} {n.text}"
    if n.kind in LEAVES:
        if n.value is not None and n.kind != "exists":
            text += f" — now {n.value}"
        elif n.kind == "exists" and n.value is not None:
            text += f" ({n.value})"
        if n.given_as:
            text += f" (given as {n.given_as})"
        if n.source and n.kind != "exists":
            text += f" [{', '.join(n.source)}]"
        if n.resources:
            text += f" (FHIR {', '.join(n.resources)})"
        if n.flips_on:
            text += f"; becomes {'not met' if n.result == MET else 'met'} on {n.flips_on}"
        if n.result == UNKNOWN and n.missing:
            text += f"; supply {', '.join(n.missing)}"
        if n.note:
            text += f" ({n.note})"
        if n.unverified_fact:
            text += " " + paint("U", "[U]")
        if n.threshold_citation:
            text += f" — {n.threshold_name}: {n.threshold_citation}"
            if n.unverified_threshold:
                text += " " + paint("U", "[U]")
    return text
