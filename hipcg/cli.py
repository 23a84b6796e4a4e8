"""The ``hipcg`` command: a thin argparse layer over the package's functions.

Subcommands live in :mod:`hipcg.commands`, one module per stage, each with ``register``.
Errors are handled here, once, for every command (exit codes in :mod:`hipcg.errors`):
a :class:`hipcg.errors.HipcgError` or a missing/existing file prints
``hipcg CMD: error: <message>`` and no traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import INTERRUPTED, USER_ERROR, HipcgError, user_error_types


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="hipcg", description="Machine-learned coarse-grained force fields for LAMMPS.",
        epilog="exit codes: 0 success, 2 bad input (argument, config, file), 3 a run failed "
               "(LAMMPS, blow-up, build), 130 interrupted")
    parser.add_argument("--version", action="version", version=f"hipcg {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


def report_error(command: str, err: BaseException) -> None:
    """The one way a command failure is shown: ``hipcg CMD: error: message``."""
    message = str(err)
    if isinstance(err, OSError) and err.filename and str(err.filename) not in message:
        message = f"{err.filename}: {message}"
    elif isinstance(err, OSError) and err.strerror and err.filename:
        message = f"{err.filename}: {err.strerror}"
    print(f"hipcg {command}: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = " ".join(filter(None, [args.command, getattr(args, "action", None)]))
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"hipcg {command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except HipcgError as err:
        if args.debug:
            raise
        report_error(command, err)
        return err.exit_code
    except user_error_types() as err:
        if args.debug:
            raise
        report_error(command, err)
        return USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
