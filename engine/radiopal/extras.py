"""Optional extras: which ``pip install 'radiopal[...]'`` brings which module, and the error when one is missing.

radiopal's core (the engine, the patient document, ``recommend``/``explain`` on YAML or JSON) needs none of them.
Commands that do need one check up front (:func:`require`) and the CLI turns any later ``ModuleNotFoundError`` for
a module listed here into the same message (:func:`missing_extra`), so a user reads which extra to install, never
"internal error".
"""

from __future__ import annotations

import importlib.util
from typing import Final

from .errors import Problem, RadiopalError

__all__ = ["EXTRAS", "MissingExtraError", "missing_extra", "require"]

#: Top-level import name → the extra of ``pyproject.toml`` that installs it.
EXTRAS: Final = {
    "dask": "cohort", "distributed": "cohort", "pandas": "cohort", "pyarrow": "cohort", "matplotlib": "cohort",
    "tqdm": "cohort",
    "fastapi": "service", "starlette": "service", "uvicorn": "service", "httpx": "service", "jwt": "service",
    "cryptography": "service", "sqlalchemy": "service",
    "fhir": "fhir",
    "mkdocs": "docs",
}


class MissingExtraError(RadiopalError):
    """A command needs an optional extra that is not installed. Exit code 2, with the ``pip install`` to run."""

    def __init__(self, what: str, extra: str, module: str) -> None:
        hint = f"pip install 'radiopal[{extra}]'"
        message = f"{what} needs the optional extra '{extra}' ({module} is not installed): {hint}"
        super().__init__(message, [Problem(message)])
        self.extra = extra
        self.module = module


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module object without a spec
        return False


def require(what: str, *modules: str) -> None:
    """Raise :class:`MissingExtraError` naming ``what`` (``radiopal cohort``) when one of ``modules`` is missing."""
    for module in modules:
        if not _installed(module):
            raise MissingExtraError(what, EXTRAS[module.partition(".")[0]], module)


def missing_extra(exc: BaseException, what: str) -> MissingExtraError | None:
    """The :class:`MissingExtraError` a ``ModuleNotFoundError`` stands for, or None when the module is no extra's."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.partition(".")[0]
    extra = EXTRAS.get(top)
    return MissingExtraError(what, extra, exc.name) if extra else None
