"""A command whose optional extra is not installed says which extra to install (issue #15 item 5), never "internal
error". Each case runs the CLI in a fresh interpreter where the module is made unimportable
(``sys.modules[name] = None``, what Python does for a module that is absent)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from radiopal.extras import MissingExtraError, missing_extra

EXAMPLES = REPO / "examples" / "fhir"
V05_BUNDLE = str(EXAMPLES / "V05.bundle.json")
V05_DOCUMENT = str(EXAMPLES / "V05.patient.yaml")


def run_without(modules: list[str], argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    code = ("import sys\n"
            f"for name in {modules!r}:\n"
            "    sys.modules[name] = None\n"
            "from radiopal.cli import main\n"
            f"sys.exit(main({argv!r}))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300,
                          check=False)


@pytest.mark.parametrize(("missing", "argv", "command", "extra", "module"), [
    (["dask", "distributed"], ["cohort", str(EXAMPLES), "-o", "{out}", "--no-progress"], "cohort", "cohort", "dask"),
    (["pyarrow"], ["cohort", str(EXAMPLES), "-o", "{out}", "--serial", "--no-progress"], "cohort", "cohort",
     "pyarrow"),
    (["fastapi"], ["serve", "--no-auth", "--port", "0"], "serve", "service", "fastapi"),
    (["uvicorn"], ["serve", "--no-auth", "--port", "0"], "serve", "service", "uvicorn"),
    (["fhir"], ["serve", "--no-auth", "--port", "0"], "serve", "fhir", "fhir.resources"),
    (["sqlalchemy"], ["audit", "list", "--db", "{out}.db"], "audit", "service", "sqlalchemy"),
    # No up-front check here: the CLI maps the ModuleNotFoundError raised while recording.
    (["sqlalchemy"], ["recommend", V05_DOCUMENT, "--audit-db", "{out}.db"], "recommend", "service", "sqlalchemy"),
])
def test_a_missing_extra_names_the_extra_to_install(tmp_path: Path, missing: list[str], argv: list[str],
                                                    command: str, extra: str, module: str) -> None:
    out = tmp_path / "out"
    done = run_without(missing, [a.replace("{out}", str(out)) for a in argv], tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"radiopal {command} needs the optional extra '{extra}' ({module} is not installed): " \
           f"pip install 'radiopal[{extra}]'" in done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() and not Path(f"{out}.db").exists()  # nothing written before the refusal


def test_fhir_input_without_the_fhir_extra_names_it(tmp_path: Path) -> None:
    done = run_without(["fhir"], ["recommend", "--fhir", V05_BUNDLE], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "pip install 'radiopal[fhir]'" in done.stderr and "Traceback" not in done.stderr


def test_a_serial_cohort_does_not_need_dask(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "V05.yaml").write_text(Path(V05_DOCUMENT).read_text(encoding="utf-8"), encoding="utf-8")
    done = run_without(["dask", "distributed"], ["cohort", str(docs), "-o", str(tmp_path / "out"), "--serial",
                                                 "--no-progress"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 evaluated, 0 error(s)" in done.stdout


def test_a_module_of_no_extra_is_still_a_bug() -> None:
    assert missing_extra(ModuleNotFoundError("No module named 'nothere'", name="nothere"), "radiopal x") is None
    assert missing_extra(ValueError("x"), "radiopal x") is None
    found = missing_extra(ModuleNotFoundError("No module named 'pyarrow.parquet'", name="pyarrow.parquet"), "x")
    assert isinstance(found, MissingExtraError) and found.extra == "cohort" and found.exit_code == 2
