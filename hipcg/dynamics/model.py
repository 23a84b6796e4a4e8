"""Equivariant networks for learned large-timestep CG dynamics, on HIP-NN-TS features.

After Fu et al. (TMLR 2023, arXiv 2204.10348): one learned step spans many MD steps, and a
network predicts each bead's next "acceleration" as a Gaussian (mean and standard deviation)
from the bead positions and the last ``history`` displacements.  Theirs is not equivariant;
this one is by construction:

* :class:`FineEmbedding`: message passing over the monomer bond graph (monomer types only, no
  coordinates), pooled per bead: a sequence-aware bead descriptor (the paper's embedding GNN).
* :class:`DynamicsNet`: a hippynn ``HipnnQuad`` on the bead graph (input: the bead embeddings)
  and two heads that also see the past displacements through rotation invariants (their dot
  products, and their projections on the pair directions).  The mean
  acceleration is a vector built only from equivariant quantities,
  ``mu_i = sum_j c_ij r_hat_ij + sum_m b_im u_i^(m)``, with scalar coefficients c, b from
  invariant inputs (HIP-NN-TS features, distances, bonded flags, displacement projections);
  the standard deviation is one per bead (isotropic), so it is invariant.
* :class:`ScoreNet`: a denoising score model ``s_i(x; sigma) = sum_j g_ij r_hat_ij / sigma`` on
  the same kind of features, trained by denoising score matching and used after each learned
  step as a short annealed Langevin correction (:func:`hipcg.dynamics.rollout`).

Everything is written per step in "learned-step units": a displacement ``u = x_t - x_{t-1}``
and an acceleration ``a = x_{t+1} - 2 x_t + x_{t-1}`` are lengths (Å) per learned step; they
enter and leave the networks divided by scales measured on the training data
(``step_scale``, ``accel_scale``), kept in the module as buffers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..config import Positive, PositiveInt, check_fields
from ..errors import ConfigError
from ..models.blocked_kernels import use_kernels
from ..models.hipnn import HipnnConfig, build_network  # noqa: F401  (also sets hippynn's kernels)


@dataclass
class DynamicsModelConfig:
    """Sizes of the embedding, dynamics and score networks (lengths in Å)."""

    history: PositiveInt = 4               # past displacements the dynamics network sees
    n_embed: PositiveInt = 12              # bead embedding width (fine-graph network)
    embed_layers: PositiveInt = 2          # message-passing layers over monomer bonds
    network: HipnnConfig = field(default_factory=lambda: HipnnConfig(
        network="HipnnQuad", n_features=24, n_sensitivities=10, dist_soft_min=3.0,
        dist_soft_max=50.0, cutoff=60.0, n_interaction_layers=1, n_atom_layers=2))
    n_rbf: PositiveInt = 16                # radial basis of the pair heads, 0 .. cutoff
    hidden: PositiveInt = 64               # width of the pair and bead heads
    min_std: Positive = 1e-3               # floor of the predicted std (in accel_scale units)
    # "correlated": the noise of the beads is correlated (a scale_tril over beads, below);
    # "bead": independent per bead, as Fu et al.
    noise: Literal["bead", "correlated"] = "correlated"

    def __post_init__(self) -> None:
        check_fields(self, "dynamics.model")


def _mlp(n_in: int, hidden: int, n_out: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.SiLU(),
                               torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
                               torch.nn.Linear(hidden, n_out))


@dataclass
class ChainTopology:
    """What does not change along a trajectory: monomers, their bonds, the beads."""

    monomer_types: torch.Tensor      # (n_monomers,) long, 0 = A, 1 = B
    monomer_bonds: torch.Tensor      # (n_bonds, 2) long
    bead_of_monomer: torch.Tensor    # (n_monomers,) long
    bead_bonds: torch.Tensor         # (m, 2) long
    n_beads: int

    @classmethod
    def from_trajectory(cls, traj) -> "ChainTopology":
        """From a :class:`hipcg.dynamics.beads.BeadTrajectory` (numpy arrays)."""
        as_long = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
        return cls(as_long(traj.monomer_types), as_long(traj.monomer_bonds).reshape(-1, 2),
                   as_long(traj.bead_of_monomer), as_long(traj.bead_bonds).reshape(-1, 2),
                   int(traj.n_beads))

    def bonded_matrix(self) -> torch.Tensor:
        m = torch.zeros((self.n_beads, self.n_beads), dtype=torch.bool)
        if len(self.bead_bonds):
            m[self.bead_bonds[:, 0], self.bead_bonds[:, 1]] = True
            m[self.bead_bonds[:, 1], self.bead_bonds[:, 0]] = True
        return m


class FineEmbedding(torch.nn.Module):
    """Monomer types -> message passing over monomer bonds -> sum per bead -> bead embedding."""

    N_MONOMER_TYPES = 2

    def __init__(self, n_embed: int, n_layers: int):
        super().__init__()
        self.inp = torch.nn.Linear(self.N_MONOMER_TYPES, n_embed)
        self.self_layers = torch.nn.ModuleList(torch.nn.Linear(n_embed, n_embed) for _ in range(n_layers))
        self.nbr_layers = torch.nn.ModuleList(torch.nn.Linear(n_embed, n_embed, bias=False)
                                              for _ in range(n_layers))
        self.out = torch.nn.Linear(n_embed + 1, n_embed)

    def forward(self, topo: ChainTopology) -> torch.Tensor:
        dtype = self.inp.weight.dtype
        h = torch.nn.functional.silu(self.inp(torch.nn.functional.one_hot(
            topo.monomer_types, self.N_MONOMER_TYPES).to(dtype)))
        a, b = topo.monomer_bonds[:, 0], topo.monomer_bonds[:, 1]
        for lin_self, lin_nbr in zip(self.self_layers, self.nbr_layers):
            msg = torch.zeros_like(h).index_add(0, a, h[b]).index_add(0, b, h[a])
            h = h + torch.nn.functional.silu(lin_self(h) + lin_nbr(msg))
        pooled = torch.zeros((topo.n_beads, h.shape[1]), dtype=dtype).index_add(0, topo.bead_of_monomer, h)
        size = torch.bincount(topo.bead_of_monomer, minlength=topo.n_beads).to(dtype)[:, None]
        return self.out(torch.cat([pooled / size, size / 10.0], dim=1))


@functools.lru_cache(maxsize=32)
def _ordered_pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(i, j) of every ordered pair i != j of n beads (built once per chain size: the rollout
    builds a graph several times per step)."""
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    off = i != j
    return i[off], j[off]


