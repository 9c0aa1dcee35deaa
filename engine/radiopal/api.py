"""The stable Python API: compile a rule base once, evaluate many patients (thread-safe)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .catalogue import Catalogue, load_catalogue
from .compiled import CompiledRunner
from .errors import RulebaseError
from .patient.facts import FactTable, build_facts
from .patient.load import PatientDocument, load_patient, parse_patient
from .resolve import collect_advisories, decide, missing_data, resolve_statuses
from .resources import rules_dir
from .result import Result
from .rulebase.compile import CompiledRuleBase, compile_rules, plan_rules, planned_rulebase
from .rulebase.load import LoadedRules, load_rules
from .rulebase.model import Rule
from .rulebase.thresholds import ThresholdTable
from .run import Runner, on_fire
from .vocabulary import Vocabulary

__all__ = ["RuleBase", "evaluate_fhir", "load_patient", "load_rulebase"]


#: The evaluation paths (README, "Two evaluation paths"): experta is the engine of record.
ENGINES = ("experta", "compiled")


class RuleBase:
    """A compiled rule base. Build it with :func:`load_rulebase`; call :meth:`evaluate` per patient.

    One instance can serve many threads at once: on experta each thread gets its own engine; the compiled path keeps
    no per-thread state.
    """

    def __init__(self, loaded: LoadedRules, *, streamlined: bool = True, engine: str = "experta") -> None:
        """Compile ``loaded`` for ``engine`` (``"experta"``, the engine of record, or ``"compiled"``).

        ``streamlined=False`` runs experta on its own, slower RETE nodes (a reference for tests).
        Raises :class:`radiopal.RulebaseError` for an unknown engine.
        """
        if engine not in ENGINES:
            raise RulebaseError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
        self.loaded = loaded
        #: Lint errors of this rule base when it was run anyway (--allow-lint-errors): outputs say it failed lint.
        self.lint_errors = 0
        self.engine = engine
        self._runner: Runner | CompiledRunner
        if engine == "compiled":
            self.compiled: CompiledRuleBase = planned_rulebase(loaded, plan_rules(loaded))
            self._runner = CompiledRunner(self.compiled)
        else:
            self.compiled = compile_rules(loaded, on_fire, streamlined=streamlined)
            self._runner = Runner(self.compiled)
        #: Per-rule attributes of reasoning-graph rule nodes (filled by the graph builder, once per rule).
        self.rule_node_attributes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def on_engine(self, engine: str) -> RuleBase:
        """This rule base (the same loaded rules) compiled for ``engine``; ``self`` when it already is."""
        return self if engine == self.engine else RuleBase(self.loaded, engine=engine)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule, in file order."""
        return self.loaded.rules

    @property
    def vocabulary(self) -> Vocabulary:
        return self.loaded.vocabulary

    @property
    def catalogue(self) -> Catalogue:
        return self.loaded.catalogue

    @property
    def thresholds(self) -> ThresholdTable:
        """The named thresholds the rules use (empty when the rule folder has no thresholds.yaml)."""
        return self.loaded.thresholds

    @property
    def version(self) -> str:
        """Rule-base version: every file's area and version."""
        return self.compiled.version

    @property
    def digest(self) -> str:
        """sha256 of the rule content: changes whenever any rule changes."""
        return self.compiled.digest

    @property
    def folder(self) -> str:
        return self.loaded.folder

    def prepare(self) -> None:
        """Build this thread's experta engine (its RETE network) now, so the first evaluation does not pay for it.

        Each thread builds its own engine on first use; a server calls this at start-up. (Nothing to do on the
        compiled path.)
        """
        self._runner.prepare()

    def evaluate(self, patient: PatientDocument | Mapping[str, Any] | str | Path) -> Result:
        """Decide every therapy for one patient (a validated document, a dict following contract §A, or a path).

        Raises :class:`radiopal.InputError` for an invalid document.
        """
        doc = _as_document(patient)
        return self.evaluate_facts(doc, build_facts(doc, self.vocabulary))

    def evaluate_facts(self, doc: PatientDocument, table: FactTable) -> Result:
        """Decide every therapy from a fact table already built for ``doc`` (what :meth:`evaluate` does after
        reading the document; the differential tests feed both paths hand-made tables, e.g. exact thresholds)."""
        state = self._runner.run(table, lambda s: resolve_statuses(s, self.catalogue))
        decisions = decide(state, self.catalogue)
        return Result(doc, table, state, decisions, collect_advisories(state, self.catalogue),
                      missing_data(decisions), self)


