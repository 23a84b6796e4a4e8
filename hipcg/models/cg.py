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
from .hipnn import HEnergy, HipnnConfig, HipnnEnergy, build_network
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

    @property
    def temperature_aware(self) -> bool:
        return self.network.temperature_aware

    def energy_entropy(self, species, pair_first, pair_second, pair_vec,
                       matching_feature_grad: float | None = None):
        """Per bead (e_i, s'_i) of a temperature-aware model (and, with
        ``matching_feature_grad``, the e_i for energy matching: :meth:`HipnnEnergy.energy_entropy`),
        the prior counted in e_i (a temperature-independent wall): W_i(T) = e_i - (T / T_ref) s'_i."""
        terms = self.network.energy_entropy(species, pair_first, pair_second, pair_vec,
                                            matching_feature_grad)
        if self.prior is None:
            return terms
        prior = self.prior(species, pair_first, pair_second, pair_vec)
        return tuple(t + prior if k != 1 else t for k, t in enumerate(terms))


def build_cg_model(config: HipnnConfig, n_types: int, prior: RepulsivePrior | None,
                   volume: VolumeTerm | None = None,
                   reference_temperature: float | None = None) -> CGModel:
    """``reference_temperature`` given: a temperature-aware model (energy and entropy heads)."""
    network = build_network(config, n_types)
    entropy_head = HEnergy(network.feature_sizes) if reference_temperature is not None else None
    return CGModel(HipnnEnergy(network, entropy_head=entropy_head,
                               reference_temperature=reference_temperature), prior, volume)
