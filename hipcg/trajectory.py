"""Read all-atom trajectories with forces, whatever wrote them, in LAMMPS ``real`` units.

One entry point, :func:`open_trajectory`, returns a :class:`Trajectory`: the MDAnalysis
``Universe`` (for selections, bonds, residues: the atom-to-bead mapping builds on it) plus
:meth:`Trajectory.frames`, an iterator of validated :class:`Frame` objects in real units.

Supported inputs (chosen by file suffix, or ``format=``):

===========================  ====================================  ==========================
topology                     trajectory                            units on disk
===========================  ====================================  ==========================
LAMMPS data (.data, .lmp)    LAMMPS text dump with fx fy fz        ``dump_units``: real/metal
GROMACS .tpr or .gro         GROMACS .trr with forces              nm, ps, kJ/mol
extended XYZ (.xyz, .extxyz) (same file; read with ASE)            Å, eV, ASE time
===========================  ====================================  ==========================

Frames always hold positions in Å, forces in kcal/(mol Å), velocities in Å/fs, masses in g/mol.
The Universe itself keeps MDAnalysis' conventions (forces kJ/(mol Å) for TRR and extxyz, as
written for LAMMPS dumps, which MDAnalysis does not convert); use frames for numbers.

A trajectory without forces, with non-finite forces or positions, or whose atom count differs
from its topology raises :class:`TrajectoryError` naming the file and the frame.

For a LAMMPS dump written by ``hipcg reference``, the ``metadata.json`` beside it supplies atom
names (``C``, ``O``, ``HO``...) and residue names, which LAMMPS data files lack; otherwise names
fall back to the numeric types.  MDAnalysis stores coordinates and forces in float32.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import DataError

KJ_PER_KCAL = 4.184
EV_IN_KCAL_PER_MOL = 23.060547830619026   # 1 eV per particle in kcal/mol

# Forces and velocities of LAMMPS dumps per LAMMPS unit style -> (kcal/(mol Å), Å/fs) factors.
_LAMMPS_DUMP_UNITS = {"real": (1.0, 1.0), "metal": (EV_IN_KCAL_PER_MOL, 1.0e-3)}


# MDAnalysis base units (what a converting reader returns) and LAMMPS ``real`` targets.
_BASE = {"length": "Angstrom", "velocity": "Angstrom/ps", "force": "kJ/(mol*Angstrom)"}
_REAL = {"length": "Angstrom", "velocity": "Angstrom/fs", "force": "kcal/(mol*Angstrom)"}
_UNIT_TYPE = {"length": "length", "velocity": "speed", "force": "force"}


def reader_unit_factors(reader) -> dict[str, float]:
    """Factors that take a reader's positions/velocities/forces to LAMMPS ``real`` units.

    Readers that declare units (TRR, DCD, ...) convert to MDAnalysis base units by default,
    e.g. forces in kJ/(mol Å); readers that declare none (LAMMPS dump, in-memory) return the
    numbers as stored, which for our LAMMPS runs (``units real``) are already real (use
    :func:`open_trajectory` for dumps in other units).
    """
    from MDAnalysis import units

    declared = getattr(reader, "units", {}) or {}
    convert = getattr(reader, "convert_units", True)
    factors = {}
    for kind, target in _REAL.items():
        native = declared.get(kind)
        if native is None:
            factors[kind] = 1.0
            continue
        have = _BASE[kind] if convert else native
        factors[kind] = units.get_conversion_factor(_UNIT_TYPE[kind], have, target)
    return factors


class TrajectoryError(DataError):
    """A trajectory cannot be used for force matching; the message names file and frame."""


@dataclass
class Frame:
    """One configuration in LAMMPS real units.

    ``box`` is the 3x3 matrix whose rows are the cell vectors a, b, c (Å; LAMMPS/MDAnalysis
    convention: a along x, b in the xy plane) and ``dimensions`` the same cell as
    ``[lx, ly, lz, alpha, beta, gamma]``; both are None for a non-periodic frame.  The topology
    arrays are shared by all frames of a trajectory (do not modify them).
    """

    index: int                      # 0-based frame number in the file
    step: int | None                # MD step when the file records one
    time: float | None              # fs
    positions: np.ndarray           # (n, 3) Å
    forces: np.ndarray              # (n, 3) kcal/(mol Å)
    velocities: np.ndarray | None   # (n, 3) Å/fs, or None
    box: np.ndarray | None          # (3, 3) Å
    dimensions: np.ndarray | None   # (6,)
    masses: np.ndarray              # (n,) g/mol
    resids: np.ndarray              # (n,) molecule / residue ids
    resnames: np.ndarray            # (n,) str
    names: np.ndarray               # (n,) str atom names (types when the file has no names)
    types: np.ndarray               # (n,) str or int atom types

    @property
    def n_atoms(self) -> int:
        return len(self.positions)


@dataclass
class Trajectory:
    """An opened trajectory: ``universe`` (MDAnalysis) and :meth:`frames` (validated, real units)."""

    universe: "MDAnalysis.Universe"
    topology: Path
    trajectory: Path
    force_factor: float        # Universe forces x this = kcal/(mol Å)
    velocity_factor: float     # Universe velocities x this = Å/fs
    time_factor: float | None = 1.0   # Universe time x this = fs (None: time unknown)
    dt_fs: float | None = None         # LAMMPS dumps: time = step x dt_fs when known
    thermo: "FrameThermo | None" = None  # per-frame pressure / energies (hipcg.frame_thermo)

    def __len__(self) -> int:
        return len(self.universe.trajectory)

    @property
    def n_atoms(self) -> int:
        return self.universe.atoms.n_atoms

    def _topology_arrays(self):
        atoms = self.universe.atoms
        n = atoms.n_atoms
        types = np.asarray(atoms.types) if hasattr(atoms, "types") else np.zeros(n, dtype=int)
        names = np.asarray(atoms.names) if hasattr(atoms, "names") else types.astype(str)
        resnames = np.asarray(atoms.resnames) if hasattr(atoms, "resnames") else np.full(n, "")
        if not hasattr(atoms, "masses"):
            raise TrajectoryError(f"{self.topology}: no masses in the topology")
        masses = np.asarray(atoms.masses, dtype=float)
        return masses, np.asarray(atoms.resids), resnames, names, types

    def frames(self, start: int | None = None, stop: int | None = None,
               step: int | None = None) -> Iterator[Frame]:
        """Yield validated frames ``start:stop:step`` in real units."""
        from MDAnalysis.lib.mdamath import triclinic_vectors

        masses, resids, resnames, names, types = self._topology_arrays()
        n_top = len(masses)
        traj = self.universe.trajectory
        indices = range(len(traj))[slice(start, stop, step)]
        previous: tuple[int, float] | None = None  # (frame, step or time) of the last frame
        for i in indices:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")   # e.g. "Reader has no dt information"
                    ts = traj[i]
            except Exception as err:  # noqa: BLE001  (reader errors become file/frame errors)
                raise TrajectoryError(f"{self.trajectory}: frame {i}: cannot be read: {err}") from err
            where = f"{self.trajectory}: frame {i}"
            if ts.n_atoms != n_top or len(ts.positions) != n_top:
                raise TrajectoryError(f"{where}: {len(ts.positions)} atoms, but the topology "
                                      f"{self.topology} has {n_top}")
            if not ts.has_forces:
                raise TrajectoryError(f"{where}: no forces (force matching needs per-atom forces; "
                                      f"write them, e.g. LAMMPS dump columns fx fy fz, GROMACS "
                                      f"nstfout > 0)")
            forces = np.asarray(ts.forces, dtype=float) * self.force_factor
            positions = np.asarray(ts.positions, dtype=float)
            for what, arr in (("forces", forces), ("positions", positions)):
                bad = ~np.isfinite(arr).all(axis=1)
                if bad.any():
                    k = int(np.flatnonzero(bad)[0])
                    raise TrajectoryError(f"{where}: non-finite {what} on {int(bad.sum())} atom(s), "
                                          f"first atom index {k} ({names[k]}): {arr[k].tolist()}")
            velocities = (np.asarray(ts.velocities, dtype=float) * self.velocity_factor
                          if ts.has_velocities else None)
            dims = ts.dimensions
            if dims is not None and np.all(np.asarray(dims[:3]) > 0):
                dims = np.asarray(dims, dtype=float)
                box = np.asarray(triclinic_vectors(dims), dtype=float)
            else:
                dims, box = None, None
            step_no = ts.data.get("step")
            step_no = None if step_no is None else int(step_no)
            clock = step_no if step_no is not None else ts.time
            if clock is not None and previous is not None and clock <= previous[1]:
                raise TrajectoryError(
                    f"{where}: {'timestep' if step_no is not None else 'time'} {clock} does not "
                    f"increase (frame {previous[0]} had {previous[1]}): the file holds repeated or "
                    "reordered frames (e.g. the same dump appended twice, or a restarted run "
                    "writing over its own tail); keep each frame once")
            if clock is not None:
                previous = (i, clock)
            if self.dt_fs is not None and step_no is not None:
                time_fs = step_no * self.dt_fs
            elif self.time_factor is not None and ts.time is not None:
                time_fs = float(ts.time) * self.time_factor
            else:
                time_fs = None
            yield Frame(index=i, step=step_no, time=time_fs,
                        positions=positions, forces=forces, velocities=velocities, box=box,
                        dimensions=dims, masses=masses, resids=resids, resnames=resnames,
                        names=names, types=types)


_LAMMPS_DATA = {".data", ".lmp", ".lammps"}
_LAMMPS_DUMP = {".dump", ".lammpstrj", ".lammpsdump"}
_GROMACS_TOP = {".tpr", ".gro"}
_EXTXYZ = {".xyz", ".extxyz"}


def open_trajectory(topology: str | os.PathLike, trajectory: str | os.PathLike | None = None,
                    format: str | None = None, dump_units: str = "real",
                    atom_style: str | None = None, unwrap: bool = False,
                    thermo: str | os.PathLike | None = None) -> Trajectory:
    """Open a trajectory (:func:`_open`) and attach its per-frame thermodynamics.

    ``thermo``: a LAMMPS log, GROMACS ``.edr`` or hipcg ``nvt_samples.dat`` with the pressure and
    energies of the frames (:mod:`hipcg.frame_thermo`); None: the ``nvt_samples.dat`` of a
    ``hipcg reference`` run next to its dump, when there is one, else no thermodynamics.
    """
    from .frame_thermo import read_reference_samples, read_thermo

    traj = _open(topology, trajectory, format, dump_units, atom_style, unwrap)
    if thermo is not None:
        traj.thermo = read_thermo(thermo, units=dump_units)
    else:
        samples = traj.trajectory.parent / "nvt_samples.dat"
        if traj.dt_fs is not None and samples.is_file():  # dt_fs: a hipcg reference run's dump
            traj.thermo = read_reference_samples(samples)
    return traj


def _open(topology, trajectory, format, dump_units, atom_style, unwrap) -> Trajectory:
    """Open ``topology`` + ``trajectory`` and check that frames carry forces.

    ``format``: ``"lammps"``, ``"gromacs"`` or ``"extxyz"``; guessed from the suffixes when
    None.  ``dump_units``: the LAMMPS ``units`` the dump was written in (``real`` or ``metal``).
    ``atom_style``: the LAMMPS data file's column layout in MDAnalysis' form (default that of
    ``atom_style full``: ``"id resid type charge x y z"``).  ``unwrap``: LAMMPS dumps only,
    unwrap positions with the ix iy iz image flags.
    """
    topology = Path(topology)
    trajectory = Path(trajectory) if trajectory is not None else None
    for p in (topology, trajectory):
        if p is not None and not p.is_file():
            raise TrajectoryError(f"{p}: no such file")
    fmt = format or _guess_format(topology, trajectory)
    for p in (topology, trajectory):
        if p is not None and p.stat().st_size == 0:
            raise TrajectoryError(f"{p}: empty file")
    if fmt == "extxyz":
        return _open_extxyz(trajectory or topology)
    if trajectory is None:
        raise TrajectoryError(f"{topology}: a {fmt} topology needs a trajectory file with forces")
    if fmt == "lammps":
        if dump_units not in _LAMMPS_DUMP_UNITS:
            raise TrajectoryError(f"dump_units must be one of {list(_LAMMPS_DUMP_UNITS)}, "
                                  f"got {dump_units!r}")
        kwargs = {"format": "LAMMPSDUMP", "topology_format": "DATA"}
        if atom_style:
            kwargs["atom_style"] = atom_style
        if unwrap:
            kwargs["unwrap_images"] = True
        u = _universe(topology, trajectory, **kwargs)
        _warn_partial_dump_frames(trajectory, len(u.trajectory))
        ff, vf = _LAMMPS_DUMP_UNITS[dump_units]
        dt = _names_from_metadata(u, trajectory.parent / "metadata.json")
        # A dump stores steps, not times: the time is known only with the run's timestep.
        return Trajectory(u, topology, trajectory, ff, vf, time_factor=None, dt_fs=dt)
    if fmt == "gromacs":
        u = _universe(topology, trajectory, format="TRR")
        # MDAnalysis converts TRR to Å, ps, kJ/(mol Å) and Å/ps.
        f = reader_unit_factors(u.trajectory)
        return Trajectory(u, topology, trajectory, f["force"], f["velocity"], time_factor=1.0e3)
    raise TrajectoryError(f"unknown format {fmt!r}: use 'lammps', 'gromacs' or 'extxyz'")


def _guess_format(topology: Path, trajectory: Path | None) -> str:
    top, trj = topology.suffix.lower(), trajectory.suffix.lower() if trajectory else ""
    if top in _EXTXYZ and trajectory is None or trj in _EXTXYZ:
        return "extxyz"
    if top in _LAMMPS_DATA or trj in _LAMMPS_DUMP:
        return "lammps"
    if top in _GROMACS_TOP or trj == ".trr":
        return "gromacs"
    raise TrajectoryError(f"cannot tell the format of {topology}"
                          f"{' + ' + str(trajectory) if trajectory else ''} from the suffixes: "
                          f"pass format='lammps', 'gromacs' or 'extxyz'")


def _warn_partial_dump_frames(path: Path, n_read: int) -> None:
    """MDAnalysis silently skips a LAMMPS dump's last frame when it is cut mid-way (a killed
    run): count the frame headers ourselves and say how many frames were dropped."""
    marker = b"ITEM: TIMESTEP"
    headers = 0
    with open(path, "rb") as fh:
        carry = b""
        while chunk := fh.read(1 << 24):
            block = carry + chunk
            headers += block.count(marker)
            # keep one byte less than a marker: a marker split across chunks is counted in the
            # next block, and none can be counted twice
            carry = block[-(len(marker) - 1):]
    if headers > n_read:
        warnings.warn(f"{path}: {headers - n_read} frame(s) at the end are incomplete (the run "
                      f"was cut while writing?) and were dropped; {n_read} frames used",
                      TrajectoryWarning, stacklevel=3)


class TrajectoryWarning(UserWarning):
    """Frames of a trajectory were left out; the message says how many and why."""


def _universe(topology: Path, trajectory: Path, **kwargs):
    import MDAnalysis as mda

    with warnings.catch_warnings():
        # MDAnalysis warns about guessed attributes and missing time steps; not actionable here.
        warnings.simplefilter("ignore")
        try:
            u = mda.Universe(str(topology), str(trajectory), **kwargs)
        except ValueError as err:
            if "atoms" in str(err):
                raise TrajectoryError(f"{trajectory}: atom count differs from the topology "
                                      f"{topology}: {err}") from err
            raise TrajectoryError(f"{topology} + {trajectory}: {err}") from err
        except Exception as err:  # noqa: BLE001
            raise TrajectoryError(f"{topology} + {trajectory}: cannot be read: {err}") from err
    if u.trajectory.n_atoms != u.atoms.n_atoms:
        raise TrajectoryError(f"{trajectory}: {u.trajectory.n_atoms} atoms, but the topology "
                              f"{topology} has {u.atoms.n_atoms}")
    if len(u.trajectory) == 0:
        raise TrajectoryError(f"{trajectory}: no frames")
    if not u.trajectory.ts.has_forces:
        raise TrajectoryError(f"{trajectory}: frame 0 has no forces (force matching needs "
                              f"per-atom forces)")
    return u


def _names_from_metadata(u, meta_path: Path) -> float | None:
    """Atom/residue names from a ``hipcg reference`` metadata file when it matches the
    topology; return its timestep (fs) or None."""
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        names = list(meta["system"]["atom_names"])
        resname = meta["system"]["residue"]
        dt = float(meta["timestep_fs"])
    except (ValueError, KeyError, TypeError):
        return None
    n_res = len(u.residues)
    if n_res * len(names) != u.atoms.n_atoms or any(len(r.atoms) != len(names) for r in u.residues):
        return None
    u.add_TopologyAttr("names", names * n_res)
    u.add_TopologyAttr("resnames", [resname] * n_res)
    return dt


def _open_extxyz(path: Path) -> Trajectory:
    """extxyz through ASE into an in-memory Universe (MDAnalysis units: kJ/(mol Å), Å/ps)."""
    import ase.io
    import ase.units
    import MDAnalysis as mda
    from MDAnalysis.coordinates.memory import MemoryReader

    try:
        images = ase.io.read(str(path), index=":", format="extxyz")
    except Exception as err:  # noqa: BLE001
        raise TrajectoryError(f"{path}: cannot be read as extxyz: {err}") from err
    if not images:
        raise TrajectoryError(f"{path}: no frames")
    n = len(images[0])
    kj_mol = ase.units.kJ / ase.units.mol
    pos, frc, vel, dims = [], [], [], []
    for i, atoms in enumerate(images):
        if len(atoms) != n:
            raise TrajectoryError(f"{path}: frame {i}: {len(atoms)} atoms, frame 0 has {n}")
        try:
            f = atoms.get_forces()
        except Exception:  # noqa: BLE001  (no calculator / no forces array)
            f = atoms.arrays.get("forces")
        if f is None:
            raise TrajectoryError(f"{path}: frame {i}: no forces (extxyz needs a 'forces' column)")
        pos.append(atoms.get_positions())
        frc.append(np.asarray(f) / kj_mol)                      # eV/Å -> kJ/(mol Å)
        if atoms.has("momenta"):
            vel.append(atoms.get_velocities() * ase.units.fs * 1.0e3)   # ASE -> Å/ps
        if atoms.pbc.any():
            dims.append(atoms.cell.cellpar())
        else:
            dims.append(np.zeros(6))
    first = images[0]
    for key in ("mol-id", "mol_id", "molecule_id", "resid", "mol"):
        if key in first.arrays:
            mol = np.asarray(first.arrays[key]).astype(int)
            break
    else:
        mol = np.ones(n, dtype=int)   # no molecule information: one residue
    uniq, res_index = np.unique(mol, return_inverse=True)
    u = mda.Universe.empty(n, n_residues=len(uniq), atom_resindex=res_index, trajectory=False)
    symbols = np.array(first.get_chemical_symbols())
    u.add_TopologyAttr("names", symbols)
    u.add_TopologyAttr("types", symbols)
    u.add_TopologyAttr("masses", first.get_masses())
    u.add_TopologyAttr("resids", uniq)
    u.add_TopologyAttr("resnames", ["MOL"] * len(uniq))
    u.load_new(np.array(pos, dtype=np.float32), format=MemoryReader,
               forces=np.array(frc, dtype=np.float32),
               velocities=np.array(vel, dtype=np.float32) if len(vel) == len(images) else None,
               dimensions=np.array(dims, dtype=np.float32))
    return Trajectory(u, path, path, 1.0 / KJ_PER_KCAL, 1.0e-3, time_factor=1.0e3)
