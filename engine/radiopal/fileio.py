"""Output files written all at once: a temporary file in the target's folder, then a rename.

A reader never sees half a file, and a failure leaves nothing behind. The CLI, the graph writer, coverage and the
cohort outputs all write through here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError, Problem

__all__ = ["atomic_target", "write_atomic"]


def _umask() -> int:
    """The process umask, so output files get the permissions a plain open() would give them (0666 less the umask)."""
    current = os.umask(0o022)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_target(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``; renamed onto ``target`` when the block succeeds, removed when it fails.

    Raises :class:`OSError` as the file system does; :func:`write_atomic` turns those into input errors.
    """
    parent = target.parent if str(target.parent) else Path()
    parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp = Path(name)
    try:
        # mkstemp creates 0600; give the file the permissions an ordinary open() would.
        tmp.chmod(0o666 & ~_umask())
        yield tmp
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` all at once.

    A folder that does not exist is created. Raises :class:`~radiopal.errors.InputError` naming the file when the
    folder cannot be created or the file cannot be written.
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
        with atomic_target(target) as tmp:
            tmp.write_bytes(payload)
    except OSError as exc:
        raise InputError(f"{target}: cannot write: {exc.strerror}",
                         [Problem(f"cannot write: {exc.strerror}", file=str(target))]) from exc
