"""Local-density potentials: our forces equal LAMMPS ``pair_style local/density`` on the same
file, and force matching recovers a known pair + LD model from its own forces."""

from __future__ import annotations

import numpy as np
import pytest

from hipcg.baseline import fit_pair_forces
from hipcg.graph import periodic_graph
from hipcg.lammps.dump import read_dump
from hipcg.lammps.runner import run_lammps
from hipcg.local_density import LocalDensity, choose_cutoffs, write_ld_file

from bead_systems import random_liquid


def known_ld() -> LocalDensity:
    rho = np.linspace(0.0, 16.0, 33)
    fprime = 0.4 * np.sin(rho / 16.0 * np.pi) ** 2 * (rho - 7.0) / 7.0  # 0 at both ends
    return LocalDensity(3.5, 5.5, rho, fprime)


def lammps_ld_forces(tmp_path, box, ld: LocalDensity) -> np.ndarray:
    box.species[:] = 0
    box.write(tmp_path / "data.lammps")
    write_ld_file(ld, 1, tmp_path / "ld.table", n_points=2001)
    script = "\n".join([
        "units real", "atom_style atomic", "boundary p p p", "read_data data.lammps",
        "pair_style local/density", "pair_coeff * * ld.table",
        "neighbor 1.0 bin", "dump f all custom 1 f.dump id fx fy fz", "dump_modify f sort id format float %.14g",
        "run 0"]) + "\n"
    run_lammps(script, tmp_path)
    (frame,) = read_dump(tmp_path / "f.dump")
    return np.stack([frame["fx"], frame["fy"], frame["fz"]], axis=1)


def test_forces_equal_lammps_local_density(tmp_path):
    box = random_liquid(200, 0.033, 2.6, seed=4, n_types=1)
    ld = known_ld()
    g = periodic_graph(box.positions, box.cell, box.species, ld.r2)
    ours = ld.forces(g.pair_first, g.pair_second, g.pair_vec, len(box.positions))
    theirs = lammps_ld_forces(tmp_path, box, ld)
    rho = ld.densities(g.pair_first, np.linalg.norm(g.pair_vec, axis=1), len(box.positions))
    assert 2.0 < rho.mean() < 14.0  # the test exercises the tabulated range
    assert np.abs(theirs).max() > 0.05  # and real forces
    # LAMMPS splines the tabulated F (clamped cubic) where we integrate a linear F': close
    np.testing.assert_allclose(ours, theirs, atol=2e-3 * np.abs(theirs).max())


def test_phi_is_smooth_and_matches_its_derivative():
    ld = known_ld()
    r = np.linspace(3.0, 6.0, 3001)
    phi = ld.phi(r)
    assert phi[0] == 1.0 and phi[-1] == 0.0 and np.all(np.diff(phi) <= 1e-15)
    numeric = np.gradient(phi, r)
    away = (np.abs(r - ld.r1) > 0.01) & (np.abs(r - ld.r2) > 0.01)  # np.gradient straddles the knots
    np.testing.assert_allclose(ld.dphi(r)[away], numeric[away], atol=2e-4)
    assert abs(ld.dphi(np.array([ld.r1 + 1e-9]))[0]) < 1e-6 and abs(ld.dphi(np.array([ld.r2 - 1e-9]))[0]) < 1e-6