class BeadGraph:
    """Pairs of beads within one chain, for a batch of ``B`` configurations of that chain.

    Nodes are numbered ``b * n_beads + i``; pairs are ordered (i, j), i != j, within the cutoff.
    ``vec`` is x_j - x_i (Å), ``unit`` its direction.
    """

    def __init__(self, positions: torch.Tensor, bonded: torch.Tensor, cutoff: float):
        batch, n, _ = positions.shape
        i, j = _ordered_pairs(n)
        vec = positions[:, j] - positions[:, i]                      # (B, P, 3)
        dist = torch.linalg.vector_norm(vec, dim=-1)
        keep = dist < cutoff
        base = (torch.arange(batch) * n)[:, None].expand(batch, len(i))
        self.first = (base + i)[keep]
        self.second = (base + j)[keep]
        self.vec = vec[keep]
        self.dist = dist[keep]
        self.unit = self.vec / self.dist[:, None]
        self.bonded = bonded[i, j][None, :].expand(batch, len(i))[keep].to(positions.dtype)
        self.n_nodes = batch * n


def gaussian_basis(dist: torch.Tensor, centres: torch.Tensor, width: float) -> torch.Tensor:
    """exp(-((d - c) / w)^2) for every pair distance and centre, (P, n_centres).

    The exponent is clipped at -30 (a basis value of 1e-13): torch's CPU exp takes a slow path
    for arguments far into underflow, ~100x the cost per element (measured: 0.8 ms instead of
    8 us for 2,880 x 16), and most pairs are far from most centres."""
    z = ((dist[:, None] - centres.to(dist.dtype)) / width) ** 2
    return torch.exp(-z.clamp(max=30.0))


