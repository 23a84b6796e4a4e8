"""Sequence-defined bead-spring copolymers and their reference Langevin runs in LAMMPS.

A chain system file (``datasets/<name>/system.yaml``; ``datasets/polymer`` is the default one)
defines a Kremer-Grest model in reduced Lennard-Jones units and the scales that map it onto
LAMMPS ``real`` units::

    units: real                             # required: files written from the runs say so
    reduced_units: {sigma: Å, epsilon: kcal/mol, mass: g/mol}
    temperature: 300.0                      # K
    pairs: {A-A: {epsilon, sigma, cutoff}, A-B: {...}, B-B: {...}}   # lj/cut, shifted
    bond: {K, R0, epsilon, sigma}           # bond_style fene
    special_bonds: fene
    damp: 1.0                               # Langevin damping time, tau
    timestep: 0.01                          # tau
    chain_length: 40
    sequences: {train: {NAME: "ABBA..."}, test: {NAME: "..."}}

Everything but the three scales and the temperature is in reduced units (sigma, epsilon, m,
tau = sigma sqrt(m / epsilon)).  Sequences are strings of ``A`` and ``B`` of length
``chain_length``; names are unique (they become folder names) and no test sequence is a train
sequence, read in either direction (a linear chain has no head or tail).

:func:`run_chains` runs each sequence as one chain in a periodic box too large for the chain
ever to meet its image (edge > fully stretched FENE contour + largest cutoff), Langevin
thermostat (``fix nve`` + ``fix langevin``).  Per sequence, in ``OUT/<name>/``:

1. ``chain.data``: a seeded self-avoiding random walk (bonds 0.97 sigma, no two monomers
   closer than 1 sigma);
2. ``equilibrate``: a push-off under ``fix nve/limit`` (so no FENE bond can break on a bad
   start), then ``equilibrate_steps`` of Langevin dynamics;
3. ``production``: ``production_steps`` more, the timestep counter reset to 0, with
   ``id mol type xu yu zu vx vy vz`` dumped every ``frame_every`` steps to ``production.dump``.

Both stages write restart files (``restart_every``; a few kB each for chains of tens of
monomers, so all are kept); a killed run resumes from the newest one (the dump cut back to its
step first) and ends with exactly the frames of an unbroken run.  A resumed stage draws new
Langevin noise (the thermostat's random state is not in restart files), so it is a different,
equally valid trajectory.  ``run.json`` (written atomically, last) marks a finished run and
records the settings' fingerprint, LAMMPS' production loop time and steps per second.

Units are LAMMPS ``real`` throughout: Å, fs, kcal/mol, g/mol, K, Å/fs.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Iterable, Literal

import numpy as np

from .. import UNITS, __version__
from ..atomic import write_json_atomic, write_text_atomic
from ..config import (FileNameSafe, NonNegative, NonNegativeInt, Positive, PositiveInt, Range,
                      check_fields, from_dict, load_yaml)
from ..errors import ConfigError, DataError, InputError, RunError
from ..lammps.dump import read_dump, truncate_dump
from ..lammps.restarts import resume_or_run
from ..lammps.runner import run_lammps
from ..systems import dataset_roots, locate_system_yaml

#: LAMMPS real units: sqrt(mvv2e), i.e. 1 Å (g/mol)^0.5 (kcal/mol)^-0.5 in fs.
TIME_UNIT_FS = 48.88821291
#: Boltzmann constant in kcal/(mol K) (LAMMPS real units).
KB = 0.0019872067
#: Kinetic energy in kcal/mol of m (g/mol) moving at v (Å/fs): 0.5 * MVV2E * m v^2.
MVV2E = TIME_UNIT_FS ** 2

ROLES = ("train", "test")
MONOMER_TYPES = ("A", "B")          # LAMMPS atom types 1 and 2
PAIR_KEYS = ("A-A", "A-B", "B-B")
DUMP_COLUMNS = "id mol type xu yu zu vx vy vz"
DUMP_FILE = "production.dump"
RECORD_FILE = "run.json"
IDENTITY_FILE = "config.json"
THERMO_COLUMNS = ["step", "temp", "pe", "ebond"]
#: Version of the run protocol (start structure, push-off, LAMMPS input): part of a run's
#: identity, so that a changed protocol does not reuse or resume runs of the old one.
PROTOCOL = 1

# Starting configuration (reduced units): a self-avoiding random walk.
WALK_BOND = 0.97            # sigma: near the FENE + WCA minimum (0.97 sigma, Kremer & Grest 1990)
WALK_MIN_DISTANCE = 1.0     # sigma: closest approach of monomers that are not bonded
PUSHOFF_LIMIT = 0.1         # sigma per step: fix nve/limit cap during the push-off


class ChainRunError(InputError):
    """A chain run cannot go on: existing data with other settings, inconsistent files."""


# --------------------------------------------------------------------------- the system file


@dataclass(frozen=True)
class ReducedUnits:
    """The scales of the reduced units in LAMMPS real units."""

    sigma: Positive       # Å
    epsilon: Positive     # kcal/mol
    mass: Positive        # g/mol (the monomer mass)


@dataclass(frozen=True)
class PairParams:
    """One ``lj/cut`` pair (reduced units)."""

    epsilon: NonNegative
    sigma: Positive
    cutoff: Positive


@dataclass(frozen=True)
class FeneParams:
    """``bond_style fene`` coefficients (reduced units)."""

    K: Positive           # epsilon / sigma^2
    R0: Positive          # sigma
    epsilon: NonNegative  # epsilon
    sigma: Positive       # sigma


@dataclass
class _SystemFile:
    units: Literal["real"]
    reduced_units: ReducedUnits
    temperature: Positive
    pairs: dict[str, PairParams]
    bond: FeneParams
    damp: Positive
    timestep: Positive
    chain_length: Annotated[int, Range(ge=2)]
    sequences: dict[str, dict[str, str]]
    special_bonds: Literal["fene"] = "fene"
    name: str | None = None
    description: str = ""


@dataclass
class ChainSystem:
    """A parsed, validated chain system file (see the module docstring)."""

    name: str
    path: Path
    description: str
    units: ReducedUnits
    temperature: float                  # K
    pairs: dict[str, PairParams]        # keys PAIR_KEYS, reduced units
    bond: FeneParams
    damp_tau: float
    timestep_tau: float
    chain_length: int
    sequences: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> name -> sequence

    # --- scales ---------------------------------------------------------------------------
    @property
    def sigma(self) -> float:
        """Å."""
        return self.units.sigma

    @property
    def epsilon(self) -> float:
        """kcal/mol."""
        return self.units.epsilon

    @property
    def monomer_mass(self) -> float:
        """g/mol."""
        return self.units.mass

    @property
    def tau_fs(self) -> float:
        """The reduced time unit sigma sqrt(m / epsilon) in fs."""
        return self.sigma * math.sqrt(self.monomer_mass / self.epsilon) * TIME_UNIT_FS

    @property
    def timestep_fs(self) -> float:
        return self.timestep_tau * self.tau_fs

    @property
    def damp_fs(self) -> float:
        return self.damp_tau * self.tau_fs

    @property
    def kT(self) -> float:
        """kcal/mol."""
        return KB * self.temperature

    @property
    def max_cutoff(self) -> float:
        """Largest pair cutoff, Å."""
        return max(p.cutoff for p in self.pairs.values()) * self.sigma

    def box_length(self, n_monomers: int | None = None) -> float:
        """Edge (Å) of a cubic box in which a chain cannot meet its periodic image.

        No two monomers are further apart than the fully stretched contour ((n - 1) R0, FENE
        bonds cannot stretch beyond R0), so an edge longer than that plus the largest cutoff
        (and 1 sigma to spare) keeps every image out of range, whatever the chain does.
        """
        n = n_monomers or self.chain_length
        return ((n - 1) * self.bond.R0 + 1.0) * self.sigma + self.max_cutoff

    # --- sequences ------------------------------------------------------------------------
    def names(self, roles: Iterable[str] | str = ROLES) -> list[str]:
        """Sequence names of ``roles`` (``"train"``, ``"test"`` or both), in file order."""
        roles = [roles] if isinstance(roles, str) else list(roles)
        for role in roles:
            if role not in ROLES:
                raise ConfigError(f"roles: {role!r} is not one of {list(ROLES)}")
        return [n for role in roles for n in self.sequences.get(role, {})]

    def role_of(self, name: str) -> str:
        for role, seqs in self.sequences.items():
            if name in seqs:
                return role
        raise ConfigError(f"{self.path}: no sequence named {name!r}; known: {self.names()}")

    def sequence(self, name: str) -> str:
        return self.sequences[self.role_of(name)][name]

    # --- fingerprint ------------------------------------------------------------------------
    def physics(self) -> dict:
        """Every parameter that changes the dynamics of a chain (not names or descriptions)."""
        return {"units": asdict(self.units), "temperature": self.temperature,
                "pairs": {k: asdict(v) for k, v in sorted(self.pairs.items())},
                "bond": asdict(self.bond), "special_bonds": "fene", "damp": self.damp_tau,
                "timestep": self.timestep_tau, "pair_modify": "shift yes", "lammps_units": UNITS}

    def fingerprint(self, sequence_name: str | None = None) -> str:
        """Hash of the physics: the force field, thermostat and timestep, plus either one
        sequence (``sequence_name``: what a single chain's run depends on, so that adding
        sequences to the file keeps existing runs) or, by default, every sequence and role."""
        content = self.physics()
        if sequence_name is None:
            content["sequences"] = self.sequences
        else:
            content["sequence"] = self.sequence(sequence_name)
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    # --- LAMMPS text ----------------------------------------------------------------------------
    def force_field_commands(self) -> list[str]:
        """Masses, pair and bond styles and coefficients in real units."""
        s, e = self.sigma, self.epsilon
        cmds = [f"mass {t + 1} {self.monomer_mass:.10g}  # {name}" for t, name in enumerate(MONOMER_TYPES)]
        cmds += [f"pair_style lj/cut {self.max_cutoff:.10g}", "pair_modify shift yes"]
        for key in PAIR_KEYS:
            p = self.pairs[key]
            i, j = (MONOMER_TYPES.index(x) + 1 for x in key.split("-"))
            cmds.append(f"pair_coeff {i} {j} {p.epsilon * e:.10g} {p.sigma * s:.10g} "
                        f"{p.cutoff * s:.10g}  # {key}")
        b = self.bond
        cmds += ["bond_style fene",
                 f"bond_coeff 1 {b.K * e / s ** 2:.10g} {b.R0 * s:.10g} {b.epsilon * e:.10g} "
                 f"{b.sigma * s:.10g}",
                 "special_bonds fene"]
        return cmds

    def summary(self) -> dict:
        return {"name": self.name, "file": str(self.path), "fingerprint": self.fingerprint(),
                "sigma_A": self.sigma, "epsilon_kcal_mol": self.epsilon,
                "monomer_mass": self.monomer_mass, "tau_fs": self.tau_fs,
                "timestep_fs": self.timestep_fs, "temperature": self.temperature}


def find_chain_system_file(name_or_path: str | os.PathLike) -> Path:
    """A system file from a path, a dataset folder, or a name under ``$HIPCG_DATASETS`` and the
    repository's ``datasets/`` (:func:`hipcg.systems.locate_system_yaml`)."""
    found = locate_system_yaml(name_or_path)
    if found is None:
        raise ConfigError(f"no chain system {str(name_or_path)!r}: not a file, and no "
                          f"<name>/system.yaml in {', '.join(map(str, dataset_roots()))}")
    return found


