"""Lennard-Jones in the model-file contract: the reference model for checking a plugin build.

With the same epsilon, sigma and cutoff it must reproduce LAMMPS ``pair_style lj/cut``
(no energy shift, mixing given explicitly per type pair) to rounding error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..modelfile import ModelMetadata, save_model
from ..errors import ConfigError


class LennardJones(torch.nn.Module):
    """E = sum over pairs 4 eps [(sigma/r)^12 - (sigma/r)^6], half of each pair to each bead."""

    def __init__(self, epsilon: np.ndarray, sigma: np.ndarray, dtype: torch.dtype = torch.float64):
        super().__init__()
        epsilon = np.ascontiguousarray(np.atleast_2d(np.asarray(epsilon, dtype=np.float64)))
        sigma = np.ascontiguousarray(np.atleast_2d(np.asarray(sigma, dtype=np.float64)))
        if epsilon.shape != sigma.shape or epsilon.shape[0] != epsilon.shape[1]:
            raise ConfigError("epsilon and sigma must be square (n_types x n_types) and the same shape")
        if not (np.allclose(epsilon, epsilon.T) and np.allclose(sigma, sigma.T)):
            raise ConfigError("epsilon and sigma must be symmetric")
        self.n_types = epsilon.shape[0]
        # flattened per-type-pair tables: one index_select per pair instead of 2-d fancy indexing
        self.register_buffer("epsilon", torch.as_tensor(epsilon.ravel(), dtype=dtype))
        self.register_buffer("sigma_sq", torch.as_tensor((sigma**2).ravel(), dtype=dtype))

    def forward(self, species: torch.Tensor, pair_first: torch.Tensor, pair_second: torch.Tensor,
                pair_vec: torch.Tensor) -> torch.Tensor:
        pair_type = species.index_select(0, pair_first) * self.n_types + species.index_select(0, pair_second)
        r_sq = (pair_vec * pair_vec).sum(dim=1)
        s2 = self.sigma_sq.index_select(0, pair_type) / r_sq
        s6 = s2 * s2 * s2
        pair_energy = 4.0 * self.epsilon.index_select(0, pair_type) * (s6 * s6 - s6)
        node_energy = torch.zeros(species.shape[0], dtype=pair_vec.dtype, device=pair_vec.device)
        return node_energy.index_add(0, pair_first, 0.5 * pair_energy)


def export_lennard_jones(path: str | Path, type_names: list[str], epsilon, sigma, cutoff: float,
                         dtype: str = "float64", overwrite: bool = False,
                         volume_term: dict | None = None) -> Path:
    """Write a Lennard-Jones model file (TorchScript + metadata) for ``pair_style hipcg``;
    ``volume_term``: a :class:`hipcg.volume.VolumeTerm` record to add (tests of the virial)."""
    metadata = ModelMetadata(type_names=list(type_names), cutoff=float(cutoff),
                             n_interaction_layers=1, dtype=dtype, model="lennard-jones",
                             info={"epsilon": np.atleast_2d(epsilon).tolist(),
                                   "sigma": np.atleast_2d(sigma).tolist()},
                             volume_term=volume_term)
    module = torch.jit.script(LennardJones(epsilon, sigma, dtype=metadata.torch_dtype))
    return save_model(module, path, metadata, overwrite=overwrite)
