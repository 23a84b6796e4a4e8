"""``hipcg check-plugin``: does this plugin build reproduce LAMMPS's own ``lj/cut``?

The same short NVE Lennard-Jones run (argon-like, units real) is done twice, once with
``pair_style lj/cut`` and once with ``pair_style hipcg`` and the Lennard-Jones model file;
energies, pressure and forces must agree to rounding error along the whole trajectory.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.lj import export_lennard_jones
from .dump import read_dump
from .plugin import build_plugin
from .runner import run_lammps

# argon, units real
EPSILON = 0.238  # kcal/mol
SIGMA = 3.405  # Å
CUTOFF = 8.5  # Å
MASS = 39.948  # g/mol
LATTICE = 5.8  # Å, fcc: 4 atoms per cell, 0.0205 atoms/Å^3 (liquid argon density)


@dataclass
class LJSystem:
    cells: int = 5  # fcc cells per side: 4 * cells^3 atoms
    steps: int = 100
    timestep: float = 2.0  # fs
    temperature: float = 120.0  # K
    thermo_every: int = 1
    dump_every: int = 50
    seed: int = 4928459

    @property
    def n_atoms(self) -> int:
        return 4 * self.cells**3


def lj_script(system: LJSystem, pair_lines: str, extra: str = "") -> str:
    """A LAMMPS input for an NVE LJ fluid; ``pair_lines`` defines the pair style."""
    c = system.cells
    return f"""# NVE Lennard-Jones fluid (argon), written by hipcg
units real
atom_style atomic
lattice fcc {LATTICE}
region box block 0 {c} 0 {c} 0 {c}
create_box 1 box
create_atoms 1 box
mass 1 {MASS}
velocity all create {system.temperature} {system.seed} loop geom
displace_atoms all random 0.2 0.2 0.2 {system.seed + 1} units box
{pair_lines}
neighbor 2.0 bin
compute pea all pe/atom
thermo_style custom step pe ke etotal press
thermo_modify format float %.17g norm no
thermo {system.thermo_every}
dump forces all custom {system.dump_every} forces.dump id fx fy fz c_pea
dump_modify forces sort id format float %.17g
fix nve all nve
timestep {system.timestep}
{extra}
run {system.steps}
"""


def hipcg_pair_lines(plugin: Path, model: Path, type_names: str, style_args: str = "") -> str:
    return f"plugin load {plugin}\npair_style hipcg {style_args}\npair_coeff * * {model} {type_names}"


def lj_cut_pair_lines() -> str:
    return f"pair_style lj/cut {CUTOFF}\npair_coeff 1 1 {EPSILON} {SIGMA}"


@dataclass
class Comparison:
    energy: float  # max |dE| / max |E| over all thermo steps
    pressure: float  # max |dP| / max |P|
    forces: float  # max |dF| / max |F| over dumped frames
    per_atom_energy: float
    steps: int

    @property
    def worst(self) -> float:
        return max(self.energy, self.pressure, self.forces, self.per_atom_energy)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def compare_runs(test_dir: Path, ref_dir: Path, test_thermo: dict, ref_thermo: dict) -> Comparison:
    if test_thermo["Step"] != ref_thermo["Step"]:
        raise ValueError("the two runs printed thermo at different steps")
    energy = _rel(np.asarray(test_thermo["PotEng"]), np.asarray(ref_thermo["PotEng"]))
    pressure = _rel(np.asarray(test_thermo["Press"]), np.asarray(ref_thermo["Press"]))
    test_frames, ref_frames = read_dump(test_dir / "forces.dump"), read_dump(ref_dir / "forces.dump")
    forces = max(_rel(np.stack([t[k] for k in ("fx", "fy", "fz")]), np.stack([r[k] for k in ("fx", "fy", "fz")]))
                 for t, r in zip(test_frames, ref_frames, strict=True))
    per_atom = max(_rel(t["c_pea"], r["c_pea"]) for t, r in zip(test_frames, ref_frames, strict=True))
    return Comparison(energy, pressure, forces, per_atom, steps=len(test_thermo["Step"]) - 1)


def check_plugin(workdir: Path | None = None, system: LJSystem | None = None, nprocs: int = 1,
                 tolerance: float = 1e-10, plugin: Path | None = None,
                 style_args: str = "") -> tuple[bool, Comparison]:
    """Run lj/cut and hipcg+LJ model on the same system; return (passed, comparison)."""
    system = system or LJSystem()
    plugin = plugin or build_plugin()
    with tempfile.TemporaryDirectory(prefix="hipcg-check-") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        model = export_lennard_jones(root / "lj.pt", ["Ar"], [[EPSILON]], [[SIGMA]], CUTOFF,
                                     overwrite=True)
        ref = run_lammps(lj_script(system, lj_cut_pair_lines()), root / "lj_cut", nprocs=nprocs)
        test = run_lammps(lj_script(system, hipcg_pair_lines(plugin, model, "Ar", style_args)),
                          root / "hipcg", nprocs=nprocs)
        comparison = compare_runs(root / "hipcg", root / "lj_cut", test.thermo[-1], ref.thermo[-1])
    return comparison.worst <= tolerance, comparison
