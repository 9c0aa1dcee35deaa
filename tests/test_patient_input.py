"""Bad patient input: a clear message naming the file, line or field path, exit code 2, no traceback, no output file."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from radiopal.cli import main
from radiopal.errors import InputError
from radiopal.patient import parse_patient

RADIOPAL = [sys.executable, "-m", "radiopal"]


def write(tmp_path: Path, data: object, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    elif name.endswith(".json"):
        path.write_text(json.dumps(data), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def problems_of(doc: object) -> list[str]:
    with pytest.raises(InputError) as info:
        parse_patient(doc)
    return [str(p) for p in info.value.problems]


def test_an_unknown_field_is_named_with_a_suggestion(patient):
    patient["labs"]["platelet"] = {"value": 1, "unit": "10^9/L"}
    (line,) = problems_of(patient)
    assert "labs.platelet" in line and "unknown field" in line and "did you mean 'platelets'" in line


def test_an_unknown_enum_value_lists_what_is_allowed(patient):
    patient["primary_tumour"]["site"] = "prostrate"
    (line,) = problems_of(patient)
    assert "primary_tumour.site" in line and "'prostate'" in line


def test_a_unit_radiopal_does_not_know_is_an_error_naming_the_unit_field(patient):
    patient["labs"]["platelets"]["unit"] = "G/L"
    (line,) = problems_of(patient)
    assert "labs.platelets.unit" in line and "10^9/L" in line


def test_impossible_values_are_errors(patient):
    patient["labs"]["platelets"]["value"] = -5
    patient["pain"]["score_nrs"] = 11
    lines = problems_of(patient)
    assert any("labs.platelets.value" in x and "impossible" in x for x in lines)
    assert any("pain.score_nrs" in x for x in lines)


def test_a_date_after_the_evaluation_date_is_an_error(patient):
    patient["labs"]["date"] = "2025-07-01"
    (line,) = problems_of(patient)
    assert "labs.date" in line and "after the evaluation date" in line


def test_an_invalid_calendar_date_is_an_error(patient):
    patient["labs"]["date"] = "2025-02-30"
    (line,) = problems_of(patient)
    assert "labs.date" in line


def test_a_wrong_type_is_an_error_naming_the_expected_type(patient):
    patient["performance"]["ecog"] = "one"
    (line,) = problems_of(patient)
    assert "performance.ecog" in line and "expected" in line


def test_missing_sex_site_or_whole_blocks_are_not_errors_but_a_wrong_sex_is(patient):
    # Contract §D: only the identity fields are structural; the rest is insufficient_data (test_scenarios, DATA-06).
    for path in (("demographics", "sex"), ("primary_tumour", "site"), ("demographics",), ("primary_tumour",),
                 ("bone_disease",), ("labs",)):
        doc = copy.deepcopy(patient)
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
        assert parse_patient(doc).patient_id == patient["patient_id"]
    patient["demographics"]["sex"] = "M"
    assert any("demographics.sex" in x for x in problems_of(patient))


def test_the_python_api_takes_dates_as_yaml_safe_load_returns_them(patient):
    import datetime as dt

    patient["evaluation_date"] = dt.date.fromisoformat(patient["evaluation_date"])
    patient["labs"]["date"] = dt.date.fromisoformat(patient["labs"]["date"])
    document = parse_patient(patient)
    assert document.evaluation_date == patient["evaluation_date"]
    assert document.data["labs"]["date"] == patient["labs"]["date"].isoformat()
    patient["labs"]["date"] = dt.datetime(2025, 5, 30, 8, 0)  # a time of day is not a contract date
    assert any("labs.date" in x for x in problems_of(patient))


def test_malformed_yaml_names_the_line(tmp_path, capsys):
    path = write(tmp_path, "schema_version: '1.0'\npatient_id: [unclosed\nevaluation_date: 2025-01-01\n")
    assert main(["recommend", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "invalid YAML" in err and "Traceback" not in err


def test_duplicate_keys_are_an_error(tmp_path, capsys):
    path = write(tmp_path, "schema_version: '1.0'\npatient_id: A\npatient_id: B\n")
    assert main(["recommend", str(path)]) == 2
    assert "duplicate key 'patient_id'" in capsys.readouterr().err


def test_an_unreadable_file_is_a_clear_error(tmp_path, capsys):
    assert main(["recommend", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_yaml_alias_bomb_is_refused(tmp_path, capsys):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    path = write(tmp_path, bomb)
    assert main(["recommend", str(path)]) == 2
    assert "expands to more than" in capsys.readouterr().err


def test_invalid_input_writes_no_output_file(tmp_path, patient):
    patient["labs"]["platelets"]["unit"] = "bogus"
    path = write(tmp_path, patient)
    out = tmp_path / "out.json"
    graph = tmp_path / "g.json"
    proc = subprocess.run([*RADIOPAL, "recommend", str(path), "-o", str(out), "--graph", str(graph)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "labs.platelets.unit" in proc.stderr
    assert not out.exists() and not graph.exists()
    assert list(tmp_path.iterdir()) == [path]


def test_json_and_yaml_forms_of_a_patient_give_the_same_bytes(tmp_path, patient, capsys):
    yaml_path = write(tmp_path, patient)
    json_path = write(tmp_path, patient, "p.json")
    assert main(["recommend", str(yaml_path)]) == 0
    from_yaml = capsys.readouterr().out
    assert main(["recommend", str(json_path)]) == 0
    assert capsys.readouterr().out == from_yaml


def test_an_unwritable_output_path_is_a_clear_error(tmp_path, patient, capsys):
    path = write(tmp_path, patient)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["recommend", str(path), "-o", str(blocker / "out.json")]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(("drop", "path"), [
    (("demographics", "sex"), "demographics.sex"),
    (("primary_tumour", "site"), "primary_tumour.site"),
    (("demographics",), "demographics.sex"),
    (("primary_tumour",), "primary_tumour.site"),
    (("bone_disease",), "bone_disease.spinal_cord_compression"),
    (("labs",), "labs.platelets"),
])
def test_an_omitted_required_field_or_block_is_insufficient_data_with_its_path(patient, drop, path):
    """Contract §A.4 / §D: an omitted required field (or its whole block) is insufficient_data for the therapies that
    need it, with the path in missing_data; an absent sex or site is needed by every therapy (DATA-06)."""
    from radiopal.api import default_rulebase

    node = patient
    for key in drop[:-1]:
        node = node[key]
    del node[drop[-1]]
    result = default_rulebase().evaluate(patient)
    assert path in result.missing_data
    needing = [d for d in result.decisions if d.status == "insufficient_data"]
    assert any(path in d.missing_data for d in needing)
    if path in ("demographics.sex", "primary_tumour.site"):
        assert not [d.therapy for d in result.decisions if d.status in ("recommended", "eligible")]


def test_a_document_with_a_utf8_byte_order_mark_is_read(patient, tmp_path, capsys):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(patient).encode("utf-8"))
    assert main(["recommend", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["patient_id"] == patient["patient_id"]


def test_fhir_options_on_a_patient_document_are_an_error_not_ignored(patient, tmp_path, capsys):
    path = write(tmp_path, patient)
    assert main(["recommend", str(path), "--evaluation-date", "2025-06-02"]) == 2
    err = capsys.readouterr().err
    assert "--evaluation-date needs --fhir" in err and "Traceback" not in err
