"""Repulsive prior: functional form, derivatives, fitting from data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hipcg.data import CGDataset
from hipcg.graph import evaluate, periodic_graph
from hipcg.prior import PriorConfig, RepulsivePrior, fit_prior, pair_rdfs


def test_force_at_onset_and_dr_inside():
    prior = RepulsivePrior(1, t=3.0, p=0.01, s=2.0, dr=0.5)
    (pp,) = prior.params(["A"])
    assert math.isclose(pp.force(3.0), 0.02) and math.isclose(pp.force(2.5), 2.0)
    # two beads at r: energy of the pair, force = -dE/dr along the pair
    for r in (2.4, 3.0, 3.7):
        graph = periodic_graph(np.array([[0.0, 0, 0], [r, 0, 0]]), np.eye(3) * 100, np.array([0, 0]), 10.0,
                               pbc=(False, False, False))
        res = evaluate(prior, graph)
        assert math.isclose(res.energy, pp.energy(r), rel_tol=1e-12)
        assert math.isclose(res.forces[1, 0], pp.force(r), rel_tol=1e-12)
        assert math.isclose(res.forces[0, 0], -pp.force(r), rel_tol=1e-12)


def test_type_pair_tables_and_validation():
    t = np.array([[3.0, 2.5], [2.5, 2.0]])
    prior = RepulsivePrior(2, t=t, p=0.1, s=[[1.0, 2.0], [2.0, 3.0]], dr=0.4)
    d = prior.to_dict(["A", "B"])
    assert [p["types"] for p in d["pairs"]] == [("A", "A"), ("A", "B"), ("B", "B")]
    again = RepulsivePrior.from_dict(d)
    assert torch.equal(again.c, prior.c) and torch.equal(again.t, prior.t)
    with pytest.raises(ValueError, match="symmetric"):
        RepulsivePrior(2, t=[[3.0, 2.0], [2.5, 2.0]], p=0.1, s=1.0, dr=0.4)
    with pytest.raises(ValueError, match="0 < p < 1"):
        RepulsivePrior(1, t=3.0, p=1.5, s=1.0, dr=0.4)


def _two_type_gas(seed=0, frames=6):
    """Two bead types on a jittered checkerboard lattice."""
    rng = np.random.default_rng(seed)
    box = 24.0
    cells = np.stack(np.meshgrid(*[np.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    grid = cells * 4.0
    pos = np.repeat((grid + 2.0)[None], frames, axis=0) + rng.uniform(-0.3, 0.3, (frames, len(grid), 3))
    types = cells.sum(axis=1) % 2  # checkerboard: unlike neighbours at 4 Å, like ones at 5.66 Å
    forces = rng.normal(0.0, 1.0, pos.shape)
    forces[:, types == 1] *= 3.0
    return CGDataset(positions=pos, forces=forces, boxes=np.repeat(np.eye(3)[None] * box, frames, 0),
                     bead_types=types, type_names=["A", "B"], masses=np.ones(len(grid)))


def test_fit_onset_from_rdf_and_strength_from_forces():
    ds = _two_type_gas()
    edges, g = pair_rdfs([ds], 2, 8.0, 0.05, 50)
    assert g.shape == (2, 2, len(edges) - 1)
    prior = fit_prior([ds], ds.type_names, PriorConfig(rdf_threshold=0.01, r_max=8.0))
    params = {p.types: p for p in prior.params(ds.type_names)}
    # nearest neighbours 4 Å +- 0.6 (A-B); same-type neighbours on the diagonal (5.66 Å)
    assert 3.3 <= params[("A", "B")].t <= 4.0
    assert 4.8 <= params[("A", "A")].t <= 5.7
    mean_f = [np.linalg.norm(ds.forces[:, ds.bead_types == k], axis=-1).mean() for k in (0, 1)]
    assert math.isclose(params[("A", "A")].s, mean_f[0], rel_tol=1e-9)
    assert math.isclose(params[("A", "B")].s, 0.5 * (mean_f[0] + mean_f[1]), rel_tol=1e-9)


def test_fit_without_close_pairs_says_so():
    ds = _two_type_gas()
    with pytest.raises(ValueError, match="r_max"):
        fit_prior([ds], ds.type_names, PriorConfig(r_max=2.0))