def _as_document(patient: PatientDocument | Mapping[str, Any] | str | Path) -> PatientDocument:
    if isinstance(patient, PatientDocument):
        return patient
    if isinstance(patient, (str, Path)):
        return load_patient(patient)
    return parse_patient(patient)


def load_rulebase(path: str | Path | None = None, *, kb: str | Path | None = None,
                  engine: str = "experta") -> RuleBase:
    """Parse, validate, type-check and compile a rule base (default: the shipped ``rules/``).

    ``kb`` selects another knowledge-base folder for the catalogue (default: the shipped ``kb/``). ``engine`` picks
    the evaluation path: ``"experta"`` (default, the engine of record) or ``"compiled"`` (the same decisions, graphs
    and explanations, faster; see README). Raises :class:`radiopal.RulebaseError` with file:line:column for every
    authoring problem.
    """
    catalogue = load_catalogue(kb) if kb is not None else None
    loaded = load_rules(path if path is not None else rules_dir(), catalogue=catalogue)
    return RuleBase(loaded, engine=engine)


_default: RuleBase | None = None
_default_lock = threading.Lock()


def default_rulebase() -> RuleBase:
    """The shipped rule base, compiled on first use and shared (thread-safe) by every later call."""
    global _default
    with _default_lock:
        if _default is None:
            _default = load_rulebase()
        return _default


def evaluate_fhir(bundle: Mapping[str, Any] | str | Path, rulebase: RuleBase | None = None,
                  evaluation_date: str | dt.date | None = None, patient: str | None = None,
                  answers: Mapping[str, Any] | None = None) -> Result:
    """Map a FHIR R4 Bundle (a dict, JSON text or a file path) with :mod:`radiopal.fhir` and evaluate it.

    ``rulebase`` defaults to the shipped one; ``evaluation_date`` (``YYYY-MM-DD`` or a ``datetime.date``) defaults
    to the date of ``Bundle.timestamp``, else today; ``patient`` picks one Patient (id or identifier) of a Bundle
    holding several. The field provenance of the mapping (resource id and ``fullUrl`` per document field) is kept in
    ``result.extra["provenance"]`` and on the graph's input nodes; the values that could not be used are
    ``result.warnings`` (contract §D, also in the JSON output); ``result.extra["evaluation_date_from"]`` says where
    the evaluation date came from. ``answers``, a FHIR QuestionnaireResponse to radiopal's questionnaire
    (:mod:`radiopal.fhir.questionnaire`), supplies or replaces fields of the mapped document before the evaluation.
    Raises :class:`radiopal.InputError` naming the element for an invalid Bundle or answer.
    """
    from .fhir import bundle_to_document

    mapped = bundle_to_document(dict(bundle) if isinstance(bundle, Mapping) else bundle,
                                evaluation_date=evaluation_date, patient=patient)
    document: Mapping[str, Any] = mapped.document
    if answers is not None:
        from .fhir.questionnaire import apply_answers

        document = apply_answers(document, answers)
    result = (rulebase or default_rulebase()).evaluate(document)
    attach_mapping(result, mapped)
    if answers is not None:
        from .fhir.questionnaire import answered_items

        answered = {str(i.get("linkId")) for i in answered_items(answers.get("item") or [])}
        for path in answered:
            result.extra["provenance"][path] = {"resource": "QuestionnaireResponse", "element": f"item[{path}]"}
    return result



def attach_mapping(result: Result, mapped: Any) -> None:
    """Keep a FHIR mapping's provenance, warnings and evaluation-date origin on the result it was evaluated to."""
    result.extra["provenance"] = dict(mapped.provenance)
    result.extra["fhir_warnings"] = [w.to_dict() for w in mapped.warnings]
    result.extra["evaluation_date_from"] = mapped.evaluation_date_from
