"""Pairwise force matching recovers the LJ pair force from one-to-one LJ data."""

import numpy as np
import pytest

from hipcg.baseline import (dataset_frames, fit_pair_forces, load_baseline, read_descriptor,
                            table_pair_lines, write_table)
from hipcg.data import load_dataset

from lj_reference import CUTOFF, EPSILON, SIGMA, lj_dataset


def lj_force(r):
    return 24 * EPSILON * (2 * (SIGMA / r) ** 12 - (SIGMA / r) ** 6) / r


@pytest.fixture(scope="module")
def lj_data(tmp_path_factory):
    return load_dataset(lj_dataset(tmp_path_factory.mktemp("lj100"), 100.0, cells=3, steps=1500))


@pytest.fixture(scope="module")
def fitted(lj_data):
    return fit_pair_forces(dataset_frames(lj_data), ["Ar"], CUTOFF, dr=0.1)


def test_baseline_recovers_the_lj_pair_force(fitted):
    r = np.linspace(fitted.r_inner[0] + 0.2, CUTOFF - 0.2, 200)
    err = np.abs(fitted.force(0, r) - lj_force(r))
    # piecewise-linear basis on a 0.1 Å grid: the interpolation error of the steep wall dominates
    assert err.max() < 0.1
    assert err[r > 3.8].max() < 0.01
    assert 2.9 < fitted.r_inner[0] < 3.4  # closest well-sampled distance at 100 K
    assert fitted.force(0, np.array([1.0]))[0] > fitted.force(0, np.array([fitted.r_inner[0]]))[0]


def test_baseline_static_forces_match_the_data(fitted, lj_data):
    pred = fitted.forces(lj_data.positions[3], lj_data.boxes[3], lj_data.bead_types)
    ref = lj_data.forces[3]
    assert np.sqrt(np.mean((pred - ref) ** 2)) < 0.03 * np.sqrt(np.mean(ref**2))


def test_table_file_is_consistent_and_round_trips(fitted, tmp_path):
    path = write_table(fitted, tmp_path / "bl.json", n_points=1500)
    with pytest.raises(FileExistsError):
        write_table(fitted, tmp_path / "bl.json")
    rows = np.loadtxt([ln for ln in (tmp_path / "bl.table").read_text().splitlines()[6:] if ln.strip()])
    r, u, f = rows[:, 1], rows[:, 2], rows[:, 3]
    assert u[-1] == 0.0 and r[-1] == CUTOFF
    # f = -dU/dr (central differences on the written table, away from the kink at r_inner)
    dudr = np.gradient(u, r)
    ok = np.abs(r - fitted.r_inner[0]) > 0.05
    assert np.max(np.abs(dudr + f)[ok]) < 1e-2 * np.abs(f).max()
    back = load_baseline(path)
    assert np.allclose(back.f, fitted.f)
    lines = table_pair_lines(read_descriptor(path), ["Ar"])
    assert lines[1] == "pair_style table linear 1500"
    assert lines[2].startswith("pair_coeff 1 1 ") and lines[2].endswith(f"Ar_Ar {CUTOFF}")
