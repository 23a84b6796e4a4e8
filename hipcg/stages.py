"""The pipeline's stages: thin adapters from a pipeline YAML to each stage's plain function.

Each adapter validates its section up front (:func:`validate`) and, when run, reads upstream
outputs from the records of earlier stages and returns its own outputs (paths and numbers).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .baseline import BaselineConfig
from .mapping import MapSettings
from .config import ConfigError, from_dict, load_yaml, slug
from .pipeline import STAGES, Pipeline, PipelineConfigError, StageContext, StageDef
from .statepoint import StatePoint, check_state_points


@dataclass
class UserTrajectory:
    """A user's own atomistic trajectory with forces, replacing the reference stage."""

    topology: Path
    trajectory: Path | None = None
    format: Literal["lammps", "gromacs", "extxyz"] | None = None
    dump_units: Literal["real", "metal"] = "real"
    atom_style: str | None = None
    thermo: Path | None = None  # LAMMPS log / GROMACS .edr with the frames' pressure and energies


@dataclass
class PipelineSpec:
    """Top level of a pipeline file; stage sections are validated by their stages."""

    out: Path
    state_points: list[StatePoint]
    system: str | None = None
    trajectories: dict[str, UserTrajectory] | None = None
    description: str = ""
    reference: dict = field(default_factory=dict)
    map: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    export: dict = field(default_factory=dict)
    simulate: dict = field(default_factory=dict)
    evaluate: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    baseline: dict = field(default_factory=dict)  # pairwise MS-CG baseline, fitted in the train stage
    refine: dict = field(default_factory=dict)  # self-consistent volume term (hipcg.refine)


@dataclass
class ExportSection:
    dtype: Literal["float32", "float64"] = "float64"


# reference keys that the pipeline itself sets from the top level
_REFERENCE_OWNED = ("system", "temperatures", "pressure", "out", "overwrite", "overwrite_stale",
                    "progress")


def _reference_config(spec: PipelineSpec, section: dict, out: Path, pressure: float,
                      temperatures: list[float]):
    from .reference import ReferenceConfig

    owned = sorted(set(section) & set(_REFERENCE_OWNED))
    if owned:
        raise ConfigError(f"reference.{owned[0]}: set by the pipeline (top-level system / "
                          "state_points / out); remove it from the reference section")
    return from_dict(ReferenceConfig, {**section, "system": spec.system, "temperatures": temperatures,
                                       "pressure": pressure, "out": str(out)}, "reference")


def _reference_section(section: dict) -> tuple[dict, Path | None]:
    """The reference section without ``shared_dir``, and that folder: runs kept there (one per
    system, temperature and pressure) serve every pipeline with the same reference settings,
    e.g. two studies of one system that train on different state points."""
    section = dict(section)
    shared = section.pop("shared_dir", None)
    return section, (Path(shared) if shared else None)


def _pressures(spec: PipelineSpec) -> dict[float, list[StatePoint]]:
    groups: dict[float, list[StatePoint]] = {}
    for sp in spec.state_points:
        groups.setdefault(sp.pressure, []).append(sp)
    return groups


# ---------------------------------------------------------------------------------- stages


def run_reference(ctx: StageContext) -> dict:
    from .reference import run_reference as run

    spec: PipelineSpec = ctx.pipeline.spec
    if spec.trajectories:
        outputs = {}
        for sp in spec.state_points:
            traj = spec.trajectories[sp.name]
            outputs[sp.name] = {"topology": str(traj.topology), "trajectory": str(traj.trajectory),
                                "format": traj.format, "dump_units": traj.dump_units,
                                "atom_style": traj.atom_style, "user_supplied": True,
                                "thermo": str(traj.thermo) if traj.thermo else None}
        return outputs
    outputs = {}
    section, shared = _reference_section(ctx.section)
    for pressure, points in _pressures(spec).items():
        cfg = _reference_config(spec, section, shared or ctx.directory, pressure,
                                [sp.temperature for sp in points])
        # per state point: reuse a finished run of the same settings, continue a killed one,
        # replace one made with other settings (a new state point leaves the others alone);
        # in a shared folder another pipeline's run of other settings is refused, not replaced
        cfg.overwrite_stale = shared is None
        for sp, result in zip(points, run(cfg)):
            files = result.metadata.get("files", {})
            outputs[sp.name] = {
                "topology": str(result.directory / files.get("topology", "system.data")),
                "trajectory": str(result.directory / files.get("trajectory", "production.dump")),
                "format": "lammps", "dump_units": "real", "atom_style": None,
                "density": result.metadata.get("density_npt_mean"),
                "compressibility": result.metadata.get("compressibility_npt"),
                "thermal_expansion": result.metadata.get("thermal_expansion_npt"),
                "ns_per_day": result.metadata.get("ns_per_day"), "user_supplied": False}
    return outputs


