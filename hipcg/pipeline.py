"""Run a study as a chain of stages, each in its own folder, skipping what is up to date.

A force-field study: reference -> map -> train -> export -> refine -> simulate -> evaluate ->
report (:data:`STAGES`, :mod:`hipcg.stages`); a learned-dynamics study has its own list
(:mod:`hipcg.dynamics.stages`).  Stage folders are numbered in the pipeline's own order.

Every stage gets a key: the hash of its own config section and of the keys of the stages
before it.  A stage whose folder holds a completion record (``stage.json``) with the same key
is skipped; changing one section therefore re-runs that stage and everything after it, and
nothing before.  The record is written atomically only when a stage finishes, so a killed
pipeline re-enters the stage it was in, and the stage itself resumes (LAMMPS restart files,
training checkpoints).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from . import __version__
from .atomic import write_json_atomic, write_text_atomic
from .errors import ConfigError, HipcgError, RunError

# the force-field study's stages (hipcg.stages); other kinds of study bring their own list
STAGES = ("reference", "map", "train", "export", "refine", "simulate", "evaluate", "report")
RECORD = "stage.json"
SHARED_KEYS = ("system", "state_points", "trajectories")  # every stage depends on these


class PipelineConfigError(ConfigError):
    """A pipeline file that cannot run; the message names the file and the key path."""


class StageFailed(RunError):
    """A stage stopped; the message names the stage, what failed and where to look.

    The exit code is the cause's (2 for bad input met inside a stage, 3 for a failed run).
    """

    def __init__(self, stage: str, directory: Path, cause: BaseException):
        what = str(cause) if isinstance(cause, HipcgError) else f"{type(cause).__name__}: {cause}"
        log = getattr(cause, "log_file", None) or getattr(cause, "workdir", None)
        where = f"; read {log}" if log else ""
        super().__init__(f"stage {stage!r} failed: {what}{where} (stage folder {directory}; "
                         f"re-run to continue: finished parts are kept)")
        self.stage = stage
        self.cause = cause
        self.exit_code = getattr(cause, "exit_code", RunError.exit_code)


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class StageContext:
    """What a stage function sees: its folder, its config section, upstream records."""

    name: str
    directory: Path
    section: dict
    pipeline: "Pipeline"
    upstream: dict[str, dict] = field(default_factory=dict)  # stage name -> its record["outputs"]
    resuming: bool = False  # an interrupted run of this very key left files in ``directory``


@dataclass
class StageDef:
    name: str
    run: Callable[[StageContext], dict]  # returns the stage's outputs (JSON-able)
    inputs_fingerprint: Callable[["Pipeline"], Any] = lambda pipeline: None  # e.g. user files
    sections: tuple[str, ...] = ()  # config sections it reads (default: its own name)


@dataclass
class Pipeline:
    path: Path
    config: dict  # validated
    root: Path  # output folder
    stages: list[StageDef]
    spec: Any = None  # the validated, typed form of ``config`` (hipcg.stages.PipelineSpec)

    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def stage_dir(self, name: str) -> Path:
        return self.root / f"{self.stage_names().index(name) + 1:02d}-{name}"

    def section(self, name: str) -> dict:
        return self.config.get(name) or {}

    def keys(self) -> dict[str, str]:
        """Chained keys: a stage's key covers its sections and everything upstream."""
        keys, previous = {}, ""
        shared = {k: self.config.get(k) for k in SHARED_KEYS}
        for stage in self.stages:
            sections = {name: self.section(name) for name in (stage.sections or (stage.name,))}
            previous = stable_hash({"stage": stage.name, "sections": sections,
                                    "shared": shared, "inputs": stage.inputs_fingerprint(self),
                                    "upstream": previous})
            keys[stage.name] = previous
        return keys

    def record(self, name: str) -> dict | None:
        path = self.stage_dir(name) / RECORD
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # a damaged record means: not done

    def status(self) -> list[tuple[str, str, dict | None]]:
        """(stage, state, record) with state done / stale / pending / interrupted."""
        rows = []
        for stage, key in self.keys().items():
            rec = self.record(stage)
            if rec is None:
                started = (self.stage_dir(stage) / "config.yaml").exists()
                rows.append((stage, "interrupted" if started else "pending", None))
            elif rec.get("key") != key:
                rows.append((stage, "stale", rec))
            else:
                rows.append((stage, "done", rec))
        return rows


OWNER = "pipeline.json"  # which pipeline file writes into an output folder


