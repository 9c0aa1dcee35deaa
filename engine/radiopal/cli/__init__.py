"""The ``radiopal`` command line.

Each subcommand is a module of this package with ``register(subparsers)``, which adds its parser and sets
``func`` to a callable ``(args) -> int``. Errors radiopal raises on purpose become one line per problem on stderr and
exit code 2; nothing a user types produces a traceback. An unexpected exception (a bug) is one line on stderr and
exit code 3, like :class:`radiopal.errors.EngineError`; ``RADIOPAL_DEBUG=1`` lets its traceback through.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence

from ..errors import RadiopalError

# Listed here so each subcommand lives in its own module; a module that is not there (yet) is simply not offered.
COMMANDS = ("recommend", "explain", "questionnaire", "test", "scenario", "lint", "thresholds", "diff", "serve", "audit",
            "cohort", "synth")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="radiopal",
        description="Decision support for painful bone metastases (radionuclides, EBRT, surgery, bone-health agents). "
        "It supports clinicians; it does not prescribe.",
    )
    parser.add_argument("--version", action="version", version=f"radiopal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            continue
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``radiopal`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except RadiopalError as exc:
        for line in exc.lines():
            print(f"radiopal: error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("radiopal: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except ModuleNotFoundError as exc:
        from ..extras import missing_extra

        missing = missing_extra(exc, f"radiopal {args.command}")
        if missing is None:
            return _internal_error(exc)
        for line in missing.lines():
            print(f"radiopal: error: {line}", file=sys.stderr)
        return missing.exit_code
    except Exception as exc:
        return _internal_error(exc)


def _internal_error(exc: Exception) -> int:
    """A bug: one line and exit 3, as EngineError; RADIOPAL_DEBUG=1 shows the traceback."""
    if os.environ.get("RADIOPAL_DEBUG"):
        raise exc
    print(f"radiopal: internal error: {type(exc).__name__}: {exc} — this is a bug in radiopal, please report it "
          "(run with RADIOPAL_DEBUG=1 for the traceback)", file=sys.stderr)
    return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
