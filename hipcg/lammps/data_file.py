"""Write LAMMPS data files for bead systems (atom_style atomic, units real).

Hand-written because CG beads are not chemical elements (ASE's lammps-data writer derives
types and masses from element symbols); the format itself is a few lines.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import UNITS
from ..atomic import write_text_atomic


def lammps_box(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Restricted-triclinic box (lo, (xhi, yhi, zhi, xy, xz, yz)) for a cell with rows a, b, c.

    LAMMPS needs a = (lx, 0, 0), b = (xy, ly, 0), c = (xz, yz, lz): the cell must already be
    lower triangular (any cell can be rotated into this form; we refuse rather than rotate
    silently, because forces and positions would have to rotate with it).
    """
    cell = np.asarray(cell, dtype=np.float64)
    if cell.shape != (3, 3):
        raise ValueError(f"cell must be 3x3, got shape {cell.shape}")
    if abs(cell[0, 1]) > 1e-10 or abs(cell[0, 2]) > 1e-10 or abs(cell[1, 2]) > 1e-10:
        raise ValueError("cell must be lower triangular (LAMMPS restricted triclinic): "
                         f"got rows {cell.tolist()}")
    return np.zeros(3), np.array([cell[0, 0], cell[1, 1], cell[2, 2], cell[1, 0], cell[2, 0], cell[2, 1]])


def write_lammps_data(path: str | os.PathLike, positions: np.ndarray, types: np.ndarray,
                      masses: dict[int, float] | np.ndarray, cell: np.ndarray,
                      velocities: np.ndarray | None = None, type_names: list[str] | None = None,
                      title: str = "hipcg beads") -> Path:
    """Write an atom_style atomic data file; ``types`` are 1-based LAMMPS type ids.

    ``masses`` maps type id -> mass (g/mol), or is an array indexed by type id - 1.
    Written atomically (temporary file + rename).
    """
    path = Path(path)
    positions = np.asarray(positions, dtype=np.float64)
    types = np.asarray(types, dtype=np.int64)
    if positions.ndim != 2 or positions.shape[1] != 3 or len(types) != len(positions):
        raise ValueError("positions must be (n, 3) with one type per position")
    if isinstance(masses, dict):
        mass_of = dict(masses)
    else:
        mass_of = {t + 1: float(m) for t, m in enumerate(np.asarray(masses))}
    n_types = max(mass_of) if mass_of else int(types.max())
    if types.min() < 1 or types.max() > n_types:
        raise ValueError(f"type ids must be in 1..{n_types}, got {types.min()}..{types.max()}")
    lo, (xhi, yhi, zhi, xy, xz, yz) = lammps_box(cell)
    lines = [f"{title} (units {UNITS})", "", f"{len(positions)} atoms", f"{n_types} atom types", "",
             f"{lo[0]:.16g} {xhi:.16g} xlo xhi", f"{lo[1]:.16g} {yhi:.16g} ylo yhi",
             f"{lo[2]:.16g} {zhi:.16g} zlo zhi"]
    if any(abs(v) > 0 for v in (xy, xz, yz)):
        lines.append(f"{xy:.16g} {xz:.16g} {yz:.16g} xy xz yz")
    lines += ["", "Masses", ""]
    for t in range(1, n_types + 1):
        comment = f"  # {type_names[t - 1]}" if type_names else ""
        lines.append(f"{t} {mass_of[t]:.10g}{comment}")
    lines += ["", "Atoms # atomic", ""]
    lines += [f"{k + 1} {t} {x:.16g} {y:.16g} {z:.16g}" for k, (t, (x, y, z)) in enumerate(zip(types, positions))]
    if velocities is not None:
        lines += ["", "Velocities", ""]
        lines += [f"{k + 1} {vx:.16g} {vy:.16g} {vz:.16g}" for k, (vx, vy, vz) in enumerate(velocities)]
    return write_text_atomic(path, "\n".join(lines) + "\n")
