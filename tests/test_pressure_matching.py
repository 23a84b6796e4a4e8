"""Pressure matching (hipcg.volume): a known volume term is recovered from synthetic pressures.

The data: LAMMPS lj/cut frames (one atom = one bead), at their own volume and affinely
compressed by 3 %, with a per-frame "atomistic" pressure made from the exact LJ virial, the
beads' ideal-gas part and a known volume term P_V(v) = p0 - K (v - v0)/v0, plus noise.
"""

import numpy as np
import pytest

from hipcg.baseline import dataset_frames, fit_pair_forces, fit_volume, load_baseline, write_table
from hipcg.data import CGDataset, DatasetError, load_dataset, save_dataset
from hipcg.graph import evaluate, periodic_graph
from hipcg.models.lj import LennardJones
from hipcg.volume import ATM, KB, VolumeTerm, fit_to_datasets, fit_volume_term

from lj_reference import CUTOFF, EPSILON, SIGMA, lj_dataset

TEMPERATURE = 100.0
KNOWN = VolumeTerm(p0=-650.0, bulk=2400.0, v0=47.0)
NOISE_ATM = 40.0


def lj_virial(positions, box, types) -> float:
    model = LennardJones([[EPSILON]], [[SIGMA]])
    return float(np.trace(evaluate(model, periodic_graph(positions, box, types, CUTOFF)).virial))


def with_pressures(ds: CGDataset, scale: float, seed: int) -> CGDataset:
    """``ds`` scaled by ``scale`` with synthetic per-frame pressures (module docstring)."""
    rng = np.random.default_rng(seed)
    pos, boxes = ds.positions * scale, ds.boxes * scale
    volume = np.abs(np.linalg.det(boxes))
    n = ds.n_beads
    virial = np.array([lj_virial(p, b, ds.bead_types) for p, b in zip(pos, boxes)])
    pressure = (virial / (3 * volume * ATM) + n * KB * TEMPERATURE / (volume * ATM)
                + KNOWN.pressure(n, volume) + rng.normal(0.0, NOISE_ATM, len(volume)))
    return CGDataset(positions=pos, forces=ds.forces, boxes=boxes, bead_types=ds.bead_types,
                     type_names=ds.type_names, masses=ds.masses,
                     metadata={"state_point": {"temperature": TEMPERATURE}},
                     thermo={"pressure": pressure, "volume": volume})


@pytest.fixture(scope="module")
def lj_sets(tmp_path_factory):
    base = tmp_path_factory.mktemp("pm")
    ds = load_dataset(lj_dataset(base, TEMPERATURE, cells=3, steps=1500))
    sets = [with_pressures(ds, 1.0, 1), with_pressures(ds, 0.99, 2)]  # 3 % in volume apart
    paths = [save_dataset(base / f"pm{k}.npz", s) for k, s in enumerate(sets)]
    return base, [load_dataset(p) for p in paths]


def test_least_squares_recovers_a_known_term_exactly():
    v = np.linspace(44.0, 50.0, 40)
    fit = fit_volume_term(KNOWN.pressure(1, v), v, v0=KNOWN.v0)
    assert fit.bulk_fitted and fit.rmse < 1e-9
    assert fit.term.p0 == pytest.approx(KNOWN.p0, abs=1e-9)
    assert fit.term.bulk == pytest.approx(KNOWN.bulk, rel=1e-12)
    one = fit_volume_term(np.full(10, 123.0), np.full(10, 47.0))
    assert not one.bulk_fitted and one.term.bulk == 0.0 and one.term.p0 == pytest.approx(123.0)


def test_volume_term_energy_is_the_integral_of_its_pressure():
    n, volume, h = 100, 4900.0, 1e-5
    dedv = (KNOWN.energy(n, volume * (1 + h)) - KNOWN.energy(n, volume * (1 - h))) / (2 * volume * h)
    assert -dedv / ATM == pytest.approx(KNOWN.pressure(n, volume), rel=1e-8)
    assert np.trace(KNOWN.virial(n, volume)) / (3 * volume * ATM) == pytest.approx(
        KNOWN.pressure(n, volume), rel=1e-12)


def test_pressure_matching_recovers_the_volume_term_with_the_exact_virial(lj_sets):
    _, sets = lj_sets
    fit = fit_to_datasets(lambda ds, k: lj_virial(ds.positions[k], ds.boxes[k], ds.bead_types),
                          sets, [range(s.n_frames) for s in sets], v0=KNOWN.v0)
    n = sum(s.n_frames for s in sets)
    assert fit.rmse == pytest.approx(NOISE_ATM, rel=0.3)
    # the noise alone: p0 to a few sigma / sqrt(n); K through a 3 % lever arm
    assert abs(fit.term.p0 - KNOWN.p0) < 4 * NOISE_ATM / np.sqrt(n) + 15.0
    assert fit.term.bulk == pytest.approx(KNOWN.bulk, rel=0.15)


def test_baseline_tables_recover_the_volume_term_and_write_it(lj_sets, tmp_path):
    _, sets = lj_sets
    table = fit_pair_forces(dataset_frames(sets[0]), ["Ar"], CUTOFF, dr=0.1)
    fit = fit_volume(table, sets)
    # the tables' virial is the LJ one to the accuracy of the force fit (~1 % of |F|)
    # its v0 is the data's mean volume per bead: compare the known term's pressure there
    assert fit.term.p0 == pytest.approx(float(KNOWN.pressure(1, fit.term.v0)), abs=60.0)
    assert fit.term.bulk == pytest.approx(KNOWN.bulk, rel=0.25)
    path = write_table(table, tmp_path / "bl.json")
    assert load_baseline(path).volume == fit.term