def run_map(ctx: StageContext) -> dict:
    from .mapping import load_mapping, write_dataset
    from .trajectory import open_trajectory

    spec: PipelineSpec = ctx.pipeline.spec
    section = from_dict(MapSettings, ctx.section, "map")
    mapping = load_mapping(section.mapping)
    outputs = {}
    for sp in spec.state_points:
        ref = ctx.upstream["reference"][sp.name]
        traj = open_trajectory(ref["topology"], ref["trajectory"], format=ref["format"],
                               dump_units=ref["dump_units"], atom_style=ref["atom_style"],
                               thermo=ref.get("thermo"))
        out = ctx.directory / f"{sp.name}.npz"
        with warnings.catch_warnings():
            # LAMMPS dumps carry steps, not times; MDAnalysis warns about the missing dt
            warnings.filterwarnings("ignore", message="Reader has no dt information")
            summary = write_dataset(traj, mapping, out, start=section.start,
                                    stop=section.stop, step=section.stride,
                                    velocities=section.velocities or None,
                                    metadata={"state_point": {
                                        "name": sp.name, "temperature": sp.temperature,
                                        "pressure": sp.pressure, "role": sp.role,
                                        # atomistic NPT value, 1/atm (None for users' own files)
                                        "compressibility": ref.get("compressibility"),
                                        "thermal_expansion": ref.get("thermal_expansion")}},
                                    overwrite=True, progress=True, source=ref["trajectory"])
        print(f"  {sp.name}: {summary['frames']} frames, {summary['beads']} beads, mean |F| "
              f"{summary['mean_abs_force']:.2f} kcal/(mol Å), {summary['density']:.4f} g/cm^3")
        outputs[sp.name] = {"dataset": str(out), "frames": summary["frames"],
                            "beads": summary["beads"], "density": summary["density"],
                            "mean_abs_force": summary["mean_abs_force"]}
    return outputs


_TRAIN_OWNED = ("state_points", "out_dir")
#: the HIP-NN-TS models a pipeline can train (``train.kinds``): report label and run folder
NETWORK_KINDS = {"hipnn": ("HIP-NN-TS", "hipnn"),
                 "hipnn-temperature": ("HIP-NN-TS (T-aware)", "hipnn_temperature")}


def _train_kinds(section: dict) -> list[str]:
    kinds = section.get("kinds", ["hipnn"])
    if (not isinstance(kinds, list) or not kinds or len(set(kinds)) != len(kinds)
            or any(k not in NETWORK_KINDS for k in kinds)):
        raise ConfigError(f"train.kinds: a non-empty list of distinct kinds from "
                          f"{sorted(NETWORK_KINDS)}, got {kinds!r}")
    return kinds


def _train_config(spec: PipelineSpec, section: dict, datasets: dict[str, str] | None, out_dir: Path,
                  kind: str = "hipnn"):
    """The TrainConfig of one network kind: ``hipnn-temperature`` is the section's model made
    temperature-aware, with its energy matching; ``hipnn`` the plain model (loss.energy off)."""
    from .train import TrainConfig

    owned = sorted(set(section) & set(_TRAIN_OWNED))
    if owned:
        raise ConfigError(f"train.{owned[0]}: set by the pipeline (state_points, stage folder); "
                          "remove it from the train section")
    points = [{"name": sp.name, "dataset": (datasets or {}).get(sp.name, f"{sp.name}.npz"),
               "role": sp.role} for sp in spec.state_points]
    if "temperature_aware" in (section.get("model") or {}):
        raise ConfigError("train.model.temperature_aware: set by the pipeline from train.kinds "
                          "(hipnn-temperature); remove it")
    section = {k: v for k, v in section.items() if k != "kinds"}
    aware = kind == "hipnn-temperature"
    section["model"] = {**section.get("model", {}), "temperature_aware": aware}
    if not aware:
        section["loss"] = {**section.get("loss", {}), "energy": 0.0}
    return TrainConfig.from_dict({**section, "state_points": points, "out_dir": str(out_dir)}, "train")


