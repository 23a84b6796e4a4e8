"""CG bead trajectories of single chains: monomers mapped onto METIS beads.

:func:`map_chain` reads a chain run's dump (:mod:`hipcg.dynamics.chains`), partitions the chain
(:func:`hipcg.dynamics.partition.partition_chain`) and returns every frame's bead centres of
mass and centre-of-mass velocities (total momentum / bead mass) as a :class:`BeadTrajectory`.

A bead trajectory file (``.npz``, written atomically, read with ``allow_pickle=False``) holds
the dataclass's arrays under their field names plus ``metadata``, a JSON string with ``format``,
``version``, ``units`` (must be ``real``), ``name``, ``role``, ``sequence`` and
``md_fs_per_wall_second``.  Units: Å, fs, Å/fs, g/mol.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import UNITS
from ..atomic import atomic_path, remove_stale_temps, write_text_atomic
from ..errors import DataError
from ..lammps.dump import read_dump
from .chains import MONOMER_TYPES, ChainRun, ChainSystem
from .partition import bead_bonds as _bead_bonds
from .partition import partition_chain

FORMAT = "hipcg-bead-trajectory"
FORMAT_VERSION = 1
ARRAYS = ("monomer_types", "monomer_bonds", "bead_of_monomer", "bead_masses", "bead_bonds",
          "time_fs", "positions", "velocities")


def bead_type_ids(monomer_types: np.ndarray, bead_of_monomer: np.ndarray) -> np.ndarray:
    """Bead types for output: 1 where more than half of the bead's monomers are A (type 0),
    else 2 (a bead half A, half B is type 2)."""
    monomer_types = np.asarray(monomer_types)
    bead_of_monomer = np.asarray(bead_of_monomer)
    n_beads = int(bead_of_monomer.max()) + 1 if len(bead_of_monomer) else 0
    n_a = np.bincount(bead_of_monomer, weights=(monomer_types == 0), minlength=n_beads)
    size = np.bincount(bead_of_monomer, minlength=n_beads)
    return np.where(2 * n_a > size, 1, 2).astype(np.int64)


@dataclass
class BeadTrajectory:
    """One chain's CG trajectory (real units: Å, fs, Å/fs, g/mol)."""

    name: str
    role: str
    sequence: str
    monomer_types: np.ndarray     # (n_monomers,) int, 0 = A, 1 = B
    monomer_bonds: np.ndarray     # (n_bonds, 2) int, 0-based monomer indices
    bead_of_monomer: np.ndarray   # (n_monomers,) int, beads in chain order
    bead_masses: np.ndarray       # (n_beads,) g/mol
    bead_bonds: np.ndarray        # (m, 2) int, i < j
    time_fs: np.ndarray           # (F,) float: dump timestep * MD timestep
    positions: np.ndarray         # (F, n_beads, 3) float64, unwrapped bead centres of mass, Å
    velocities: np.ndarray        # (F, n_beads, 3) float64, bead centre-of-mass velocities, Å/fs
    md_fs_per_wall_second: float  # the reference MD's simulated fs per wall-clock second
    units: str = UNITS

    @property
    def n_beads(self) -> int:
        return len(self.bead_masses)

    @property
    def n_monomers(self) -> int:
        return len(self.monomer_types)

    @property
    def n_frames(self) -> int:
        return len(self.time_fs)

    @property
    def frame_interval_fs(self) -> float:
        """Time between frames (fs); DataError if the frames are not evenly spaced."""
        if self.n_frames < 2:
            raise DataError(f"bead trajectory {self.name}: {self.n_frames} frame(s), no interval")
        dt = np.diff(self.time_fs)
        if not np.allclose(dt, dt[0], rtol=1e-9, atol=1e-9) or dt[0] <= 0:
            k = int(np.argmax(np.abs(dt - dt[0]) > 1e-9 * abs(dt[0]) + 1e-9)) if dt[0] > 0 else 0
            raise DataError(f"bead trajectory {self.name}: frames are not evenly spaced in time "
                            f"(frame {k} -> {k + 1}: {dt[k]:g} fs, first interval {dt[0]:g} fs)")
        return float(dt[0])

    @property
    def bead_types(self) -> np.ndarray:
        """1 (mostly A) or 2 per bead: :func:`bead_type_ids`."""
        return bead_type_ids(self.monomer_types, self.bead_of_monomer)

    def check(self, where: str | None = None) -> None:
        """Shapes and values consistent; DataError naming ``where`` (a file) and the key."""
        where = where or f"bead trajectory {self.name}"
        n, b, f = self.n_monomers, self.n_beads, self.n_frames

        def fail(key, msg):
            raise DataError(f"{where}: {key}: {msg}")

        if self.units != UNITS:
            fail("units", f"{self.units!r}; hipcg works in {UNITS!r}")
        if len(self.sequence) != n or set(self.sequence) - set(MONOMER_TYPES):
            fail("sequence", f"{self.sequence!r} does not match {n} monomers of types A/B")
        expect = np.array([MONOMER_TYPES.index(c) for c in self.sequence])
        if not np.array_equal(np.asarray(self.monomer_types), expect):
            fail("monomer_types", "do not match the sequence (0 = A, 1 = B)")
        shapes = {"monomer_bonds": (None, 2), "bead_of_monomer": (n,), "bead_masses": (b,),
                  "bead_bonds": (None, 2), "time_fs": (f,), "positions": (f, b, 3),
                  "velocities": (f, b, 3)}
        for key, shape in shapes.items():
            arr = np.asarray(getattr(self, key))
            if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
                fail(key, f"shape {arr.shape}, expected {tuple('*' if s is None else s for s in shape)}"
                          f" ({n} monomers, {b} beads, {f} frames)")
        if len(self.monomer_bonds) and (np.min(self.monomer_bonds) < 0 or np.max(self.monomer_bonds) >= n):
            fail("monomer_bonds", f"indices outside 0..{n - 1}")
        if n and (np.min(self.bead_of_monomer) < 0 or np.max(self.bead_of_monomer) != b - 1
                  or len(np.unique(self.bead_of_monomer)) != b):
            fail("bead_of_monomer", f"must use every bead index 0..{b - 1}")
        if len(self.bead_bonds) and (np.min(self.bead_bonds) < 0 or np.max(self.bead_bonds) >= b):
            fail("bead_bonds", f"indices outside 0..{b - 1}")
        for key in ("bead_masses", "time_fs", "positions", "velocities"):
            if not np.isfinite(getattr(self, key)).all():
                fail(key, "not finite (NaN/Inf)")
        if (np.asarray(self.bead_masses) <= 0).any():
            fail("bead_masses", "must be > 0")


