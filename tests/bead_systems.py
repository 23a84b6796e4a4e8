"""Small periodic bead systems and LAMMPS inputs shared by the plugin tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hipcg.lammps.data_file import write_lammps_data
from hipcg.export import export_model
from hipcg.models.hipnn import HipnnConfig, HipnnEnergy, build_network


@dataclass
class BeadBox:
    positions: np.ndarray
    species: np.ndarray  # 0-based model type index
    cell: np.ndarray
    masses: tuple[float, ...] = (32.04, 18.02)

    def write(self, path: Path) -> Path:
        return write_lammps_data(path, self.positions, self.species + 1,
                                 list(self.masses[: self.species.max() + 1]), self.cell)


def jittered_lattice(n_side: int, spacing: float, seed: int, n_types: int = 2,
                     jitter: float = 0.6, tilt: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> BeadBox:
    """n_side^3 beads on a cubic lattice with random displacements (no overlaps)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    length = n_side * spacing
    cell = np.diag([length] * 3).astype(float)
    cell[1, 0], cell[2, 0], cell[2, 1] = tilt
    frac = (grid + 0.5 + rng.uniform(-jitter / 2, jitter / 2, grid.shape) * 0.5) / n_side
    positions = frac @ cell
    species = rng.integers(0, n_types, len(positions))
    return BeadBox(positions, species, cell)


def random_liquid(n_beads: int, density: float, min_dist: float, seed: int, n_types: int = 2) -> BeadBox:
    """n_beads at random in a cubic box of the given number density (beads/Å^3), no two closer
    than min_dist (random sequential insertion): a liquid-like frame."""
    rng = np.random.default_rng(seed)
    length = (n_beads / density) ** (1.0 / 3.0)
    cell = np.diag([length] * 3).astype(float)
    positions = np.empty((0, 3))
    while len(positions) < n_beads:
        trial = rng.uniform(0.0, length, 3)
        d = positions - trial
        d -= length * np.round(d / length)
        if len(positions) == 0 or np.min(np.einsum("ij,ij->i", d, d)) >= min_dist ** 2:
            positions = np.vstack([positions, trial])
    return BeadBox(positions, rng.integers(0, n_types, n_beads), cell)


def small_hipnn(tmp: Path, n_layers: int, dtype: str = "float64", network: str = "HipnnQuad",
                cutoff: float = 5.0, seed: int = 0, n_atom_layers: int = 2,
                prior: bool = False) -> tuple[Path, HipnnEnergy, HipnnConfig]:
    """A randomly initialised HIP-NN-TS model exported in the model-file contract; ``prior``:
    with a repulsive pair prior (a CGModel, as ``hipcg train`` exports)."""
    from hipcg.models.cg import CGModel
    from hipcg.prior import RepulsivePrior

    config = HipnnConfig(network=network, n_features=12, n_sensitivities=5, dist_soft_min=1.5,
                         dist_soft_max=cutoff - 1.0, cutoff=cutoff, n_interaction_layers=n_layers,
                         n_atom_layers=n_atom_layers)
    torch.manual_seed(seed)
    model = HipnnEnergy(build_network(config, 2))
    name = f"{network}{n_layers}_{dtype}"
    if prior:
        onset = [[2.6, 2.4], [2.4, 2.2]]
        model = CGModel(model, RepulsivePrior(2, onset, 0.01, [[5.0, 6.0], [6.0, 8.0]], 0.5))
        name += "_prior"
    path = export_model(model, tmp / f"{name}.pt", ["A", "B"], config, dtype=dtype, overwrite=True)
    return path, model, config


def bead_script(plugin: Path, model: Path, data: Path, type_names: str = "A B", extra: str = "",
                comm_cutoff: float | None = None, run: str = "run 0", units: str = "real",
                newton: str = "on", style_args: str = "") -> str:
    comm = f"comm_modify cutoff {comm_cutoff}" if comm_cutoff else ""
    return f"""units {units}
atom_style atomic
atom_modify map array
newton {newton}
read_data {data}
plugin load {plugin}
pair_style hipcg {style_args}
pair_coeff * * {model} {type_names}
{comm}
neighbor 1.0 bin
compute pea all pe/atom
compute pe_sum all reduce sum c_pea
compute sa all stress/atom NULL virial
compute sa_sum all reduce sum c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]
thermo_style custom step pe c_pe_sum press pxx pyy pzz pxy pxz pyz vol c_sa_sum[*]
thermo_modify format float %.17g
dump forces all custom 1 forces.dump id type fx fy fz c_pea
dump_modify forces sort id format float %.17g
{extra}
{run}
"""
