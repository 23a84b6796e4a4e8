"""The learned-dynamics study end to end (``kind: dynamics``), and rollouts resumed after a kill.

A tiny pipeline: the real chain runs (short), METIS beads, one short training epoch, a few
rollout steps; the numbers are not a result, the plumbing is: files, units, dumps, caching.
"""

import json

import numpy as np
import pytest

from hipcg.dynamics import metrics
from hipcg.lammps.dump import read_dump
from hipcg.pipeline import PipelineConfigError, run_pipeline
from hipcg.stages import load_pipeline

TINY = """\
kind: dynamics
description: tiny end-to-end test
out: {out}
system: polymer
data: {{equilibrate_steps: 1000, production_steps: 20000, frame_every: 100, parallel: 2}}
partition: {{monomers_per_bead: 4}}
train: {{epochs: 1, windows_per_sequence: 16, batch: 16, validation_windows: 8, step_frames: 2,
        model: {{history: 2, hidden: 16, n_rbf: 8}}}}
rollout: {{steps: 12, starts: 2, checkpoint_every: 4}}
baseline: {{force_every: 4, train_frames: 40, run_tau: 40.0, dump_every_tau: 4.0, starts: 2,
           model: {{network: HipnnQuad, n_features: 4, n_sensitivities: 4, dist_soft_min: 3.0,
                    dist_soft_max: 20.0, cutoff: 25.0, n_interaction_layers: 1, n_atom_layers: 1}},
           optimizer: {{batch_size: 32, max_epochs: 1}}}}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("dyn")
    path = root / "tiny.yaml"
    path.write_text(TINY.format(out=root / "out"))
    pipeline = load_pipeline(path)
    outcome = run_pipeline(pipeline, log=lambda s: None)
    return pipeline, outcome


def test_tiny_pipeline_runs_every_stage_and_writes_the_report(study):
    pipeline, outcome = study
    assert list(outcome) == ["data", "partition", "train", "rollout", "baseline", "evaluate", "report"]
    assert set(outcome.values()) == {"ran"}
    assert (pipeline.root / "01-data").is_dir() and (pipeline.root / "07-report").is_dir()
    report = json.loads((pipeline.root / "07-report" / "report.json").read_text())
    held_out = ["rand-f15", "rand-f50", "rand-f85", "alt-AAAB", "alt-ABBB", "diblock-A15B25",
                "multiblock-A4B4", "triblock-B6A28B6"]
    assert [r["name"] for r in report["sequences"]] == held_out
    for r in report["sequences"]:
        for key in ("rg_rollout", "rg_reference", "tau_rollout", "tau_reference"):
            assert key in r
        assert 5.0 < r["rg_reference"] < 40.0   # Å: 40-mers of sigma = 5 Å
    assert np.isfinite(report["rg_r2"]) and "tau_r2" in report
    for png in ("rg_scatter.png", "acf.png", "distances.png"):
        assert (pipeline.root / "07-report" / png).stat().st_size > 5000
    # the baseline is scored the same way, beside the rollouts
    base = report["baseline"]
    assert [r["name"] for r in base["sequences"]] == held_out
    assert np.isfinite(base["rg_r2"]) and base["n_sequences"] == 8
    for r, b in zip(report["sequences"], base["sequences"]):
        assert b["rg_reference"] == r["rg_reference"] and np.isfinite(b["rg_rollout"])
        assert len(b["collisions"]) == len(b["blowups"]) == 2   # checked, per baseline run
    assert "baseline: force-matched HIP-NN-TS" in (pipeline.root / "07-report" / "report.md").read_text()


def test_bead_dumps_hold_the_reference_and_the_rollouts(study):
    pipeline, _ = study
    from hipcg.dynamics.beads import load_bead_trajectory
    from hipcg.dynamics.rollout import load_rollout

    part = pipeline.record("partition")["outputs"]
    roll = pipeline.record("rollout")["outputs"]
    name = "rand-f50"
    traj = load_bead_trajectory(part["beads"][name])
    ref = read_dump(part["reference_dumps"][name])
    assert len(ref) == traj.n_frames
    assert {"id", "mol", "type", "xu", "yu", "zu"} <= set(ref[0])
    x = np.c_[ref[-1]["xu"], ref[-1]["yu"], ref[-1]["zu"]]
    assert np.allclose(x, traj.positions[-1], atol=1e-6)
    res = load_rollout(roll["rollouts"][name])
    frames = read_dump(roll["dumps"][name])
    starts, n = res.positions.shape[0], traj.n_beads
    assert sorted(set(frames[0]["mol"].tolist())) == list(range(1, starts + 1))
    first = np.c_[frames[0]["xu"], frames[0]["yu"], frames[0]["zu"]].reshape(starts, n, 3)
    assert np.allclose(first, res.positions[:, 0], atol=1e-6)
    # the starting configurations are reference frames
    rg0 = metrics.radius_of_gyration(res.positions[:, 0], traj.bead_masses)
    assert np.all((rg0 > 0.5 * traj.positions.std()) | (rg0 > 1.0))
    assert frames[1]["timestep"] - frames[0]["timestep"] == round(res.learned_step_fs)


def test_frames_made_elsewhere_get_the_rollout_checks():
    """check_frames (the baseline's runs): a collision counted per frame, the first over-long
    bond recorded as the blow-up, the positions untouched."""
    from hipcg.dynamics.rollout import RolloutResult, check_frames

    x = np.zeros((2, 4, 3, 3))
    x[:, :, :, 0] = [0.0, 4.0, 8.0]            # a straight 3-bead chain, bonds 4 Å
    x[0, 2, 2, 0] = 4.5                         # frame 2 of run 0: beads 1 and 2 0.5 Å apart
    x[1, 3, 2, 0] = 30.0                        # frame 3 of run 1: bond 1-2 stretched to 26 Å
    res = RolloutResult("s", x, np.arange(4.0), np.zeros(2, int), [None, None], 1.0, 1.0)
    out = check_frames(res, np.array([[0, 1], [1, 2]]), collide_at=1.0, blowup_at=10.0)
    assert out.collisions.tolist() == [1, 0]
    assert out.blowups[0] is None
    assert out.blowups[1] == {"step": 3, "pair": [1, 2], "distance": 26.0}
    assert np.array_equal(out.positions, x)


def test_a_second_run_skips_every_stage(study):
    pipeline, _ = study
    again = run_pipeline(load_pipeline(pipeline.path), log=lambda s: None)
    assert set(again.values()) == {"skipped"}


def test_a_killed_rollout_resumes_to_the_unbroken_result(study, tmp_path):
    pipeline, _ = study
    from hipcg.dynamics.beads import load_bead_trajectory
    from hipcg.dynamics.rollout import RolloutConfig, rollout_batch
    from hipcg.dynamics.train import load_dynamics_model

    model = load_dynamics_model(pipeline.record("train")["outputs"]["model"])
    beads = pipeline.record("partition")["outputs"]["beads"]
    trajs = [load_bead_trajectory(beads[n]) for n in ("rand-f15", "alt-AAAB")]
    cfg = RolloutConfig(steps=10, starts=2, checkpoint_every=3, seed=5)
    whole = rollout_batch(model, trajs, cfg, tmp_path / "whole", progress=False)
    assert rollout_batch(model, trajs, cfg, tmp_path / "killed", progress=False, stop_after=7) is None
    resumed = rollout_batch(model, trajs, cfg, tmp_path / "killed", progress=False)
    for a, b in zip(whole, resumed):
        assert np.array_equal(a.positions, b.positions, equal_nan=True)
        assert np.array_equal(a.collisions, b.collisions)
    assert not np.allclose(whole[0].positions[:, -1], whole[0].positions[:, 0])  # it moved


@pytest.mark.parametrize("edit, message", [
    ({"kind": "dynamic"}, "kind: 'dynamic'"),
    ({"data": {"system": "polymer"}}, "data.system"),
    ({"system": "no-such-chains"}, "system:"),
    ({"rollout": {"starts": 0}}, "rollout.starts"),
    ({"evaluate": {"x": 1}}, "evaluate: takes no settings"),
    ({"baseline": {"monomers_per_bead": 3}}, "baseline.monomers_per_bead: 3 differs"),
    ({"baseline": {"timestep": 0.05}}, "baseline.timestep"),
])
def test_bad_dynamics_pipelines_name_file_and_key(tmp_path, edit, message):
    import yaml

    data = yaml.safe_load(TINY.format(out=tmp_path / "out")) | edit
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PipelineConfigError, match=f"{path}.*{message}" if "'" not in message else message):
        load_pipeline(path)
