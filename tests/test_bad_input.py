"""A bad-input sweep across the commands: every case ends in one clear error line.

Each case runs the real ``hipcg`` entry point in-process (``hipcg.cli.main``): an exception
escaping it is a traceback a user would see, and fails the test.  Each message must name the
file, key, frame or atom at fault, and the exit code must be the documented one (2 = bad input,
3 = failed run; hipcg.errors).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from hipcg.cli import main
from hipcg.data import CGDataset, load_dataset, save_dataset
from hipcg.errors import RUN_FAILED, USER_ERROR

REPO = Path(__file__).resolve().parent.parent

PIPELINE = {
    "system": "methanol",
    "state_points": [{"name": "T280", "temperature": 280.0, "role": "train"}],
    "reference": {"molecules": 20, "equilibrate_ps": 1.0, "production_ps": 1.0},
    "map": {"mapping": str(REPO / "datasets" / "mappings" / "methanol.yaml")},
}


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def pipeline_file(tmp_path: Path, change: dict | None = None, text: str | None = None) -> Path:
    config = copy.deepcopy(PIPELINE)
    config["out"] = str(tmp_path / "out")
    for dotted, value in (change or {}).items():
        node = config
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        node[last] = value
    path = tmp_path / "study.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("change, message", [
    ({"baseline": {"dr": 0}}, "baseline.dr: must be > 0"),
    ({"reference.molecules": 0}, "reference.molecules: must be >= 1"),
    ({"reference.production_ps": -5.0}, "reference.production_ps: must be > 0"),
    ({"reference.kspace_accuracy": -1e-4}, "reference.kspace_accuracy: must be in (0, 1)"),
    ({"state_points": [{"name": "T280", "temperature": -10.0, "role": "train"}]},
     "state_points[0].temperature: must be > 0"),
    ({"state_points": [{"name": "../escape", "temperature": 280.0, "role": "train"}]},
     "state_points[0].name: '../escape' is used as a file name"),
    ({"state_points": [{"name": "T 280", "temperature": 280.0, "role": "train"}]},
     "state_points[0].name: 'T 280' is used as a file name"),
    ({"simulate": {"equilibration": 1.5}}, "simulate.equilibration: must be in [0, 1)"),
    ({"simulate": {"thermostat": "berendsen"}}, "simulate.thermostat: allowed values"),
    ({"map.stride": 0}, "map.stride: must be >= 1"),
    ({"evaluate": {"max_static_frames": 0}}, "evaluate.max_static_frames: must be >= 1"),
    ({"typo": 1}, "typo: unknown key"),
])
def test_bad_pipeline_value_is_refused_before_any_stage(tmp_path, capsys, change, message):
    path = pipeline_file(tmp_path, change)
    for action in ("status", "run"):
        code, err = run(capsys, "pipeline", action, path)
        assert code == USER_ERROR, err
        assert err.startswith(f"hipcg pipeline {action}: error: {path}:") and message in err, err
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


def test_duplicate_yaml_key_is_refused(tmp_path, capsys):
    text = yaml.safe_dump({**PIPELINE, "out": str(tmp_path / "out")})
    text += "map:\n  mapping: elsewhere.yaml\n"  # a second map: section
    code, err = run(capsys, "pipeline", "status", pipeline_file(tmp_path, text=text))
    assert code == USER_ERROR and "key 'map' given twice" in err and "line" in err, err


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "expected a mapping of sections"),
    ("out: [unclosed\n", "not valid YAML"),
])
def test_malformed_pipeline_file(tmp_path, capsys, text, message):
    code, err = run(capsys, "pipeline", "status", pipeline_file(tmp_path, text=text))
    assert code == USER_ERROR and message in err, err


def test_second_study_does_not_replace_the_first(tmp_path, capsys):
    first = pipeline_file(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "pipeline.json").write_text(json.dumps({"pipeline": str(tmp_path / "other.yaml")}))
    code, err = run(capsys, "pipeline", "run", first)
    assert code == USER_ERROR and "holds the outputs of another study" in err, err
    assert "--overwrite" in err and not (out / "01-reference").exists()


# ------------------------------------------------------------------------------ datasets


def small_dataset(n_frames: int = 3, n_beads: int = 8) -> CGDataset:
    rng = np.random.default_rng(0)
    return CGDataset(positions=rng.uniform(0, 10, (n_frames, n_beads, 3)),
                     forces=rng.normal(size=(n_frames, n_beads, 3)),
                     boxes=np.tile(np.eye(3) * 10.0, (n_frames, 1, 1)),
                     bead_types=np.zeros(n_beads, dtype=int), type_names=["A"],
                     masses=np.full(n_beads, 32.0))


def test_nan_in_a_dataset_is_refused_with_frame_and_bead(tmp_path, capsys):
    ds = small_dataset()
    ds.forces[2, 5, 1] = np.nan
    with pytest.raises(ValueError, match=r"frame 2, bead 5: forces is not finite"):
        save_dataset(tmp_path / "nan.npz", ds)
    # a file written by something else (np.savez directly) is refused on reading
    good = save_dataset(tmp_path / "good.npz", small_dataset())
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["forces"][1, 3, 0] = np.inf
    np.savez(tmp_path / "inf.npz", **arrays)
    code, err = run(capsys, "baseline", "--data", tmp_path / "inf.npz", "--out",
                    tmp_path / "b.json", "--cutoff", "4")
    assert code == USER_ERROR and "inf.npz: frame 1, bead 3: forces is not finite" in err, err
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("content", [b"", b"this is not a dataset\n", b"\x80\x04\x95 pickle?"])
def test_a_file_that_is_not_a_dataset(tmp_path, capsys, content):
    bad = tmp_path / "random.npz"
    bad.write_bytes(content)
    code, err = run(capsys, "baseline", "--data", bad, "--out", tmp_path / "b.json", "--cutoff", "4")
    assert code == USER_ERROR and f"{bad}: cannot read dataset: not a hipcg dataset" in err, err
    assert "pickle" not in err


def test_killed_writer_leaves_no_temporary_files_behind(tmp_path):
    """A SIGKILLed `hipcg map` cannot clean up; the next writer of the same target does."""
    target = tmp_path / "ds.npz"
    dead = tmp_path / ".ds.npz.tmp999999999"  # a PID that cannot be alive
    dead.mkdir()
    (dead / "positions.raw").write_bytes(b"\0" * 64)
    save_dataset(target, small_dataset())
    assert not dead.exists() and load_dataset(target).n_frames == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds.npz"]


# ------------------------------------------------------------------------------ trajectories


def dump_text(steps, n_atoms: int = 6) -> str:
    rows = []
    for step in steps:
        rows += ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", str(n_atoms),
                 "ITEM: BOX BOUNDS pp pp pp", "0 12", "0 12", "0 12",
                 "ITEM: ATOMS id type x y z fx fy fz"]
        rows += [f"{i + 1} 1 {i * 1.5 + 1} {i + 1.0} {2.0 * i % 12} 0.1 -0.2 0.3" for i in range(n_atoms)]
    return "\n".join(rows) + "\n"


def write_topology(path: Path, n_atoms: int = 6) -> Path:
    """A LAMMPS data file (atom_style full, one molecule per atom) for the dumps above."""
    atoms = [f"{i + 1} {i + 1} 1 0.0 {i * 1.5 + 1} {i + 1.0} {2.0 * i % 12}" for i in range(n_atoms)]
    path.write_text("hipcg test\n\n" f"{n_atoms} atoms\n1 atom types\n\n"
                    "0 12 xlo xhi\n0 12 ylo yhi\n0 12 zlo zhi\n\nMasses\n\n1 16.0\n\n"
                    "Atoms # full\n\n" + "\n".join(atoms) + "\n")
    return path


def test_repeated_timesteps_are_refused(tmp_path, capsys):
    top = write_topology(tmp_path / "sys.data")
    dump = tmp_path / "twice.dump"
    dump.write_text(dump_text([0, 10, 20]) * 2)  # the same run appended twice
    from hipcg.trajectory import TrajectoryError, open_trajectory

    traj = open_trajectory(top, dump, format="lammps")
    with pytest.raises(TrajectoryError, match=r"twice.dump: frame 3: timestep 0 does not increase "
                                              r"\(frame 2 had 20\)"):
        list(traj.frames())


def test_dump_cut_mid_frame_says_how_many_frames_were_dropped(tmp_path):
    from hipcg.trajectory import TrajectoryWarning, open_trajectory

    top = write_topology(tmp_path / "sys.data")
    dump = tmp_path / "cut.dump"
    text = dump_text([0, 10, 20])
    dump.write_text(text[: len(text) - 40])  # killed while writing the last frame
    with pytest.warns(TrajectoryWarning, match=r"cut.dump: 1 frame\(s\) at the end are incomplete"):
        traj = open_trajectory(top, dump, format="lammps")
    assert len(traj) == 2


def test_empty_dump_is_named_as_empty(tmp_path, capsys):
    from hipcg.trajectory import TrajectoryError, open_trajectory

    top = write_topology(tmp_path / "sys.data")
    (tmp_path / "empty.dump").write_text("")
    with pytest.raises(TrajectoryError, match=r"empty.dump: empty file"):
        open_trajectory(top, tmp_path / "empty.dump", format="lammps")


# ------------------------------------------------------------------------------ commands


@pytest.mark.parametrize("argv, message", [
    (["reference", "--system", "methanol", "-T", "-10", "--out", "{tmp}/r"],
     "reference.temperatures[0]: must be > 0 (got -10.0)"),
    (["reference", "--system", "methanol", "-T", "300", "--kspace-accuracy", "-1", "--out", "{tmp}/r"],
     "reference.kspace_accuracy: must be in (0, 1)"),
    (["reference", "--system", "no-such-system", "-T", "300", "--out", "{tmp}/r"], "no-such-system"),
    (["export", "{tmp}/no-run", "-o", "{tmp}/m.pt"], "no-run"),
    (["simulate", "--model", "{tmp}/missing.pt", "--data", "{tmp}/missing.npz", "--out", "{tmp}/s"],
     "missing"),
    (["pipeline", "status", "{tmp}/nope.yaml"], "nope.yaml: no such pipeline file"),
    (["baseline", "--data", "{tmp}/x.npz", "--out", "{tmp}/b.json", "--cutoff", "5", "--dr", "0"],
     "baseline --dr: must be > 0 (got 0.0)"),
    (["baseline", "--data", "{tmp}/x.npz", "--out", "{tmp}/b.json", "--cutoff", "-5"],
     "baseline --cutoff: must be > 0"),
    (["map", "--mapping", "m.yaml", "--trajectory", "t.dump", "--out", "{tmp}/o.npz", "--stride", "0"],
     "map --stride: must be >= 1 (got 0)"),
    (["simulate", "--model", "m.pt", "--beads", "10", "--density", "0.5", "--types", "A",
      "--masses", "1", "--out", "{tmp}/s", "--timestep", "-2"], "simulate.timestep: must be > 0"),
    (["simulate", "--model", "m.pt", "--beads", "-5", "--density", "0.5", "--types", "A",
      "--masses", "1", "--out", "{tmp}/s"], "simulate --beads: must be > 0 (got -5)"),
    (["simulate", "--config", "{tmp}/list.yaml", "--model", "m.pt", "--beads", "5", "--density", "1",
      "--types", "A", "--masses", "1", "--out", "{tmp}/s"], "list.yaml: expected a mapping"),
    (["simulate", "--model", "{tmp}/garbage.pt", "--beads", "5", "--density", "0.01", "--types", "A",
      "--masses", "1", "--out", "{tmp}/s"], "garbage.pt is not a readable TorchScript model"),
    (["evaluate", "--config", "{tmp}/list.yaml"], "list.yaml"),
    (["train", "{tmp}/nope.yaml"], "nope.yaml"),
])
def test_command_errors_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "garbage.pt").write_text("not a model")
    code, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == USER_ERROR, err
    assert err.startswith(f"hipcg {argv[0]}") and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_debug_shows_the_traceback(tmp_path):
    from hipcg.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "pipeline", "status", str(pipeline_file(tmp_path, {"typo": 1}))])


def test_failing_stage_names_the_stage_and_exit_code(tmp_path, capsys):
    """A stage that fails on its input (a user's trajectory file that is empty) is reported
    with the stage, the file and the cause: no traceback, and the stage is not marked done."""
    top = write_topology(tmp_path / "sys.data")
    (tmp_path / "empty.dump").write_text("")
    config = {**copy.deepcopy(PIPELINE), "out": str(tmp_path / "out")}
    del config["system"], config["reference"]
    config["trajectories"] = {"T280": {"topology": str(top), "trajectory": str(tmp_path / "empty.dump"),
                                       "format": "lammps"}}
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(config))
    code, err = run(capsys, "pipeline", "run", path)
    assert code == USER_ERROR, err
    assert "stage 'map' failed" in err and "empty.dump: empty file" in err, err
    from hipcg.stages import load_pipeline

    states = {stage: state for stage, state, _ in load_pipeline(path).status()}
    assert states["reference"] == "done" and states["map"] == "interrupted", states


def test_failed_run_exit_code_is_three():
    from hipcg.errors import RunError
    from hipcg.lammps.runner import LammpsError

    assert issubclass(LammpsError, RunError) and LammpsError.exit_code == RUN_FAILED == 3


def test_a_killed_forced_stage_is_not_shown_as_done(tmp_path):
    """`--from train` re-runs a finished stage; killed half-way, it (and every later stage)
    must read 'interrupted', not 'done' over outputs that are half replaced."""
    from hipcg.pipeline import STAGES, Pipeline, StageDef, run_pipeline

    calls = []

    def stage(name):
        def run(ctx):
            calls.append(name)
            if name == "train" and calls.count("train") == 2:
                raise KeyboardInterrupt  # the kill, in the middle of the forced re-run
            return {"ok": name}
        return run

    (tmp_path / "p.yaml").write_text("x: 1\n")
    pipeline = Pipeline(tmp_path / "p.yaml", {"x": 1}, tmp_path / "out",
                        [StageDef(name, stage(name)) for name in STAGES])
    run_pipeline(pipeline, log=lambda m: None)
    assert all(state == "done" for _, state, _ in pipeline.status())
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(pipeline, from_stage="train", log=lambda m: None)
    states = dict((s, st) for s, st, _ in pipeline.status())
    assert states["map"] == "done" and states["train"] == "interrupted"
    assert all(states[s] != "done" for s in STAGES[STAGES.index("train"):])
