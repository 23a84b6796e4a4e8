"""RDF, RDF error, diffusion and density definitions (docs/evaluation.md), on synthetic data."""

import numpy as np
import pytest

from hipcg import analysis as A


@pytest.fixture(scope="module")
def ideal_gas():
    rng = np.random.default_rng(0)
    length, n, frames = 20.0, 300, 10
    pos = rng.uniform(0, length, (frames, n, 3))
    boxes = np.repeat(np.eye(3)[None] * length, frames, 0)
    return pos, boxes


def test_rdf_error_of_a_trajectory_against_itself_is_zero(ideal_gas):
    pos, boxes = ideal_gas
    types = np.arange(pos.shape[1]) % 2
    r_max = A.rdf_range(boxes, cutoff=8.0)
    a = A.all_rdfs(pos, boxes, types, ["A", "B"], r_max)
    b = A.all_rdfs(pos.copy(), boxes.copy(), types, ["A", "B"], r_max)
    assert set(a) == {"A-A", "A-B", "B-B"}
    for k in a:
        assert A.rdf_error(a[k], b[k]) == 0.0
        assert len(a[k].r) == 80 and a[k].r[0] == pytest.approx(0.05)


def test_ideal_gas_rdf_is_one_and_molecule_exclusion_keeps_the_normalisation(ideal_gas):
    pos, boxes = ideal_gas
    r_max = A.rdf_range(boxes, cutoff=9.0)
    g = A.rdf(pos, boxes, np.zeros(pos.shape[1], int), 0, 0, r_max)
    assert abs(g.g[30:].mean() - 1.0) < 0.03
    # pairs of beads as "molecules": intermolecular g(r) must still go to 1
    mol = np.arange(pos.shape[1]) // 2
    types = np.arange(pos.shape[1]) % 2
    g_ab = A.rdf(pos, boxes, types, 0, 1, r_max, molecule_ids=mol)
    assert abs(g_ab.g[30:].mean() - 1.0) < 0.04
    assert g_ab.intermolecular


def test_rdf_range_is_min_of_cutoff_and_half_the_narrowest_box():
    box = np.array([[20.0, 0, 0], [0, 16.0, 0], [0, 0, 30.0]])
    assert A.rdf_range(box, cutoff=15.0) == pytest.approx(8.0)
    assert A.rdf_range(box, cutoff=5.05) == pytest.approx(5.0)
    tilted = np.array([[20.0, 0, 0], [10.0, 20.0, 0], [0, 0, 20.0]])
    assert A.box_widths(tilted)[0] == pytest.approx(20.0 * 20.0 / np.hypot(20.0, 10.0))


def test_rdf_error_is_mean_absolute_difference():
    g1, g2 = np.zeros(10), np.full(10, 0.1)
    g2[0] = 1.1
    assert A.rdf_error(g1, g2) == pytest.approx((0.1 * 9 + 1.1) / 10)
    with pytest.raises(ValueError):
        A.rdf_error(np.zeros(3), np.zeros(4))
    assert A.RDF_ERROR_TOLERANCE == 0.05


def test_diffusion_of_a_random_walk_and_unwrapping():
    rng = np.random.default_rng(1)
    sigma, dt = 0.3, 10.0  # Å per frame per axis, fs per frame
    traj = np.cumsum(rng.normal(0, sigma, (300, 200, 3)), axis=0)
    box = np.eye(3)[None] * 15.0
    unwrapped = A.unwrap(traj % 15.0, box)
    assert np.allclose(unwrapped - unwrapped[0], traj - traj[0])
    d = A.diffusion(unwrapped, box, dt)
    assert d.coefficient == pytest.approx(sigma**2 / (2 * dt), rel=0.1)  # <dx^2> = 2 D dt per axis
    assert d.coefficient_1e5_cm2_s == pytest.approx(d.coefficient * 1e4)


def test_density_units():
    box = np.eye(3) * 10.0
    # 602.214 g/mol in 1000 Å^3 = 1 g/cm^3
    assert A.density(np.full(10, 60.2214076), box)[0] == pytest.approx(1.0)


def test_bond_distances_pool_pairs_within_molecules():
    pos = np.array([[[0, 0, 0], [1.5, 0, 0], [9.5, 0, 0], [5, 5, 5]]], float)
    box = np.eye(3) * 10.0
    d = A.bond_distances(pos, box, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), ["A", "B"])
    assert set(d) == {"A-B"}
    assert np.allclose(sorted(d["A-B"]), sorted([1.5, np.linalg.norm([4.5, 5, 5])]))


def test_compressibility_from_volume_fluctuations():
    """kappa_T = var(V) / (kB T <V>) in 1/atm, against hand-written constants
    (kB = 0.0019872043 kcal/(mol K), 1 atm = 1.4583972e-5 kcal/(mol Å^3))."""
    from hipcg.analysis import compressibility

    rng = np.random.default_rng(3)
    volumes = 30000.0 + rng.normal(0.0, 150.0, 20000)
    expected = volumes.var() / (0.0019872043 * 300.0 * volumes.mean()) * 1.4583972e-5
    assert compressibility(volumes, 300.0) == pytest.approx(expected, rel=1e-6)
