"""Facts computed from several fields (contract §A.2). Each function is named in ``kb/facts.yaml`` (``from.derive``).

Every function returns a :class:`FactValue`; an unknown result carries the field paths whose absence caused it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .units import convert
from .values import FactTable, FactValue

if TYPE_CHECKING:
    from .load import PatientDocument

Deriver = Callable[[str, "PatientDocument", FactTable], FactValue]
_REGISTRY: dict[str, Deriver] = {}

DEFAULT_CALCIUM_LLN_MMOL_L = 2.10  # DATA-02 [U-derived; configurable]: lower of the published adult limits
DEFAULT_CALCIUM_LLN_MG_DL = 8.4  # DATA-02 gives "2.10 mmol/L (8.4 mg/dL)"; 8.4 × 0.2495 is 2.0958, not 2.10
WASHOUT_DAYS = 28  # SEQ-01 [U-derived]
WASHOUT_DELAYED_NADIR_DAYS = 42  # SEQ-01 [U-derived]: nitrosourea, mitomycin
DELAYED_NADIR_CLASSES = frozenset({"nitrosourea", "mitomycin"})


def compute(kind: str, name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    """Run the deriver ``kind`` for fact ``name``."""
    return _REGISTRY[kind](name, doc, table)


def known_derivers() -> frozenset[str]:
    """Names a vocabulary may use in ``from.derive``."""
    return frozenset(_REGISTRY)


def _register(kind: str) -> Callable[[Deriver], Deriver]:
    def wrap(fn: Deriver) -> Deriver:
        _REGISTRY[kind] = fn
        return fn

    return wrap


def _history(doc: PatientDocument, name: str) -> list[Mapping[str, Any]]:
    history = doc.data.get("treatment_history") or {}
    return [e for e in (history.get(name) or []) if isinstance(e, Mapping)]


def _female_only(field: str) -> Deriver:
    def derive(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
        path = f"demographics.{field}"
        demographics = doc.data.get("demographics") or {}
        value = demographics.get(field)
        if value is not None:
            return FactValue.of(name, bool(value), (path,), original=value)
        if demographics.get("sex") == "male":
            return FactValue.of(name, False, ("demographics.sex",), note="not applicable to a male patient")
        return FactValue.unknown(name, (path,))

    return derive


_register("pregnant")(_female_only("pregnant"))
_register("breastfeeding")(_female_only("breastfeeding"))


@_register("radiosensitive_histology")
def _radiosensitive(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    tumour = doc.data.get("primary_tumour") or {}
    if tumour.get("site") == "myeloma":
        return FactValue.of(name, True, ("primary_tumour.site",), note="myeloma implies a radiosensitive histology")
    value = tumour.get("radiosensitive_histology")
    if value is None:
        return FactValue.of(name, False, ("primary_tumour.radiosensitive_histology",), note="default (omitted)")
    return FactValue.of(name, bool(value), ("primary_tumour.radiosensitive_histology",), original=value)


@_register("labs_current")
def _labs_current(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    labs = doc.data.get("labs")
    if not isinstance(labs, Mapping) or not labs.get("date"):
        return FactValue.unknown(name, ("labs.date",))
    age = (doc.evaluation_date - dt.date.fromisoformat(labs["date"])).days
    note = f"labs dated {labs['date']}, {age} day(s) before the evaluation date (limit 7)"
    return FactValue.of(name, age <= 7, ("labs.date",), original=labs["date"], note=note)


@_register("wbc_or_anc_current")
def _wbc_or_anc(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    wbc, anc = table["wbc_current"], table["anc_current"]
    if wbc.known:
        return FactValue.of(name, wbc.value, wbc.sources, original=wbc.original)
    if anc.known:
        return FactValue.of(name, anc.value, anc.sources, original=anc.original,
                     note="ANC used as the substitute for an absent WBC (contract §A.4)")
    missing = tuple(p for p in wbc.missing if p != "labs.anc") or ("labs.wbc",)
    return FactValue.unknown(name, missing, note=wbc.note)


@_register("scr_rise")
def _scr_rise(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    scr, base = table["scr"], table["scr_baseline"]
    if scr.known and base.known:
        return FactValue.of(name, round(scr.value - base.value, 6), (*scr.sources, *base.sources))
    return FactValue.unknown(name, (*scr.missing, *base.missing))


@_register("ca_corr")
def _ca_corr(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    """DATA-02: the value if corrected, else Ca + 0.02 × (40 − albumin g/L) [U: Payne formula]."""
    labs = doc.data.get("labs")
    if not isinstance(labs, Mapping):
        return FactValue.unknown(name, ("labs.calcium", "labs.date"))
    calcium = labs.get("calcium")
    if not isinstance(calcium, Mapping) or calcium.get("value") is None:
        return FactValue.unknown(name, ("labs.calcium",))
    ca = convert(calcium["value"], calcium["unit"], "calcium")
    original = {"value": calcium["value"], "unit": calcium["unit"], "corrected": calcium.get("corrected")}
    if calcium.get("corrected") is True:
        return FactValue.of(name, ca, ("labs.calcium",), original=original)
    albumin = labs.get("albumin")
    if not isinstance(albumin, Mapping) or albumin.get("value") is None:
        return FactValue.unknown(name, ("labs.albumin",), ("labs.calcium", "labs.albumin"),
                          note="calcium is not albumin-corrected and no albumin is given")
    original["albumin"] = {"value": albumin["value"], "unit": albumin["unit"]}
    if calcium["unit"] == "mg/dL":
        # The brief's mg/dL form of the same formula; computing in the unit given keeps a value that sits exactly on
        # the limit in that unit on the limit (the two forms differ in the 4th decimal).
        alb_g_dl = convert(albumin["value"], albumin["unit"], "albumin", "g/dL")
        corrected_mg_dl = calcium["value"] + 0.8 * (4.0 - alb_g_dl)
        value = convert(corrected_mg_dl, "mg/dL", "calcium")
        note = "corrected with Ca + 0.8 × (4.0 − albumin g/dL) in mg/dL [U: Payne formula]"
    else:
        alb = convert(albumin["value"], albumin["unit"], "albumin")
        value = round(ca + 0.02 * (40 - alb), 6)
        note = "corrected with Ca + 0.02 × (40 − albumin g/L) [U: Payne formula]"
    return FactValue.of(name, value, ("labs.calcium", "labs.albumin"), original=original, note=note)


@_register("calcium_lln")
def _calcium_lln(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    labs = doc.data.get("labs") or {}
    lln = labs.get("calcium_lln") if isinstance(labs, Mapping) else None
    if isinstance(lln, Mapping) and lln.get("value") is not None:
        return FactValue.of(name, convert(lln["value"], lln["unit"], "calcium"), ("labs.calcium_lln",), original=lln)
    calcium = labs.get("calcium") if isinstance(labs, Mapping) else None
    if isinstance(calcium, Mapping) and calcium.get("unit") == "mg/dL":
        # The brief's default in the unit the calcium was given in, converted with the same factor as the calcium,
        # so that exactly 8.4 mg/dL is on the limit (not below it) as "2.10 mmol/L (8.4 mg/dL)" intends.
        return FactValue.of(name, convert(DEFAULT_CALCIUM_LLN_MG_DL, "mg/dL", "calcium"), ("labs.calcium_lln",),
                     note="default 8.4 mg/dL (DATA-02) [U-derived]")
    return FactValue.of(name, DEFAULT_CALCIUM_LLN_MMOL_L, ("labs.calcium_lln",),
                 note="default 2.10 mmol/L (DATA-02) [U-derived]")


@_register("hypocalcaemia")
def _hypocalcaemia(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    ca, lln = table["ca_corr"], table["calcium_lln"]
    if not ca.known:
        return FactValue.unknown(name, ca.missing, ca.sources)
    note = f"corrected calcium {ca.value:g} mmol/L vs lower limit {lln.value:g} mmol/L"
    return FactValue.of(name, ca.value < lln.value, (*ca.sources, *lln.sources), note=note)


@_register("ra223_injections_in_course")
def _ra223_count(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    count = sum(1 for e in _history(doc, "radionuclides") if e.get("agent") == "ra223")
    return FactValue.of(name, count, ("treatment_history.radionuclides",))


def _last_date(agent: str) -> Deriver:
    def derive(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
        dates = [dt.date.fromisoformat(e["date"]) for e in _history(doc, "radionuclides")
                 if e.get("agent") == agent and e.get("date")]
        if not dates:
            return FactValue.unknown(name, (), ("treatment_history.radionuclides",), note=f"no {agent} in the history")
        return FactValue.of(name, max(dates), ("treatment_history.radionuclides",))

    return derive


for _agent in ("ra223", "sr89", "sm153"):
    _register(f"last_{_agent}_date")(_last_date(_agent))


@_register("last_sr89_response")
def _last_sr89_response(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    entries = [e for e in _history(doc, "radionuclides") if e.get("agent") == "sr89" and e.get("date")]
    if not entries:
        return FactValue.unknown(name, (), ("treatment_history.radionuclides",), note="no Sr-89 in the history")
    last = max(entries, key=lambda e: e["date"])
    if last.get("response") is None:
        return FactValue.unknown(name, ("treatment_history.radionuclides[].response",))
    return FactValue.of(name, bool(last["response"]), ("treatment_history.radionuclides",))


@_register("last_ebrt_date")
def _last_ebrt(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    dates = [dt.date.fromisoformat(e["date"]) for e in _history(doc, "ebrt") if e.get("date")]
    if not dates:
        return FactValue.unknown(name, (), ("treatment_history.ebrt",), note="no EBRT in the history")
    return FactValue.of(name, max(dates), ("treatment_history.ebrt",))


def _normal_site(text: Any) -> str:
    return " ".join(str(text).lower().replace("-", " ").split())


def _local_ebrt_to_painful_sites(doc: PatientDocument) -> tuple[list[Mapping[str, Any]], bool]:
    """Prior EBRT courses whose site names a painful site, and whether the match could be judged.

    Every external-beam technique counts (brief §13a.5: RT-03 re-irradiation covers them all).
    """
    local = _history(doc, "ebrt")
    sites = {_normal_site(s) for s in ((doc.data.get("pain") or {}).get("painful_sites") or [])}
    if not local:
        return [], True
    if not sites:
        return [], False
    return [e for e in local if _normal_site(e.get("site", "")) in sites], True


@_register("painful_site_irradiated")
def _painful_site_irradiated(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    matched, judged = _local_ebrt_to_painful_sites(doc)
    if not judged:
        return FactValue.unknown(name, ("pain.painful_sites",), ("treatment_history.ebrt", "pain.painful_sites"),
                          note="prior EBRT is recorded but no painful site is named to compare it with")
    return FactValue.of(name, bool(matched), ("treatment_history.ebrt", "pain.painful_sites"))


@_register("last_painful_site_ebrt_date")
def _last_painful_site_ebrt(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    matched, judged = _local_ebrt_to_painful_sites(doc)
    if not judged:
        return FactValue.unknown(name, ("pain.painful_sites",), ("treatment_history.ebrt", "pain.painful_sites"))
    if not matched:
        return FactValue.unknown(name, (), ("treatment_history.ebrt",), note="no EBRT to a painful site")
    return FactValue.of(name, max(dt.date.fromisoformat(e["date"]) for e in matched), ("treatment_history.ebrt",))


@_register("hemibody_rt_given")
def _hemibody_given(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    given = any(str(e.get("technique", "")).startswith("hemibody") for e in _history(doc, "ebrt"))
    return FactValue.of(name, given, ("treatment_history.ebrt",))


@_register("on_abiraterone")
def _on_abiraterone(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    hormonal = table["hormonal"]
    if not hormonal.known:
        return FactValue.unknown(name, hormonal.missing)
    on = any(e.get("agent") == "abiraterone" and e.get("ongoing") is True for e in hormonal.value)
    return FactValue.of(name, on, ("treatment_history.hormonal",))


@_register("recent_myelosuppressive_chemo")
def _recent_chemo(name: str, doc: PatientDocument, table: FactTable) -> FactValue:
    recent = False
    for entry in _history(doc, "chemotherapy"):
        if entry.get("myelosuppressive") is not True:
            continue
        washout = WASHOUT_DELAYED_NADIR_DAYS if entry.get("class") in DELAYED_NADIR_CLASSES else WASHOUT_DAYS
        since = (doc.evaluation_date - dt.date.fromisoformat(entry["last_dose_date"])).days
        if entry.get("ongoing") is True or since < washout:
            recent = True
    return FactValue.of(name, recent, ("treatment_history.chemotherapy",))
