"""The one error hierarchy of hipcg, and what the ``hipcg`` command does with it.

Every failure a user can cause or must act on is a :class:`HipcgError`.  Its message says
what is wrong, where (file, key, frame, atom) and what is allowed; :mod:`hipcg.cli` prints it
as ``hipcg CMD: error: <message>`` without a traceback (``--debug`` shows one) and exits with
the class's ``exit_code``:

=========  ==========================================================================
exit code  meaning
=========  ==========================================================================
0          success
2          user error: a bad argument, config key or value, or input file (also argparse's)
3          a run failed: LAMMPS stopped, a simulation blew up, a build failed
130        interrupted (Ctrl-C)
=========  ==========================================================================

Subclasses also derive from the built-in type callers used to catch (ValueError for bad
input, RuntimeError for failed runs), so ``except ValueError`` around a config still works.
"""

from __future__ import annotations

USER_ERROR = 2
RUN_FAILED = 3
INTERRUPTED = 130


class HipcgError(Exception):
    """Root of every error hipcg reports to a user."""

    exit_code = USER_ERROR


class InputError(HipcgError, ValueError):
    """Bad user input: an argument, a config value, or a file's content."""


class ConfigError(InputError):
    """A bad configuration value; the message starts with the file and/or key path."""


class DataError(InputError):
    """A data file (trajectory, dataset, mapping, system file) is missing, malformed or in
    other units; the message names the file and the frame, atom or key."""


class ModelFileError(InputError):
    """A model file that cannot be used, with the file named in the message."""


class OutputExistsError(InputError, FileExistsError):
    """An output is there already and overwriting it was not asked for (``--overwrite``)."""


class RunError(HipcgError, RuntimeError):
    """A run failed (LAMMPS error, blown-up simulation, failed build)."""

    exit_code = RUN_FAILED


def user_error_types() -> tuple[type[BaseException], ...]:
    """Built-in exceptions that, raised by a command, mean bad input rather than a bug."""
    return (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            PermissionError)
