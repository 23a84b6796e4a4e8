"""The learned-dynamics study as a pipeline (``kind: dynamics`` in a pipeline file).

data -> partition -> train -> rollout [-> baseline] -> evaluate -> report, each a thin adapter from its
section of the pipeline file to the plain functions of :mod:`hipcg.dynamics`; caching, keys and
resuming are :mod:`hipcg.pipeline`'s, as for the force-field study.

* data: the system's chain runs (:func:`~hipcg.dynamics.chains.run_chains`, resumable);
* partition: METIS beads and bead trajectories (``beads/<name>.npz``), and the reference's
  bead dumps of the held-out sequences (``dumps/<name>.reference.dump``);
* train: the dynamics and score networks (:func:`~hipcg.dynamics.train.train_dynamics`);
* rollout: every held-out sequence from its reference's starting windows, in one batch
  (:func:`~hipcg.dynamics.rollout.rollout_batch`), with ``dumps/<name>.rollout.dump``;
* baseline (only when the file has a ``baseline`` section): the same chains coarse-grained with
  hipcg's force-matched HIP-NN-TS and run with Langevin dynamics in LAMMPS
  (:func:`~hipcg.dynamics.baseline.run_baseline`, its parts cached in the stage folder);
* evaluate: per-sequence Rg, relaxation times, distance distributions, speed; r^2 overall; the
  baseline's runs scored the same way;
* report: ``report.json``, ``report.md`` and the Rg scatter / ACF / distance plots.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import ConfigError, Positive, check_fields, from_dict
from ..pipeline import Pipeline, PipelineConfigError, StageContext, StageDef

DYNAMICS_STAGES = ("data", "partition", "train", "rollout", "baseline", "evaluate", "report")


@dataclass
class PartitionSection:
    monomers_per_bead: Positive = 4.0

    def __post_init__(self) -> None:
        check_fields(self, "partition")


@dataclass
class DynamicsPipelineSpec:
    """Top level of a ``kind: dynamics`` pipeline file."""

    out: Path
    system: str = "polymer"          # a chain system under datasets/ (or a path)
    kind: str = "dynamics"
    description: str = ""
    data: dict = field(default_factory=dict)       # ChainRunConfig without ``system``
    partition: dict = field(default_factory=dict)  # PartitionSection
    train: dict = field(default_factory=dict)      # DynamicsTrainConfig
    rollout: dict = field(default_factory=dict)    # RolloutConfig
    baseline: dict | None = None                   # BaselineConfig; None: no baseline stage
    evaluate: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)


def _chain_config(spec: DynamicsPipelineSpec):
    from .chains import ChainRunConfig

    if "system" in spec.data:
        raise ConfigError("data.system: set by the pipeline's top-level system; remove it here")
    return from_dict(ChainRunConfig, {**spec.data, "system": spec.system}, "data")


def _train_config(spec: DynamicsPipelineSpec):
    from .train import DynamicsTrainConfig

    return from_dict(DynamicsTrainConfig, spec.train, "train")


def _rollout_config(spec: DynamicsPipelineSpec):
    from .rollout import RolloutConfig

    return from_dict(RolloutConfig, spec.rollout, "rollout")


def _baseline_config(spec: DynamicsPipelineSpec):
    from .baseline import BaselineConfig

    beads = from_dict(PartitionSection, spec.partition, "partition").monomers_per_bead
    section = dict(spec.baseline or {})
    if section.get("monomers_per_bead", beads) != beads:
        raise ConfigError(f"baseline.monomers_per_bead: {section['monomers_per_bead']} differs from "
                          f"partition.monomers_per_bead ({beads}); the baseline uses the same beads, "
                          f"remove it here")
    return from_dict(BaselineConfig, {**section, "monomers_per_bead": beads}, "baseline")


def validate(spec: DynamicsPipelineSpec) -> None:
    from ..errors import HipcgError
    from .chains import load_chain_system

    try:
        load_chain_system(spec.system)
    except HipcgError as err:
        raise ConfigError(f"system: {err}") from err
    _chain_config(spec)
    from_dict(PartitionSection, spec.partition, "partition")
    _train_config(spec)
    _rollout_config(spec)
    if spec.baseline is not None:
        _baseline_config(spec)
    for name in ("evaluate", "report"):
        if getattr(spec, name):
            raise ConfigError(f"{name}: takes no settings; remove the section")


def _system(ctx: StageContext):
    from .chains import load_chain_system

    return load_chain_system(ctx.pipeline.spec.system)


def _trajectories(ctx: StageContext, role: str) -> list:
    from .beads import load_bead_trajectory

    beads = ctx.upstream["partition"]["beads"]
    return [load_bead_trajectory(beads[name]) for name in _system(ctx).names(role)]


# ---------------------------------------------------------------------------------- stages


def run_data(ctx: StageContext) -> dict:
    from .chains import run_chains

    runs = run_chains(_chain_config(ctx.pipeline.spec), ctx.directory / "runs",
                      roles=("train", "test"), reuse=True, progress=True)
    return {"runs": {name: str(run.directory) for name, run in runs.items()},
            "md_fs_per_wall_second": {name: run.md_fs_per_wall_second for name, run in runs.items()}}


def run_partition(ctx: StageContext) -> dict:
    from tqdm.auto import tqdm

    from .beads import bead_type_ids, map_chain, save_bead_trajectory, write_bead_dump
    from .chains import open_chain_run

    system = _system(ctx)
    section = from_dict(PartitionSection, ctx.section, "partition")
    beads, dumps = {}, {}
    for name, directory in tqdm(ctx.upstream["data"]["runs"].items(), desc="partition", unit="chain"):
        traj = map_chain(open_chain_run(directory), system, section.monomers_per_bead)
        beads[name] = str(save_bead_trajectory(ctx.directory / "beads" / f"{name}.npz", traj))
        if traj.role == "test":
            path = ctx.directory / "dumps" / f"{name}.reference.dump"
            path.parent.mkdir(parents=True, exist_ok=True)
            types = bead_type_ids(traj.monomer_types, traj.bead_of_monomer)
            dumps[name] = str(write_bead_dump(path, traj.time_fs, traj.positions, types))
    n_beads = {len(np.load(p)["bead_masses"]) for p in beads.values()}
    print(f"partition: {len(beads)} chains into {sorted(n_beads)} beads of about "
          f"{section.monomers_per_bead:g} monomers")
    return {"beads": beads, "reference_dumps": dumps}


def run_train(ctx: StageContext) -> dict:
    from .train import train_dynamics

    summary = train_dynamics(_trajectories(ctx, "train"), _train_config(ctx.pipeline.spec),
                             ctx.directory, resume=True, progress=True)
    return {k: summary[k] for k in ("model", "best_epoch", "val_nll", "val_mse", "learned_step_fs",
                                    "train_seconds")}


def run_rollout(ctx: StageContext) -> dict:
    from .beads import bead_type_ids, write_bead_dump
    from .rollout import rollout_batch
    from .train import load_dynamics_model

    model = load_dynamics_model(ctx.upstream["train"]["model"])
    trajs = _trajectories(ctx, "test")
    results = rollout_batch(model, trajs, _rollout_config(ctx.pipeline.spec),
                            ctx.directory / "rollouts", progress=True)
    dumps = {}
    for traj, res in zip(trajs, results):
        path = ctx.directory / "dumps" / f"{traj.name}.rollout.dump"
        path.parent.mkdir(parents=True, exist_ok=True)
        starts, frames, n, _ = res.positions.shape
        # all rollouts of a sequence side by side (mol = rollout number), up to the first stop
        finite = np.isfinite(res.positions).all(axis=(0, 2, 3))
        keep = int(np.argmin(finite)) if not finite.all() else frames
        x = res.positions[:, :keep].transpose(1, 0, 2, 3).reshape(keep, starts * n, 3)
        types = np.tile(bead_type_ids(traj.monomer_types, traj.bead_of_monomer), starts)
        mols = np.repeat(np.arange(1, starts + 1), n)
        dumps[traj.name] = str(write_bead_dump(path, res.time_fs[:keep], x, types, mol=mols))
    return {"rollouts": {r.name: str(ctx.directory / "rollouts" / f"{r.name}.npz") for r in results},
            "dumps": dumps, "wall_seconds": float(results[0].wall_seconds) if results else 0.0}


def run_baseline_stage(ctx: StageContext) -> dict:
    """The baseline's runs, with the rollouts' collision and blow-up checks (same limits, from
    the training data) applied to their frames: ``checked/<name>.npz``."""
    from .baseline import SUMMARY, run_baseline
    from .chains import open_chain_run
    from .rollout import check_frames, check_limits, save_rollout
    from .train import load_dynamics_model

    system = _system(ctx)
    runs = ctx.upstream["data"]["runs"]
    tests = _trajectories(ctx, "test")
    results = run_baseline([open_chain_run(runs[name]) for name in system.names("train")], tests,
                           system, _baseline_config(ctx.pipeline.spec), ctx.directory, progress=True)
    scales = load_dynamics_model(ctx.upstream["train"]["model"]).scales
    collide_at, blowup_at = check_limits(scales, _rollout_config(ctx.pipeline.spec))
    checked = {}
    (ctx.directory / "checked").mkdir(exist_ok=True)
    for traj in tests:
        bonds = np.asarray(traj.bead_bonds, dtype=int).reshape(-1, 2)
        result = check_frames(results[traj.name], bonds, collide_at, blowup_at)
        checked[traj.name] = str(save_rollout(ctx.directory / "checked" / f"{traj.name}.npz", result))
    return {"rollouts": checked, "summary": str(ctx.directory / SUMMARY)}


def _scored(rollouts: dict, trajs: list) -> dict:
    from .evaluate import evaluate_sequence, summarise
    from .rollout import load_rollout

    rows = [evaluate_sequence(load_rollout(rollouts[traj.name]), traj) for traj in trajs]
    return {"overall": summarise(rows), "sequences": rows}


def run_evaluate(ctx: StageContext) -> dict:
    from ..atomic import write_json_atomic

    trajs = _trajectories(ctx, "test")
    evaluation = {**_scored(ctx.upstream["rollout"]["rollouts"], trajs), "training": ctx.upstream["train"]}
    print(summary_line(evaluation["overall"]))
    if "baseline" in ctx.upstream:
        evaluation["baseline"] = _scored(ctx.upstream["baseline"]["rollouts"], trajs)
        print(summary_line(evaluation["baseline"]["overall"], "baseline (force-matched HIP-NN-TS, Langevin)"))
    path = write_json_atomic(ctx.directory / "evaluation.json", evaluation, default=float)
    return {"evaluation": str(path), "overall": evaluation["overall"],
            "baseline": evaluation.get("baseline", {}).get("overall")}


def summary_line(overall: dict, label: str = "dynamics") -> str:
    return (f"{label}: {overall['n_sequences']} held-out sequences: Rg r^2 {overall['rg_r2']:.3f}, "
            f"relaxation-time r^2 {overall['tau_r2']:.3f} (exp fit {overall['tau_exp_r2']:.3f}), "
            f"{overall['collisions']} collision steps, {overall['blowups']} blow-ups, "
            f"bond cap at {overall['bond_caps']} of {overall['rollout_steps']} steps, "
            f"{overall['speedup']:.1f}x the reference MD's simulated time per wall second")


def run_report(ctx: StageContext) -> dict:
    from .report import write_dynamics_report

    evaluation = json.loads(Path(ctx.upstream["evaluate"]["evaluation"]).read_text())
    paths = write_dynamics_report(evaluation, ctx.directory)
    return {k: str(v) for k, v in paths.items()}


STAGE_FUNCTIONS = {"data": run_data, "partition": run_partition, "train": run_train,
                   "rollout": run_rollout, "baseline": run_baseline_stage, "evaluate": run_evaluate,
                   "report": run_report}
STAGE_SECTIONS = {"evaluate": ("evaluate",), "report": ("report",)}


def _system_fingerprint(pipeline: Pipeline):
    """The chain system file's physics and sequences: an edited file re-runs the data."""
    from .chains import load_chain_system

    system = load_chain_system(pipeline.spec.system)
    return {name: system.fingerprint(name) for name in system.names()}


def load_dynamics_pipeline(path: Path, data: dict) -> Pipeline:
    """A validated ``kind: dynamics`` pipeline (``data``: the parsed file)."""
    try:
        spec = from_dict(DynamicsPipelineSpec, data, "")
        validate(spec)
    except ConfigError as err:
        raise PipelineConfigError(f"{path}: {err}") from err
    stages = [StageDef(name, STAGE_FUNCTIONS[name],
                       _system_fingerprint if name == "data" else (lambda p: None),
                       STAGE_SECTIONS.get(name, ()))
              for name in DYNAMICS_STAGES if name != "baseline" or spec.baseline is not None]
    config = dataclasses.asdict(spec)
    config["out"] = str(config["out"])
    return Pipeline(path=path, config=config, root=Path(spec.out), stages=stages, spec=spec)
