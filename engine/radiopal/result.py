"""The result of evaluating one patient: contract §B output, the reasoning graph, and the raw firings."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from . import CONTRACT_VERSION, DISCLAIMER
from .conditions import THERAPY_PLACEHOLDER, Compare
from .graph import ReasoningGraph
from .patient.facts import FactTable, FactValue, get_path
from .patient.load import PatientDocument
from .resolve import AdvisoryOut, Decision
from .run import Firing, RunState

if TYPE_CHECKING:
    from .catalogue import Catalogue
    from .rulebase.model import Rule
    from .rulebase.thresholds import ThresholdTable
    from .vocabulary import Vocabulary

NORMALISED = (
    ("plt_10e9_L", "plt"),
    ("anc_10e9_L", "anc"),
    ("wbc_10e9_L", "wbc"),
    ("hb_g_dL", "hb"),
    ("ca_corr_mmol_L", "ca_corr"),
    ("crcl_mL_min", "crcl"),
)


def display(value: Any, unit: str | None = None) -> str:
    """A value as a clinician reads it: dates ISO, numbers without trailing zeros, with the unit."""
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (tuple, list)):
        if value and isinstance(value[0], dict):
            return f"{len(value)} entr{'y' if len(value) == 1 else 'ies'}"
        text = ", ".join(str(v) for v in value) if value else "none"
    else:
        text = str(value)
    if unit and unit not in ("1", "a"):
        text += f" {unit}"
    return text


class RuleBaseView(Protocol):
    """What a result needs of the rule base that produced it (:class:`radiopal.api.RuleBase` is one).

    A protocol, so that this module does not import the API that builds results.
    """

    @property
    def version(self) -> str: ...

    @property
    def digest(self) -> str: ...

    @property
    def vocabulary(self) -> Vocabulary: ...

    @property
    def catalogue(self) -> Catalogue: ...

    @property
    def rules(self) -> tuple[Rule, ...]: ...

    @property
    def thresholds(self) -> ThresholdTable: ...

    @property
    def folder(self) -> str: ...

    #: Per-rule attributes of reasoning-graph rule nodes, filled by the graph builder once per rule.
    rule_node_attributes: dict[str, dict[str, Any]]


@dataclass
class Result:
    """Decisions for one patient, with everything needed to explain them."""

    patient: PatientDocument
    facts: FactTable
    state: RunState
    decisions: list[Decision]
    advisories: list[AdvisoryOut]
    missing_data: list[str]
    rulebase: RuleBaseView
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def warnings(self) -> list[dict[str, str]]:
        """Input problems that did not stop the evaluation (contract §D): ``{source, element, message}`` per value of
        a FHIR record that could not be used, and per chemotherapy agent the drug vocabulary does not recognise."""
        from .drugs import unrecognised_agents

        history = self.patient.data.get("treatment_history")
        entries = history.get("chemotherapy") if isinstance(history, dict) else None
        agents = unrecognised_agents(entries, "treatment_history.chemotherapy") if isinstance(entries, list) else []
        return [*self.extra.get("fhir_warnings", ()), *agents]

    def decision(self, therapy: str) -> Decision:
        """The decision for one therapy id."""
        for d in self.decisions:
            if d.therapy == therapy:
                return d
        raise KeyError(therapy)

    @property
    def firings(self) -> list[Firing]:
        return self.state.firings

    def to_dict(self) -> dict[str, Any]:
        """Contract §B.1 output (plus ``rulebase`` and ``disclaimer``), ready for JSON."""
        decisions = []
        for d in self.decisions:
            item: dict[str, Any] = {
                "therapy": d.therapy,
                "status": d.status,
                "earliest_date": d.earliest_date.isoformat() if d.earliest_date else None,
                "dose_mg": d.dose_mg,
                "reasons": list(d.reasons),
                "dose_reasons": list(d.dose_reasons),
                "unverified": d.unverified,
            }
            decisions.append(item)
        advisories = []
        for a in self.advisories:
            adv: dict[str, Any] = {"id": a.id}
            if a.therapy:
                adv["therapy"] = a.therapy
            adv["rule"] = a.rule
            adv["text"] = a.text
            adv["severity"] = a.severity
            adv["unverified"] = a.unverified
            advisories.append(adv)
        normalised = {key: _plain(self.facts.value(fact)) for key, fact in NORMALISED}
        return {
            "schema_version": CONTRACT_VERSION,
            "patient_id": self.patient.patient_id,
            "evaluation_date": self.patient.evaluation_date.isoformat(),
            "decisions": decisions,
            "advisories": advisories,
            "missing_data": list(self.missing_data),
            "normalised": normalised,
            "warnings": [dict(w) for w in self.warnings],
            "rulebase": {"version": self.rulebase.version, "hash": self.rulebase.digest,
                         **({"failed_lint": lint} if (lint := getattr(self.rulebase, "lint_errors", 0)) else {})},
            "disclaimer": DISCLAIMER,
        }

    def to_json(self) -> str:
        """The contract output as JSON text; the same input gives the same bytes."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"

    @cached_property
    def graph(self) -> ReasoningGraph:
        """The reasoning graph of this evaluation."""
        return build_graph(self)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value) if abs(value) < 1e15 else value
    return value


