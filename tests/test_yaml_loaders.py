"""libyaml (PyYAML's C binding) and the pure-Python reader give the same data, positions and errors.

radiopal reads YAML with libyaml when PyYAML has it (much faster on large rule files) and with PyYAML's Python parser
otherwise. Both paths must agree: same values, same line:column for every value, the same refusals.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO
from radiopal import yamlio
from radiopal.errors import InputError

pytestmark = pytest.mark.skipif(yamlio._C_LOADER is None, reason="PyYAML was built without libyaml here")

FILES = sorted((REPO / "rules").glob("*.yaml")) + sorted((REPO / "examples").glob("*.yaml")) + \
    sorted((REPO / "tests" / "scenarios").glob("*.yaml"))[:40]


def read(text: str, monkeypatch: pytest.MonkeyPatch, *, c: bool) -> yamlio.Located | str:
    with monkeypatch.context() as patch:
        if not c:
            patch.setattr(yamlio, "_C_LOADER", None)
        try:
            return yamlio.load_text(text, file="f.yaml", kind="rule file")
        except InputError as exc:
            return str(exc)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_same_data_and_positions(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = path.read_text(encoding="utf-8")
    fast, slow = read(text, monkeypatch, c=True), read(text, monkeypatch, c=False)
    assert isinstance(fast, yamlio.Located) and isinstance(slow, yamlio.Located)
    assert fast.data == slow.data
    assert fast.source.positions == slow.source.positions
    assert len(fast.source.positions) > 10


@pytest.mark.parametrize(("text", "expected"), [
    ("a: [" * 10 + "1" + "]" * 10, None),  # fine
    ("[" * 70 + "1" + "]" * 70, f"nesting is too deep (limit {yamlio.MAX_DEPTH})"),
    ("[" * 5000, f"nesting is too deep (limit {yamlio.MAX_DEPTH})"),
    ("x: " + "[" + ", ".join(["1"] * (yamlio.MAX_NODES + 5)) + "]", "size limit"),
    ("a: 1\nb: [1, 2\n", "invalid YAML"),
    ("a: 1\n---\nb: 2\n", "holds 2 YAML documents"),
    ("a: &x [1, 2]\nb: *x\n", None),
    ("", "is empty"),
])
def test_same_refusals(text: str, expected: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = read(text, monkeypatch, c=True), read(text, monkeypatch, c=False)
    if expected is None:
        assert isinstance(fast, yamlio.Located) and isinstance(slow, yamlio.Located)
        assert fast.data == slow.data
    else:
        assert isinstance(fast, str) and isinstance(slow, str)
        assert expected in fast and expected in slow
