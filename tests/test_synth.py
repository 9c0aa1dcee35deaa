"""The seeded synthetic cohort generator (``radiopal.synth``) and its ``radiopal synth`` subcommand."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from radiopal.cli import main
from radiopal.resources import schema_path
from radiopal.synth import KINDS, SyntheticPatient, generate, patient_at
from radiopal.yamlio import load_document

Doc = dict[str, Any]


def _canonical(patients: list[SyntheticPatient]) -> bytes:
    return json.dumps([(p.kind, p.paths, p.document) for p in patients], sort_keys=True).encode()


def _validator() -> Any:
    path = schema_path("patient")
    from jsonschema import Draft202012Validator

    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


# -- document accessors (plain reading of contract §A.2; the engine's own normalisation is tested elsewhere) ---------


def _get(doc: Doc, path: str, default: Any = None) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return default
        node = node[part]
    return node


def _days(doc: Doc, date: str) -> int:
    return (dt.date.fromisoformat(doc["evaluation_date"]) - dt.date.fromisoformat(date)).days


def _cells(doc: Doc, lab: str) -> float:
    q = doc["labs"][lab]
    return q["value"] / 1000 if q["unit"] == "/uL" else q["value"]


def _hb(doc: Doc) -> float:
    q = doc["labs"]["haemoglobin"]
    return q["value"] * {"g/dL": 1.0, "g/L": 0.1, "mmol/L": 1.611}[q["unit"]]


def _ca_corr(doc: Doc) -> float:
    q = doc["labs"]["calcium"]
    ca = q["value"] * (0.2495 if q["unit"] == "mg/dL" else 1.0)
    if q["corrected"]:
        return ca
    albumin = doc["labs"]["albumin"]
    return ca + 0.02 * (40 - albumin["value"] * (10 if albumin["unit"] == "g/dL" else 1))


def _lln(doc: Doc) -> float:
    q = _get(doc, "labs.calcium_lln")
    return 2.10 if q is None else q["value"] * (0.2495 if q["unit"] == "mg/dL" else 1.0)


def _crcl(doc: Doc) -> float:
    return doc["labs"]["creatinine_clearance"]["value"]


def _history(doc: Doc, name: str) -> list[Doc]:
    return _get(doc, f"treatment_history.{name}", [])


def _ra223(doc: Doc) -> list[int]:
    return sorted(_days(doc, r["date"]) for r in _history(doc, "radionuclides") if r["agent"] == "ra223")


def _chemo_at(doc: Doc, days: int, classes: set[str] | None = None) -> bool:
    return any(
        not c["ongoing"] and _days(doc, c["last_dose_date"]) == days and (classes is None or c["class"] in classes)
        for c in _history(doc, "chemotherapy")
    )


def _crpc(doc: Doc) -> bool:
    return _get(doc, "primary_tumour.castration_resistant") is True


_DELAYED_NADIR = {"nitrosourea", "mitomycin"}

# Each situation is one a rule of the brief distinguishes; a 3,000-patient cohort must reach every one of them.
SITUATIONS: dict[str, Callable[[Doc], bool]] = {
    "female pregnant": lambda d: _get(d, "demographics.pregnant") is True,
    "female breastfeeding": lambda d: _get(d, "demographics.breastfeeding") is True,
    "cord compression impending": lambda d: d["bone_disease"]["spinal_cord_compression"] == "impending",
    "cord compression established": lambda d: d["bone_disease"]["spinal_cord_compression"] == "established",
    "cord compression with paraplegia over 48 h": lambda d: _get(d, "bone_disease.paraplegia_over_48h") is True,
    "pathological fracture": lambda d: d["bone_disease"]["pathological_fracture"] is True,
    "impending fracture with Mirels 8": lambda d: d["bone_disease"]["impending_fracture"]
    and d["bone_disease"]["mirels_score"] == 8,
    "impending fracture with Mirels >= 9": lambda d: d["bone_disease"]["impending_fracture"]
    and d["bone_disease"]["mirels_score"] >= 9,
    "Mirels <= 7": lambda d: _get(d, "bone_disease.mirels_score", 99) <= 7,
    "CrCl > 60": lambda d: _crcl(d) > 60,
    "CrCl exactly 60": lambda d: _crcl(d) == 60,
    "CrCl 50-60": lambda d: 50 <= _crcl(d) < 60,
    "CrCl exactly 50": lambda d: _crcl(d) == 50,
    "CrCl 40-49": lambda d: 40 <= _crcl(d) < 50,
    "CrCl exactly 40": lambda d: _crcl(d) == 40,
    "CrCl 30-39": lambda d: 30 <= _crcl(d) < 40,
    "CrCl exactly 30": lambda d: _crcl(d) == 30,
    "CrCl < 30": lambda d: _crcl(d) < 30,
    "CrCl < 10": lambda d: _crcl(d) < 10,
    "CrCl given as eGFR": lambda d: d["labs"]["creatinine_clearance"]["method"] == "egfr",
    "platelets exactly 100": lambda d: _cells(d, "platelets") == 100,
    "platelets exactly 60": lambda d: _cells(d, "platelets") == 60,
    "platelets exactly 50": lambda d: _cells(d, "platelets") == 50,
    "platelets < 50": lambda d: _cells(d, "platelets") < 50,
    "ANC exactly 1.5": lambda d: _cells(d, "anc") == 1.5,
    "ANC exactly 1.0": lambda d: _cells(d, "anc") == 1.0,
    "WBC exactly 2.4": lambda d: _cells(d, "wbc") == 2.4,
    "WBC < 2.4": lambda d: _cells(d, "wbc") < 2.4,
    "Hb exactly 10 g/dL": lambda d: d["labs"]["haemoglobin"] in ({"value": 10.0, "unit": "g/dL"},
                                                                 {"value": 100, "unit": "g/L"}),
    "Hb < 10 g/dL": lambda d: _hb(d) < 9.95,
    "cell counts in /uL": lambda d: d["labs"]["platelets"]["unit"] == "/uL",
    "cell counts in 10^3/uL": lambda d: d["labs"]["platelets"]["unit"] == "10^3/uL",
    "cell counts in 10^9/L": lambda d: d["labs"]["platelets"]["unit"] == "10^9/L",
    "Hb in g/L": lambda d: d["labs"]["haemoglobin"]["unit"] == "g/L",
    "Hb in mmol/L": lambda d: d["labs"]["haemoglobin"]["unit"] == "mmol/L",
    "uncorrected calcium in mg/dL with albumin": lambda d: d["labs"]["calcium"]["unit"] == "mg/dL"
    and d["labs"]["calcium"]["corrected"] is False,
    "albumin in g/dL": lambda d: _get(d, "labs.albumin.unit") == "g/dL",
    "creatinine in umol/L": lambda d: _get(d, "labs.serum_creatinine.unit") == "umol/L",
    "hypocalcaemia": lambda d: _ca_corr(d) < _lln(d) - 1e-9,
    "creatinine rise >= 0.5 mg/dL on a bisphosphonate": lambda d: _get(d, "labs.serum_creatinine_baseline")
    is not None and d["labs"]["serum_creatinine"]["value"] - d["labs"]["serum_creatinine_baseline"]["value"]
    >= (0.5 if d["labs"]["serum_creatinine"]["unit"] == "mg/dL" else 44),
    "labs stale (> 7 days)": lambda d: _days(d, d["labs"]["date"]) > 7,
    "labs exactly 7 days old": lambda d: _days(d, d["labs"]["date"]) == 7,
    "platelets falling": lambda d: _get(d, "labs.platelet_trend") == "falling",
    "DIC suspected": lambda d: _get(d, "labs.dic_suspected") is True,
    "unhealed oral lesion": lambda d: d["dental"]["unhealed_oral_lesion"] is True,
    "no dental examination": lambda d: _get(d, "dental.exam_done") is False,
    "NRS 0 without analgesics": lambda d: d["pain"]["score_nrs"] == 0 and d["pain"]["analgesic_step"] == 0,
    "localized pain": lambda d: d["pain"]["distribution"] == "localized",
    "multifocal pain": lambda d: d["pain"]["distribution"] == "multifocal",
    "life expectancy < 6 weeks": lambda d: d["performance"]["life_expectancy_weeks"] < 6,
    "life expectancy exactly 6 weeks": lambda d: d["performance"]["life_expectancy_weeks"] == 6,
    "oligometastatic, controlled primary, ECOG 0-1": lambda d: _get(d, "bone_disease.total_metastases_count", 99)
    <= 5 and _get(d, "primary_tumour.primary_controlled") is True and d["performance"]["ecog"] <= 1
    and d["performance"]["life_expectancy_weeks"] >= 26,
    "no uptake at the painful sites": lambda d: d["bone_disease"]["bone_scan"]["uptake_at_painful_sites"] is False,
    "uptake unknown": lambda d: d["bone_disease"]["bone_scan"]["uptake_at_painful_sites"] is None,
    "bone scan older than 8 weeks": lambda d: _days(d, d["bone_disease"]["bone_scan"]["date"]) > 56,
    "superscan": lambda d: _get(d, "bone_disease.bone_scan.superscan") is True,
    "lymph node >= 3 cm": lambda d: _get(d, "bone_disease.lymph_node_max_short_axis_cm", 0) >= 3,
    "CRPC with visceral metastases": lambda d: _crpc(d) and d["bone_disease"]["visceral_metastases"],
    "CRPC with a single bone lesion": lambda d: _crpc(d) and d["bone_disease"]["lesion_count"] == 1,
    "castration-sensitive prostate": lambda d: _get(d, "primary_tumour.castration_resistant") is False,
    "myeloma": lambda d: d["primary_tumour"]["site"] == "myeloma",
    "osteolytic breast": lambda d: d["primary_tumour"]["site"] == "breast" and d["bone_disease"]["pattern"]
    == "osteolytic",
    "lung, renal, thyroid and other primaries": lambda d: d["primary_tumour"]["site"] in {"lung", "renal", "thyroid",
                                                                                       "other"},
    "EU with fewer than 2 prior mCRPC lines": lambda d: _get(d, "context.regulatory_region") == "EU"
    and _get(d, "treatment_history.prior_mcrpc_systemic_lines", 99) < 2,
    "US region": lambda d: _get(d, "context.regulatory_region") == "US",
    "no region given": lambda d: _get(d, "context.regulatory_region") is None,
    "trial available": lambda d: _get(d, "context.trial_available") is True,
    "Re-186 available": lambda d: _get(d, "context.availability.re186") is True,
    "P-32 available": lambda d: _get(d, "context.availability.p32") is True,
    "myelosuppressive chemotherapy ongoing": lambda d: any(c["ongoing"] and c["myelosuppressive"]
                                                            for c in _history(d, "chemotherapy")),
    "chemotherapy 27 days ago": lambda d: _chemo_at(d, 27),
    "chemotherapy 28 days ago": lambda d: _chemo_at(d, 28),
    "nitrosourea or mitomycin 41 days ago": lambda d: _chemo_at(d, 41, _DELAYED_NADIR),
    "nitrosourea or mitomycin 42 days ago": lambda d: _chemo_at(d, 42, _DELAYED_NADIR),
    "nitrosourea given": lambda d: any(c["class"] == "nitrosourea" for c in _history(d, "chemotherapy")),
    "mitomycin given": lambda d: any(c["class"] == "mitomycin" for c in _history(d, "chemotherapy")),
    "CRPC on docetaxel": lambda d: _crpc(d) and any(c["agent"] == "docetaxel" and c["ongoing"]
                                                    for c in _history(d, "chemotherapy")),
    "CRPC responding to docetaxel": lambda d: _crpc(d) and any(
        c["agent"] == "docetaxel" and c.get("best_response") in {"response", "stable"}
        for c in _history(d, "chemotherapy")),
    "CRPC after doxorubicin induction": lambda d: _crpc(d) and any(
        c["agent"] == "doxorubicin" and c.get("best_response") in {"response", "stable"}
        for c in _history(d, "chemotherapy")),
    "Ra-223 course with 6 injections given": lambda d: len(_ra223(d)) == 6,
    "Ra-223 course in progress": lambda d: 1 <= len(_ra223(d)) <= 5,
    "Ra-223 last injection < 28 days ago": lambda d: bool(_ra223(d)) and _ra223(d)[0] < 28,
    "Ra-223 last injection exactly 28 days ago": lambda d: bool(_ra223(d)) and _ra223(d)[0] == 28,
    "Ra-223 in course, counts below the subsequent-dose limits": lambda d: 1 <= len(_ra223(d)) <= 5
    and (_cells(d, "anc") < 1.0 or _cells(d, "platelets") < 50),
    "Sr-89 < 90 days ago": lambda d: any(r["agent"] == "sr89" and _days(d, r["date"]) < 90
                                         for r in _history(d, "radionuclides")),
    "Sr-89 without response": lambda d: any(r["agent"] == "sr89" and r.get("response") is False
                                            for r in _history(d, "radionuclides")),
    "Sm-153 < 56 days ago": lambda d: any(r["agent"] == "sm153" and _days(d, r["date"]) < 56
                                          for r in _history(d, "radionuclides")),
    "hemibody EBRT": lambda d: any(e["technique"].startswith("hemibody") for e in _history(d, "ebrt")),
    "EBRT to a painful site < 30 days ago": lambda d: any(
        e["site"] in _get(d, "pain.painful_sites", []) and _days(d, e["date"]) < 30 for e in _history(d, "ebrt")),
    "abiraterone ongoing": lambda d: any(h["agent"] == "abiraterone" and h["ongoing"] for h in _history(d, "hormonal")),
    "enzalutamide ongoing": lambda d: any(h["agent"] == "enzalutamide" and h["ongoing"]
                                          for h in _history(d, "hormonal")),
    "tamoxifen or aromatase inhibitor": lambda d: any(h["agent"] in {"tamoxifen", "aromatase_inhibitor"}
                                                      for h in _history(d, "hormonal")),
    "denosumab ongoing": lambda d: any(b["agent"] == "denosumab" and b["ongoing"]
                                       for b in _history(d, "bone_health_agents")),
    "zoledronic acid ongoing": lambda d: any(b["agent"] == "zoledronic_acid" and b["ongoing"]
                                             for b in _history(d, "bone_health_agents")),
    "two bone-health agents ongoing": lambda d: sum(b["ongoing"] for b in _history(d, "bone_health_agents")) >= 2,
    "hypersensitivity to phosphonates": lambda d: "phosphonates" in _get(d, "treatment_history.hypersensitivity", []),
    "ineligible for other mCRPC therapy": lambda d: _get(d, "treatment_history.ineligible_for_other_mcrpc_therapy")
    is True,
}


@pytest.fixture(scope="module")
def valid_cohort() -> list[Doc]:
    return [p.document for p in generate(3000, seed=11, bad_fraction=0.0, missing_fraction=0.0)]


@pytest.fixture(scope="module")
def mixed_cohort() -> list[SyntheticPatient]:
    return list(generate(1500, seed=5, bad_fraction=0.1, missing_fraction=0.3))


def test_the_same_seed_gives_the_same_bytes_twice() -> None:
    assert _canonical(list(generate(200, seed=42))) == _canonical(list(generate(200, seed=42)))


def test_different_seeds_give_different_patients() -> None:
    first = list(generate(50, seed=1))
    second = list(generate(50, seed=2))
    assert _canonical(first) != _canonical(second)
    assert sum(a.document["labs"] != b.document.get("labs") for a, b in zip(first, second, strict=True)) > 40


def test_the_ith_patient_is_the_same_whatever_the_cohort_size_or_start() -> None:
    hundred = list(generate(100, seed=3))
    assert list(generate(10, seed=3)) == hundred[:10]
    assert list(generate(15, seed=3, start=40)) == hundred[40:55]
    assert patient_at(77, seed=3) == hundred[77]


def test_patient_ids_name_the_seed_and_the_index() -> None:
    ids = [p.document["patient_id"] for p in generate(3, seed=9, start=5, bad_fraction=0)]
    assert ids == ["SYN-9-0000005", "SYN-9-0000006", "SYN-9-0000007"]


def test_kind_shares_follow_the_requested_fractions() -> None:
    counts = Counter(p.kind for p in generate(2000, seed=4, bad_fraction=0.1, missing_fraction=0.2))
    assert set(counts) <= set(KINDS)
    assert counts["bad"] / 2000 == pytest.approx(0.1, abs=0.03)
    assert counts["missing"] / 2000 == pytest.approx(0.2, abs=0.04)
    assert {p.kind for p in generate(300, seed=4, bad_fraction=0, missing_fraction=0)} == {"valid"}


def test_the_clinical_story_does_not_depend_on_the_fractions() -> None:
    default = list(generate(200, seed=6))
    all_valid = list(generate(200, seed=6, bad_fraction=0, missing_fraction=0))
    assert all(d == v for d, v in zip(default, all_valid, strict=True) if d.kind == "valid")
    assert all(v.paths == () for v in all_valid)


@pytest.mark.parametrize(
    "kwargs",
    [{"n": -1}, {"n": 1, "start": -1}, {"n": 1, "bad_fraction": -0.1}, {"n": 1, "missing_fraction": 1.5},
     {"n": 1, "bad_fraction": 0.6, "missing_fraction": 0.6}],
)
def test_impossible_arguments_raise_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        generate(**kwargs)


def test_valid_and_missing_patients_satisfy_the_patient_schema(mixed_cohort: list[SyntheticPatient]) -> None:
    validator = _validator()
    failures = [(p.document["patient_id"], p.kind, [e.message for e in validator.iter_errors(p.document)][:3])
                for p in mixed_cohort if p.kind != "bad" and not validator.is_valid(p.document)]
    assert failures == []


def test_bad_patients_violate_the_patient_schema_at_the_reported_paths(
    mixed_cohort: list[SyntheticPatient],
) -> None:
    validator = _validator()
    bad = [p for p in mixed_cohort if p.kind == "bad"]
    assert len(bad) > 100
    for synthetic in bad:
        errors = list(validator.iter_errors(synthetic.document))
        assert errors, synthetic.paths
        locations = {"".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in e.absolute_path)
                     .lstrip(".") for e in errors}
        assert any(path.startswith(location) for path in synthetic.paths for location in locations), (
            synthetic.paths, locations)


def test_missing_patients_lack_each_reported_field(mixed_cohort: list[SyntheticPatient]) -> None:
    missing = [p for p in mixed_cohort if p.kind == "missing"]
    assert len(missing) > 300
    dropped: Counter[str] = Counter()
    for synthetic in missing:
        assert 1 <= len(synthetic.paths) <= 3
        for path in synthetic.paths:
            assert _get(synthetic.document, path) is None, path
            dropped[path] += 1
    assert {"labs", "labs.haemoglobin", "bone_disease.bone_scan.uptake_at_painful_sites"} <= set(dropped)


def test_valid_patients_keep_the_contract_invariants(valid_cohort: list[Doc]) -> None:
    for doc in valid_cohort:
        today = dt.date.fromisoformat(doc["evaluation_date"])
        assert dt.date(2024, 1, 1) <= today <= dt.date(2026, 12, 31)
        assert 0 <= _days(doc, doc["labs"]["date"]) <= 14
        if doc["demographics"]["sex"] == "female":
            assert {"pregnant", "breastfeeding"} <= set(doc["demographics"])
        assert (doc["primary_tumour"]["site"] == "prostate") == ("castration_resistant" in doc["primary_tumour"])
        if doc["primary_tumour"]["site"] == "prostate":
            assert doc["demographics"]["sex"] == "male"
        if doc["bone_disease"]["impending_fracture"]:
            assert 4 <= doc["bone_disease"]["mirels_score"] <= 12
        if not doc["labs"]["calcium"]["corrected"]:
            assert "albumin" in doc["labs"]
        for entry in _history(doc, "chemotherapy"):
            assert _days(doc, entry["last_dose_date"]) >= 0
        for entry in _history(doc, "radionuclides") + _history(doc, "ebrt"):
            assert _days(doc, entry["date"]) >= 0
        injections = _ra223(doc)
        assert len(injections) <= 6
        assert all(later - earlier >= 28 for earlier, later in itertools.pairwise(injections))


@pytest.mark.parametrize("situation", sorted(SITUATIONS))
def test_a_cohort_of_3000_reaches_the_situation(valid_cohort: list[Doc], situation: str) -> None:
    assert any(SITUATIONS[situation](doc) for doc in valid_cohort)


# -- the subcommand ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_cli_writes_one_file_per_patient_and_exits_0(tmp_path: Path, fmt: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "12", "-o", str(tmp_path / "out"), "--seed", "8", "--format", fmt,
                 "--bad-fraction", "0"]) == 0
    files = sorted((tmp_path / "out").iterdir())
    expected = list(generate(12, seed=8, bad_fraction=0))
    assert [f.name for f in files] == [f"{p.document['patient_id']}.{fmt}" for p in expected]
    assert [load_document(f, kind="patient").data for f in files] == [p.document for p in expected]
    summary = capsys.readouterr().out.strip()
    assert summary.count("\n") == 0
    counts = Counter(p.kind for p in expected)
    assert f"{counts['valid']} valid, {counts['missing']} missing, 0 bad" in summary


def test_cli_writes_the_same_bytes_for_the_same_seed(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(["synth", "20", "-o", str(tmp_path / name), "--seed", "5", "--bad-fraction", "0.2"]) == 0
    first = {f.name: f.read_bytes() for f in (tmp_path / "a").iterdir()}
    assert first == {f.name: f.read_bytes() for f in (tmp_path / "b").iterdir()}


def test_cli_jsonl_writes_one_line_per_patient(tmp_path: Path) -> None:
    assert main(["synth", "30", "-o", str(tmp_path), "--format", "jsonl", "--seed", "2"]) == 0
    lines = (tmp_path / "patients.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [p.document for p in generate(30, seed=2)]


def test_cli_refuses_n_0_with_exit_2_and_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "0", "-o", str(tmp_path / "out")]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_file_as_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x", encoding="utf-8")
    assert main(["synth", "3", "-o", str(target)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_cli_refuses_fractions_that_add_up_to_more_than_1(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "3", "-o", str(tmp_path), "--bad-fraction", "0.7", "--missing-fraction", "0.7"]) == 2
    assert "more than 1" in capsys.readouterr().err
