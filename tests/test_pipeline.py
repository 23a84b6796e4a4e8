"""`hipcg pipeline`: a tiny study end to end, skipping, selective re-runs, bad configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hipcg.data import load_dataset
from hipcg.pipeline import PipelineConfigError, run_pipeline
from hipcg.stages import load_pipeline

REPO = Path(__file__).resolve().parent.parent

TINY = {
    "description": "test: 20 one-bead methanols, seconds per stage",
    "system": "methanol",
    "state_points": [{"name": "T280", "temperature": 280.0, "role": "train"},
                     {"name": "T320", "temperature": 320.0, "role": "test"}],
    "reference": {"molecules": 20, "equilibrate_ps": 1.0, "production_ps": 1.0, "every_fs": 100.0,
                  "cutoff": 6.0, "kspace_accuracy": 1.0e-3, "compress_ps": 0.5, "settle_ps": 0.2,
                  "restart_every_ps": 0.5},
    "map": {"mapping": str(REPO / "datasets" / "mappings" / "methanol.yaml")},
    "train": {"model": {"network": "HipnnQuad", "n_features": 8, "n_sensitivities": 4,
                        "dist_soft_min": 2.5, "dist_soft_max": 5.0, "cutoff": 6.0, "n_atom_layers": 1},
              "optimizer": {"max_epochs": 2, "batch_size": 2},
              "split": {"train": 0.6, "valid": 0.2, "test": 0.2},
              # both HIP-NN-TS kinds: the temperature-aware one with energy matching
              "kinds": ["hipnn", "hipnn-temperature"], "loss": {"energy": 1.0}},
    "baseline": {"dr": 0.2},
    "export": {"dtype": "float64"},
    "simulate": {"steps": 100, "timestep": 2.0, "dump_every": 10, "thermo_every": 10, "npt_steps": 100},
    "evaluate": {"max_static_frames": 4},
}


def write_config(tmp_path: Path, changes: dict | None = None, out: str = "run",
                 name: str = "tiny.yaml") -> Path:
    """TINY with ``changes`` ({"a.b.c": value}) applied, written to ``tmp_path/name``."""
    config = json.loads(json.dumps(TINY))
    config["out"] = str(tmp_path / out)
    for dotted, value in (changes or {}).items():
        node = config
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    path = write_config(tmp)
    outcome = run_pipeline(load_pipeline(path), log=lambda msg: None)
    return tmp, path, outcome


def test_tiny_pipeline_runs_every_stage(finished):
    tmp, path, outcome = finished
    assert outcome == {s: "ran" for s in ("reference", "map", "train", "export", "refine", "simulate",
                                          "evaluate", "report")}
    pipeline = load_pipeline(path)
    evaluation = json.loads(Path(pipeline.record("evaluate")["outputs"]["evaluation"]).read_text())
    assert set(evaluation["models"]) == {"HIP-NN-TS", "HIP-NN-TS (T-aware)", "pairwise MS-CG"}
    assert evaluation["models"]["HIP-NN-TS (T-aware)"]["model_kind"] == "hipnn-temperature"
    assert [sp["name"] for sp in evaluation["state_points"]] == ["T280", "T320"]
    assert evaluation["models"]["HIP-NN-TS"]["prior"]  # the fitted prior reaches the report
    report = Path(pipeline.record("report")["outputs"]["markdown"]).read_text()
    for needle in ("T280", "T320", "HIP-NN-TS", "pairwise MS-CG"):
        assert needle in report
    assert all(state == "done" for _, state, _ in pipeline.status())


def test_report_rows_carry_atomistic_pressure_compressibility_and_scores(finished):
    """The reference's per-frame pressure and NPT compressibility reach the report beside the
    CG values; held-out rows carry the noise floor, the null model and the score."""
    tmp, path, _ = finished
    pipeline = load_pipeline(path)
    rows = json.loads((Path(pipeline.record("report")["outputs"]["markdown"]).parent
                       / "report.json").read_text())["rows"]
    kinds = {"HIP-NN-TS": "hipnn", "HIP-NN-TS (T-aware)": "hipnn-temperature",
             "pairwise MS-CG": "pairwise"}
    for r in rows:
        assert r["model_kind"] == kinds[r["model"]]
        # every model ran its CG MD at every state point (the T-aware one at that T)
        assert r["rdf_error"] is not None or r["blew_up"]
        assert r["pressure_nvt_ref"] is not None and abs(r["pressure_nvt_ref"]) < 1e5
        assert r["compressibility_ref"] is not None and 0 < r["compressibility_ref"] < 1e-2
        assert r["rdf_noise_floor"] is not None
        if not r["trained"]:
            assert r["null_from"] == "T280" and r["rdf_null"] is not None
    ds = load_dataset(pipeline.record("map")["outputs"]["T280"]["dataset"])
    assert ds.thermo is not None and ds.thermo["pressure_tensor"].shape == (ds.n_frames, 3, 3)


def test_second_run_skips_every_stage(finished):
    tmp, path, _ = finished
    assert set(run_pipeline(load_pipeline(path), log=lambda msg: None).values()) == {"skipped"}


def test_changed_training_setting_reruns_train_and_after_only(finished):
    tmp, _, _ = finished
    path = write_config(tmp, {"train.optimizer.lr": 2e-3})
    pipeline = load_pipeline(path)
    states = dict((stage, state) for stage, state, _ in pipeline.status())
    assert states == {"reference": "done", "map": "done", "train": "stale", "export": "stale",
                      "refine": "stale", "simulate": "stale", "evaluate": "stale", "report": "stale"}
    outcome = run_pipeline(pipeline, log=lambda msg: None)
    assert outcome == {"reference": "skipped", "map": "skipped", "train": "ran", "export": "ran",
                       "refine": "ran", "simulate": "ran", "evaluate": "ran", "report": "ran"}


def test_only_and_from(finished):
    tmp, _, _ = finished
    path = write_config(tmp, {"train.optimizer.lr": 2e-3})
    outcome = run_pipeline(load_pipeline(path), only="report", log=lambda msg: None)
    assert outcome["report"] == "ran" and outcome["evaluate"] == "skipped" and "simulate" not in [
        s for s, o in outcome.items() if o == "ran"]
    outcome = run_pipeline(load_pipeline(path), from_stage="evaluate", log=lambda msg: None)
    assert [s for s, o in outcome.items() if o == "ran"] == ["evaluate", "report"]


@pytest.mark.parametrize("change, message", [
    ({"trian": {}}, "trian: unknown key; allowed keys are ['baseline', 'description'"),
    ({"train.optimizer.lr": "fast"}, "train.optimizer.lr"),
    ({"simulate.thermostat": "berendsen"}, "simulate"),
    ({"export.dtype": "float16"}, "export.dtype: allowed values are ['float32', 'float64'] (got 'float16')"),
    ({"state_points": [{"name": "A", "temperature": 300.0}]}, "at least one state point needs role: train"),
    ({"map.mapping": "nowhere.yaml"}, "map.mapping: nowhere.yaml does not exist"),
    ({"system": "argonite"}, "system:"),
    ({"train.kinds": ["hipnn", "hipnn-entropy"]}, "train.kinds: a non-empty list of distinct kinds"),
    ({"train.kinds": ["hipnn"], "train.model.temperature_aware": True}, "train.model.temperature_aware"),
])
def test_bad_config_names_the_key_before_any_work(tmp_path, change, message):
    path = write_config(tmp_path, change, out="never", name="bad.yaml")
    with pytest.raises(PipelineConfigError) as err:
        load_pipeline(path)
    assert str(path) in str(err.value) and message in str(err.value)
    assert not (tmp_path / "never").exists()


def test_cli_status_and_bad_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hipcg.cli", "pipeline", "status", str(tmp_path / "no.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no such pipeline file" in proc.stderr


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "pipelines").glob("*.yaml")))
def test_shipped_pipelines_validate(name, monkeypatch):
    monkeypatch.chdir(REPO)  # their relative paths are relative to the repository root
    pipeline = load_pipeline(REPO / "pipelines" / name)
    if getattr(pipeline.spec, "kind", None) == "dynamics":  # learned chain dynamics: own stages
        assert pipeline.stage_names() == ["data", "partition", "train", "rollout", "baseline", "evaluate",
                                          "report"]
        assert pipeline.stage_dir("rollout").name == "04-rollout"
        return
    assert [s.name for s in pipeline.stages][0] == "reference"
    assert any(sp.role == "train" for sp in pipeline.spec.state_points)
    assert len(pipeline.spec.state_points) >= 3


def test_users_own_trajectories_replace_the_reference_stage(finished, tmp_path):
    """Naming trajectories in the config skips the atomistic runs; mapping reads the files."""
    _, path, _ = finished
    done = load_pipeline(path).record("reference")["outputs"]
    config = {k: v for k, v in TINY.items() if k != "reference"}
    config["out"] = str(tmp_path / "own")
    config["trajectories"] = {name: {"topology": out["topology"], "trajectory": out["trajectory"],
                                     "format": "lammps"} for name, out in done.items()}
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump(config))
    pipeline = load_pipeline(own)
    assert run_pipeline(pipeline, only="reference", log=lambda m: None) == {"reference": "ran"}
    assert all(out["user_supplied"] for out in pipeline.record("reference")["outputs"].values())
    run_pipeline(pipeline, only="map", log=lambda m: None)
    mapped = load_pipeline(path).record("map")["outputs"]
    for name, out in pipeline.record("map")["outputs"].items():
        assert out["frames"] == mapped[name]["frames"] and out["beads"] == 20
    # and the same config with a reference section is refused: one source of data only
    config["reference"] = {"molecules": 20}
    own.write_text(yaml.safe_dump(config))
    with pytest.raises(PipelineConfigError, match="reference: remove this section"):
        load_pipeline(own)


def test_changed_reference_setting_regenerates_instead_of_refusing(finished):
    """A stale reference stage replaces its old runs (hipcg reference alone would refuse)."""
    tmp, _, _ = finished
    path = write_config(tmp, {"reference.seed": 7, "train.optimizer.lr": 2e-3})
    outcome = run_pipeline(load_pipeline(path), only="reference", log=lambda m: None)
    assert outcome == {"reference": "ran"}
    meta = json.loads((Path(load_pipeline(path).record("reference")["outputs"]["T280"]["trajectory"])
                       .parent / "metadata.json").read_text())
    assert meta["seed"] != TINY["reference"].get("seed", 2024)


def test_edited_system_file_changes_the_reference_key(finished, tmp_path, monkeypatch):
    """The force field is an input of the reference stage: edit it and the data are regenerated;
    edit only a comment or a literature source and nothing re-runs."""
    _, path, _ = finished
    keys = load_pipeline(path).keys()
    datasets = tmp_path / "datasets"
    (datasets / "methanol").mkdir(parents=True)
    original = (REPO / "datasets" / "methanol" / "system.yaml").read_text()
    monkeypatch.setenv("HIPCG_DATASETS", str(datasets))
    (datasets / "methanol" / "system.yaml").write_text("# a user's note\n" + original)
    assert load_pipeline(path).keys() == keys
    (datasets / "methanol" / "system.yaml").write_text(original.replace("charge: -0.683", "charge: -0.693")
                                                       .replace("charge:  0.418", "charge:  0.428"))
    changed = load_pipeline(path).keys()
    assert all(changed[stage] != keys[stage] for stage in keys)


def test_added_state_point_runs_only_the_new_reference(finished):
    """Adding a state point regenerates nothing that is still valid."""
    tmp, _, _ = finished
    base = write_config(tmp)
    run_pipeline(load_pipeline(base), only="reference", log=lambda m: None)
    record = load_pipeline(base).record("reference")["outputs"]
    stamps = {name: (Path(out["trajectory"]).parent / "metadata.json").stat().st_mtime_ns
              for name, out in record.items()}
    more = write_config(tmp, {"state_points": TINY["state_points"] + [
        {"name": "T300", "temperature": 300.0, "role": "test"}]})
    assert run_pipeline(load_pipeline(more), only="reference", log=lambda m: None) == {"reference": "ran"}
    outputs = load_pipeline(more).record("reference")["outputs"]
    assert set(outputs) == {"T280", "T320", "T300"}
    for name, stamp in stamps.items():
        assert (Path(outputs[name]["trajectory"]).parent / "metadata.json").stat().st_mtime_ns == stamp
    assert Path(outputs["T300"]["trajectory"]).is_file()


def test_pipelines_with_one_shared_reference_folder_run_the_md_once(tmp_path):
    """reference.shared_dir: a second study of the same system and settings that trains on
    other state points reads the first one's runs; one with other settings is refused there,
    not allowed to replace them."""
    shared = tmp_path / "shared"
    first = write_config(tmp_path, {"reference.shared_dir": str(shared)}, out="first", name="first.yaml")
    run_pipeline(load_pipeline(first), only="reference", log=lambda m: None)
    outputs = load_pipeline(first).record("reference")["outputs"]
    assert all(Path(o["trajectory"]).parent.parent == shared for o in outputs.values())
    stamps = {n: Path(o["trajectory"]).stat().st_mtime_ns for n, o in outputs.items()}
    swapped = [{**sp, "role": "test" if sp["role"] == "train" else "train"} for sp in TINY["state_points"]]
    second = write_config(tmp_path, {"reference.shared_dir": str(shared), "state_points": swapped},
                          out="second", name="second.yaml")
    assert run_pipeline(load_pipeline(second), only="reference", log=lambda m: None) == {"reference": "ran"}
    again = load_pipeline(second).record("reference")["outputs"]
    assert {n: Path(o["trajectory"]).stat().st_mtime_ns for n, o in again.items()} == stamps
    assert again["T280"]["density"] == outputs["T280"]["density"]
    other = write_config(tmp_path, {"reference.shared_dir": str(shared), "reference.production_ps": 1.2},
                         out="other", name="other.yaml")
    with pytest.raises(Exception, match="holds a run with different settings"):
        run_pipeline(load_pipeline(other), only="reference", log=lambda m: None)
    assert {n: Path(o["trajectory"]).stat().st_mtime_ns for n, o in outputs.items()} == stamps
