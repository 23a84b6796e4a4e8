"""Synthetic bead data from a known temperature-dependent pair potential W(r; T) = E(r) - T S(r).

LAMMPS ``pair_style table`` runs of a Lennard-Jones-like fluid (108 beads) whose table at each
temperature is W(r; T): the forces of each state point are -grad W(R; T) exactly, and each
frame's "atomistic" energy is sum_pairs E(r), so the energy-entropy split is known.  Cached
under pytest's session base directory like tests/lj_fluid.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hipcg.data import CGDataset, save_dataset
from hipcg.graph import pair_distances
from hipcg.lammps.dump import read_dump, stack_positions
from hipcg.lammps.runner import run_lammps

from lj_fluid import _locked

EPSILON, SIGMA, CUTOFF, MASS = 0.30, 3.4, 8.5, 39.948
# S(r) = -B exp(-(r - R0)^2 / (2 WIDTH^2)): at 100-220 K a 0.3-0.66 kcal/mol bump at the first
# neighbour shell, entropic (it grows with T), so W's structure changes with temperature
B, R0, WIDTH = 0.003, 4.6, 0.45  # kcal/mol/K, Å, Å
TEMPERATURES = (100.0, 160.0, 220.0)


def energy(r):
    return 4 * EPSILON * ((SIGMA / r) ** 12 - (SIGMA / r) ** 6)


def entropy(r):
    return -B * np.exp(-(r - R0) ** 2 / (2 * WIDTH ** 2))


def pmf(r, temperature: float):
    return energy(r) - temperature * entropy(r)


def write_table(path: Path, temperature: float, n: int = 2000) -> Path:
    r = np.linspace(2.5, CUTOFF, n)
    h = 1e-5
    force = -(pmf(r + h, temperature) - pmf(r - h, temperature)) / (2 * h)
    rows = "\n".join(f"{k + 1} {ri:.8f} {ei:.10e} {fi:.10e}"
                     for k, (ri, ei, fi) in enumerate(zip(r, pmf(r, temperature), force)))
    path.write_text(f"# W(r; {temperature} K)\nW\nN {n} R {r[0]} {r[-1]}\n\n{rows}\n")
    return path


def frame_sums(positions, boxes, fn) -> np.ndarray:
    return np.array([fn(pair_distances(p, b, CUTOFF)[2]).sum() for p, b in zip(positions, boxes)])


def dataset(base: Path, temperature: float, frames: int = 80, every: int = 50, seed: int = 7) -> Path:
    """NVT frames under W(r; temperature); thermo_potential_energy = sum_pairs E(r) per frame."""
    path = base / f"thermal_T{temperature:g}.npz"
    with _locked(path):
        if path.exists():
            return path
        workdir = base / f"thermal_T{temperature:g}_md"
        workdir.mkdir(parents=True, exist_ok=True)
        write_table(workdir / "w.table", temperature)
        run_lammps(f"""units real
atom_style atomic
lattice fcc 5.8
region box block 0 3 0 3 0 3
create_box 1 box
create_atoms 1 box
mass 1 {MASS}
pair_style table linear 2000
pair_coeff 1 1 w.table W {CUTOFF}
velocity all create {temperature} {seed} loop geom
fix 1 all nvt temp {temperature} {temperature} 200
timestep 4.0
run 2000
reset_timestep 0
dump d all custom {every} traj.dump id type x y z fx fy fz
dump_modify d sort id format float %.10g
run {frames * every - 1}
""", workdir)
        _, boxes, positions = stack_positions(read_dump(workdir / "traj.dump"))
        forces = np.stack([np.stack([f["fx"], f["fy"], f["fz"]], 1) for f in read_dump(workdir / "traj.dump")])
        n = positions.shape[1]
        ds = CGDataset(positions=positions, forces=forces, boxes=boxes, bead_types=np.zeros(n, int),
                       type_names=["Ar"], masses=np.full(n, MASS),
                       metadata={"state_point": {"temperature": temperature, "pressure": None}},
                       thermo={"potential_energy": frame_sums(positions, boxes, energy)})
        save_dataset(path, ds, overwrite=True)
    return path
