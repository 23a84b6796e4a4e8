"""Small Lennard-Jones 'atomistic' reference data (one atom = one bead) made with lj/cut.

Stands in for mapped atomistic data in the simulation/evaluation/report tests: the exact CG
model is known (the LJ model file), so the machinery can be checked against the truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hipcg.data import CGDataset, save_dataset
from hipcg.lammps.dump import read_dump, stack_positions
from hipcg.lammps.runner import run_lammps

EPSILON, SIGMA, CUTOFF, MASS = 0.238, 3.405, 8.5, 39.948  # argon, units real


#: one-bead methanol as an LJ liquid (0.0148 beads/Å^3 ~ 0.79 g/cm^3): fcc spacing 6.466 Å
METHANOL = {"epsilon": 0.45, "sigma": 3.75, "cutoff": 9.0, "mass": 32.04, "lattice": 6.466,
            "type_name": "MeOH"}


def lj_dataset(workdir: Path, temperature: float, cells: int = 4, steps: int = 2000,
               every: int = 100, timestep: float = 5.0, seed: int = 1234,
               lattice: float = 5.8, epsilon: float = EPSILON, sigma: float = SIGMA,
               cutoff: float = CUTOFF, mass: float = MASS, type_name: str = "Ar",
               pressure: float | None = None) -> Path:
    """NVT lj/cut run (4 cells^3 atoms); frames every ``every`` steps saved as a CG dataset."""
    script = f"""units real
atom_style atomic
lattice fcc {lattice}
region box block 0 {cells} 0 {cells} 0 {cells}
create_box 1 box
create_atoms 1 box
mass 1 {mass}
pair_style lj/cut {cutoff}
pair_coeff 1 1 {epsilon} {sigma}
velocity all create {temperature} {seed}
fix 1 all nvt temp {temperature} {temperature} 100
timestep {timestep}
run 1000
reset_timestep 0
dump d all custom {every} traj.dump id type x y z fx fy fz
dump_modify d sort id format float %.10g
run {steps}
"""
    run_lammps(script, workdir)
    frames = read_dump(workdir / "traj.dump")
    _, boxes, positions = stack_positions(frames)
    forces = np.stack([np.stack([f["fx"], f["fy"], f["fz"]], 1) for f in frames])
    n = positions.shape[1]
    ds = CGDataset(positions=positions, forces=forces, boxes=boxes, bead_types=np.zeros(n, int),
                   type_names=[type_name], masses=np.full(n, mass),
                   metadata={"state_point": {"temperature": temperature, "pressure": pressure},
                             "frame_interval_fs": every * timestep})
    return save_dataset(workdir / f"{type_name}_{temperature:g}K.npz", ds, overwrite=True)
