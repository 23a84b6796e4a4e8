"""hipcg train: config validation, contiguous splits, bad data, resume after a kill, LJ oracle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import lj_fluid  # noqa: E402

from hipcg.data import CGDataset, DatasetError, load_dataset, save_dataset  # noqa: E402
from hipcg.train import (BEST, CHECKPOINT, ConfigError, SplitConfig, TrainConfig,  # noqa: E402
                         split_frames, train)

TINY_MODEL = {"network": "Hipnn", "n_features": 8, "n_sensitivities": 4, "dist_soft_min": 2.5,
              "dist_soft_max": 6.0, "cutoff": 7.0, "n_interaction_layers": 1, "n_atom_layers": 1}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "lj_shared"


@pytest.fixture(scope="module")
def small_data(base, tmp_path_factory):
    """24 frames of the LJ fluid (enough for the resume tests)."""
    ds = load_dataset(lj_fluid.lj_dataset(base, frames=100))
    ds.positions, ds.forces, ds.boxes = ds.positions[:24], ds.forces[:24], ds.boxes[:24]
    ds.velocities = None
    return save_dataset(tmp_path_factory.mktemp("small") / "lj24.npz", ds)


def tiny_config(data: Path, out: Path, **over) -> dict:
    d = {"state_points": [{"name": "lj", "dataset": str(data), "role": "train"}], "model": dict(TINY_MODEL),
         "optimizer": {"lr": 2e-3, "batch_size": 4, "max_epochs": 5, "plateau_patience": 1},
         "split": {"train": 0.75, "valid": 0.25, "test": 0.0}, "seed": 3, "device": "cpu",
         "out_dir": str(out)}
    d.update(over)
    return d


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("change, message", [
    ({"optimizer": {"lr": 0}}, r"train\.optimizer\.lr: must be > 0"),
    ({"optimizer": {"lrr": 1e-3}}, r"train\.optimizer\.lrr: unknown key; allowed keys are \[.*'lr'"),
    ({"model": {"network": "Schnet"}}, r"train\.model\.network: allowed values are \['Hipnn', 'HipnnQuad', 'HipnnVec'\]"),
    ({"model": {"n_features": 12.5}}, r"train\.model\.n_features: expected an integer"),
    ({"split": {"train": 0.5, "valid": 0.1, "test": 0.1}}, r"train\.split: train \+ valid \+ test must be 1"),
    ({"state_points": [{"name": "a", "dataset": "x.npz", "role": "valid"}]},
     r"train\.state_points\[0\]\.role: allowed values are \['train', 'test'\]"),
    ({"state_points": [{"label": "a", "path": "x.npz", "role": "heldout"}]},  # old spelling
     r"train\.state_points: at least one state point needs role: train"),
    ({"state_points": [{"path": "x.npz"}]}, r"train\.state_points\[0\]\.name: required key missing"),
    ({"device": "tpu"}, r"train\.device: allowed values are auto, cpu, cuda, cuda:N"),
    ({"dtype": "float16"}, r"train\.dtype: allowed values"),
    ({"prior": {"p": 1.0}}, r"train\.prior\.p: must be in \(0, 1\)"),
    ({"model": {"dist_soft_max": 20.0}}, r"train\.model: need 0 < dist_soft_min < dist_soft_max < cutoff"),
    ({"typo": 1}, r"train\.typo: unknown key"),
])
def test_bad_config_names_the_key(change, message):
    d = {"state_points": [{"name": "a", "dataset": "x.npz", "role": "train"}]}
    d.update(change)
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(d)


def test_yaml_section_and_relative_paths(tmp_path):
    (tmp_path / "pipe.yaml").write_text(yaml.safe_dump(
        {"map": {}, "train": {"state_points": [{"name": "a", "dataset": "data/a.npz", "role": "train"}],
                              "optimizer": {"lr": 1e-4}, "out_dir": "runs/x"}}))
    config = TrainConfig.from_yaml(tmp_path / "pipe.yaml")
    assert config.state_points[0].dataset == tmp_path / "data/a.npz"
    assert config.out_dir == str(tmp_path / "runs/x") and config.optimizer.lr == 1e-4
    assert config.model.network == "HipnnQuad" and config.model.n_features == 128  # published defaults


def test_split_is_contiguous_blocks():
    parts = split_frames(100, SplitConfig(train=0.8, valid=0.1, test=0.1))
    assert parts == {"train": list(range(80)), "valid": list(range(80, 90)), "test": list(range(90, 100))}
    parts = split_frames(100, SplitConfig(train=0.6, valid=0.2, test=0.2, blocks=2, gap=2))
    assert parts["train"] == list(range(30)) + list(range(50, 80))
    assert parts["valid"] == list(range(32, 40)) + list(range(82, 90))
    assert parts["test"] == list(range(42, 50)) + list(range(92, 100))


# --------------------------------------------------------------------------- bad data


def test_bad_data_gives_clear_errors(small_data, tmp_path):
    with pytest.raises(DatasetError, match=r"state_points\[0\] \(lj\).*no such dataset file"):
        train(TrainConfig.from_dict(tiny_config(tmp_path / "missing.npz", tmp_path / "o1")), progress=False)
    with np.load(small_data) as z:  # past hipcg's own writer, which refuses NaN
        arrays = {k: z[k] for k in z.files}
    arrays["forces"][3, 5, 1] = np.nan
    bad = tmp_path / "nan.npz"
    np.savez(bad, **arrays)
    with pytest.raises(DatasetError, match="NaN"):
        train(TrainConfig.from_dict(tiny_config(bad, tmp_path / "o2")), progress=False)
    ds = load_dataset(small_data)
    ds.type_names = ["Xe"]
    other = save_dataset(tmp_path / "xe.npz", ds)
    cfg = tiny_config(small_data, tmp_path / "o3")
    cfg["state_points"].append({"name": "xe", "dataset": str(other), "role": "test"})
    with pytest.raises(DatasetError, match=r"bead types \['Xe'\] differ"):
        train(TrainConfig.from_dict(cfg), progress=False)
    (tmp_path / "o4").mkdir()
    (tmp_path / "o4" / "something").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        train(TrainConfig.from_dict(tiny_config(small_data, tmp_path / "o4")), progress=False)


# --------------------------------------------------------------------------- resume


def _best_state(out: Path) -> dict:
    return torch.load(out / BEST, weights_only=False)["state_dict"]


def _assert_same_state(a: dict, b: dict, rtol: float = 0.0):
    """Equal weights: bit for bit (rtol 0), or to ``rtol`` of each tensor's largest entry."""
    assert a.keys() == b.keys()
    for k in a:
        if not torch.is_tensor(a[k]):
            assert a[k] == b[k], k
        elif rtol == 0.0:
            assert torch.equal(a[k], b[k]), k
        else:
            scale = max(float(b[k].abs().max()), 1e-12)
            assert float((a[k] - b[k]).abs().max()) <= rtol * scale, k


