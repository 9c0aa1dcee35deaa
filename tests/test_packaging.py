"""kb/ and rules/ ship inside the wheel: a plain `pip install .` finds them, not only an editable install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
_DEMO = json.loads(json.dumps(yaml.safe_load((REPO / "examples" / "patient-mcrpc.yaml").read_text(encoding="utf-8")),
                              default=str))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"wheel build failed: {proc.stderr[-2000:]}")
    (built,) = out.glob("radiopal-*.whl")
    return built


def test_the_wheel_contains_the_knowledge_base_rules_and_type_marker(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped_rules = {p.name for p in (REPO / "rules").glob("*.yaml")}
    assert {f"radiopal/_data/rules/{n}" for n in shipped_rules} <= names
    for required in ("radiopal/_data/kb/facts.yaml", "radiopal/_data/kb/therapies.yaml",
                     "radiopal/_data/kb/references.yaml", "radiopal/_data/kb/schemas/patient.schema.json",
                     "radiopal/_data/kb/schemas/decision.schema.json", "radiopal/_data/kb/schemas/rulefile.schema.json",
                     "radiopal/py.typed"):
        assert required in names
    templates = {f"radiopal/service/templates/{p.name}" for p in (REPO / "engine" / "radiopal" / "service" /
                                                                  "templates").glob("*.j2")}
    assert templates and templates <= names  # the clinician page's Jinja2 templates
    report = {f"radiopal/explain/templates/{p.name}" for p in (REPO / "engine" / "radiopal" / "explain" /
                                                               "templates").iterdir() if p.is_file()}
    assert {"radiopal/explain/templates/report.html.j2", "radiopal/explain/templates/report.css"} <= report <= names


def test_an_installed_wheel_finds_its_data_without_the_source_tree(wheel, tmp_path):
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    code = (
        "import radiopal, radiopal.resources as r; "
        f"assert radiopal.__file__.startswith({str(unpacked)!r}), radiopal.__file__; "
        f"assert str(r.rules_dir()).startswith({str(unpacked)!r}); "
        "rb = radiopal.load_rulebase(); print(len(rb.rules) > 0); "
        "from radiopal.explain import explain, render_html; res = rb.evaluate(" + repr(_DEMO) + "); "
        "print('Action summary' in render_html(explain(res), res, graphs=False))"
    )
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]  # the rules load and the report renders from the wheel's templates
