"""A Lennard-Jones argon fluid from LAMMPS lj/cut, mapped one atom = one bead (the oracle data).

Shared by test_prior, test_train and test_export; results are cached under pytest's session
base directory so the MD run and the training happen once per test session.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hipcg.data import CGDataset, load_dataset, save_dataset
from hipcg.lammps.dump import read_dump
from hipcg.lammps.runner import run_lammps
from hipcg.lammps.selfcheck import CUTOFF, EPSILON, LATTICE, MASS, SIGMA

CELLS = 3  # fcc 3x3x3: 108 atoms, 17.4 Å box (half box > 8.5 Å cutoff)
TEMPERATURE = 120.0
FRAMES = 240
EVERY = 20  # steps between frames (2 fs steps)


def nvt_script(cells: int, frames: int, every: int, seed: int, pair_lines: str,
               dump_cols: str = "id x y z fx fy fz", equil: int = 2000) -> str:
    return f"""units real
atom_style atomic
lattice fcc {LATTICE}
region box block 0 {cells} 0 {cells} 0 {cells}
create_box 1 box
create_atoms 1 box
mass 1 {MASS}
velocity all create {TEMPERATURE} {seed} loop geom
{pair_lines}
neighbor 2.0 bin
timestep 2.0
fix nvt all nvt temp {TEMPERATURE} {TEMPERATURE} 200.0
thermo 1000
run {equil}
dump traj all custom {every} traj.dump {dump_cols}
dump_modify traj sort id format float %.10g
run {frames * every - 1}
"""


def frames_to_dataset(frames, box_length: float, state: dict) -> CGDataset:
    pos = np.stack([np.stack([f["x"], f["y"], f["z"]], 1) for f in frames])
    frc = np.stack([np.stack([f["fx"], f["fy"], f["fz"]], 1) for f in frames])
    pos = np.mod(pos, box_length)
    boxes = np.repeat(np.diag([box_length] * 3)[None], len(frames), axis=0)
    n = pos.shape[1]
    return CGDataset(positions=pos, forces=frc, boxes=boxes, bead_types=np.zeros(n, int),
                     type_names=["Ar"], masses=np.full(n, MASS),
                     metadata={"state_point": state, "source": "lammps lj/cut"})


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def lj_dataset(base: Path, seed: int = 12345, frames: int = FRAMES, name: str = "lj") -> Path:
    """LAMMPS lj/cut NVT trajectory -> CG dataset (.npz); cached in ``base``."""
    path = base / f"{name}.npz"
    with _locked(path):
        if path.exists():
            return path
        workdir = base / f"{name}_md"
        pair = f"pair_style lj/cut {CUTOFF}\npair_coeff 1 1 {EPSILON} {SIGMA}"
        run_lammps(nvt_script(CELLS, frames, EVERY, seed, pair), workdir)
        ds = frames_to_dataset(read_dump(workdir / "traj.dump"), CELLS * LATTICE,
                               {"temperature": TEMPERATURE, "density": None})
        save_dataset(path, ds, overwrite=True)
    return path


def load(path: Path) -> CGDataset:
    return load_dataset(path)


ORACLE_MODEL = {"network": "Hipnn", "n_features": 16, "n_sensitivities": 8, "dist_soft_min": 2.5,
                "dist_soft_max": 7.5, "cutoff": CUTOFF, "n_interaction_layers": 1, "n_atom_layers": 2}


def oracle_config(base: Path) -> dict:
    return {"state_points": [{"name": "lj120", "dataset": str(lj_dataset(base, frames=100)), "role": "train"},
                             {"name": "lj120-b", "dataset": str(lj_dataset(base, seed=777, frames=20, name="lj_b")),
                              "role": "test"}],
            "model": dict(ORACLE_MODEL),
            "optimizer": {"lr": 3e-3, "batch_size": 2, "max_epochs": 4, "plateau_patience": 2},
            "seed": 1, "out_dir": str(base / "oracle_run")}


def trained_run(base: Path):
    """Train the small oracle model once per session; returns (run dir, TrainResult or None)."""
    from hipcg.train import REPORT, TrainConfig, train

    config = TrainConfig.from_dict(oracle_config(base))
    out = Path(config.out_dir)
    with _locked(out):
        if (out / REPORT).exists():
            return out
        train(config, overwrite=True, progress=False, log=lambda *a: None)
    return out