def load_chain_system(name_or_path: str | os.PathLike) -> ChainSystem:
    """Read and validate a chain system file; a ConfigError names the file and the key."""
    path = find_chain_system_file(name_or_path)
    raw = load_yaml(path, what="chain system file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        parsed = from_dict(_SystemFile, raw, "")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None

    pairs = {}
    for key, p in parsed.pairs.items():
        a, _, b = key.partition("-")
        canonical = "-".join(sorted((a, b)))
        if canonical not in PAIR_KEYS:
            raise ConfigError(f"{path}: pairs.{key}: expected pairs of monomer types "
                              f"{list(MONOMER_TYPES)}: {list(PAIR_KEYS)}")
        if canonical in pairs:
            raise ConfigError(f"{path}: pairs.{key}: given twice (as {canonical} too)")
        pairs[canonical] = p
    missing = [k for k in PAIR_KEYS if k not in pairs]
    if missing:
        raise ConfigError(f"{path}: pairs.{missing[0]}: required key missing (every pair of "
                          f"{list(PAIR_KEYS)} needs epsilon, sigma, cutoff)")
    if parsed.bond.R0 <= 2 ** (1 / 6) * parsed.bond.sigma * 0.8:
        raise ConfigError(f"{path}: bond.R0: {parsed.bond.R0} sigma leaves no room for a bond "
                          f"(FENE needs R0 well above the WCA core, e.g. 1.5)")

    sequences = _check_sequences(path, parsed.sequences, parsed.chain_length)
    return ChainSystem(name=str(parsed.name or path.parent.name), path=path,
                       description=" ".join(parsed.description.split()), units=parsed.reduced_units,
                       temperature=float(parsed.temperature), pairs=pairs, bond=parsed.bond,
                       damp_tau=float(parsed.damp), timestep_tau=float(parsed.timestep),
                       chain_length=parsed.chain_length, sequences=sequences)


def _check_sequences(path: Path, groups: dict, length: int) -> dict[str, dict[str, str]]:
    unknown = [r for r in groups if r not in ROLES]
    if unknown:
        raise ConfigError(f"{path}: sequences.{unknown[0]}: unknown group; allowed groups are "
                          f"{list(ROLES)}")
    out: dict[str, dict[str, str]] = {}
    seen_names: dict[str, str] = {}
    for role in ROLES:
        for name, seq in (groups.get(role) or {}).items():
            key = f"sequences.{role}.{name}"
            FileNameSafe().check(name, f"{path}: {key}")
            if name in seen_names:
                raise ConfigError(f"{path}: {key}: name also used in sequences.{seen_names[name]}: "
                                  f"sequence names must be unique (they name the run folders)")
            seen_names[name] = role
            bad = sorted(set(seq) - set(MONOMER_TYPES))
            if bad:
                raise ConfigError(f"{path}: {key}: monomer(s) {bad} in {seq!r}: sequences are "
                                  f"strings of {' and '.join(MONOMER_TYPES)} only")
            if len(seq) != length:
                raise ConfigError(f"{path}: {key}: {len(seq)} monomers, chain_length is {length}")
            out.setdefault(role, {})[name] = seq
    if not seen_names:
        raise ConfigError(f"{path}: sequences: no sequences (give train: {{NAME: ABAB...}})")
    # train and test must not share a chain: same string, or the same read backwards
    train = {}
    for name, seq in out.get("train", {}).items():
        train.setdefault(seq, name)
        train.setdefault(seq[::-1], name)
    for name, seq in out.get("test", {}).items():
        if seq in train:
            raise ConfigError(f"{path}: sequences.test.{name}: the same chain as "
                              f"sequences.train.{train[seq]} ({seq!r}"
                              f"{', reversed' if seq != out['train'][train[seq]] else ''}): "
                              f"train and test must be disjoint")
    return out


# --------------------------------------------------------------------------- run settings


@dataclass
class ChainRunConfig:
    """One set of chain runs.  Step counts are LAMMPS steps of the system's timestep.

    Defaults for ``datasets/polymer`` (0.01 tau steps, measured Dec 2026 on the 2-core machine
    kind): equilibration 1,000 tau and production 10,000 tau per chain, a frame every tau
    (10,001 frames, about 38 MB of dump per 40-mer).  The slowest Rg^2 autocorrelation times
    measured there are 50-100 tau (multiblock sequences that switch between collapsed and open
    states; swollen chains 30-40 tau, globules about 10 tau), so production spans 100 or more
    of them and equilibration 10 or more.  LAMMPS runs a 40-mer at 200,000-300,000 steps/s on
    one thread: all 24 sequences take about 70 s with ``parallel=2``.
    """

    system: str                                     # name under datasets/ or a path
    equilibrate_steps: NonNegativeInt = 100_000     # after the push-off, before production
    production_steps: PositiveInt = 1_000_000
    frame_every: PositiveInt = 100                  # steps between dumped frames
    seed: Annotated[int, Range(ge=1, le=100_000_000)] = 2024
    threads: PositiveInt = 1                        # OpenMP threads per LAMMPS run
    parallel: PositiveInt = 1                       # chains run at the same time (processes)
    pushoff_steps: PositiveInt = 1_000              # fix nve/limit phase on the random walk
    restart_every: PositiveInt | None = None        # steps; None: about 10 per stage
    thermo_every: PositiveInt = 5_000               # steps between LAMMPS thermo lines

    def __post_init__(self):
        check_fields(self, "chains")
        if self.production_steps % self.frame_every:
            raise ConfigError(f"chains.production_steps: {self.production_steps} is not a "
                              f"multiple of frame_every ({self.frame_every})")
        if self.restart_every is not None and self.restart_every % self.frame_every:
            raise ConfigError(f"chains.restart_every: {self.restart_every} is not a multiple of "
                              f"frame_every ({self.frame_every}); restarts sit on frame steps")

    @property
    def frames(self) -> int:
        return self.production_steps // self.frame_every + 1

    def restart_interval(self, steps: int) -> int:
        """Steps between restart files of a stage of ``steps`` steps (on frame steps)."""
        every = self.restart_every or max(1, steps // 10)
        return max(self.frame_every, every // self.frame_every * self.frame_every)


def sequence_seed(seed: int, name: str) -> int:
    """The run seed of one sequence: fixed by the config seed and the name (not the order)."""
    return (seed + zlib.crc32(name.encode())) % 800_000_000 + 1


# --------------------------------------------------------------------------- start structure


def random_walk(n: int, rng: np.random.Generator, bond: float = WALK_BOND,
                min_distance: float = WALK_MIN_DISTANCE, max_tries: int = 1000) -> np.ndarray:
    """(n, 3) positions (reduced units) of a self-avoiding random walk: consecutive monomers
    ``bond`` apart, no other pair closer than ``min_distance``.  Growth that gets stuck
    (no free direction in ``max_tries`` draws) starts again."""
    for _ in range(100):
        pos = np.zeros((n, 3))
        ok = True
        for i in range(1, n):
            for _ in range(max_tries):
                step = rng.normal(size=3)
                cand = pos[i - 1] + bond * step / np.linalg.norm(step)
                if i < 2 or np.min(np.linalg.norm(pos[:i - 1] - cand, axis=1)) >= min_distance:
                    pos[i] = cand
                    break
            else:
                ok = False
                break
        if ok:
            return pos
    raise RunError(f"could not grow a self-avoiding walk of {n} monomers")


def write_chain_data(path: Path, system: ChainSystem, sequence: str, seed: int) -> Path:
    """A LAMMPS data file (atom_style bond) of one chain, centred in its cubic box."""
    rng = np.random.default_rng(seed)
    n = len(sequence)
    pos = random_walk(n, rng) * system.sigma
    pos -= pos.mean(axis=0)
    half = system.box_length(n) / 2
    lines = [f"hipcg chain {sequence} (units {UNITS})", "", f"{n} atoms", f"{n - 1} bonds",
             f"{len(MONOMER_TYPES)} atom types", "1 bond types", "",
             f"{-half:.10g} {half:.10g} xlo xhi", f"{-half:.10g} {half:.10g} ylo yhi",
             f"{-half:.10g} {half:.10g} zlo zhi", "", "Masses", ""]
    lines += [f"{t + 1} {system.monomer_mass:.10g}  # {name}" for t, name in enumerate(MONOMER_TYPES)]
    lines += ["", "Atoms # bond", ""]
    lines += [f"{i + 1} 1 {MONOMER_TYPES.index(c) + 1} {x:.10f} {y:.10f} {z:.10f}"
              for i, (c, (x, y, z)) in enumerate(zip(sequence, pos))]
    lines += ["", "Bonds", ""] + [f"{i + 1} 1 {i + 1} {i + 2}" for i in range(n - 1)]
    return write_text_atomic(path, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- LAMMPS input


def model_lines(system: ChainSystem, source: str) -> list[str]:
    """Units, structure (data or restart file), force field and neighbour settings of a chain
    run: what any LAMMPS input evaluating the chain's forces needs (the runs here, the rerun
    of :mod:`hipcg.dynamics.baseline`)."""
    lines = ["units real", "atom_style bond", "boundary p p p",
             f"read_data {source}" if source.endswith(".data") else f"read_restart {source}"]
    lines += system.force_field_commands()
    # nsq: one chain of tens of monomers in a huge box, where bins would be almost all empty
    return lines + ["neighbor 2.0 nsq", "neigh_modify every 1 delay 0 check yes"]


def _setup(system: ChainSystem, cfg: ChainRunConfig, source: str) -> list[str]:
    """Units, structure (data or restart file), force field, neighbours, output."""
    lines = model_lines(system, source)
    lines += [f"timestep {system.timestep_fs:.10g}",
              "thermo_style custom " + " ".join(THERMO_COLUMNS), f"thermo {cfg.thermo_every}",
              "thermo_modify flush yes"]
    return lines


def _langevin(system: ChainSystem, seed: int) -> str:
    t = system.temperature
    return f"fix thermostat all langevin {t} {t} {system.damp_fs:.10g} {seed}"


def equilibrate_script(system: ChainSystem, cfg: ChainRunConfig, seed: int,
                       restart: str | None = None) -> str:
    """Push-off and equilibration from ``chain.data``, or a resume from ``restart`` (its step
    offsets the Langevin seed so the resumed stage does not replay the noise)."""
    every = cfg.restart_interval(cfg.equilibrate_steps)
    if restart is None:
        lines = _setup(system, cfg, "chain.data") + [
            f"velocity all create {system.temperature} {seed} dist gaussian mom yes rot yes",
            f"fix integrate all nve/limit {PUSHOFF_LIMIT * system.sigma:.10g}",
            _langevin(system, seed + 1),
            f"run {cfg.pushoff_steps}",
            "unfix integrate", "unfix thermostat", "reset_timestep 0"]
    else:
        step = int(re.search(r"\.(\d+)\.restart$", restart).group(1))
        lines = _setup(system, cfg, restart)
        seed = seed + 7 * (step // every + 1)
    lines += ["fix integrate all nve", _langevin(system, seed + 2),
              f"restart {every} equilibrate.*.restart",
              f"run {cfg.equilibrate_steps} upto", "write_restart equilibrate.final.restart"]
    return "\n".join(lines) + "\n"


def production_script(system: ChainSystem, cfg: ChainRunConfig, seed: int,
                      restart: str | None = None) -> str:
    """Production from the equilibrated state (timestep reset to 0), or a resume."""
    every = cfg.restart_interval(cfg.production_steps)
    if restart is None:
        lines = _setup(system, cfg, "equilibrate.final.restart") + ["reset_timestep 0"]
        noise = seed + 3
    else:
        step = int(re.search(r"\.(\d+)\.restart$", restart).group(1))
        lines = _setup(system, cfg, restart)
        noise = seed + 3 + 11 * (step // every + 1)
    lines += ["fix integrate all nve", _langevin(system, noise),
              f"dump traj all custom {cfg.frame_every} {DUMP_FILE} {DUMP_COLUMNS}",
              "dump_modify traj sort id format float %.10g flush yes"
              + ("" if restart is None else " append yes"),
              f"restart {every} production.*.restart",
              f"run {cfg.production_steps} upto"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- one chain


@dataclass
class ChainRun:
    """A finished chain run: its folder and its ``run.json`` record."""

    name: str
    role: str
    sequence: str
    directory: Path
    record: dict
    reused: bool = False

    @property
    def dump_path(self) -> Path:
        return self.directory / self.record.get("files", {}).get("dump", DUMP_FILE)

    @property
    def timestep_fs(self) -> float:
        return float(self.record["timestep_fs"])

    @property
    def md_fs_per_wall_second(self) -> float:
        return float(self.record["production_timing"]["md_fs_per_wall_second"])


def open_chain_run(directory: str | os.PathLike) -> ChainRun:
    """The :class:`ChainRun` of a finished run folder (its ``run.json``)."""
    directory = Path(directory)
    path = directory / RECORD_FILE
    if not path.is_file():
        raise DataError(f"{path}: no such file: {directory} holds no finished chain run")
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON: {err}") from None
    for key in ("name", "role", "sequence", "units", "timestep_fs", "production_timing"):
        if key not in rec:
            raise DataError(f"{path}: missing key {key!r}")
    if rec["units"] != UNITS:
        raise DataError(f"{path}: units are {rec['units']!r}; hipcg works in {UNITS!r}")
    return ChainRun(rec["name"], rec["role"], rec["sequence"], directory, rec)


def _identity(system: ChainSystem, cfg: ChainRunConfig, name: str) -> dict:
    """What must match for an existing folder to be resumed or reused rather than refused."""
    return {"protocol": PROTOCOL, "system": system.fingerprint(name), "sequence": system.sequence(name),
            "seed": sequence_seed(cfg.seed, name), "pushoff_steps": cfg.pushoff_steps,
            "equilibrate_steps": cfg.equilibrate_steps,
            "production_steps": cfg.production_steps, "frame_every": cfg.frame_every}


def _hash(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


class _Stop(Exception):
    """Raised from an output callback to stop a LAMMPS run when another chain failed."""


def _run_stage(script: str, workdir: Path, stage: str, cfg: ChainRunConfig,
               stop: threading.Event | None) -> str:
    attempt = len(list(workdir.glob(f"log.{stage}.*.lammps"))) + 1

    def on_line(_line: str) -> None:
        if stop is not None and stop.is_set():
            raise _Stop()

    return run_lammps(script, workdir, threads=cfg.threads, input_name=f"in.{stage}.lammps",
                      log_name=f"log.{stage}.{attempt}.lammps", on_line=on_line,
                      omp_styles=cfg.threads > 1).output


def _resume_or_run(stage: str, workdir: Path, fresh, resume, cfg, stop) -> str:
    """Run a stage from its newest readable restart file, or from the start when there is none
    (also when every restart file is unreadable: a chain's fresh start costs seconds)."""
    return resume_or_run(stage, workdir, fresh, resume,
                         lambda script: _run_stage(script, workdir, stage, cfg, stop),
                         restart_when_all_unreadable=True)


_LOOP = re.compile(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")
_PERF = re.compile(r"Performance:.*?([0-9.eE+-]+) timesteps/s")


def loop_timing(output: str) -> dict | None:
    """LAMMPS' last ``Loop time`` (seconds, steps) and ``Performance`` (timesteps/s) lines."""
    loops, perfs = _LOOP.findall(output), _PERF.findall(output)
    if not loops:
        return None
    seconds, procs, steps, _ = loops[-1]
    seconds, steps = float(seconds), int(steps)
    return {"loop_seconds": seconds, "steps": steps, "procs": int(procs),
            "steps_per_second": steps / seconds if seconds > 0 else None,
            "lammps_timesteps_per_second": float(perfs[-1]) if perfs else None}


def chain_diagnostics(frames: list[dict], system: ChainSystem) -> dict:
    """Radius of gyration, longest bond and extent (sigma), temperature (K, 3N degrees of
    freedom: Langevin dynamics does not conserve momentum) of a chain's dumped frames."""
    x = np.array([np.c_[f["xu"], f["yu"], f["zu"]] for f in frames]) / system.sigma
    v = np.array([np.c_[f["vx"], f["vy"], f["vz"]] for f in frames])
    rg = np.sqrt(((x - x.mean(axis=1, keepdims=True)) ** 2).sum(axis=2).mean(axis=1))
    bonds = np.linalg.norm(np.diff(x, axis=1), axis=2)
    ke = 0.5 * MVV2E * system.monomer_mass * (v ** 2).sum(axis=(1, 2))
    temp = 2 * ke / (3 * x.shape[1] * KB)
    return {"rg_mean_sigma": float(rg.mean()), "rg_std_sigma": float(rg.std()),
            "rg2_mean_sigma2": float((rg ** 2).mean()),
            "max_bond_sigma": float(bonds.max()), "min_bond_sigma": float(bonds.min()),
            "max_extent_sigma": float((x.max(axis=1) - x.min(axis=1)).max()),
            "temperature_mean": float(temp.mean()), "temperature_std": float(temp.std())}


def _claim(workdir: Path, identity: dict, reuse: bool, overwrite: bool) -> dict | None:
    """Make ``workdir`` ours; return the record of a finished run to reuse, else None."""
    if workdir.exists() and overwrite:
        shutil.rmtree(workdir)
    if workdir.exists() and any(workdir.iterdir()):
        id_path = workdir / IDENTITY_FILE
        if not id_path.exists():
            raise ChainRunError(f"{workdir} exists and was not written by hipcg.dynamics: "
                                f"choose another output folder or pass overwrite=True")
        old = json.loads(id_path.read_text())
        if old != identity:
            diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
            raise ChainRunError(f"{workdir} holds a run with different settings "
                                f"({', '.join(diff)}): pass overwrite=True to replace it, or "
                                f"choose another output folder")
        record = workdir / RECORD_FILE
        if record.exists():
            if reuse:
                return json.loads(record.read_text())
            shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(workdir / IDENTITY_FILE, identity)
    return None


def run_chain(system: ChainSystem, cfg: ChainRunConfig, name: str, out_dir: Path,
              reuse: bool = True, overwrite: bool = False,
              stop: threading.Event | None = None) -> ChainRun:
    """Run (resume, or reuse) one sequence's chain in ``out_dir/<name>/``."""
    role, sequence = system.role_of(name), system.sequence(name)
    workdir = Path(out_dir) / name
    identity = _identity(system, cfg, name)
    done = _claim(workdir, identity, reuse, overwrite)
    if done is not None:
        return ChainRun(name, role, sequence, workdir, done, reused=True)
    seed = identity["seed"]
    wall0 = time.perf_counter()
    if not (workdir / "chain.data").exists():
        write_chain_data(workdir / "chain.data", system, sequence, seed)
    outputs = {}
    if not (workdir / "equilibrate.done").exists():   # marks a complete final restart file
        outputs["equilibrate"] = _resume_or_run(
            "equilibrate", workdir, lambda: equilibrate_script(system, cfg, seed),
            lambda step, p: equilibrate_script(system, cfg, seed, p), cfg, stop)
        write_text_atomic(workdir / "equilibrate.done", "")

    dump = workdir / DUMP_FILE

    def fresh():
        dump.unlink(missing_ok=True)
        return production_script(system, cfg, seed)

    def resume(step, restart):
        kept = truncate_dump(dump, step)
        if kept != step // cfg.frame_every:
            raise ChainRunError(f"{dump}: {kept} whole frames before step {step}, expected "
                                f"{step // cfg.frame_every}: pass overwrite=True to start "
                                f"{name} again")
        return production_script(system, cfg, seed, restart)

    output = _resume_or_run("production", workdir, fresh, resume, cfg, stop)
    n_frames = truncate_dump(dump, cfg.production_steps + 1)
    if n_frames != cfg.frames:
        raise ChainRunError(f"{dump}: {n_frames} frames, expected {cfg.frames}: pass "
                            f"overwrite=True to start {name} again")
    frames = read_dump(dump)
    if [f["timestep"] for f in frames] != list(range(0, cfg.production_steps + 1, cfg.frame_every)):
        raise ChainRunError(f"{dump}: timesteps are not 0, {cfg.frame_every}, ..., "
                            f"{cfg.production_steps}")
    diagnostics = chain_diagnostics(frames, system)
    if diagnostics["max_extent_sigma"] * system.sigma + system.max_cutoff >= system.box_length():
        raise RunError(f"{dump}: the chain spans {diagnostics['max_extent_sigma']:.1f} sigma and "
                       f"could meet its periodic image in a {system.box_length():.0f} Å box")
    timing = loop_timing(output)
    if timing is None:
        raise RunError(f"{workdir}: LAMMPS printed no 'Loop time' line for production")
    timing.update(threads=cfg.threads, concurrent_runs=cfg.parallel,
                  md_fs_per_wall_second=timing["steps_per_second"] * system.timestep_fs,
                  note=("LAMMPS loop time of the last (uninterrupted) production invocation, "
                        "dump output included"))
    version = re.search(r"LAMMPS \(([^)]+)\)", output)
    record = {
        "name": name, "role": role, "sequence": sequence, "n_monomers": len(sequence),
        "units": UNITS,
        "unit_names": {"length": "Angstrom", "time": "fs", "energy": "kcal/mol",
                       "velocity": "Angstrom/fs", "mass": "g/mol", "temperature": "K"},
        "fingerprint": _hash(identity), "identity": identity,
        "system": system.summary(), "system_fingerprint": identity["system"],
        "temperature": system.temperature, "timestep_fs": system.timestep_fs,
        "tau_fs": system.tau_fs, "sigma_A": system.sigma,
        "box_length_A": system.box_length(len(sequence)),
        "pushoff_steps": cfg.pushoff_steps, "equilibrate_steps": cfg.equilibrate_steps,
        "production_steps": cfg.production_steps, "frame_every": cfg.frame_every,
        "frame_interval_fs": cfg.frame_every * system.timestep_fs,
        "production_tau": cfg.production_steps * system.timestep_tau,
        "frames": n_frames, "seed": seed,
        "files": {"data": "chain.data", "dump": DUMP_FILE, "dump_columns": DUMP_COLUMNS.split()},
        "production_timing": timing, "diagnostics": diagnostics,
        "lammps_version": version.group(1) if version else "unknown",
        "hipcg_version": __version__,
        "wall_seconds_last_invocation": time.perf_counter() - wall0,
    }
    write_json_atomic(workdir / RECORD_FILE, record)
    return ChainRun(name, role, sequence, workdir, record)


# --------------------------------------------------------------------------- all chains


def run_chains(config: ChainRunConfig, out_dir: str | os.PathLike,
               roles: Iterable[str] | str = ROLES, sequences: Iterable[str] | None = None,
               reuse: bool = True, progress: bool = True,
               overwrite: bool = False) -> dict[str, ChainRun]:
    """Run every sequence of ``roles`` (or, given ``sequences``, just those names, whatever
    their role) of the config's system, ``config.parallel`` at a time; return
    {name: ChainRun} in file order.

    ``reuse``: keep finished runs of the same settings (False: run them again).  A folder with
    other settings is refused unless ``overwrite``; a killed run is resumed.
    """
    from tqdm import tqdm

    system = load_chain_system(config.system)
    names = system.names(roles)
    if sequences is not None:
        wanted = list(sequences)
        unknown = [n for n in wanted if n not in system.names()]
        if unknown:
            raise ConfigError(f"{system.path}: no sequence named {unknown[0]!r}; known: "
                              f"{system.names()}")
        names = [n for n in system.names() if n in wanted]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, ChainRun] = {}
    wall0 = time.perf_counter()
    bar = tqdm(total=len(names), desc=f"{system.name} chains", unit="chain",
               disable=not progress, dynamic_ncols=True)

    def finished(run: ChainRun) -> None:
        results[run.name] = run
        bar.update(1)
        sps = run.record["production_timing"]["steps_per_second"]
        bar.set_postfix_str(f"{run.name}: {'reused' if run.reused else f'{sps:,.0f} steps/s'}")

    try:
        if config.parallel <= 1 or len(names) <= 1:
            for name in names:
                finished(run_chain(system, config, name, out_dir, reuse, overwrite))
        else:
            stop = threading.Event()
            with concurrent.futures.ThreadPoolExecutor(config.parallel) as pool:
                futures = [pool.submit(run_chain, system, config, n, out_dir, reuse, overwrite, stop)
                           for n in names]
                try:
                    for fut in concurrent.futures.as_completed(futures):
                        finished(fut.result())
                except BaseException:
                    stop.set()                  # the other LAMMPS runs stop at their next line
                    for fut in futures:
                        fut.cancel()
                    raise
    finally:
        bar.close()
    ordered = {n: results[n] for n in names}
    if progress:
        new = [r for r in ordered.values() if not r.reused]
        sps = [r.record["production_timing"]["steps_per_second"] for r in new]
        rate = f", median {np.median(sps):,.0f} production steps/s per chain" if sps else ""
        print(f"{system.name}: {len(ordered)} chain(s) in {out_dir} ({len(new)} run, "
              f"{len(ordered) - len(new)} reused){rate}, {time.perf_counter() - wall0:.1f} s")
    return ordered
