"""Subcommands of ``hipcg``: each module here defines ``register(subparsers)``.

A stage adds its command by adding a module; :mod:`hipcg.cli` discovers them, so commands do
not have to edit a shared file.  Handlers are thin: parse arguments, call the stage's plain
function, print a summary, return an exit code.
"""

from __future__ import annotations

import argparse
import sys


class _DeprecatedFlag(argparse.Action):
    """An old flag name: still works, and says which name to use."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, nargs=0, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"hipcg: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, True)


def add_overwrite_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite``: the one name, in every command, for "replace what is there"."""
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what}")
    parser.add_argument("--force", action=_DeprecatedFlag, dest="overwrite", new="--overwrite",
                        default=False)