@pytest.fixture(scope="module")
def uninterrupted(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    result = train(TrainConfig.from_dict(tiny_config(small_data, out)), progress=False, log=lambda *a: None)
    assert result.finished and result.epochs == 5
    return out


def test_resume_after_interruption_equals_uninterrupted(small_data, uninterrupted, tmp_path):
    config = TrainConfig.from_dict(tiny_config(small_data, tmp_path / "run"))
    partial = train(config, progress=False, stop_after_epochs=2, log=lambda *a: None)
    assert not partial.finished and (tmp_path / "run" / CHECKPOINT).exists()
    with pytest.raises(FileExistsError):
        train(config, progress=False)
    done = train(config, resume=True, progress=False, log=lambda *a: None)
    assert done.finished and done.epochs == 5
    _assert_same_state(_best_state(tmp_path / "run"), _best_state(uninterrupted))
    changed = TrainConfig.from_dict(tiny_config(small_data, tmp_path / "run", seed=4))
    with pytest.raises(ConfigError, match=r"differs from the checkpoint's in \['seed'\]"):
        train(changed, resume=True, progress=False)


def test_cli_resume_after_sigkill(small_data, uninterrupted, tmp_path):
    """A real kill (SIGKILL mid-training) of `hipcg train`, then `hipcg train --resume`."""
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(small_data, tmp_path / "run")))
    hipcg = [sys.executable, "-c", "from hipcg.cli import main; raise SystemExit(main())"]
    proc = subprocess.Popen(hipcg + ["train", str(cfg), "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    ckpt = tmp_path / "run" / CHECKPOINT
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "training finished before it could be killed"
    assert not (tmp_path / "run" / BEST).exists()
    out = subprocess.run(hipcg + ["train", str(cfg), "--resume", "-q"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stdout and "R^2" in out.stdout
    # separate processes: float32 reductions may round differently (multi-threaded CPU
    # kernels), so equal to float32 precision rather than bit for bit; the in-process test
    # above checks bit-identical resumption
    _assert_same_state(_best_state(tmp_path / "run"), _best_state(uninterrupted), rtol=1e-4)
    bad = subprocess.run(hipcg + ["train", str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert bad.returncode == 2 and "cannot read YAML" in bad.stderr


# --------------------------------------------------------------------------- oracle


def test_lj_oracle_reaches_r2_on_held_out_frames(base):
    """One atom = one bead LJ fluid: a pairwise target the model can learn exactly."""
    import json

    out = lj_fluid.trained_run(base)
    report = json.loads((out / "report.json").read_text())
    metrics = report["metrics"]
    assert metrics["lj120"]["test"]["r2"] >= 0.99
    assert metrics["lj120-b"]["heldout"]["r2"] >= 0.99  # an independent trajectory
    assert metrics["lj120"]["train"]["frames"] == 80 and metrics["lj120"]["test"]["frames"] == 10
    (pair,) = report["prior"]["pairs"]
    assert 2.5 < pair["t"] < 3.4  # LJ argon: g(r) rises just below sigma = 3.405 Å
    assert 1.0 < pair["s"] < 3.0


@pytest.mark.parametrize("tilt, cutoff", [((0.0, 0.0, 0.0), 7.0), ((3.0, -2.0, 1.5), 9.5), ((0.0, 0.0, 0.0), 12.0)])
def test_training_graphs_equal_ase_graph(tilt, cutoff):
    """The training graph cache gives exactly ASE's all-image pairs (any order)."""
    from ase.neighborlist import primitive_neighbor_list

    from hipcg.graph_cache import GraphCache
    from hipcg.train import FrameRef

    rng = np.random.default_rng(1)
    cell = np.diag([11.0, 12.0, 13.0])
    cell[1, 0], cell[2, 0], cell[2, 1] = tilt
    pos = rng.uniform(-0.2, 1.2, (40, 3)) @ cell  # some outside the box
    species = rng.integers(0, 2, 40)
    ds = CGDataset(positions=pos[None], forces=np.zeros((1, 40, 3)), boxes=cell[None], bead_types=species,
                   type_names=["A", "B"], masses=np.ones(40))
    _, first, second, vec, _ = GraphCache([ds], cutoff, torch.float64).get(FrameRef(0, 0))
    i, j, d = primitive_neighbor_list("ijD", (True,) * 3, cell, pos, cutoff, self_interaction=False)
    inside = np.einsum("ij,ij->i", d, d) < cutoff * cutoff
    a = (i[inside], j[inside], d[inside])
    b = (first.numpy(), second.numpy(), vec.numpy())
    key = lambda g: np.lexsort(np.round(np.c_[g[0], g[1], g[2]], 8).T[::-1])  # noqa: E731
    ka, kb = key(a), key(b)
    assert len(a[0]) == len(b[0]) > 40
    np.testing.assert_array_equal(a[0][ka], b[0][kb])
    np.testing.assert_array_equal(a[1][ka], b[1][kb])
    np.testing.assert_allclose(a[2][ka], b[2][kb], rtol=0, atol=1e-10)


def test_balanced_epochs_take_equal_frames_per_state_point():
    """Two training state points of 30 and 6 frames: an epoch uses 6 of each, redrawn every
    epoch, the same for the same (seed, epoch); one state point: every frame, as before."""
    from hipcg.train import FrameRef
    from hipcg.train.loop import epoch_batches

    refs = [FrameRef(0, f) for f in range(30)] + [FrameRef(1, f) for f in range(6)]
    batches = epoch_batches(refs, 4, seed=1, epoch=3, balance=True)
    used = [r for b in batches for r in b]
    assert sorted(r.state for r in used) == [0] * 6 + [1] * 6
    assert len({(r.state, r.frame) for r in used}) == 12
    again = [r for b in epoch_batches(refs, 4, seed=1, epoch=3, balance=True) for r in b]
    assert again == used
    other = {(r.state, r.frame) for b in epoch_batches(refs, 4, seed=1, epoch=4, balance=True) for r in b}
    assert other != {(r.state, r.frame) for r in used}
    assert len([r for b in epoch_batches(refs, 4, 1, 3, balance=False) for r in b]) == 36
    single = [FrameRef(0, f) for f in range(10)]
    assert sorted(r.frame for b in epoch_batches(single, 3, 1, 1, balance=True) for r in b) == list(range(10))