# --------------------------------------------------------------------------- mapping


def map_chain(run: ChainRun, system: ChainSystem, monomers_per_bead: float) -> BeadTrajectory:
    """The bead trajectory of one chain run (its whole production dump).

    The monomer bonds are those the run was built with: a linear chain, (i, i + 1).  Checks
    that the run belongs to ``system`` (fingerprint and timestep) and that every frame has the
    sequence's monomers and types.
    """
    dump = run.dump_path
    rec = run.record
    where = run.directory / "run.json"
    if run.name not in system.names() or system.sequence(run.name) != run.sequence:
        raise DataError(f"{where}: sequence {run.name} ({run.sequence}) is not in {system.path}")
    if rec.get("system_fingerprint") != system.fingerprint(run.name):
        raise DataError(f"{where}: this run of {run.name!r} was made with other physics than "
                        f"{system.path} describes (system fingerprint "
                        f"{rec.get('system_fingerprint')}, the file's {system.fingerprint(run.name)})")
    if not np.isclose(run.timestep_fs, system.timestep_fs, rtol=1e-12):
        raise DataError(f"{where}: timestep_fs {run.timestep_fs} differs "
                        f"from {system.path}'s {system.timestep_fs}")
    frames = read_dump(dump)
    if not frames:
        raise DataError(f"{dump}: no frames")
    n = len(run.sequence)
    types = np.array([MONOMER_TYPES.index(c) for c in run.sequence], dtype=np.int64)
    for k, fr in enumerate(frames):
        missing = [c for c in ("id", "type", "xu", "yu", "zu", "vx", "vy", "vz") if c not in fr]
        if missing:
            raise DataError(f"{dump}: frame {k} (timestep {fr['timestep']}): no columns {missing}")
        if len(fr["id"]) != n:
            raise DataError(f"{dump}: frame {k} (timestep {fr['timestep']}): {len(fr['id'])} "
                            f"atoms, the sequence of {run.name} has {n}")
        if not np.array_equal(fr["type"].astype(np.int64) - 1, types):
            raise DataError(f"{dump}: frame {k} (timestep {fr['timestep']}): atom types do not "
                            f"match the sequence {run.sequence}")
    x = np.array([np.c_[fr["xu"], fr["yu"], fr["zu"]] for fr in frames], dtype=np.float64)
    v = np.array([np.c_[fr["vx"], fr["vy"], fr["vz"]] for fr in frames], dtype=np.float64)
    steps = np.array([fr["timestep"] for fr in frames], dtype=np.float64)

    bonds = np.c_[np.arange(n - 1), np.arange(1, n)].astype(np.int64)
    masses = np.full(n, system.monomer_mass)
    assignment = partition_chain(n, bonds, monomers_per_bead)
    positions, velocities, bead_masses = centres_of_mass(x, v, masses, assignment)
    traj = BeadTrajectory(
        name=run.name, role=run.role, sequence=run.sequence, monomer_types=types,
        monomer_bonds=bonds, bead_of_monomer=assignment, bead_masses=bead_masses,
        bead_bonds=_bead_bonds(assignment, bonds), time_fs=steps * run.timestep_fs,
        positions=positions, velocities=velocities,
        md_fs_per_wall_second=run.md_fs_per_wall_second)
    traj.check(str(dump))
    return traj


