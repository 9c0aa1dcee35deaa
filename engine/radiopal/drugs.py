"""The drug vocabulary (``kb/drugs.yaml``): every agent once, matched by name whatever the spelling.

A chemotherapy entry's ``agent`` is free text ("Docetaxel", "docetaxel + prednisone", "Taxotere", "KA/VE"). The
vocabulary resolves it to the agents it names — by the agent's id, brand names and synonyms, as whole words, case,
accents and punctuation ignored, anywhere in the text — and each agent to its class. Rules then name agents and
classes (``{field: drugs, op: contains, value: docetaxel}``), never spellings. Text that names no known agent
resolves to nothing: a rule asking "is it docetaxel?" reads *no*, and the evaluation warns that the agent was not
recognised (see :func:`unrecognised_agents`). Every shipped rule that names a drug needs the drug recognised before
it offers anything, so an unrecognised name can only withhold an option, never open one.

The FHIR mapping reads the same table for chemotherapy medications (ATC codes and names).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from . import schemacheck
from .errors import InputError, Problem, RulebaseError
from .resources import kb_dir
from .yamlio import SourceMap, load_document

_WORD = re.compile(r"[a-z0-9]+")


def normalise_text(text: str) -> tuple[str, ...]:
    """Lower-case words without accents or punctuation: ``"Radium-223 Dichloride"`` → ``("radium", "223", ...)``."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return tuple(_WORD.findall(folded))


