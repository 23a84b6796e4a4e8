"""HIP-NN / HIP-NN-TS networks from hippynn, wrapped in the model-file contract.

hippynn modules cannot be scripted (``forward(self, *input)``), so models are exported with
``torch.jit.trace`` of :class:`HipnnEnergy` (by :func:`hipcg.export.export_model`); the trace generalises to other bead and pair
counts because nothing in it branches on sizes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

# hippynn picks its message-passing kernels at import time.  Without triton/numba/cupy its
# default is a torch.compile'd kernel that costs ~30 s on the first call and cannot be traced;
# the eager kernels are fast on CPU and trace cleanly.  Users can still override both.
os.environ.setdefault("HIPPYNN_USE_CUSTOM_KERNELS", "_pytorch_raw")
os.environ.setdefault("HIPPYNN_WARN_LOW_DISTANCES", "False")

import warnings  # noqa: E402

import torch  # noqa: E402

with warnings.catch_warnings():
    # import-time notices about kernel choice and sparse invariant checks: nothing to act on
    warnings.simplefilter("ignore", UserWarning)
    from hippynn.layers.targets import HEnergy  # noqa: E402
    from hippynn.networks.hipnn import Hipnn, HipnnQuad, HipnnVec  # noqa: E402

from ..config import Positive, PositiveInt, check_fields
from ..errors import ConfigError

NETWORKS = {"Hipnn": Hipnn, "HipnnVec": HipnnVec, "HipnnQuad": HipnnQuad}


@dataclass
class HipnnConfig:
    """Network hyper-parameters; defaults are the published one-bead methanol model."""

    network: Literal["Hipnn", "HipnnQuad", "HipnnVec"] = "HipnnQuad"  # l = 0, 2, 1
    n_features: PositiveInt = 128
    n_sensitivities: PositiveInt = 20
    dist_soft_min: Positive = 2.0
    dist_soft_max: Positive = 13.0
    cutoff: Positive = 15.0
    n_interaction_layers: PositiveInt = 1
    n_atom_layers: PositiveInt = 3
    # W(R; T) = E(R) - T S(R): energy and entropy heads on the same features (HipnnEnergy)
    temperature_aware: bool = False

    def __post_init__(self) -> None:
        check_fields(self, "model")
        if not 0 < self.dist_soft_min < self.dist_soft_max < self.cutoff:
            raise ConfigError("need 0 < dist_soft_min < dist_soft_max < cutoff, got "
                             f"{self.dist_soft_min}, {self.dist_soft_max}, {self.cutoff}")


def build_network(config: HipnnConfig, n_types: int) -> torch.nn.Module:
    cls = NETWORKS[config.network]
    return cls(n_features=config.n_features, n_sensitivities=config.n_sensitivities,
               dist_soft_min=config.dist_soft_min, dist_soft_max=config.dist_soft_max,
               dist_hard_max=config.cutoff, n_atom_layers=config.n_atom_layers,
               n_interaction_layers=config.n_interaction_layers, n_input_features=n_types)


class HipnnEnergy(torch.nn.Module):
    """Per-bead energies of a hippynn network plus hippynn's hierarchical energy head.

    Temperature-aware (``entropy_head`` given): the potential of mean force
    W(R; T) = E(R) - T S(R) with per-bead energy and entropy heads on the same features
    (Lebold & Noid's dual potential, learned).  The entropy head's output s'_i is T_ref S_i in
    kcal/mol, so both heads have the scale of an energy; ``forward`` returns
    e_i - (T / T_ref) s'_i at the module's ``temperature`` buffer, which the plugin
    (``pair_style hipcg temperature T``) and :func:`set_temperature` set.
    """

    def __init__(self, network: torch.nn.Module, head: HEnergy | None = None,
                 entropy_head: HEnergy | None = None, reference_temperature: float | None = None):
        super().__init__()
        self.network = network
        self.head = head if head is not None else HEnergy(network.feature_sizes)
        self.entropy_head = entropy_head
        if entropy_head is not None:
            if not reference_temperature or reference_temperature <= 0:
                raise ConfigError("a temperature-aware network needs a reference temperature > 0 K")
            t_ref = torch.tensor(float(reference_temperature), dtype=torch.float64)
            self.register_buffer("reference_temperature", t_ref)
            self.register_buffer("temperature", t_ref.clone())
        self.n_types = network.nf_in
        self.uses_coordinates = isinstance(network, HipnnVec)

    @property
    def temperature_aware(self) -> bool:
        return self.entropy_head is not None

    def features(self, species, pair_first, pair_second, pair_vec) -> list[torch.Tensor]:
        features = torch.nn.functional.one_hot(species, self.n_types).to(pair_vec.dtype)
        dist = torch.linalg.vector_norm(pair_vec, dim=1)
        if self.uses_coordinates:
            # hippynn's pair coordinates are x_first - x_second
            return self.network(features, pair_first, pair_second, dist, -pair_vec)
        return self.network(features, pair_first, pair_second, dist)

    @staticmethod
    def _readout(head: HEnergy, all_features: list[torch.Tensor]) -> torch.Tensor:
        out = head.layers[0](all_features[0])
        for layer, feats in zip(head.layers[1:], all_features[1:]):
            out = out + layer(feats)
        return out.squeeze(1)

    def energy_entropy(self, species, pair_first, pair_second, pair_vec,
                       matching_feature_grad: float | None = None):
        """(e_i, s'_i) per bead, kcal/mol: W_i(T) = e_i - (T / T_ref) s'_i.

        ``matching_feature_grad`` given: also the e_i for energy matching, read off features
        whose gradient is scaled by that factor: 1 trains the features on the energies too, 0
        detaches them (the energies then train only the split into E and S and cannot pull the
        features away from what the forces need; the atomistic energy of a one-bead liquid is
        mostly noise the bead positions do not determine)."""
        all_features = self.features(species, pair_first, pair_second, pair_vec)
        energy = self._readout(self.head, all_features)
        entropy = self._readout(self.entropy_head, all_features)
        if matching_feature_grad is None:
            return energy, entropy
        if matching_feature_grad == 1.0:
            return energy, entropy, energy
        g = float(matching_feature_grad)
        scaled = [f.detach() + g * (f - f.detach()) if g else f.detach() for f in all_features]
        return energy, entropy, self._readout(self.head, scaled)

    def forward(self, species: torch.Tensor, pair_first: torch.Tensor, pair_second: torch.Tensor,
                pair_vec: torch.Tensor) -> torch.Tensor:
        all_features = self.features(species, pair_first, pair_second, pair_vec)
        energy = self._readout(self.head, all_features)
        if self.entropy_head is not None:
            scale = (self.temperature / self.reference_temperature).to(energy.dtype)
            energy = energy - scale * self._readout(self.entropy_head, all_features)
        return energy


def set_temperature(module: torch.nn.Module, temperature: float) -> None:
    """Set the temperature of a temperature-aware model (eager or TorchScript) in place."""
    buffers = dict(module.named_buffers())
    names = [n for n in buffers if n == "temperature" or n.endswith(".temperature")]
    if not names:
        raise ConfigError("this model is not temperature-aware: it has no temperature to set")
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0 K, got {temperature}")
    with torch.no_grad():
        for name in names:
            buffers[name].fill_(float(temperature))


def example_inputs(n_types: int, cutoff: float, dtype: torch.dtype, n_beads: int = 12,
                   seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A small random cluster used only to record the trace."""
    gen = torch.Generator().manual_seed(seed)
    pos = torch.rand((n_beads, 3), generator=gen, dtype=torch.float64) * cutoff
    species = torch.arange(n_beads) % n_types
    i, j = torch.meshgrid(torch.arange(n_beads), torch.arange(n_beads), indexing="ij")
    vec = pos[j] - pos[i]
    keep = (i != j) & (torch.linalg.vector_norm(vec, dim=2) < cutoff)
    return species, i[keep], j[keep], vec[keep].to(dtype)
