"""Small helpers shared by the synthetic story and its degradations: weighted draws and dotted-path access."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, TypeVar

_T = TypeVar("_T")
Doc = dict[str, Any]


def pick(rng: random.Random, weighted: Sequence[tuple[_T, float]]) -> _T:
    values = [v for v, _ in weighted]
    weights = [w for _, w in weighted]
    return rng.choices(values, weights)[0]


def chance(rng: random.Random, p: float) -> bool:
    return rng.random() < p


def get_path(document: Doc, path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def has_path(document: Doc, path: str) -> bool:
    parent, _, leaf = path.rpartition(".")
    node = get_path(document, parent) if parent else document
    return isinstance(node, dict) and leaf in node


def delete_path(document: Doc, path: str) -> None:
    parent, _, leaf = path.rpartition(".")
    node = get_path(document, parent) if parent else document
    del node[leaf]