def test_a_dataset_without_pressures_is_an_error_naming_file_and_key(tmp_path):
    from hipcg.train import TrainConfig, train

    from lj_fluid import lj_dataset as lj_fluid_dataset

    path = lj_fluid_dataset(tmp_path, frames=20)
    config = TrainConfig.from_dict({"state_points": [{"name": "lj", "dataset": str(path), "role": "train"}],
                                    "loss": {"pressure": 1.0}, "out_dir": str(tmp_path / "run")})
    with pytest.raises(DatasetError, match=r"train\.state_points\[0\] \(lj\): dataset .*lj\.npz.*"
                                           r"thermo_pressure.*pressure matching"):
        train(config, progress=False, log=lambda *a: None)


def test_training_with_pressure_matching_stores_and_exports_the_term(lj_sets, tmp_path):
    from hipcg.export import export_run
    from hipcg.modelfile import read_metadata
    from hipcg.train import TrainConfig, load_trained, train

    from lj_fluid import ORACLE_MODEL

    base, _ = lj_sets
    config = TrainConfig.from_dict({
        "state_points": [{"name": "a", "dataset": str(base / "pm0.npz"), "role": "train"},
                         {"name": "b", "dataset": str(base / "pm1.npz"), "role": "test"}],
        "model": dict(ORACLE_MODEL), "loss": {"pressure": 0.5},
        "optimizer": {"lr": 3e-3, "batch_size": 2, "max_epochs": 2}, "seed": 1,
        "out_dir": str(tmp_path / "run")})
    result = train(config, progress=False, log=lambda *a: None)
    term = VolumeTerm.from_dict(result.volume_fit)
    # refitted in closed form on the best weights: no mean pressure error on the training frames
    assert abs(result.metrics["a"]["train"]["pressure_bias"]) < 1e-2
    assert result.metrics["b"]["heldout"]["pressure_rmse"] > 0
    assert not result.volume_fit["bulk_fitted"] and term.bulk == 0.0  # one training volume
    model, _ = load_trained(tmp_path / "run")
    assert model.volume.term().p0 == pytest.approx(term.p0, rel=1e-6)
    meta = read_metadata(export_run(tmp_path / "run", tmp_path / "m.pt"))
    assert meta.volume.p0 == pytest.approx(term.p0, rel=1e-6) and meta.model.endswith("+volume")


def test_ase_calculator_stress_is_minus_dE_dV_with_the_volume_term(lj_sets, tmp_path):
    from ase import Atoms

    from hipcg.calculator import KCAL_PER_MOL, HipcgCalculator
    from hipcg.models.lj import export_lennard_jones

    _, sets = lj_sets
    ds = sets[0]
    with_term = export_lennard_jones(tmp_path / "v.pt", ["Ar"], [[EPSILON]], [[SIGMA]], CUTOFF,
                                     volume_term=KNOWN.to_dict())
    plain = export_lennard_jones(tmp_path / "p.pt", ["Ar"], [[EPSILON]], [[SIGMA]], CUTOFF)

    def atoms(scale=1.0, model=with_term):
        a = Atoms(["Ar"] * ds.n_beads, positions=ds.positions[5] * scale, cell=ds.boxes[5] * scale,
                  pbc=True)
        a.calc = HipcgCalculator(model)
        return a

    a, b = atoms(), atoms(model=plain)
    volume = a.get_volume()
    # the term adds its isotropic pressure (ASE stress = -pressure) and its energy
    added = -(a.get_stress()[:3] - b.get_stress()[:3]) / KCAL_PER_MOL / ATM
    assert np.allclose(added, KNOWN.pressure(ds.n_beads, volume), rtol=1e-9)
    assert (a.get_potential_energy() - b.get_potential_energy()) / KCAL_PER_MOL == pytest.approx(
        float(KNOWN.energy(ds.n_beads, volume)), rel=1e-9)
    # and the whole stress is the volume derivative of the whole energy (affine scaling)
    h = 1e-5
    e_plus, e_minus = (atoms(s).get_potential_energy() for s in ((1 + h) ** (1 / 3), (1 - h) ** (1 / 3)))
    pressure = -(e_plus - e_minus) / (2 * h * volume)
    assert pressure == pytest.approx(-np.mean(a.get_stress()[:3]), rel=1e-5)


def test_exported_volume_model_runs_on_the_native_backend(lj_sets, tmp_path):
    """The term travels as metadata only: the traced module has no volume parameters, so the
    plugin's native evaluator takes the model (it refuses unknown parameters)."""
    import torch

    from hipcg.export import export_run
    from hipcg.modelfile import load_model
    from hipcg.train import TrainConfig, train

    from lj_fluid import ORACLE_MODEL

    base, _ = lj_sets
    config = TrainConfig.from_dict({
        "state_points": [{"name": "a", "dataset": str(base / "pm0.npz"), "role": "train"}],
        "model": dict(ORACLE_MODEL), "loss": {"pressure": 0.5},
        "optimizer": {"lr": 3e-3, "batch_size": 2, "max_epochs": 1}, "seed": 1,
        "out_dir": str(tmp_path / "run")})
    train(config, progress=False, log=lambda *a: None)
    path = export_run(tmp_path / "run", tmp_path / "m.pt")
    module, meta = load_model(path)
    assert meta.volume is not None
    assert not any(name.startswith("volume") for name, _ in module.named_parameters())
    assert isinstance(module, torch.jit.ScriptModule)
