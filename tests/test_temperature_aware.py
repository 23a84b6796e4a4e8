"""Temperature-aware HIP-NN (W = E - T S): the energy-entropy oracle, one and two training
temperatures, the model file and its consumers (ASE calculator, simulate's pair style)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import thermal_oracle as oracle
from hipcg.data import load_dataset
from hipcg.data import DatasetError
from hipcg.errors import ConfigError, ModelFileError

MODEL = {"network": "Hipnn", "n_features": 16, "n_sensitivities": 10, "dist_soft_min": 2.8,
         "dist_soft_max": 7.5, "cutoff": oracle.CUTOFF, "n_interaction_layers": 1, "n_atom_layers": 2}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "thermal"


def _config(base, trained, aware: bool, name: str, epochs: int = 10):
    from hipcg.train import TrainConfig

    points = [{"name": f"T{t:g}", "dataset": str(oracle.dataset(base, t)),
               "role": "train" if t in trained else "test"} for t in oracle.TEMPERATURES]
    return TrainConfig.from_dict({
        "state_points": points, "model": {**MODEL, "temperature_aware": aware},
        "loss": {"energy": 1.0 if aware else 0.0, "energy_scale": 0.05},
        "optimizer": {"lr": 3e-3, "batch_size": 4, "max_epochs": epochs, "plateau_patience": 3},
        "prior": {"enabled": False}, "dtype": "float64", "seed": 0, "out_dir": str(base / name)})


def _trained(base, trained, aware: bool):
    from hipcg.train import REPORT, load_trained, train

    name = f"run_{'_'.join(f'{t:g}' for t in trained)}_{'aware' if aware else 'plain'}"
    config = _config(base, trained, aware, name)
    if not (base / name / REPORT).exists():
        train(config, overwrite=True, progress=False, log=lambda *a: None)
    return load_trained(base / name)


def _frame_terms(model, ds, temperature):
    """Per frame: (sum e_i, sum s'_i) and the forces at ``temperature``."""
    from hipcg.graph import evaluate, periodic_graph
    from hipcg.models.hipnn import set_temperature

    set_temperature(model, temperature)
    e, s, f = [], [], []
    for k in range(ds.n_frames):
        g = periodic_graph(ds.positions[k], ds.boxes[k], ds.bead_types, oracle.CUTOFF)
        args = [torch.as_tensor(a) for a in (g.species, g.pair_first, g.pair_second, g.pair_vec)]
        with torch.no_grad():
            ek, sk = model.energy_entropy(*args)
        e.append(float(ek.sum()))
        s.append(float(sk.sum()))
        f.append(evaluate(model, g).forces)
    return np.array(e), np.array(s), np.stack(f)


def _r2(pred, ref):
    p, r = pred - pred.mean(), ref - ref.mean()  # both up to a constant
    return 1.0 - np.mean((p - r) ** 2) / np.mean(r * r)


def test_two_temperatures_recover_energy_and_entropy_and_predict_a_third(base):
    """Trained at 100 K and 160 K: E(R) and S(R) come out as the potential's, and the forces
    at 220 K (never seen) follow -grad E + T grad S; the plain model cannot follow them."""
    aware, _ = _trained(base, (100.0, 160.0), True)
    plain, _ = _trained(base, (100.0, 160.0), False)
    held = load_dataset(oracle.dataset(base, 220.0))
    e, s, f = _frame_terms(aware, held, 220.0)
    t_ref = float(aware.network.reference_temperature)
    assert t_ref == pytest.approx(130.0)
    true_e = oracle.frame_sums(held.positions, held.boxes, oracle.energy)
    true_s = oracle.frame_sums(held.positions, held.boxes, oracle.entropy)
    r2_e, r2_s = _r2(e, true_e), _r2(s / t_ref, true_s)
    mae_aware = np.mean(np.abs(f - held.forces))
    from hipcg.graph import evaluate, periodic_graph

    f_plain = np.stack([evaluate(plain, periodic_graph(held.positions[k], held.boxes[k], held.bead_types,
                                                       oracle.CUTOFF)).forces for k in range(held.n_frames)])
    mae_plain = np.mean(np.abs(f_plain - held.forces))
    print(f"R^2 E {r2_e:.4f}, S {r2_s:.4f}; 220 K force MAE aware {mae_aware:.3f}, plain {mae_plain:.3f}")
    assert r2_e > 0.98 and r2_s > 0.9
    assert mae_aware < 0.12 and mae_aware < 0.35 * mae_plain


def test_one_temperature_and_energies_extrapolate(base):
    """The dual-potential case: one training temperature, its forces and energies; at 160 K the
    temperature-aware model's forces are much closer than the plain model's."""
    from hipcg.graph import evaluate, periodic_graph

    aware, _ = _trained(base, (100.0,), True)
    plain, _ = _trained(base, (100.0,), False)
    held = load_dataset(oracle.dataset(base, 160.0))
    _, _, f = _frame_terms(aware, held, 160.0)
    f_plain = np.stack([evaluate(plain, periodic_graph(held.positions[k], held.boxes[k], held.bead_types,
                                                       oracle.CUTOFF)).forces for k in range(held.n_frames)])
    mae_aware, mae_plain = np.mean(np.abs(f - held.forces)), np.mean(np.abs(f_plain - held.forces))
    print(f"160 K force MAE aware {mae_aware:.3f}, plain {mae_plain:.3f}")
    assert mae_aware < 0.5 * mae_plain


def test_energy_matching_needs_a_temperature_aware_model_and_energies(base, tmp_path):
    with pytest.raises(ConfigError, match="loss.energy.*temperature_aware"):
        cfg = _config(base, (100.0,), True, "x").to_dict()
        cfg["model"]["temperature_aware"] = False
        from hipcg.train import TrainConfig

        TrainConfig.from_dict(cfg)
    from hipcg.data import save_dataset
    from hipcg.train import train

    ds = load_dataset(oracle.dataset(base, 100.0))
    ds.thermo = None
    bare = save_dataset(tmp_path / "bare.npz", ds)
    cfg = _config(base, (100.0,), True, "bare").to_dict()
    cfg["state_points"] = [{"name": "bare", "dataset": str(bare), "role": "train"}]
    cfg["out_dir"] = str(tmp_path / "out")
    from hipcg.train import TrainConfig

    with pytest.raises(DatasetError, match="bare.npz has no per-frame energies.*loss.energy"):
        train(TrainConfig.from_dict(cfg), progress=False, log=lambda *a: None)


def test_model_file_carries_the_temperature(base, tmp_path):
    """Export: metadata says temperature-aware with T_ref; the TorchScript file at T equals the
    eager model at T; the ASE calculator needs T, and refuses one for a plain model."""
    from ase import Atoms

    from hipcg.calculator import KCAL_PER_MOL, HipcgCalculator
    from hipcg.export import export_run
    from hipcg.graph import evaluate, periodic_graph
    from hipcg.modelfile import load_model
    from hipcg.models.hipnn import set_temperature
    from hipcg.simulate import SimulationConfig, _model_info, pair_lines

    run = base / "run_100_160_aware"
    _trained(base, (100.0, 160.0), True)
    path = export_run(run, tmp_path / "aware.pt", dtype="float64")
    module, meta = load_model(path)
    assert meta.temperature_aware and meta.reference_temperature == pytest.approx(130.0)
    assert meta.model.endswith("+temperature")
    model, _ = _trained(base, (100.0, 160.0), True)
    held = load_dataset(oracle.dataset(base, 220.0))
    g = periodic_graph(held.positions[0], held.boxes[0], held.bead_types, oracle.CUTOFF)
    energies = {}
    for t in (100.0, 220.0):
        set_temperature(module, t)
        set_temperature(model, t)
        a, b = evaluate(module, g), evaluate(model, g)
        assert a.energy == pytest.approx(b.energy, rel=1e-12)
        np.testing.assert_allclose(a.forces, b.forces, rtol=0, atol=1e-10 * np.abs(b.forces).max())
        energies[t] = a.energy
    assert abs(energies[220.0] - energies[100.0]) > 1.0  # T matters

    atoms = Atoms(["Ar"] * held.n_beads, positions=held.positions[0], cell=held.boxes[0], pbc=True)
    with pytest.raises(ModelFileError, match="temperature-aware.*give the temperature"):
        HipcgCalculator(path)
    atoms.calc = HipcgCalculator(path, temperature=220.0)
    assert atoms.get_potential_energy() / KCAL_PER_MOL == pytest.approx(energies[220.0], rel=1e-12)

    info = _model_info(path)
    lines = pair_lines(SimulationConfig(model=str(path), temperature=220.0), info, ["Ar"], tmp_path)
    assert any(line.startswith("pair_style hipcg") and line.endswith("temperature 220") for line in lines)

    plain = export_run(base / "run_100_plain", tmp_path / "plain.pt", dtype="float64") \
        if (base / "run_100_plain").exists() else None
    if plain is None:
        _trained(base, (100.0,), False)
        plain = export_run(base / "run_100_plain", tmp_path / "plain.pt", dtype="float64")
    with pytest.raises(ModelFileError, match="not temperature-aware"):
        HipcgCalculator(plain, temperature=300.0)
    assert "temperature" not in " ".join(pair_lines(SimulationConfig(model=str(plain)),
                                                     _model_info(plain), ["Ar"], tmp_path))


@pytest.mark.parametrize("grad", [0.0, 0.3, 1.0])
def test_energy_feature_grad_scales_what_energy_matching_does_to_the_features(grad):
    """loss.energy_feature_grad: the energy-matching gradient reaching the network's features is
    scaled by it (0: only the energy head learns from the energies); the heads' is not."""
    from hipcg.models.cg import build_cg_model
    from hipcg.models.hipnn import HipnnConfig, example_inputs

    torch.manual_seed(0)
    config = HipnnConfig(**{**MODEL, "temperature_aware": True})
    model = build_cg_model(config, 1, None, None, reference_temperature=300.0).double()
    inputs = example_inputs(1, oracle.CUTOFF, torch.float64, n_beads=10)

    def grads(g):
        model.zero_grad()
        _, _, e = model.energy_entropy(*inputs, matching_feature_grad=g)
        e.sum().backward()
        def flat(keep):  # a parameter the loss does not reach has no gradient: zero
            return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                              for n, p in model.named_parameters() if keep(n)])

        trunk = flat(lambda n: n.startswith("network.network."))
        head = flat(lambda n: ".head." in n)
        return trunk, head

    full_trunk, full_head = grads(1.0)
    trunk, head = grads(grad)
    assert torch.allclose(trunk, grad * full_trunk, rtol=1e-10, atol=1e-14)
    assert torch.allclose(head, full_head, rtol=1e-12)
    assert float(full_trunk.abs().max()) > 0