def has_words(words: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    """Whether ``needle`` occurs in ``words`` as adjacent whole words, in order."""
    size = len(needle)
    return bool(size) and any(words[i:i + size] == needle for i in range(len(words) - size + 1))


@dataclass(frozen=True)
class Drug:
    """One agent: its id, class, ATC code and the names it is written by."""

    id: str
    group: str
    drug_class: str = ""
    myelosuppressive: bool | None = None
    atc: str = ""
    atc_verified: str = ""
    atc_source: str = ""
    brands: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()
    note: str = ""
    line: int = 0

    def names(self) -> Iterator[tuple[str, str]]:
        """(name, kind) of every way the agent is written: its id (``kind`` ``name``), brands, synonyms."""
        yield self.id.replace("_", " "), "name"
        for brand in self.brands:
            yield brand, "brand"
        for synonym in self.synonyms:
            yield synonym, "synonym"


@dataclass(frozen=True)
class DrugVocabulary:
    """The agents, their classes and the regimens that name several agents at once."""

    drugs: Mapping[str, Drug]
    classes: Mapping[str, str]  # class id → display name
    class_atc: Mapping[str, str]
    regimens: Mapping[str, tuple[str, ...]]
    file: str = ""
    version: str = ""
    _needles: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = field(default=(), repr=False)
    _cache: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def terms(self) -> tuple[str, ...]:
        """Every id a rule may name: the agents and the classes."""
        return tuple(sorted({*self.drugs, *self.classes}))

    def resolve(self, text: str) -> tuple[str, ...]:
        """The agents ``text`` names (sorted ids; empty when it names none)."""
        hit = self._cache.get(text)
        if hit is None:
            words = normalise_text(text)
            found = {drug for needle, drugs in self._needles if has_words(words, needle) for drug in drugs}
            hit = tuple(sorted(found))
            if len(self._cache) < 4096:
                self._cache[text] = hit
        return hit

    def terms_of(self, text: str) -> tuple[str, ...]:
        """The agents ``text`` names and their classes: what a rule's ``drugs contains X`` reads."""
        ids = self.resolve(text)
        classes = {self.drugs[i].drug_class for i in ids if self.drugs[i].drug_class}
        return tuple(sorted({*ids, *classes}))

    def members(self, term: str) -> tuple[str, ...]:
        """The agents a rule's term stands for: the agent itself, or every agent of a class."""
        if term in self.drugs:
            return (term,)
        return tuple(sorted(d.id for d in self.drugs.values() if d.drug_class == term))


def default_path() -> Path:
    return kb_dir() / "drugs.yaml"


def load_drugs(path: str | Path | None = None) -> DrugVocabulary:
    """Read and check the drug vocabulary (default: the shipped ``kb/drugs.yaml``); raises :class:`RulebaseError`
    listing every problem with file:line."""
    return _load(str(path) if path is not None else str(default_path()))


@cache
def _load(path: str) -> DrugVocabulary:
    try:
        located = load_document(path, kind="drug vocabulary")
    except InputError as exc:
        raise RulebaseError(f"{path}: cannot read the drug vocabulary", list(exc.problems)) from None
    data, source = located.data, located.source
    problems = schemacheck.problems(data, "drugs", source=source)
    if problems:
        raise RulebaseError(f"{path}: invalid drug vocabulary: {len(problems)} problem(s)", problems)
    return _build(path, data, source)


def _build(path: str, data: dict[str, Any], source: SourceMap) -> DrugVocabulary:
    problems: list[Problem] = []

    def bad(where: tuple[Any, ...], message: str, hint: str = "") -> None:
        line, column = source.where(where)
        problems.append(Problem(message, path=".".join(str(p) for p in where), file=path, line=line, column=column,
                                hint=hint))

    classes = {name: str(spec["name"]) for name, spec in data["classes"].items()}
    drugs: dict[str, Drug] = {}
    for name, spec in data["drugs"].items():
        if name in classes and spec.get("class") != name:
            bad(("drugs", name), f"{name!r} is both a drug and a class of other drugs", "rename one of them")
        drug_class = spec.get("class", "")
        if drug_class and drug_class not in classes:
            from .suggest import hint_for

            bad(("drugs", name, "class"), f"unknown class {drug_class!r} (not under `classes`)",
                hint_for(drug_class, classes))
        atc = spec.get("atc") or {}
        drugs[name] = Drug(name, spec["group"], drug_class, spec.get("myelosuppressive"), atc.get("code", ""),
                           atc.get("verified", ""), atc.get("source", ""), tuple(spec.get("brands", ())),
                           tuple(spec.get("synonyms", ())), spec.get("note", ""), source.where(("drugs", name))[0])
    regimens: dict[str, tuple[str, ...]] = {}
    for name, spec in (data.get("regimens") or {}).items():
        for i, drug in enumerate(spec["drugs"]):
            if drug not in drugs:
                bad(("regimens", name, "drugs", i), f"regimen {name!r} names {drug!r}, which is not under `drugs`")
        regimens[name] = tuple(spec["drugs"])
    needles: dict[tuple[str, ...], tuple[str, tuple[str, ...], tuple[Any, ...]]] = {}
    named: list[tuple[str, tuple[str, ...], tuple[str, str]]] = [
        (written, (drug.id,), ("drugs", drug.id)) for drug in drugs.values() for written, _ in drug.names()]
    named += [(written, members, ("regimens", written)) for written, members in regimens.items()]
    for written, members, where in named:
        needle = normalise_text(written)
        if not needle:
            bad(where, f"{written!r} has no letters or digits to match")
            continue
        first = needles.get(needle)
        if first is not None and first[1] != members:
            bad(where, f"the name {written!r} is also a name of {'/'.join(first[1])} (at {first[0]}); a name must "
                       "stand for one thing", "remove it from one of them")
            continue
        needles[needle] = (f"{path}:{source.where(where)[0]}", members, where)
    codes: dict[str, str] = {}
    for drug in drugs.values():
        if drug.atc:
            if drug.atc in codes:
                bad(("drugs", drug.id, "atc", "code"), f"ATC code {drug.atc} is also the code of {codes[drug.atc]}")
            codes[drug.atc] = drug.id
    if problems:
        raise RulebaseError(f"{path}: invalid drug vocabulary: {len(problems)} problem(s)", problems)
    # Longer names first, so that the order of matching never matters for the result (the union is taken anyway).
    ordered = tuple(sorted(((n, m[1]) for n, m in needles.items()), key=lambda item: (-len(item[0]), item[0])))
    return DrugVocabulary(drugs, classes, {k: str(v.get("atc", "")) for k, v in data["classes"].items()}, regimens,
                          path, str(data["version"]), ordered)


def unrecognised_agents(entries: Iterable[Mapping[str, Any]], base: str,
                        vocabulary: DrugVocabulary | None = None) -> list[dict[str, str]]:
    """A warning for each entry whose ``agent`` names no agent radiopal knows: rules that ask for a drug read it as
    none of them, and a clinician should know the name was not understood."""
    drugs = vocabulary or load_drugs()
    out = []
    for i, entry in enumerate(entries):
        agent = entry.get("agent")
        if isinstance(agent, str) and agent and not drugs.resolve(agent):
            out.append({"source": f"{base}[{i}].agent", "element": "agent",
                        "message": f"the agent {agent!r} is not in radiopal's drug vocabulary: rules that name a drug "
                                   "(e.g. docetaxel for the protocols) read it as none of them; write the agent's "
                                   "generic name"})
    return out