class _PairFeatures(torch.nn.Module):
    """HIP-NN-TS bead features plus a Gaussian radial basis of pair distances."""

    def __init__(self, config: DynamicsModelConfig, n_inputs: int):
        super().__init__()
        self.hipnn = build_network(config.network, n_inputs)
        self.n_features = sum(self.hipnn.feature_sizes[1:])
        self.register_buffer("rbf_centres", torch.linspace(0.0, config.network.cutoff, config.n_rbf))
        self.rbf_width = config.network.cutoff / config.n_rbf

    def forward(self, node_inputs: torch.Tensor, graph: BeadGraph) -> tuple[torch.Tensor, torch.Tensor]:
        # hippynn's pair coordinates are x_first - x_second; a chain's graph is small and
        # dense, where the blocked kernels beat hippynn's plain-torch ones (blocked_kernels.py)
        with use_kernels():
            layers = self.hipnn(node_inputs, graph.first, graph.second, graph.dist, -graph.vec)
        h = torch.cat(layers[1:], dim=1)
        return h, gaussian_basis(graph.dist, self.rbf_centres, self.rbf_width)


def _per_configuration(embedding: torch.Tensor, batch: int, n: int, dtype) -> torch.Tensor:
    """Bead embeddings (n, e) of one chain shared by the batch, or (B, n, e) one per
    configuration (a batch of different sequences), as (B * n, e) node inputs."""
    e = embedding.to(dtype)
    if e.dim() == 2:
        e = e[None].expand(batch, n, -1)
    if e.shape[:2] != (batch, n):
        raise ConfigError(f"bead embeddings of shape {tuple(embedding.shape)} do not fit a batch "
                          f"of {batch} configurations of {n} beads")
    return e.reshape(batch * n, -1)


def _gram(u: torch.Tensor) -> torch.Tensor:
    """Rotation invariants of k vectors per bead: the upper triangle of u_l . u_m, (..., k(k+1)/2)."""
    k = u.shape[-2]
    gram = torch.einsum("...lc,...mc->...lm", u, u)
    iu = torch.triu_indices(k, k)
    return gram[..., iu[0], iu[1]]