def run_train(ctx: StageContext) -> dict:
    """Force-match each HIP-NN-TS kind of ``train.kinds`` (resuming a killed run from its
    checkpoint) and the classical baselines."""
    from .train import CHECKPOINT, train

    spec: PipelineSpec = ctx.pipeline.spec
    datasets = {name: out["dataset"] for name, out in ctx.upstream["map"].items()}
    networks = {}
    for kind in _train_kinds(ctx.section):
        label, folder = NETWORK_KINDS[kind]
        out_dir = ctx.directory / folder
        config = _train_config(spec, ctx.section, datasets, out_dir, kind)
        # resume only a killed run of this very configuration; anything else starts over
        resume = ctx.resuming and (out_dir / CHECKPOINT).exists()
        print(f"train: {label}")
        result = train(config, resume=resume, overwrite=not resume)
        networks[label] = {"kind": kind, "run_dir": str(out_dir), "epochs": result.epochs,
                           "best_epoch": result.best_epoch, "metrics": result.metrics,
                           "prior": result.prior, "seconds": result.seconds,
                           "volume_fit": result.volume_fit}
    first = next(iter(networks.values()))  # the keys of a one-network pipeline, as before
    outputs = {**{k: v for k, v in first.items() if k != "kind"}, "networks": networks}
    baseline = from_dict(BaselineConfig, spec.baseline, "baseline")
    if baseline.enabled:
        outputs.update(_fit_baselines(ctx, spec, baseline, datasets, config.model.cutoff))
    return outputs


def _fit_baselines(ctx: StageContext, spec, baseline: BaselineConfig, datasets: dict[str, str],
                   cutoff: float) -> dict:
    """The classical models on the training frames: pairwise MS-CG and, when asked, pair +
    local density (the LD cutoffs and density grid chosen on the same frames)."""
    from .baseline import dataset_frames, fit_pair_forces, fit_volume, local_density_for, write_table
    from .data import frame_subset, load_dataset

    train_sets = [load_dataset(datasets[sp.name]) for sp in spec.state_points if sp.role == "train"]
    trained_on = {"trained_on": [sp.name for sp in spec.state_points if sp.role == "train"]}

    # several training state points weigh the same, as in HIP-NN-TS training: every
    # ``stride``-th frame of the shortest one, and as many evenly spread frames of each other
    strided = [range(0, ds.n_frames, baseline.stride) for ds in train_sets]
    n_each = min(len(frames) for frames in strided)

    def frames():
        for ds, every in zip(train_sets, strided):
            yield from dataset_frames(ds, every if len(every) == n_each else frame_subset(ds.n_frames, n_each))

    outputs = {}
    kinds = [("baseline", None)]
    if baseline.local_density:
        kinds.append(("baseline_ld", local_density_for(train_sets, cutoff, baseline)))
    for key, ld in kinds:
        table = fit_pair_forces(frames(), train_sets[0].type_names, cutoff, dr=baseline.dr,
                                ridge=baseline.ridge, progress=True, local_density=ld)
        if baseline.pressure_matching:
            fit = fit_volume(table, train_sets, baseline.stride)
            print(f"{key}: volume term p0 = {fit.term.p0:.1f} atm at {fit.term.v0:.2f} Å^3/bead, "
                  f"K = {fit.term.bulk:.1f} atm (per-frame residual {fit.rmse:.0f} atm)")
        outputs[key] = str(write_table(table, ctx.directory / key / "baseline.json",
                                       n_points=baseline.points, overwrite=True, info=trained_on))
    return outputs


