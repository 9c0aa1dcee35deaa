"""Brief §13: turn the rules that fired into exactly one decision per therapy.

Precedence, safety first: contraindicated > not_indicated > deferred > insufficient_data > recommended > eligible.
A therapy no rule speaks for is ``not_indicated`` (the default is the conclusion of no rule).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from .catalogue import Catalogue
from .rulebase.model import POSITIVE, PRECEDENCE
from .run import Firing, RunState

DEFAULT_STATUS = "not_indicated"


@dataclass
class Decision:
    """The decision for one therapy, with the firings behind it."""

    therapy: str
    status: str
    earliest_date: dt.date | None = None
    dose_mg: float | None = None
    reasons: tuple[str, ...] = ()
    deciding: list[Firing] = field(default_factory=list)  # proposed the final status
    indication: list[Firing] = field(default_factory=list)  # positive rules that fired for the therapy
    overridden: list[Firing] = field(default_factory=list)  # proposed a weaker status
    dosing: list[Firing] = field(default_factory=list)  # set dose_mg (contract §D dose_reasons)
    missing_data: tuple[str, ...] = ()
    is_default: bool = False
    date_unknown: bool = False

    @property
    def dose_reasons(self) -> tuple[str, ...]:
        """Ids of the rules that set ``dose_mg`` (empty when there is no dose), sorted."""
        return tuple(sorted({f.rule_id for f in self.dosing}))

    @property
    def unverified(self) -> bool:
        """Contract §D: a rule behind the status (its reasons) or the dose rests on an unverified [U] fact."""
        return any(f.compiled.rule.is_unverified for f in (*self.deciding, *self.indication, *self.dosing))

    @property
    def status_unverified(self) -> bool:
        """A rule that decided the final status rests on a [U] fact (the [U] mark beside the status)."""
        return any(f.compiled.rule.is_unverified for f in self.deciding)

    @property
    def dose_unverified(self) -> bool:
        """The rule that set the dose rests on a [U] fact (the [U] mark beside the dose)."""
        return any(f.compiled.rule.is_unverified for f in self.dosing)


@dataclass
class AdvisoryOut:
    """An advisory of the output (contract §B.1), de-duplicated by id."""

    id: str
    therapy: str | None
    rule: str
    text: str
    unverified: bool
    firings: list[Firing] = field(default_factory=list)
    severity: str = "info"  # urgent | caution | info (contract §D)


def rank(status: str) -> int:
    """Position in the §13 precedence (0 = strongest)."""
    return PRECEDENCE.index(status)


_RANK = {status: index for index, status in enumerate(PRECEDENCE)}


def resolve_statuses(state: RunState, catalogue: Catalogue) -> dict[str, str]:
    """Final status per therapy from the firings so far (used between phase 1 and phase 2): the status
    :func:`decide` would give each therapy — the strongest proposed, else the default — without the rest of it."""
    best: dict[str, str | None] = dict.fromkeys(catalogue.therapy_ids)
    for firing in state.firings:
        status = firing.compiled.rule.then.status
        if status and firing.therapy in best:
            current = best[firing.therapy]
            if current is None or _RANK[status] < _RANK[current]:
                best[firing.therapy] = status
    return {therapy: status or DEFAULT_STATUS for therapy, status in best.items()}


def decide(state: RunState, catalogue: Catalogue) -> list[Decision]:
    """One decision per therapy of the catalogue, in catalogue (contract §B.3) order."""
    by_therapy: dict[str, list[Firing]] = {t: [] for t in catalogue.therapy_ids}
    for firing in state.firings:
        if firing.therapy in by_therapy:
            by_therapy[firing.therapy].append(firing)
    return [_decide_one(therapy, by_therapy[therapy]) for therapy in catalogue.therapy_ids]


def _decide_one(therapy: str, firings: list[Firing]) -> Decision:
    proposals = [f for f in firings if f.compiled.rule.then.status]
    if not proposals:
        return Decision(therapy, DEFAULT_STATUS, is_default=True)
    status = min((f.compiled.rule.then.status or "" for f in proposals), key=rank)  # proposals all carry a status
    deciding = [f for f in proposals if f.compiled.rule.then.status == status]
    indication = [f for f in proposals if f.compiled.rule.then.status in POSITIVE]
    overridden = [f for f in proposals if f.compiled.rule.then.status != status]
    reasons = sorted({f.rule_id for f in deciding} | {f.rule_id for f in indication})
    decision = Decision(therapy, status, reasons=tuple(reasons), deciding=deciding, indication=indication,
                        overridden=overridden)
    if status == "deferred":
        # Brief §13.4: the latest date among the date-bearing deferrals that fired. A deferral whose date cannot be
        # computed (chemotherapy still ongoing) carries none; it is flagged so explanations say the end is open.
        dated = [f for f in deciding if f.compiled.rule.then.earliest_date is not None]
        decision.date_unknown = any(f.date_unknown for f in dated)
        dates = [f.earliest_date for f in dated if f.earliest_date is not None]
        decision.earliest_date = max(dates) if dates else None
    if status in ("recommended", "eligible", "deferred"):
        doses = sorted({f.compiled.rule.then.dose_mg for f in firings if f.compiled.rule.then.dose_mg is not None})
        if doses:
            decision.dose_mg = doses[0]  # several bands matching would be a lint error; the lower dose is safer
            decision.dosing = [f for f in firings if f.compiled.rule.then.dose_mg == decision.dose_mg]
    missing = {p for f in firings for p in f.missing_paths}
    decision.missing_data = tuple(sorted(missing))
    return decision


#: Contract §D: advisories are listed urgent first, then caution, then info.
SEVERITY_ORDER = ("urgent", "caution", "info")


def collect_advisories(state: RunState, catalogue: Catalogue) -> list[AdvisoryOut]:
    """Advisories of every fired rule, whatever the final status (§13.6), de-duplicated by id; urgent first, then
    caution, then info (contract §D), by id within a severity."""
    grouped: dict[str, list[tuple[Firing, str | None]]] = {}
    for firing in state.firings:
        for adv in firing.compiled.rule.then.advisories:
            grouped.setdefault(adv.id, []).append((firing, adv.text))
    out = []
    for adv_id in sorted(grouped):
        items = grouped[adv_id]
        firings = [f for f, _ in items]
        therapies = {f.therapy for f in firings}
        therapy = next(iter(therapies)) if len(therapies) == 1 else None
        first = min(firings, key=lambda f: (f.rule_id, f.compiled.rule.variant, f.therapy or ""))
        text = next((t for f, t in items if f is first and t), None) or catalogue.advisory_text(adv_id)
        unverified = any(f.compiled.rule.is_unverified for f in firings) or bool(
            (catalogue.advisories.get(adv_id) or {}).get("unverified")
        )
        out.append(AdvisoryOut(adv_id, therapy, first.rule_id, text, unverified, firings,
                               catalogue.advisory_severity(adv_id)))
    out.sort(key=lambda a: SEVERITY_ORDER.index(a.severity))  # stable: by id within a severity
    return out


def missing_data(decisions: list[Decision]) -> list[str]:
    """§13.7: required-but-absent paths of every therapy whose final status is insufficient_data, and of every
    therapy whose indication was not ruled out (final status other than not_indicated)."""
    paths: set[str] = set()
    for d in decisions:
        if d.status != "not_indicated":
            paths.update(d.missing_data)
    return sorted(paths)