def centres_of_mass(x: np.ndarray, v: np.ndarray | None, masses: np.ndarray,
                    assignment: np.ndarray):
    """Bead centres of mass (F, n_beads, 3), centre-of-mass velocities (or None) and bead
    masses of monomer positions ``x`` (F, n, 3) and velocities ``v`` (unwrapped inputs)."""
    assignment = np.asarray(assignment, dtype=np.int64)
    masses = np.asarray(masses, dtype=np.float64)
    n_beads = int(assignment.max()) + 1
    bead_masses = np.bincount(assignment, weights=masses, minlength=n_beads)
    weights = np.zeros((n_beads, len(masses)))
    weights[assignment, np.arange(len(masses))] = masses / bead_masses[assignment]
    pos = np.einsum("bi,fid->fbd", weights, x)
    vel = np.einsum("bi,fid->fbd", weights, v) if v is not None else None
    return pos, vel, bead_masses


# --------------------------------------------------------------------------- files


def save_bead_trajectory(path: str | os.PathLike, traj: BeadTrajectory) -> Path:
    """Write ``traj`` to ``path`` (.npz) atomically (temporary file + rename)."""
    path = Path(path)
    traj.check(str(path))
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "units": traj.units, "name": traj.name,
            "role": traj.role, "sequence": traj.sequence,
            "md_fs_per_wall_second": float(traj.md_fs_per_wall_second),
            "n_monomers": traj.n_monomers, "n_beads": traj.n_beads, "n_frames": traj.n_frames,
            "unit_names": {"length": "Angstrom", "time": "fs", "velocity": "Angstrom/fs",
                           "mass": "g/mol"}}
    arrays = {k: np.asarray(getattr(traj, k)) for k in ARRAYS}
    arrays["metadata"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def load_bead_trajectory(path: str | os.PathLike) -> BeadTrajectory:
    """Read a file of :func:`save_bead_trajectory`; DataError (file and key) if it is not one,
    is in other units, or its arrays do not fit together."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such bead trajectory file")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a bead trajectory (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ARRAYS + ("metadata",) if k not in z.files]
            if missing:
                raise DataError(f"{path}: {missing[0]}: missing (not a bead trajectory file?)")
            try:
                meta = json.loads(str(z["metadata"][()]))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: metadata: not valid JSON: {err}") from None
            arrays = {k: z[k] for k in ARRAYS}
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path}: cannot read bead trajectory: {err}") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: metadata.format: {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("units") != UNITS:
        raise DataError(f"{path}: metadata.units: {meta.get('units')!r}; hipcg works in {UNITS!r}")
    for key in ("name", "role", "sequence", "md_fs_per_wall_second"):
        if key not in meta:
            raise DataError(f"{path}: metadata.{key}: missing")
    int_keys = ("monomer_types", "monomer_bonds", "bead_of_monomer", "bead_bonds")
    for key in int_keys:
        if arrays[key].size and not np.issubdtype(arrays[key].dtype, np.integer):
            raise DataError(f"{path}: {key}: expected integers, got {arrays[key].dtype}")
    traj = BeadTrajectory(name=str(meta["name"]), role=str(meta["role"]),
                          sequence=str(meta["sequence"]),
                          md_fs_per_wall_second=float(meta["md_fs_per_wall_second"]),
                          units=meta["units"], **{k: arrays[k] for k in ARRAYS})
    traj.check(str(path))
    return traj


def write_bead_dump(path: str | os.PathLike, time_steps_or_fs, positions, bead_types,
                    mol=1, pad: float = 5.0) -> Path:
    """Write bead frames as a LAMMPS text dump (``ITEM: ATOMS id mol type xu yu zu``), atomically.

    ``time_steps_or_fs``: (F,) integer timesteps, or times in fs (floats: written as the
    nearest whole fs, which must still increase strictly).  ``positions``: (F, n, 3) unwrapped
    Å.  ``bead_types``: (n,) LAMMPS type ids; the convention of :func:`bead_type_ids` is 1 for
    a bead whose monomers are mostly (more than half) A, else 2.  ``mol``: one molecule id or
    (n,) ids.  Each frame's box bounds (``ff``, not periodic) enclose its beads with ``pad`` Å to
    spare.  :func:`hipcg.lammps.dump.read_dump` reads the file back.
    """
    path = Path(path)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise ValueError(f"positions must be (frames, beads, 3), got shape {positions.shape}")
    n_frames, n = positions.shape[:2]
    times = np.asarray(time_steps_or_fs)
    if times.shape != (n_frames,):
        raise ValueError(f"time_steps_or_fs: shape {times.shape}, expected ({n_frames},)")
    steps = times.astype(np.int64) if np.issubdtype(times.dtype, np.integer) else np.rint(times).astype(np.int64)
    if n_frames > 1 and np.any(np.diff(steps) <= 0):
        raise ValueError("time_steps_or_fs: must increase strictly (after rounding fs to whole "
                         "numbers): LAMMPS dumps hold integer timesteps")
    types = np.asarray(bead_types, dtype=np.int64)
    mols = np.broadcast_to(np.asarray(mol, dtype=np.int64), (n,))
    if types.shape != (n,):
        raise ValueError(f"bead_types: shape {types.shape}, expected ({n},)")
    if not np.isfinite(positions).all():
        raise ValueError("positions: not finite (NaN/Inf)")
    ids = np.arange(1, n + 1)
    chunks = []
    for k in range(n_frames):
        x = positions[k]
        lo, hi = x.min(axis=0) - pad, x.max(axis=0) + pad
        chunks.append(f"ITEM: TIMESTEP\n{steps[k]}\nITEM: NUMBER OF ATOMS\n{n}\n"
                      "ITEM: BOX BOUNDS ff ff ff\n"
                      + "".join(f"{lo[d]:.10g} {hi[d]:.10g}\n" for d in range(3))
                      + "ITEM: ATOMS id mol type xu yu zu\n")
        chunks.append("".join(f"{i} {m} {t} {a:.10g} {b:.10g} {c:.10g}\n"
                              for i, m, t, (a, b, c) in zip(ids, mols, types, x)))
    return write_text_atomic(path, "".join(chunks))