def _rule_node_id(firing: Firing) -> str:
    rule = firing.compiled.rule
    return f"rule:{rule.key}" + (f"@{firing.therapy}" if firing.therapy else "")


def condition_lines(firing: Firing) -> list[dict[str, Any]]:
    """Each comparison of the firing's condition: ``{id, test, result, observed, fact}`` (copies, safe to change)."""
    return [dict(line) for line in _outcome_texts(firing)[0]]


def _outcome_texts(firing: Firing) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """What the graph shows of the firing's condition: each comparison with its result and observed value, and the
    label of each fact → rule edge (the comparisons made on that fact). One walk, kept in the firing's memo, which
    the records of the same experta firing for other therapies share; callers copy what they put in a graph."""
    texts = firing.memo.get("graph_texts")
    if texts is None:
        lines: list[dict[str, Any]] = []
        labels: dict[str, str] = {}
        outcome = firing.outcome
        for o in outcome.walk() if outcome is not None else ():
            node = o.node
            if not isinstance(node, Compare):
                continue
            line = {"id": node.cid, "test": node.describe(), "result": o.value.value,
                    "observed": display(o.observed) if o.value.value != "unknown" else "unknown", "fact": node.name}
            if node.threshold:
                line["threshold"] = node.threshold
            lines.append(line)
            if node.subject in ("fact", "days_since"):
                text = f"{node.op} {node.threshold_text()}: {o.value.value}"
                labels[node.name] = (labels[node.name] + "; " + text) if node.name in labels else text
        texts = firing.memo["graph_texts"] = (lines, labels)
    return texts


def _cited(line: dict[str, Any], thresholds: ThresholdTable) -> dict[str, Any]:
    """A condition line with the citation of its named threshold (where the number comes from) beside it."""
    named = thresholds.get(line["threshold"]) if "threshold" in line else None
    if named is None:
        return line
    return {**line, "threshold_citation": named.citation, **({"unverified": True} if named.verification == "U" else {})}


def build_graph(result: Result) -> ReasoningGraph:
    """Build the reasoning graph from the firings and decisions of ``result``."""
    graph = ReasoningGraph()
    vocab = result.rulebase.vocabulary
    catalogue = result.rulebase.catalogue
    doc = result.patient.data
    provenance = result.extra.get("provenance")  # FHIR input: document field path → resource id and fullUrl
    decided: dict[int, tuple[str, str]] = {}
    for d in result.decisions:
        for f in d.deciding + d.indication:
            decided[id(f)] = ("concluded", d.status)
        for f in d.overridden:
            decided.setdefault(id(f), ("overridden", d.status))
    for d in result.decisions:
        graph.add_node(f"decision:{d.therapy}", "decision", d.therapy, therapy=d.therapy, status=d.status,
                       earliest_date=d.earliest_date.isoformat() if d.earliest_date else None, dose_mg=d.dose_mg,
                       reasons=list(d.reasons), unverified=d.unverified or None, default=d.is_default or None,
                       group=d.therapy)
    rule_cache = result.rulebase.rule_node_attributes
    thresholds = result.rulebase.thresholds
    added: dict[str, int] = {}  # fact name → id of the FactValue last added under it

    def add_fact(fact: FactValue) -> None:
        if added.get(fact.name) != id(fact):  # adding the same fact again would change nothing
            added[fact.name] = id(fact)
            _add_fact(graph, fact, vocab, doc, provenance)

    for firing in result.firings:
        rule = firing.compiled.rule
        node_id = _rule_node_id(firing)
        edge_kind, final = decided.get(id(firing), ("", ""))
        lines, labels = _outcome_texts(firing)
        lines = [_cited(line, thresholds) for line in lines]
        graph.add_node(
            node_id, "rule", rule.title, **_rule_attributes(rule, catalogue, rule_cache), therapy=firing.therapy,
            overridden=(edge_kind == "overridden") or None, overridden_by=final if edge_kind == "overridden" else None,
            earliest_date=firing.earliest_date.isoformat() if firing.earliest_date else None,
            missing=list(firing.missing_paths) or None, conditions=[dict(line) for line in lines] or None,
            group=firing.therapy or "derived facts and advisories",
        )
        # A phase-2 rule reads other therapies' final statuses (one `statuses` fact, not a fact per therapy):
        # each status it reads is an input edge from that therapy's decision.
        for therapy in sorted(rule.statuses()):
            read = firing.therapy if therapy == THERAPY_PLACEHOLDER else therapy
            if read:
                graph.add_edge(f"decision:{read}", node_id, "used-by", "status read")
        for name in firing.compiled.fact_names:
            fact = result.facts.get(name)
            if fact is None:
                continue
            add_fact(fact)
            graph.add_edge(f"fact:{name}", node_id, "used-by", labels.get(name, ""))
        if firing.derived is not None:
            add_fact(firing.derived)
            graph.add_edge(node_id, f"fact:{firing.derived.name}", "derives")
        if rule.then.status and firing.therapy:
            graph.add_edge(node_id, f"decision:{firing.therapy}", edge_kind or "concluded", rule.then.status)
        for adv in rule.then.advisories:
            graph.add_node(f"advisory:{adv.id}", "advisory", adv.id, text=catalogue.advisory_text(adv.id))
            graph.add_edge(node_id, f"advisory:{adv.id}", "emits")
    return graph