def _networks(train_outputs: dict) -> dict[str, dict]:
    """Label -> training record of every network the train stage made (older records: one)."""
    return train_outputs.get("networks") or {"HIP-NN-TS": train_outputs}


def run_export(ctx: StageContext) -> dict:
    from .export import export_run

    section = from_dict(ExportSection, ctx.section, "export")
    models = {}
    for label, record in _networks(ctx.upstream["train"]).items():
        folder = Path(record["run_dir"]).name
        name = f"model_{section.dtype}.pt" if folder == "hipnn" else f"{folder}_{section.dtype}.pt"
        models[label] = str(export_run(record["run_dir"], ctx.directory / name, dtype=section.dtype,
                                       overwrite=True))
    return {"model": next(iter(models.values())), "models": models, "dtype": section.dtype}


def run_refine(ctx: StageContext) -> dict:
    """Dunn & Noid's self-consistent step on every model with a volume term (hipcg.refine);
    passes the models through unchanged when ``refine.enabled`` is false."""
    from .data import load_dataset
    from .evaluate import state_of
    from .refine import RefineConfig, read_volume_term, refine

    config = from_dict(RefineConfig, ctx.section, "refine")
    models = _trained_models(ctx)
    if not config.enabled:
        return {"models": models, "refined": {}}
    settings = _evaluation_settings(ctx.pipeline)
    points = [sp for sp in _evaluation_points(ctx) if sp.role == "train"]
    states = [(state_of(sp, ds), ds) for sp, ds in ((sp, load_dataset(sp.dataset)) for sp in points)]
    refined = {}
    for name, path in models.items():
        if read_volume_term(Path(path)) is None:
            print(f"refine: {name} has no volume term; left as it is")
            continue
        print(f"refine: {name}")
        refined[name] = refine(Path(path), states, settings, config, ctx.directory / slug(name))
        models[name] = refined[name]["model"]
    return {"models": models, "refined": refined}


def _models(ctx: StageContext) -> dict[str, str]:
    """The models the CG runs use: as refined by the refine stage."""
    return dict(ctx.upstream["refine"]["models"])


def _trained_models(ctx: StageContext) -> dict[str, str]:
    models = dict(ctx.upstream["export"].get("models") or {"HIP-NN-TS": ctx.upstream["export"]["model"]})
    if ctx.upstream["train"].get("baseline"):
        models["pairwise MS-CG"] = ctx.upstream["train"]["baseline"]
    if ctx.upstream["train"].get("baseline_ld"):
        models["pair + local density"] = ctx.upstream["train"]["baseline_ld"]
    return models


def _evaluation_settings(pipeline: Pipeline):
    from .evaluate import EvaluationSettings

    return EvaluationSettings.from_sections(pipeline.section("simulate"), pipeline.section("evaluate"))


def _evaluation_points(ctx: StageContext) -> list[StatePoint]:
    spec: PipelineSpec = ctx.pipeline.spec
    return [dataclasses.replace(sp, dataset=Path(ctx.upstream["map"][sp.name]["dataset"]),
                                frame_interval_fs=_frame_interval_fs(spec))
            for sp in spec.state_points]


def _frame_interval_fs(spec: PipelineSpec) -> float | None:
    """Time between mapped frames (for the reference diffusion coefficient), when known."""
    if spec.trajectories:
        return None  # users' files: their dump interval is not in the config
    from .reference import ReferenceConfig

    every = spec.reference.get("every_fs", ReferenceConfig.every_fs)
    return float(every) * (spec.map.get("stride") or 1)