def test_force_matching_recovers_a_known_pair_plus_ld_model():
    """Frames whose forces are exactly pair + LD: the fit recovers F' where the data sample it."""
    ld_true = known_ld()
    frames = []
    for seed in range(6):
        box = random_liquid(150, 0.033, 2.4, seed=10 + seed, n_types=1)
        g = periodic_graph(box.positions, box.cell, box.species, 8.0)
        r = np.linalg.norm(g.pair_vec, axis=1)
        f_pair = 30.0 * np.exp(-(r - 2.4) / 0.4) * (r < 8.0)  # repulsive pair force (positive = push)
        forces = np.zeros((150, 3))
        np.add.at(forces, g.pair_first, -(f_pair / r)[:, None] * g.pair_vec)
        forces += ld_true.forces(g.pair_first, g.pair_second, g.pair_vec, 150)
        frames.append((box.positions, forces, box.cell, box.species))
    start = LocalDensity(ld_true.r1, ld_true.r2, ld_true.rho)
    table = fit_pair_forces(iter(frames), ["A"], 8.0, dr=0.1, ridge=1e-9, local_density=start)
    fitted = table.local_density
    rho_seen = np.concatenate([fitted.densities(*_pairs(f), 150) for f in frames])
    lo, hi = np.percentile(rho_seen, [10, 90])
    inside = (ld_true.rho > lo) & (ld_true.rho < hi)
    # F' is defined up to nothing here (the pair basis cannot absorb a density dependence):
    # the sampled nodes come back
    np.testing.assert_allclose(fitted.fprime[inside], ld_true.fprime[inside],
                               atol=0.05 * np.abs(ld_true.fprime).max())


def _pairs(frame):
    positions, _, cell, species = frame
    g = periodic_graph(positions, cell, species, known_ld().r2)
    return g.pair_first, np.linalg.norm(g.pair_vec, axis=1)


def test_cutoffs_from_the_first_shell():
    r = np.arange(0.05, 10.0, 0.1)
    g = 1.0 + 1.5 * np.exp(-((r - 4.0) / 0.4) ** 2) - 0.4 * np.exp(-((r - 5.6) / 0.5) ** 2)
    g[r < 3.2] = 0.0
    r1, r2 = choose_cutoffs(r, g)
    assert r2 == pytest.approx(5.6, abs=0.15) and r1 == pytest.approx(r2 - 1.5)


def test_pair_plus_ld_baseline_runs_in_lammps_with_the_forces_it_was_fitted_with(tmp_path):
    """Fit pair + LD on LJ liquid frames, write the hybrid/overlay table + LD files, and compare
    LAMMPS's forces on a dataset frame with the Python evaluation of the same baseline."""
    from hipcg.baseline import BaselineConfig, dataset_frames, load_baseline, local_density_for, \
        read_descriptor, table_pair_lines, write_table
    from hipcg.data import load_dataset
    from hipcg.lammps.data_file import write_lammps_data

    from lj_reference import lj_dataset

    ds = load_dataset(lj_dataset(tmp_path / "lj", 100.0, cells=3, steps=1000, every=50))
    ld = local_density_for([ds], 8.5, BaselineConfig(ld_nodes=30))
    assert 3.0 < ld.r2 < 8.5 and ld.r1 == pytest.approx(ld.r2 - 1.5)
    table = fit_pair_forces(dataset_frames(ds), ds.type_names, 8.5, local_density=ld)
    assert np.abs(table.local_density.fprime).max() > 0
    path = write_table(table, tmp_path / "b" / "baseline.json")
    baseline = load_baseline(path)
    frame = ds.n_frames - 1
    ours = baseline.forces(ds.positions[frame], ds.boxes[frame], ds.bead_types)
    (tmp_path / "run").mkdir()
    write_lammps_data(tmp_path / "run" / "data.lammps", ds.positions[frame], ds.bead_types + 1,
                      list(ds.masses[:1]), ds.boxes[frame])
    lines = table_pair_lines(read_descriptor(path), ds.type_names)
    assert lines[1].startswith("pair_style hybrid/overlay table linear")
    script = "\n".join(["units real", "atom_style atomic", "boundary p p p", "read_data data.lammps",
                        *lines, "neighbor 1.0 bin", "dump f all custom 1 f.dump id fx fy fz",
                        "dump_modify f sort id format float %.14g", "run 0"]) + "\n"
    run_lammps(script, tmp_path / "run")
    (dumped,) = read_dump(tmp_path / "run" / "f.dump")
    theirs = np.stack([dumped["fx"], dumped["fy"], dumped["fz"]], axis=1)
    # the table is linear in r with 2000 rows and the LD F is splined: agreement to ~1e-3
    np.testing.assert_allclose(ours, theirs, atol=5e-3 * np.abs(theirs).max())
