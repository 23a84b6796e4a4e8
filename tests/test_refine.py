"""The self-consistent volume term (hipcg.refine) on a model whose right answer is known.

Force-matched tables of an lj/cut fluid are (almost) the LJ potential, so the volume term they
need is ~0: started from a wrong p0 = +600 atm, the refine step must bring it back to ~0 and
the NPT density onto the lj/cut one.  Real LAMMPS runs (pair tables + pair_style hipcg/volume).
"""

import numpy as np
import pytest

from hipcg import analysis as A
from hipcg.baseline import dataset_frames, fit_pair_forces, write_table
from hipcg.data import load_dataset
from hipcg.evaluate import EvaluationSettings
from hipcg.graph import evaluate, periodic_graph
from hipcg.models.lj import LennardJones
from hipcg.refine import RefineConfig, _misfit, _update, read_volume_term, refine
from hipcg.volume import ATM, KB, VolumeTerm

from lj_reference import CUTOFF, EPSILON, SIGMA, lj_dataset

TEMPERATURE = 100.0
WRONG = 600.0  # atm


def test_update_moves_p0_by_the_density_error_over_kappa_and_k_towards_the_modulus():
    term = VolumeTerm(-300.0, 0.0, 70.0)
    config = RefineConfig(damping=0.5)
    # 2 % too dense at kappa 1e-4: p0 += 0.02 / 1e-4 = +200 atm; K += 0.5 (1/5e-5 - 1/1e-4)
    new = _update(term, [0.02], [1e-4], [5e-5], config)
    assert new.p0 == pytest.approx(-100.0) and new.bulk == pytest.approx(5000.0)
    # a gas-like kappa is clipped to 10x the atomistic one for p0 (K gets the whole modulus gap)
    gas = _update(term, [-0.5], [1.0], [1e-4], config)
    assert gas.p0 == pytest.approx(-300.0 - 0.5 / 1e-3) and gas.bulk == pytest.approx(0.5 * (1e4 - 1.0))
    # a CG model 5x softer than the atomistic one moves by its own kappa (no overshoot)
    soft = _update(term, [0.02], [5e-4], [1e-4], RefineConfig(compressibility=False))
    assert soft.p0 == pytest.approx(-300.0 + 0.02 / 5e-4) and soft.bulk == 0.0
    # too stiff: K never takes away more than half of the CG model's own modulus
    stiff = _update(term, [0.0], [1e-5], [1e-4], RefineConfig(damping=1.0))
    assert stiff.bulk == pytest.approx(-0.5 * 1e5)
    # converged = misfit < 1 (density within tolerance and, with K refined, kappa too)
    assert _misfit([0.005], [1.1e-4], [1e-4], config) < 1.0
    assert _misfit([0.005], [2e-4], [1e-4], config) > 1.0  # kappa 100 % off
    assert _misfit([0.005], [2e-4], [1e-4], RefineConfig(compressibility=False)) < 1.0
    assert _misfit([0.02], [1e-4], [1e-4], config) > 1.0
    # an unconverged refine keeps the smallest misfit: with K refined, kappa counts too
    tight = RefineConfig(compressibility=True, tolerance=0.01, compressibility_tolerance=0.1)
    assert _misfit([0.0004], [7.24e-5], [6.35e-5], tight) < _misfit([0.0001], [7.55e-5], [6.35e-5], tight)
    assert _misfit([0.0001], [7.55e-5], [6.35e-5], tight) == pytest.approx((7.55 / 6.35 - 1) / 0.1)


@pytest.fixture(scope="module")
def lj_state(tmp_path_factory):
    base = tmp_path_factory.mktemp("refine")
    ds = load_dataset(lj_dataset(base, TEMPERATURE, cells=3, steps=1500))
    model = LennardJones([[EPSILON]], [[SIGMA]])
    volume = np.abs(np.linalg.det(ds.boxes))
    virial = np.array([np.trace(evaluate(model, periodic_graph(p, b, ds.bead_types, CUTOFF)).virial)
                       for p, b in zip(ds.positions, ds.boxes)])
    pressure = float(np.mean(virial / (3 * volume * ATM) + ds.n_beads * KB * TEMPERATURE / (volume * ATM)))
    table = fit_pair_forces(dataset_frames(ds), ["Ar"], CUTOFF, dr=0.1)
    table.volume = VolumeTerm(WRONG, 0.0, float(volume.mean() / ds.n_beads))
    path = write_table(table, base / "bl" / "baseline.json")
    state = {"temperature": TEMPERATURE, "pressure": pressure, "pressure_nvt": pressure,
             "density": float(A.density(ds.masses, ds.boxes).mean()), "compressibility": None}
    return base, path, ds, state


def test_refine_brings_a_wrong_p0_back_and_holds_the_density(lj_state, plugin_path):
    base, path, ds, state = lj_state
    settings = EvaluationSettings(steps=2000, npt_steps=4000, timestep=5.0, dump_every=20,
                                  thermo_every=20, thermostat="nose-hoover")
    config = RefineConfig(enabled=True, nvt_steps=3000, npt_steps=6000, max_iterations=3,
                          tolerance=0.01, compressibility=False)
    record = refine(path, [(state, ds)], settings, config, base / "refined", log=lambda *a: None)
    term = read_volume_term(__import__("pathlib").Path(record["model"]))
    steps = [h["step"] for h in record["history"]]
    assert steps[:3] == ["start", "nvt", "npt1"]
    nvt = record["history"][1]
    # the NVT step alone removes the wrong 600 atm (tables ~ LJ: the right term is ~0)
    assert nvt["pressure_cg"][0] - state["pressure_nvt"] == pytest.approx(WRONG, abs=120.0)
    assert abs(term.p0) < 150.0
    assert record["converged"]
    assert abs(record["history"][-1]["density_error"][0]) < 0.01


def test_a_model_rewritten_at_the_same_path_is_run_again(lj_state, plugin_path, tmp_path):
    """Reusing finished CG runs must notice a new model file at the same path (the refine
    stage rewrites its models in place between pipeline runs) and a new start structure."""
    from hipcg.refine import write_with_volume_term
    from hipcg.simulate import SimulationConfig, StartStructure, run_simulation

    _, path, ds, _ = lj_state
    model = write_with_volume_term(path, VolumeTerm(0.0, 0.0, 50.0), tmp_path / "m")
    cfg = SimulationConfig(model=str(model), temperature=TEMPERATURE, steps=200, dump_every=20,
                           thermo_every=20, timestep=5.0)
    start = StartStructure.from_dataset(ds, -1)
    first = run_simulation(cfg, start, tmp_path / "run", reuse=True)
    assert run_simulation(cfg, start, tmp_path / "run", reuse=True).wall_s == first.wall_s  # reused
    write_with_volume_term(path, VolumeTerm(-500.0, 0.0, 50.0), tmp_path / "m")  # same path
    second = run_simulation(cfg, start, tmp_path / "run", reuse=True)
    shift = np.mean(second.trajectory.thermo["Press"]) - np.mean(first.trajectory.thermo["Press"])
    assert shift == pytest.approx(-500.0, abs=1e-3)  # same trajectory (to thermo print digits), + P_V
    moved = StartStructure.from_dataset(ds, 0)
    third = run_simulation(cfg, moved, tmp_path / "run", reuse=True)
    assert third.wall_s != second.wall_s
