"""hipcg's one pair search (hipcg.graph, vesin) against ASE's primitive_neighbor_list as the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from ase.neighborlist import primitive_neighbor_list

from hipcg.analysis import box_widths
from hipcg.graph import closest_pair, pair_distances, periodic_graph


def ase_pairs(pos, cell, cutoff, pbc=(True, True, True)):
    i, j, d = primitive_neighbor_list("ijD", pbc, cell, pos, cutoff, self_interaction=False)
    keep = np.einsum("ij,ij->i", d, d) < cutoff * cutoff  # ASE also returns r == cutoff
    return i[keep], j[keep], d[keep]


def sorted_pairs(i, j, d):
    order = np.lexsort(np.round(np.c_[i, j, d], 8).T[::-1])
    return np.asarray(i)[order], np.asarray(j)[order], np.asarray(d)[order]


def frame(lengths, tilt, n, seed=1):
    rng = np.random.default_rng(seed)
    cell = np.diag(lengths).astype(float)
    cell[1, 0], cell[2, 0], cell[2, 1] = tilt
    return rng.uniform(-0.2, 1.2, (n, 3)) @ cell, cell  # some beads outside the box


FRAMES = {
    "orthorhombic": (frame((30.0, 31.0, 32.0), (0.0, 0.0, 0.0), 400), 9.0),
    "triclinic": (frame((26.0, 27.0, 28.0), (6.0, -4.0, 3.0), 300), 9.0),
    # cutoff above half the box and above the box itself: images of i itself are pairs too
    "small box": (frame((11.0, 12.0, 13.0), (3.0, -2.0, 1.5), 40), 15.0),
    "small box, short cutoff": (frame((11.0, 12.0, 13.0), (0.0, 0.0, 0.0), 40), 7.0),
}


@pytest.mark.parametrize("name", list(FRAMES))
def test_periodic_graph_equals_ase(name):
    (pos, cell), cutoff = FRAMES[name]
    species = np.arange(len(pos)) % 2
    graph = periodic_graph(pos, cell, species, cutoff)
    a = sorted_pairs(*ase_pairs(pos, cell, cutoff))
    b = sorted_pairs(graph.pair_first, graph.pair_second, graph.pair_vec)
    assert graph.n_pairs == len(a[0]) > len(pos)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(b[2], a[2], rtol=0, atol=1e-12)
    assert graph.pair_vec.dtype == np.float64 and graph.pair_first.dtype == np.int64
    np.testing.assert_array_equal(graph.species, species)
    # the half list: each pair once, the same distances
    i, j, r = pair_distances(pos, cell, cutoff)
    np.testing.assert_allclose(np.sort(np.r_[r, r]), np.sort(np.linalg.norm(a[2], axis=1)), rtol=0, atol=1e-12)
    assert set(zip(i.tolist(), j.tolist())) | set(zip(j.tolist(), i.tolist())) == set(zip(a[0].tolist(), a[1].tolist()))
    if name.startswith("small box"):
        assert cutoff > 0.5 * box_widths(cell).min()
    if name == "small box":
        assert np.any(graph.pair_first == graph.pair_second)


def test_cutoff_is_strict_and_open_boundaries_work():
    pos = np.array([[0.0, 0, 0], [5.0, 0, 0], [0, 4.0, 0]])
    graph = periodic_graph(pos, np.eye(3) * 100, np.zeros(3, int), 5.0)
    assert sorted(zip(graph.pair_first.tolist(), graph.pair_second.tolist())) == [(0, 2), (2, 0)]
    (pos, cell), cutoff = FRAMES["small box, short cutoff"]
    pbc = (True, False, True)
    graph = periodic_graph(pos, cell, np.zeros(len(pos), int), cutoff, pbc=pbc)
    a = sorted_pairs(*ase_pairs(pos, cell, cutoff, pbc))
    np.testing.assert_allclose(sorted_pairs(graph.pair_first, graph.pair_second, graph.pair_vec)[2], a[2],
                               rtol=0, atol=1e-12)


def test_closest_pair_below_a_floor():
    (pos, cell), _ = FRAMES["triclinic"]
    i, j, d = ase_pairs(pos, cell, 3.0)
    r = np.linalg.norm(d, axis=1)
    dist, a, b = closest_pair(pos, cell, 3.0)
    assert dist == pytest.approx(r.min(), abs=1e-12)
    assert {a, b} == {int(i[np.argmin(r)]), int(j[np.argmin(r)])}
    assert closest_pair(pos, cell, 0.5 * r.min()) is None