def _rule_attributes(rule: Rule, catalogue: Any, cache: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The attributes of a rule node that depend on the rule alone (built once per rule base, copied per graph)."""
    attributes = cache.get(rule.key)
    if attributes is None:
        sources = [
            {"key": k, "citation": catalogue.references[k].citation, "url": catalogue.references[k].url}
            for k in rule.sources if k in catalogue.references
        ]
        conclusion = rule.then.status or ("derives " + rule.then.derive if rule.then.derive else
                                          "advisory" if rule.then.advisories else "information")
        attributes = cache[rule.key] = {
            "rule_id": rule.id, "variant": rule.variant or None, "strength": rule.strength,
            "verification": rule.verification, "unverified": rule.is_unverified or None, "sources": sources,
            "citation_short": ", ".join(rule.sources), "status": rule.then.status, "conclusion": conclusion,
            "dose_mg": rule.then.dose_mg, "info": rule.then.info, "file": rule.location(),
        }
    return {**attributes, "sources": [dict(source) for source in attributes["sources"]]}  # no sharing across graphs


def _add_fact(graph: ReasoningGraph, fact: FactValue, vocab: Any, doc: Any, provenance: Any = None) -> None:
    spec = vocab.facts.get(fact.name)
    unit = spec.unit if spec is not None else None
    graph.add_node(
        f"fact:{fact.name}", "fact", fact.name, known=fact.known, value=_json_value(fact.value),
        display=display(fact.value, unit) if fact.known else "unknown", unit=unit,
        missing=list(fact.missing) or None, note=fact.note or None,
        derived_by=(spec.derived_by if spec is not None else None),
    )
    for path in fact.sources:
        raw = get_path(doc, path)
        graph.add_node(f"input:{path}", "input", path, path=path, value=_json_value(raw),
                       display=_input_display(raw), provenance=_provenance(path, provenance))
        graph.add_edge(f"input:{path}", f"fact:{fact.name}", "derived-from")


def _provenance(path: str, provenance: Any) -> list[dict[str, Any]] | None:
    """Where a document field came from in a FHIR Bundle: the field itself, or the entries of a list field."""
    if not provenance:
        return None
    keys = [k for k in provenance if k == path or k.startswith((path + "[", path + "."))]
    out = []
    for key in sorted(keys):
        item = provenance[key]
        entry = {"field": key, "resource": item.get("resource"), "fullUrl": item.get("fullUrl")}
        if item.get("sources"):
            entry["sources"] = [{"resource": s.get("resource"), "fullUrl": s.get("fullUrl")} for s in item["sources"]]
        out.append(entry)
    return out or None


def _input_display(raw: Any) -> str:
    if isinstance(raw, dict) and "value" in raw:
        return f"{raw['value']} {raw.get('unit', '')}".strip()
    if isinstance(raw, list):
        return f"{len(raw)} entr{'y' if len(raw) == 1 else 'ies'}"
    return display(raw)


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value