def run_simulate(ctx: StageContext) -> dict:
    """CG MD of every model at every state point (NVT, and NPT when npt_steps > 0)."""
    from tqdm import tqdm

    from .data import load_dataset
    from .evaluate import simulation_config, state_of
    from .simulate import StartStructure, run_or_blowup

    settings = _evaluation_settings(ctx.pipeline)
    ensembles = ["nvt"] + (["npt"] if settings.npt_steps > 0 else [])
    models = _models(ctx)
    outputs: dict = {}
    jobs = [(sp, m, e) for sp in _evaluation_points(ctx) for m in models for e in ensembles]
    loaded: dict = {}  # the current state point's dataset only (jobs come grouped by state point)
    for sp, name, ensemble in tqdm(jobs, desc="CG MD", unit="run"):
        if sp.dataset not in loaded:
            loaded = {sp.dataset: load_dataset(sp.dataset)}
        ds = loaded[sp.dataset]
        cfg = simulation_config(Path(models[name]), settings, state_of(sp, ds), ensemble)
        workdir = ctx.directory / sp.name / slug(name) / ensemble  # labels may hold spaces
        res, blew_up = run_or_blowup(cfg, StartStructure.from_dataset(ds, -1), workdir,
                                     timeout=settings.timeout, read=False, reuse=True)
        status = ({"status": "blew_up", **blew_up} if blew_up
                  else {"status": "complete", "steps_per_s": res.steps_per_s})
        outputs.setdefault(sp.name, {}).setdefault(name, {})[ensemble] = {"dir": str(workdir), **status}
        rate = f"{status['steps_per_s']:.0f} steps/s" if "steps_per_s" in status else status["reason"]
        tqdm.write(f"  {sp.name} {name} {ensemble}: {status['status']} ({rate})")
    return {"models": models, "runs": outputs}


def run_evaluate(ctx: StageContext) -> dict:
    from .evaluate import evaluate, summary_line

    models = ctx.upstream["simulate"]["models"]
    result = evaluate(models, _evaluation_points(ctx), _evaluation_settings(ctx.pipeline),
                      workdir=ctx.directory, overwrite=True, runs_dir=ctx.pipeline.stage_dir("simulate"),
                      reuse=True)
    # the prior's parameters belong in the report next to the numbers they produced
    for label, record in _networks(ctx.upstream["train"]).items():
        result["models"][label]["prior"] = record.get("prior")
        result["models"][label]["training"] = {
            k: record.get(k) for k in ("epochs", "best_epoch", "metrics", "volume_fit")}
    for name, record in ctx.upstream.get("refine", {}).get("refined", {}).items():
        result["models"][name]["refine"] = record  # the self-consistent iterations
    from .evaluate import write_json

    path = write_json(result, ctx.directory / "evaluation.json")
    print(summary_line(result))
    return {"evaluation": str(path)}


def run_report(ctx: StageContext) -> dict:
    from .report import write_report

    paths = write_report(ctx.upstream["evaluate"]["evaluation"], ctx.directory, overwrite=True)
    return {k: str(v) for k, v in paths.items()} | {"markdown": str(ctx.directory / "report.md")}


STAGE_FUNCTIONS = {"reference": run_reference, "map": run_map, "train": run_train,
                   "export": run_export, "refine": run_refine, "simulate": run_simulate, "evaluate": run_evaluate,
                   "report": run_report}
STAGE_SECTIONS = {"train": ("train", "baseline"), "refine": ("refine", "simulate"),
                  "simulate": ("simulate",),
                  "evaluate": ("simulate", "evaluate")}


def _reference_inputs_fingerprint(pipeline: Pipeline):
    """What the reference stage reads besides its config: the system file's physics (so an
    edited force field regenerates the data), or the user's trajectories by path, size and
    modification time."""
    spec: PipelineSpec = pipeline.spec
    if not spec.trajectories:
        from .systems import load_system

        return {"system": load_system(spec.system).fingerprint()}
    stamps = {}
    for name, traj in spec.trajectories.items():
        for p in (traj.topology, traj.trajectory, traj.thermo):
            if p is not None and Path(p).exists():
                st = Path(p).stat()
                stamps[str(p)] = [st.st_size, st.st_mtime_ns]
    return stamps


