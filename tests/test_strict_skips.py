"""Under .ci/run (RADIOPAL_TESTS_REQUIRE_ALL=1) a test that skips — at run time or for a module-level import — fails.

Run in a subprocess on a throw-away test file, with this suite's conftest loaded as a plugin.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SKIPPING = '''
import pytest

def test_without_chromium():
    pytest.skip("chromium is not installed")

def test_that_runs():
    assert True
'''

IMPORT_SKIPPING = '''
import pytest
pytest.importorskip("a_module_that_is_not_installed_anywhere")

def test_never_collected():
    assert True
'''


def _pytest(tmp_path: Path, source: str, strict: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(source, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    env.pop("RADIOPAL_TESTS_REQUIRE_ALL", None)
    if strict:
        env["RADIOPAL_TESTS_REQUIRE_ALL"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_sample.py")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


@pytest.mark.parametrize("source", [SKIPPING, IMPORT_SKIPPING], ids=["run-time skip", "module-level importorskip"])
def test_a_skip_passes_locally_and_fails_under_the_ci_flag(tmp_path: Path, source: str):
    local = _pytest(tmp_path, source, strict=False)
    # 0, or 5 when the only module skipped at import (pytest's "no tests ran"): either way nothing failed.
    assert local.returncode in (0, 5) and "skipped" in local.stdout, local.stdout + local.stderr
    strict = _pytest(tmp_path, source, strict=True)
    assert strict.returncode != 0, strict.stdout + strict.stderr
    assert "RADIOPAL_TESTS_REQUIRE_ALL=1" in strict.stdout


def test_ci_sets_the_flag():
    assert "export RADIOPAL_TESTS_REQUIRE_ALL=1" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
