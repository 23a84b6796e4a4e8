"""Repulsive pair prior: keeps CG beads apart where the training data has no samples.

Force matching only sees distances that occur in the reference trajectories; below the
closest approach a network is unconstrained and CG MD can collapse there.  Following
Shinkle et al., each bead-type pair gets

    E(r) = (s p / a) exp(a (t - r)),   a = ln(1/p) / dr,   F(r) = -dE/dr = s p exp(a (t - r))

so the repulsive force is ``s p`` at the onset ``t`` (a small fraction ``p`` of the typical
force) and grows to ``s`` at ``t - dr``.  ``t`` is where the pair's RDF over all bead pairs
(:func:`pair_rdfs`, intramolecular ones included) first rises above a small threshold, ``s``
the mean force magnitude on the two bead types.  The network learns the rest (it is trained
on the total force, prior included).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Annotated

import numpy as np
import torch

from .analysis import PairHistogram
from .config import NonNegative, Positive, PositiveInt, Range
from .data import frame_subset
from .errors import ConfigError, DataError


@dataclass
class PriorConfig:
    enabled: bool = True
    rdf_threshold: NonNegative = 0.01  # g(r) level that marks the onset t
    p: Annotated[float, Range(gt=0, lt=1)] = 0.01  # force at the onset, as a fraction of s
    dr: Positive = 0.5  # Å from t inwards over which the force grows from s p to s
    strength_scale: NonNegative = 1.0  # s = strength_scale x mean |F| of the pair's bead types
    bin_width: Positive = 0.05  # Å, RDF histogram
    r_max: Positive = 8.0  # Å, RDF range searched for the onset
    max_frames: PositiveInt = 50  # frames used for the RDF (spread over the data)


@dataclass
class PairPriorParams:
    """Fitted parameters of one type pair (for the model metadata and the report)."""

    types: tuple[str, str]
    t: float  # Å, onset
    p: float
    s: float  # kcal/(mol Å)
    dr: float  # Å

    @property
    def a(self) -> float:
        return math.log(1.0 / self.p) / self.dr

    def energy(self, r):
        return self.s * self.p / self.a * np.exp(self.a * (self.t - np.asarray(r)))

    def force(self, r):
        return self.s * self.p * np.exp(self.a * (self.t - np.asarray(r)))


class RepulsivePrior(torch.nn.Module):
    """Per-type-pair exponential repulsion in the model-file contract (per-node energies)."""

    def __init__(self, n_types: int, t, p, s, dr, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.n_types = n_types
        tables = [np.array(np.broadcast_to(np.asarray(x, dtype=np.float64), (n_types, n_types))) for x in (t, p, s, dr)]
        t, p, s, dr = tables
        for name, x in (("t", t), ("p", p), ("s", s), ("dr", dr)):
            if not np.allclose(x, x.T):
                raise ConfigError(f"prior parameter {name} must be symmetric in the type pair")
        if np.any(p <= 0) or np.any(p >= 1) or np.any(dr <= 0) or np.any(s < 0):
            raise ConfigError("prior needs 0 < p < 1, dr > 0, s >= 0")
        a = np.log(1.0 / p) / dr
        # flattened tables indexed by type_i * n_types + type_j; E = c exp(a (t - r))
        self.register_buffer("a", torch.as_tensor(a.ravel(), dtype=dtype))
        self.register_buffer("t", torch.as_tensor(t.ravel(), dtype=dtype))
        self.register_buffer("c", torch.as_tensor((s * p / a).ravel(), dtype=dtype))
        self._raw = {"t": t.copy(), "p": p.copy(), "s": s.copy(), "dr": dr.copy()}

    def forward(self, species: torch.Tensor, pair_first: torch.Tensor, pair_second: torch.Tensor,
                pair_vec: torch.Tensor) -> torch.Tensor:
        pair_type = species.index_select(0, pair_first) * self.n_types + species.index_select(0, pair_second)
        r = torch.linalg.vector_norm(pair_vec, dim=1)
        a = self.a.index_select(0, pair_type)
        # exponent floored at -80 (a factor of 1e-35): far pairs are zero either way, and torch's
        # float32 CPU exp takes a ~50x slower path below about -87
        exponent = (a * (self.t.index_select(0, pair_type) - r)).clamp(min=-80.0)
        e = self.c.index_select(0, pair_type) * torch.exp(exponent)
        node = torch.zeros(species.shape[0], dtype=pair_vec.dtype, device=pair_vec.device)
        # every pair appears as (i, j) and (j, i): half of its energy to each
        return node.index_add(0, pair_first, 0.5 * e)

    def params(self, type_names: list[str]) -> list[PairPriorParams]:
        out = []
        for i in range(self.n_types):
            for j in range(i, self.n_types):
                out.append(PairPriorParams((type_names[i], type_names[j]), float(self._raw["t"][i, j]),
                                           float(self._raw["p"][i, j]), float(self._raw["s"][i, j]),
                                           float(self._raw["dr"][i, j])))
        return out

    def to_dict(self, type_names: list[str]) -> dict:
        """JSON-able description; :meth:`from_dict` rebuilds the module."""
        return {"type_names": list(type_names), "form": "(s p / a) exp(a (t - r)), a = ln(1/p)/dr",
                "units": {"t": "A", "dr": "A", "s": "kcal/(mol A)", "p": "1"},
                **{k: v.tolist() for k, v in self._raw.items()},
                "pairs": [asdict(x) for x in self.params(type_names)]}

    @classmethod
    def from_dict(cls, d: dict, dtype: torch.dtype = torch.float64) -> "RepulsivePrior":
        return cls(len(d["type_names"]), d["t"], d["p"], d["s"], d["dr"], dtype=dtype)


def pair_rdfs(datasets, n_types: int, r_max: float, bin_width: float, max_frames: int):
    """g(r) per ordered type pair over ALL bead pairs, pooled over frames of all ``datasets``.

    Intramolecular pairs count too (no molecule ids): the model is an atomic pair style that
    sees every pair within its cutoff, so the prior's onset must lie below the closest approach
    of any two beads in the data, bonded neighbours of multi-bead mappings included; an
    intermolecular g(r) would put the wall on top of sampled bond lengths.  Same histogram and
    normalisation as the report (:class:`hipcg.analysis.PairHistogram`).

    Returns (bin edges, g of shape (n_types, n_types, n_bins)); a pair with no beads has g = 0.
    """
    hist = PairHistogram(n_types, r_max, bin_width)
    for ds in datasets:
        frames = frame_subset(ds.n_frames, max_frames)
        hist.add(ds.positions[frames], ds.boxes[frames], ds.bead_types)
    return hist.edges, hist.g()


def fit_prior(datasets, type_names: list[str], config: PriorConfig | None = None,
              dtype: torch.dtype = torch.float64) -> RepulsivePrior:
    """Fit onset t from each pair's RDF and strength s from the mean |F| (see module doc)."""
    config = config or PriorConfig()
    n = len(type_names)
    edges, g = pair_rdfs(datasets, n, config.r_max, config.bin_width, config.max_frames)
    g = 0.5 * (g + g.transpose(1, 0, 2))
    t = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            above = np.nonzero(g[i, j] > config.rdf_threshold)[0]
            if len(above):
                t[i, j] = edges[above[0]]  # left edge of the first bin above the threshold
    if np.all(np.isnan(t)):
        raise DataError(f"no bead pair closer than r_max = {config.r_max} Å in the data: "
                         "cannot place the prior (raise prior.r_max)")
    # a type pair never seen within r_max gets the closest onset of the others (conservative)
    t = np.where(np.isnan(t), np.nanmin(t), t)
    force_sum = np.zeros(n)
    force_count = np.zeros(n)
    for ds in datasets:
        mag = np.linalg.norm(np.asarray(ds.forces, dtype=np.float64), axis=-1)  # (F, B)
        force_sum += np.bincount(ds.bead_types, weights=mag.sum(axis=0), minlength=n)
        force_count += np.bincount(ds.bead_types, minlength=n) * ds.n_frames
    mean_f = np.divide(force_sum, force_count, out=np.zeros(n), where=force_count > 0)
    s = config.strength_scale * 0.5 * (mean_f[:, None] + mean_f[None, :])
    return RepulsivePrior(n, t, config.p, s, config.dr, dtype=dtype)
