"""Where the shipped knowledge base (``kb/``) and rule bases (``rules/``) live.

In a wheel they are package data under ``radiopal/_data``; in a source checkout (editable install) they are the
``kb/`` and ``rules/`` folders at the repository root.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    packaged = _PACKAGE_DIR / "_data" / name
    if packaged.is_dir():
        return packaged
    checkout = _PACKAGE_DIR.parents[1] / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"radiopal data folder {name!r} not found (looked in {packaged} and {checkout})")


def kb_dir() -> Path:
    """The knowledge-base folder: vocabulary, therapy catalogue, references, JSON Schemas."""
    return _data_dir("kb")


def rules_dir() -> Path:
    """The shipped rule-base folder."""
    return _data_dir("rules")


def schema_path(name: str) -> Path:
    """Path of a JSON Schema in ``kb/schemas`` (``patient``, ``decision``, ``rulefile``, ``explanation`` ...)."""
    return kb_dir() / "schemas" / f"{name}.schema.json"