class DynamicsNet(torch.nn.Module):
    """Gaussian next acceleration per bead from positions and the last k displacements."""

    def __init__(self, config: DynamicsModelConfig):
        super().__init__()
        self.config = config
        k = config.history
        self.embedding = FineEmbedding(config.n_embed, config.embed_layers)
        n_gram = k * (k + 1) // 2
        # the displacements enter the heads, not HIP-NN's input: its first interaction layer
        # costs pairs x sensitivities x inputs x 9, and the invariants reach the heads anyway
        self.features = _PairFeatures(config, config.n_embed)
        nf = self.features.n_features
        self.correlated = config.noise == "correlated"
        self.pair_head = _mlp(2 * nf + config.n_rbf + 1 + 2 * k, config.hidden, 2 if self.correlated else 1)
        self.bead_head = _mlp(nf + n_gram, config.hidden, k + 1)
        self.register_buffer("step_scale", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("accel_scale", torch.tensor(1.0, dtype=torch.float64))

    def set_scales(self, step_scale: float, accel_scale: float) -> None:
        if not (step_scale > 0 and accel_scale > 0):
            raise ConfigError(f"displacement and acceleration scales must be > 0, got {step_scale}, {accel_scale}")
        self.step_scale.fill_(float(step_scale))
        self.accel_scale.fill_(float(accel_scale))

    def forward(self, topo: ChainTopology, history: torch.Tensor,
                embedding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``history``: positions (B, k + 1, n, 3) in Å, oldest first, the last the present.
        ``embedding``: the bead embeddings of ``topo`` (n, e), computed if None, or (B, n, e)
        for a batch of different sequences with the same bead bonds as ``topo``.

        Returns the mean of the acceleration (B, n, 3) and the lower-triangular factor L
        (B, n, n) of its covariance over beads (the same for x, y and z: the noise is
        ``L z`` with z standard normal (B, n, 3), so the distribution is isotropic and rotates
        with the input).  L's diagonal is one positive std per bead; with
        ``noise: correlated`` its entries below the diagonal, one per pair (i > j) from the
        pair head, correlate neighbouring beads' noise as the chain's own motion does
        (independent noise of two bonded beads would stretch their bond far more often than
        the MD does).  Both in Å per learned
        step squared (i.e. the second difference of positions)."""
        k = self.config.history
        if history.shape[1] != k + 1:
            raise ConfigError(f"the dynamics network needs {k + 1} frames of history, got {history.shape[1]}")
        batch, _, n, _ = history.shape
        dtype = history.dtype
        if embedding is None:
            embedding = self.embedding(topo)
        # u^(m): m = 0 the latest displacement; (B, n, k, 3), in step_scale units
        disp = (history[:, 1:] - history[:, :-1]).flip(1).permute(0, 2, 1, 3) / self.step_scale.to(dtype)
        gram = _gram(disp)                                          # (B, n, k(k+1)/2)
        node_in = _per_configuration(embedding, batch, n, dtype)
        graph = BeadGraph(history[:, -1], topo.bonded_matrix(), self.config.network.cutoff)
        h, rbf = self.features(node_in, graph)
        flat_disp = disp.reshape(batch * n, k, 3)
        proj_i = torch.einsum("pmc,pc->pm", flat_disp[graph.first], graph.unit)
        proj_j = torch.einsum("pmc,pc->pm", flat_disp[graph.second], graph.unit)
        pair_in = torch.cat([h[graph.first], h[graph.second], rbf, graph.bonded[:, None], proj_i, proj_j], dim=1)
        pair_out = self.pair_head(pair_in)                           # (P, 1 or 2)
        coeff = pair_out[:, :1]
        mean = torch.zeros((graph.n_nodes, 3), dtype=dtype).index_add(0, graph.first, coeff * graph.unit)
        bead_out = self.bead_head(torch.cat([h, gram.reshape(batch * n, -1)], dim=1))
        mean = mean + torch.einsum("pm,pmc->pc", bead_out[:, :k], flat_disp)
        std = torch.nn.functional.softplus(bead_out[:, k]) + self.config.min_std
        tril = torch.diag_embed(std.reshape(batch, n))
        if self.correlated:
            b, i, j = graph.first // n, graph.first % n, graph.second % n
            lower = i > j
            tril = tril.index_put((b[lower], i[lower], j[lower]), pair_out[lower, 1])
        scale = self.accel_scale.to(dtype)
        return (mean * scale).reshape(batch, n, 3), tril * scale


def gaussian_nll(target: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per bead of an isotropic 3-D Gaussian, constant dropped.

    ``target``, ``mean``: (..., 3).  ``scale``: a std per bead (...), or the lower-triangular
    factor L (B, n, n) of the covariance over the n beads of each configuration (target
    (B, n, 3)), for which NLL = 1/2 |L^-1 (target - mean)|^2 + 3 log det L, per bead.  Pass
    scaled quantities (e.g. divided by the acceleration scale) to keep the value of order one."""
    if scale.dim() == target.dim() - 1:
        sq = ((target - mean) ** 2).sum(-1)
        return (0.5 * sq / scale ** 2 + 3.0 * torch.log(scale)).mean()
    n = target.shape[-2]
    y = torch.linalg.solve_triangular(scale, target - mean, upper=False)
    log_det = torch.log(torch.diagonal(scale, dim1=-2, dim2=-1)).sum(-1)
    return ((0.5 * (y ** 2).sum((-1, -2)) + 3.0 * log_det) / n).mean()


class ScoreNet(torch.nn.Module):
    """Denoising score of bead positions at noise level sigma (Å): s = sum_j g_ij r_hat_ij / sigma.

    ``features``: "hipnn" gives the pair head HIP-NN-TS bead features (as the dynamics
    network); "pairwise" gives it only the two beads' embeddings, the distance and the bonded
    flag, a radial pair model at a fraction of the cost (no interaction layers), which is what
    the correction's job (keeping beads apart and bonds in range) mostly needs."""

    def __init__(self, config: DynamicsModelConfig, features: str = "hipnn"):
        super().__init__()
        if features not in ("hipnn", "pairwise"):
            raise ConfigError(f"score features: 'hipnn' or 'pairwise', got {features!r}")
        self.config = config
        self.kind = features
        self.embedding = FineEmbedding(config.n_embed, config.embed_layers)
        if features == "hipnn":
            self.features = _PairFeatures(config, config.n_embed + 1)
            nf = self.features.n_features
        else:
            self.register_buffer("rbf_centres", torch.linspace(0.0, config.network.cutoff, config.n_rbf))
            self.rbf_width = config.network.cutoff / config.n_rbf
            nf = config.n_embed + 1
        self.pair_head = _mlp(2 * nf + config.n_rbf + 2, config.hidden, 1)
        self.register_buffer("sigma_ref", torch.tensor(1.0, dtype=torch.float64))

    def forward(self, topo: ChainTopology, positions: torch.Tensor, sigma: torch.Tensor,
                embedding: torch.Tensor | None = None) -> torch.Tensor:
        """``positions`` (B, n, 3) Å; ``sigma`` (B,) Å.  Returns sigma * score, (B, n, 3):
        the network's dimensionless output, whose target is -(noise / sigma)."""
        batch, n, _ = positions.shape
        dtype = positions.dtype
        if embedding is None:
            embedding = self.embedding(topo)
        level = torch.log(sigma.to(dtype) / self.sigma_ref.to(dtype))        # (B,)
        node_in = torch.cat([_per_configuration(embedding, batch, n, dtype),
                             level.repeat_interleave(n)[:, None]], dim=-1)
        graph = BeadGraph(positions, topo.bonded_matrix(), self.config.network.cutoff)
        if self.kind == "hipnn":
            h, rbf = self.features(node_in, graph)
        else:
            h = node_in
            rbf = gaussian_basis(graph.dist, self.rbf_centres, self.rbf_width)
        pair_level = level.repeat_interleave(n)[graph.first]
        pair_in = torch.cat([h[graph.first], h[graph.second], rbf, graph.bonded[:, None],
                             pair_level[:, None]], dim=1)
        g = self.pair_head(pair_in)
        out = torch.zeros((batch * n, 3), dtype=dtype).index_add(0, graph.first, g * graph.unit)
        return out.reshape(batch, n, 3)


def denoising_loss(score: ScoreNet, topo: ChainTopology, positions: torch.Tensor,
                   sigmas: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Denoising score matching (Vincent 2011; Song & Ermon 2019's sigma^2 weighting):
    E |sigma s(x + sigma eps) + eps|^2 over beads, for one sigma per configuration."""
    noise = torch.randn(positions.shape, generator=generator, dtype=positions.dtype)
    noisy = positions + sigmas[:, None, None].to(positions.dtype) * noise
    out = score(topo, noisy, sigmas)
    return ((out + noise) ** 2).sum(-1).mean()


def geometric_levels(sigma_max: float, sigma_min: float, n: int) -> list[float]:
    if n == 1:
        return [float(sigma_max)]
    ratio = (sigma_min / sigma_max) ** (1.0 / (n - 1))
    return [float(sigma_max * ratio ** i) for i in range(n)]


def annealed_correction(score: ScoreNet, topo: ChainTopology, positions: torch.Tensor,
                        levels: list[float], steps_per_level: int, step_size: float,
                        noise: float = 0.0, generator: torch.Generator | None = None,
                        embedding: torch.Tensor | None = None) -> torch.Tensor:
    """Short annealed Langevin dynamics on the learned score (Song & Ermon 2019), from the
    largest noise level down: x <- x + eta sigma^2 s(x; sigma) + noise sqrt(2 eta) sigma z.
    ``noise`` = 0 makes it a deterministic denoising push (beads that came too close move
    apart along the score) without adding sampling noise of its own."""
    x = positions
    for sigma in levels:
        sig = torch.full((x.shape[0],), sigma, dtype=x.dtype)
        for _ in range(steps_per_level):
            with torch.no_grad():
                out = score(topo, x, sig, embedding=embedding)     # sigma * score
            x = x + step_size * sigma * out
            if noise > 0:
                z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
                x = x + noise * math.sqrt(2.0 * step_size) * sigma * z
    return x
