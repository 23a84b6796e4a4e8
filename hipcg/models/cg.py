"""The trained CG model: HIP-NN(-TS) network + repulsive pair prior, in the model-file contract.

One module holds both, so the exported TorchScript file carries the prior and LAMMPS needs
neither Python nor hippynn.
"""

from __future__ import annotations

import torch

from ..prior import RepulsivePrior
from .hipnn import HipnnConfig, HipnnEnergy, build_network


class CGModel(torch.nn.Module):
    def __init__(self, network: HipnnEnergy, prior: RepulsivePrior | None = None):
        super().__init__()
        self.network = network
        self.prior = prior
        self.n_types = network.n_types

    def forward(self, species: torch.Tensor, pair_first: torch.Tensor, pair_second: torch.Tensor,
                pair_vec: torch.Tensor) -> torch.Tensor:
        energy = self.network(species, pair_first, pair_second, pair_vec)
        if self.prior is not None:
            energy = energy + self.prior(species, pair_first, pair_second, pair_vec)
        return energy


def build_cg_model(config: HipnnConfig, n_types: int, prior: RepulsivePrior | None) -> CGModel:
    return CGModel(HipnnEnergy(build_network(config, n_types)), prior)