def claim_output(pipeline: Pipeline, overwrite: bool = False) -> None:
    """Refuse to write a study into a folder that holds another pipeline file's outputs.

    The same file (edited or not) may always continue its own folder: stage keys decide what
    re-runs.  ``overwrite`` hands the folder to this pipeline; stages then re-run as their
    keys say (another study's records carry other keys, so nothing of it is reused silently).
    """
    stamp = pipeline.root / OWNER
    me = str(pipeline.path.resolve())
    if stamp.exists() and not overwrite:
        try:
            owner = json.loads(stamp.read_text()).get("pipeline")
        except (json.JSONDecodeError, AttributeError):
            owner = None
        if owner != me:
            raise PipelineConfigError(
                f"{pipeline.path}: out: {pipeline.root} holds the outputs of another study "
                f"({owner or 'unreadable ' + str(stamp)}); choose another out: folder, or pass "
                "--overwrite to replace them")
    elif not stamp.exists() and pipeline.root.exists() and any(
            pipeline.stage_dir(name).exists() for name in pipeline.stage_names()) \
            and not overwrite:
        raise PipelineConfigError(
            f"{pipeline.path}: out: {pipeline.root} holds stage folders of an unknown study; choose "
            "another out: folder, or pass --overwrite to replace them")
    pipeline.root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(stamp, {"pipeline": me, "hipcg_version": __version__})


def run_pipeline(pipeline: Pipeline, from_stage: str | None = None, only: str | None = None,
                 log: Callable[[str], None] = print, overwrite: bool = False) -> dict[str, str]:
    """Run the stages that are not up to date; return {stage: 'ran' | 'skipped'}."""
    names = pipeline.stage_names()
    for flag, value in (("--from", from_stage), ("--only", only)):
        if value is not None and value not in names:
            raise PipelineConfigError(f"{flag} {value!r}: stages are {', '.join(names)}")
    claim_output(pipeline, overwrite)
    keys = pipeline.keys()
    outcome: dict[str, str] = {}
    upstream: dict[str, dict] = {}
    forced_from = names.index(from_stage) if from_stage else len(names)
    only_index = names.index(only) if only else None
    for index, stage in enumerate(pipeline.stages):
        if only_index is not None and index > only_index:
            break
        rec = pipeline.record(stage.name)
        up_to_date = rec is not None and rec.get("key") == keys[stage.name]
        if only_index is not None:
            must_run = index == only_index
        else:
            must_run = not up_to_date or index >= forced_from
        if not must_run:
            if not up_to_date:
                raise PipelineConfigError(
                    f"--only {only}: upstream stage {stage.name!r} is not up to date; run the "
                    f"pipeline (or --from {stage.name}) first")
            upstream[stage.name] = rec["outputs"]
            log(f"[{stage.name}] up to date, skipped")
            outcome[stage.name] = "skipped"
            continue
        directory = pipeline.stage_dir(stage.name)
        directory.mkdir(parents=True, exist_ok=True)
        # this stage's outputs are about to change: its record and every later stage's record
        # go first, so that a kill leaves them "interrupted", never "done" over stale outputs
        for later in names[index:]:
            (pipeline.stage_dir(later) / RECORD).unlink(missing_ok=True)
        started = directory / "config.yaml"
        resuming = (not up_to_date and started.exists()
                    and (yaml.safe_load(started.read_text()) or {}).get("key") == keys[stage.name])
        write_text_atomic(started, yaml.safe_dump(
            {stage.name: pipeline.section(stage.name), "pipeline": str(pipeline.path),
             "key": keys[stage.name]}, sort_keys=False))
        log(f"[{stage.name}] {'resuming' if resuming else 'running'} in {directory}")
        start = time.perf_counter()
        try:
            outputs = stage.run(StageContext(stage.name, directory, pipeline.section(stage.name),
                                             pipeline, dict(upstream), resuming))
        except (KeyboardInterrupt, StageFailed):
            raise
        except Exception as err:  # noqa: BLE001 - any stage failure is reported with its stage
            raise StageFailed(stage.name, directory, err) from err
        seconds = time.perf_counter() - start
        write_json_atomic(directory / RECORD, sort_keys=True, default=str, data={
            "stage": stage.name, "key": keys[stage.name], "outputs": outputs,
            "seconds": round(seconds, 1), "hipcg_version": __version__,
            "finished": datetime.datetime.now().isoformat(timespec="seconds")})
        upstream[stage.name] = outputs
        outcome[stage.name] = "ran"
        log(f"[{stage.name}] done in {seconds:.0f} s")
    return outcome