def validate(spec: PipelineSpec) -> None:
    """Check every section before any work starts."""
    check_state_points(spec.state_points)
    names = [sp.name for sp in spec.state_points]
    for i, sp in enumerate(spec.state_points):
        if sp.temperature is None:
            raise ConfigError(f"state_points[{i}].temperature: required in a pipeline (K)")
        if sp.dataset is not None or sp.frame_interval_fs is not None:
            raise ConfigError(f"state_points[{i}]: dataset and frame_interval_fs are set by the "
                              "pipeline (map stage); remove them")
        if sp.pressure is None:
            sp.pressure = 1.0  # atm
    if spec.trajectories:
        missing = sorted(set(names) - set(spec.trajectories))
        if missing:
            raise ConfigError(f"trajectories.{missing[0]}: state point has no trajectory; "
                              f"give one per state point ({', '.join(names)})")
        for name, traj in spec.trajectories.items():
            for key in ("topology", "trajectory", "thermo"):
                p = getattr(traj, key)
                if p is not None and not Path(p).exists():
                    raise ConfigError(f"trajectories.{name}.{key}: {p} does not exist")
        if spec.reference:
            raise ConfigError("reference: remove this section when trajectories are given "
                              "(the reference stage then uses your files)")
    else:
        if not spec.system:
            raise ConfigError("system: required (a system under datasets/, e.g. methanol) unless "
                              "trajectories are given")
        from .systems import SystemFileError, load_system

        try:
            load_system(spec.system)
        except SystemFileError as err:
            raise ConfigError(f"system: {err}") from err
        section, _ = _reference_section(spec.reference)
        for pressure, points in _pressures(spec).items():
            _reference_config(spec, section, spec.out, pressure, [sp.temperature for sp in points])
    section = from_dict(MapSettings, spec.map, "map")
    # relative paths in a pipeline file are relative to the working directory (the repo root)
    if not section.mapping.exists():
        raise ConfigError(f"map.mapping: {section.mapping} does not exist")
    for kind in _train_kinds(spec.train):
        _train_config(spec, spec.train, None, spec.out / "train", kind)
    from_dict(BaselineConfig, spec.baseline, "baseline")
    from_dict(ExportSection, spec.export, "export")
    from .refine import RefineConfig

    from_dict(RefineConfig, spec.refine, "refine")
    from .evaluate import EvaluationSettings

    settings = EvaluationSettings.from_sections(spec.simulate, spec.evaluate)
    from .evaluate import simulation_config

    for ensemble in ("nvt", "npt"):  # the MD settings' own checks (thermostat, steps, ...)
        try:
            simulation_config(Path("model.pt"), settings, {"temperature": 300.0, "pressure": 1.0}, ensemble)
        except ValueError as err:
            if ensemble == "nvt" or settings.npt_steps > 0:
                raise ConfigError(f"simulate: {err}") from err
    if spec.report:
        raise ConfigError("report: takes no settings yet; remove the section")


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline file; raise PipelineConfigError naming file and key path."""
    path = Path(path)
    if not path.exists():
        raise PipelineConfigError(f"{path}: no such pipeline file")
    try:
        data = load_yaml(path, what="pipeline file")
    except ConfigError as err:
        raise PipelineConfigError(str(err)) from err
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise PipelineConfigError(f"{path}: expected a mapping of sections (out, state_points, ...)")
    kind = data.get("kind", "force-field")
    if kind == "dynamics":  # learned CG dynamics of chains: its own stages
        from .dynamics.stages import load_dynamics_pipeline

        return load_dynamics_pipeline(path, data)
    if kind != "force-field":
        raise PipelineConfigError(f"{path}: kind: {kind!r}; choose force-field (the default) or dynamics")
    data = {k: v for k, v in data.items() if k != "kind"}
    try:
        spec = from_dict(PipelineSpec, data, "")
        validate(spec)
    except ConfigError as err:
        raise PipelineConfigError(f"{path}: {err}") from err
    stages = [StageDef(name, STAGE_FUNCTIONS[name],
                       _reference_inputs_fingerprint if name == "reference" else (lambda p: None),
                       STAGE_SECTIONS.get(name, ()))
              for name in STAGES]
    config = {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
              for k, v in dataclasses.asdict(spec).items()}
    # the keys of earlier hipcg versions' state points only: their stage keys stay valid
    config["state_points"] = [{k: sp[k] for k in ("name", "temperature", "pressure", "role")}
                              for sp in config["state_points"]]
    return Pipeline(path=path, config=config, root=Path(spec.out), stages=stages, spec=spec)
