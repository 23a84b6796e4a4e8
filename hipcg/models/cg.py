"""The trained CG model: HIP-NN(-TS) network + repulsive pair prior, in the model-file contract,
and optionally the volume term of pressure matching.

One module holds network and prior, so the exported TorchScript file carries the prior and
LAMMPS needs neither Python nor hippynn.  The volume term depends on the box volume, not on the
pair graph: it is not part of ``forward`` and travels in the model file's metadata
(``volume_term``), applied by ``pair_style hipcg``.
"""

from __future__ import annotations

import torch

from ..prior import RepulsivePrior
from ..volume import VolumeTerm
from .hipnn import HipnnConfig, HipnnEnergy, build_network
from .volume_term import VolumeTermModule


class CGModel(torch.nn.Module):
    def __init__(self, network: HipnnEnergy, prior: RepulsivePrior | None = None,
                 volume: VolumeTerm | None = None):
        super().__init__()
        self.network = network
        self.prior = prior
        self.volume = VolumeTermModule(volume) if volume is not None else None
        self.n_types = network.n_types

    def forward(self, species: torch.Tensor, pair_first: torch.Tensor, pair_second: torch.Tensor,
                pair_vec: torch.Tensor) -> torch.Tensor:
        energy = self.network(species, pair_first, pair_second, pair_vec)
        if self.prior is not None:
            energy = energy + self.prior(species, pair_first, pair_second, pair_vec)
        return energy


def build_cg_model(config: HipnnConfig, n_types: int, prior: RepulsivePrior | None,
                   volume: VolumeTerm | None = None) -> CGModel:
    return CGModel(HipnnEnergy(build_network(config, n_types)), prior, volume)
