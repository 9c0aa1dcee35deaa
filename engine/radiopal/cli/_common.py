"""Helpers shared by the subcommands: atomic output files and the rule-base option."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from ..errors import InputError, Problem


def add_rules_option(parser: argparse.ArgumentParser) -> None:
    """``--rules DIR``: a rule-base folder other than the shipped one."""
    parser.add_argument("--rules", metavar="DIR", help="rule-base folder (default: the shipped rules)")


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` all at once: a temporary file in the same folder, then a rename.

    A reader never sees half a file, and a failure leaves nothing behind.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path()
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{target}: cannot create folder {parent}: {exc.strerror}",
                             [Problem(f"cannot create folder {parent}: {exc.strerror}", file=str(target))]) from exc
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise InputError(f"{target}: cannot write: {exc.strerror}",
                         [Problem(f"cannot write: {exc.strerror}", file=str(target))]) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        # mkstemp creates 0600; give the file the permissions an ordinary open() would (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        Path(tmp).chmod(0o666 & ~umask)
        Path(tmp).replace(target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"{target}: cannot write: {exc.strerror}",
                         [Problem(f"cannot write: {exc.strerror}", file=str(target))]) from exc
