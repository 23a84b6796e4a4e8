"""The pipeline's stages: thin adapters from a pipeline YAML to each stage's plain function.

Each adapter validates its section up front (:func:`validate`) and, when run, reads upstream
outputs from the records of earlier stages and returns its own outputs (paths and numbers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from .config import ConfigError, from_dict
from .pipeline import STAGES, Pipeline, PipelineConfigError, StageContext, StageDef


@dataclass
class StatePoint:
    name: str
    temperature: float  # K
    pressure: float = 1.0  # atm
    role: Literal["train", "test"] = "test"


@dataclass
class UserTrajectory:
    """A user's own atomistic trajectory with forces, replacing the reference stage."""

    topology: Path
    trajectory: Path | None = None
    format: Literal["lammps", "gromacs", "extxyz"] | None = None
    dump_units: Literal["real", "metal"] = "real"
    atom_style: str | None = None


@dataclass
class MapSection:
    mapping: Path
    start: int | None = None
    stop: int | None = None
    stride: int | None = None
    velocities: bool = True


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


# reference keys that the pipeline itself sets from the top level
_REFERENCE_OWNED = ("system", "temperatures", "pressure", "out", "force", "progress")


def _reference_config(spec: PipelineSpec, section: dict, out: Path, pressure: float,
                      temperatures: list[float]):
    from .reference import ReferenceConfig

    owned = sorted(set(section) & set(_REFERENCE_OWNED))
    if owned:
        raise ConfigError(f"reference.{owned[0]}: set by the pipeline (top-level system / "
                          "state_points / out); remove it from the reference section")
    return from_dict(ReferenceConfig, {**section, "system": spec.system, "temperatures": temperatures,
                                       "pressure": pressure, "out": str(out)}, "reference")


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
                                "atom_style": traj.atom_style, "user_supplied": True}
        return outputs
    outputs = {}
    for pressure, points in _pressures(spec).items():
        cfg = _reference_config(spec, ctx.section, ctx.directory, pressure,
                                [sp.temperature for sp in points])
        for sp, result in zip(points, run(cfg)):
            files = result.metadata.get("files", {})
            outputs[sp.name] = {
                "topology": str(result.directory / files.get("topology", "system.data")),
                "trajectory": str(result.directory / files.get("trajectory", "production.dump")),
                "format": "lammps", "dump_units": "real", "atom_style": None,
                "density": result.metadata.get("density_npt_mean"),
                "ns_per_day": result.metadata.get("ns_per_day"), "user_supplied": False}
    return outputs


def run_map(ctx: StageContext) -> dict:
    from .mapping import load_mapping, write_dataset
    from .trajectory import open_trajectory

    spec: PipelineSpec = ctx.pipeline.spec
    section = from_dict(MapSection, ctx.section, "map")
    mapping = load_mapping(section.mapping)
    outputs = {}
    for sp in spec.state_points:
        ref = ctx.upstream["reference"][sp.name]
        traj = open_trajectory(ref["topology"], ref["trajectory"], format=ref["format"],
                               dump_units=ref["dump_units"], atom_style=ref["atom_style"])
        out = ctx.directory / f"{sp.name}.npz"
        summary = write_dataset(traj.universe, mapping, out, start=section.start, stop=section.stop,
                                step=section.stride, velocities=section.velocities or None,
                                metadata={"state_point": {"name": sp.name, "temperature": sp.temperature,
                                                          "pressure": sp.pressure, "role": sp.role}},
                                overwrite=True, progress=True, source=ref["trajectory"])
        print(f"  {sp.name}: {summary['frames']} frames, {summary['beads']} beads, mean |F| "
              f"{summary['mean_abs_force']:.2f} kcal/(mol Å), {summary['density']:.4f} g/cm^3")
        outputs[sp.name] = {"dataset": str(out), "frames": summary["frames"],
                            "beads": summary["beads"], "density": summary["density"],
                            "mean_abs_force": summary["mean_abs_force"]}
    return outputs


STAGE_FUNCTIONS = {"reference": run_reference, "map": run_map}


def _user_files_fingerprint(pipeline: Pipeline):
    """User trajectories enter the reference key by path, size and modification time."""
    spec: PipelineSpec = pipeline.spec
    if not spec.trajectories:
        return None
    stamps = {}
    for name, traj in spec.trajectories.items():
        for p in (traj.topology, traj.trajectory):
            if p is not None and Path(p).exists():
                st = Path(p).stat()
                stamps[str(p)] = [st.st_size, st.st_mtime_ns]
    return stamps


def validate(spec: PipelineSpec, source: str) -> None:
    """Check every section before any work starts."""
    names = [sp.name for sp in spec.state_points]
    if not names:
        raise ConfigError("state_points: at least one state point is needed")
    if len(set(names)) != len(names):
        raise ConfigError(f"state_points: names must be unique, got {names}")
    if not any(sp.role == "train" for sp in spec.state_points):
        raise ConfigError("state_points: at least one state point needs role: train")
    if spec.trajectories:
        missing = sorted(set(names) - set(spec.trajectories))
        if missing:
            raise ConfigError(f"trajectories.{missing[0]}: state point has no trajectory; "
                              f"give one per state point ({', '.join(names)})")
        for name, traj in spec.trajectories.items():
            for key in ("topology", "trajectory"):
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
        for pressure, points in _pressures(spec).items():
            _reference_config(spec, spec.reference, spec.out, pressure, [sp.temperature for sp in points])
    section = from_dict(MapSection, spec.map, "map")
    # relative paths in a pipeline file are relative to the working directory (the repo root)
    if not section.mapping.exists():
        raise ConfigError(f"map.mapping: {section.mapping} does not exist")
    for name, check in SECTION_VALIDATORS.items():
        check(getattr(spec, name), spec)


SECTION_VALIDATORS: dict = {}


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline file; raise PipelineConfigError naming file and key path."""
    path = Path(path)
    if not path.exists():
        raise PipelineConfigError(f"{path}: no such pipeline file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise PipelineConfigError(f"{path}: not valid YAML: {err}") from err
    try:
        spec = from_dict(PipelineSpec, data, "")
        validate(spec, str(path))
    except ConfigError as err:
        raise PipelineConfigError(f"{path}: {str(err).lstrip('.')}") from err
    stages = [StageDef(name, STAGE_FUNCTIONS[name],
                       _user_files_fingerprint if name == "reference" else (lambda p: None))
              for name in STAGES if name in STAGE_FUNCTIONS]
    config = {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
              for k, v in dataclasses.asdict(spec).items()}
    return Pipeline(path=path, config=config, root=Path(spec.out), stages=stages, spec=spec)
