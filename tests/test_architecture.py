"""The package's own structure: no two modules import each other, and library code never imports the CLI (a face).

Imports are read with :mod:`ast` (module level, function level and ``TYPE_CHECKING`` blocks alike), so a circle hidden
behind a lazy or type-only import still counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1] / "engine"

# experta's import shim must be in place before radiopal._rete loads experta's nodes; _experta swaps those nodes in
# lazily, at compile time. The pair is the one place radiopal touches experta's internals, kept together on purpose.
ALLOWED_PAIRS = {frozenset({"radiopal._experta", "radiopal._rete"})}


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in ENGINE.rglob("*.py"):
        parts = list(path.relative_to(ENGINE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def _imports() -> dict[str, set[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    targets.add(candidate if candidate in modules else target)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        edges[name] = {t for t in targets if t in modules and t != name}
    return edges


def test_the_import_reader_sees_the_package():
    edges = _imports()
    assert "radiopal.api" in edges and "radiopal.result" in edges["radiopal.api"]


def test_no_two_modules_import_each_other():
    edges = _imports()
    circles = sorted(
        f"{a} <-> {b}" for a in edges for b in edges[a]
        if a < b and a in edges.get(b, ()) and frozenset({a, b}) not in ALLOWED_PAIRS
    )
    assert not circles, f"two-module import circles: {circles}"


def test_library_code_does_not_import_the_command_line_faces():
    offenders = sorted(
        f"{module} imports {target}" for module, targets in _imports().items()
        if not module.startswith("radiopal.cli") and module != "radiopal.__main__"
        for target in targets if target == "radiopal.cli" or target.startswith("radiopal.cli.")
    )
    assert not offenders, offenders
