"""Static and dynamic evaluation of CG models against mapped atomistic data, state point by state point.

Static: force RMSE / MAE / R^2 on a state point's mapped frames.  Dynamic: a CG run in LAMMPS
(NVT at the reference density; optionally NPT at the reference pressure) compared with the
mapped atomistic trajectory: RDF per bead-type pair and the RDF error, intramolecular bead
distance distributions, density, pressure, diffusion.  Definitions: docs/evaluation.md.

The result is one JSON-ready dict (:func:`evaluate`) that ``hipcg report`` turns into tables
and plots; every number in the report comes from it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from . import analysis as A
from .simulate import SimulationConfig, StartStructure, run_or_blowup
from .config import NonNegativeInt, Positive, PositiveInt, Range, slug
from .data import frame_subset
from .statepoint import StatePoint, dataset_path
from .transferability import add_scores
from .errors import DataError, OutputExistsError


@dataclass
class CGRunSettings:
    """The ``simulate:`` section: the CG MD protocol of every model at every state point."""

    steps: PositiveInt = 20000  # NVT steps per model and state point
    npt_steps: NonNegativeInt = 0  # 0: no NPT run (no density)
    timestep: Positive = 2.0  # fs
    thermostat: Literal["langevin", "nose-hoover"] = "nose-hoover"  # Langevin friction slows diffusion
    dump_every: PositiveInt = 100
    thermo_every: PositiveInt = 100
    equilibration: Annotated[float, Range(ge=0, lt=1)] = 0.2
    nprocs: PositiveInt = 1
    threads: PositiveInt = 1
    seed: Annotated[int, Range(ge=1)] = 2024
    min_distance: Positive = 1.0
    max_temperature_factor: Positive = 3.0
    minimize_steps: NonNegativeInt = 0
    timeout: Positive | None = None  # s per LAMMPS run
    # pair_style hipcg backend of the CG runs, and the backend of the static force metrics
    backend: Literal["auto", "native", "torch"] = "auto"


@dataclass
class AnalysisSettings:
    """The ``evaluate:`` section: how many frames the static metrics and references use."""

    max_static_frames: PositiveInt = 50
    max_reference_frames: PositiveInt = 500  # frames of the dataset used for the reference RDF


@dataclass
class EvaluationSettings(CGRunSettings, AnalysisSettings):
    """Both sections together: what :func:`evaluate` needs (``hipcg evaluate --config``'s
    ``settings:``)."""

    @classmethod
    def from_sections(cls, simulate: dict | None, evaluate: dict | None) -> "EvaluationSettings":
        from .config import from_dict

        runs = from_dict(CGRunSettings, simulate, "simulate")
        analysis = from_dict(AnalysisSettings, evaluate, "evaluate")
        return cls(**asdict(runs), **asdict(analysis))

    @classmethod
    def from_dict(cls, data: dict, path: str = "evaluate") -> "EvaluationSettings":
        from .config import from_dict

        return from_dict(cls, data, path)


# --------------------------------------------------------------------------- models


def model_kind(path: str | os.PathLike) -> str:
    return "baseline" if Path(path).suffix == ".json" else "hipcg"


class ForcePredictor:
    """Forces of a model file or a baseline on dataset frames (the same numbers LAMMPS uses)."""

    def __init__(self, path: str | os.PathLike, backend: str = "auto"):
        self.path = Path(path)
        self.kind = model_kind(path)
        if self.kind == "baseline":
            from .baseline import load_baseline

            self.table = load_baseline(path)
            self.type_names, self.cutoff = self.table.type_names, self.table.cutoff
        else:
            from .backends import ModelEvaluator
            from .modelfile import read_metadata

            # a temperature-aware model gets its T per frame (forces()); 1 K only to open it
            aware = read_metadata(path).temperature_aware
            self.evaluator = ModelEvaluator(path, backend=backend, temperature=1.0 if aware else None)
            self.meta = self.evaluator.metadata
            self.type_names, self.cutoff = list(self.meta.type_names), self.meta.cutoff

    @property
    def model_kind(self) -> str:
        """What the report's rows call it: pairwise, local-density, hipnn, hipnn-temperature
        (another model file: its metadata's kind, e.g. lennard-jones)."""
        if self.kind == "baseline":
            return "local-density" if self.table.local_density is not None else "pairwise"
        if self.meta.model.startswith("hipnn:"):
            return "hipnn-temperature" if self.meta.temperature_aware else "hipnn"
        return self.meta.model or "hipcg"

    def species(self, dataset_type_names: list[str], bead_types: np.ndarray) -> np.ndarray:
        index = {n: k for k, n in enumerate(self.type_names)}
        missing = sorted(set(dataset_type_names[t] for t in np.unique(bead_types)) - set(index))
        if missing:
            raise DataError(f"{self.path}: knows types {self.type_names}, data has {missing}")
        return np.array([index[dataset_type_names[t]] for t in bead_types])

    def forces(self, positions, box, species, temperature: float | None = None) -> np.ndarray:
        """Forces on one frame; ``temperature`` (K) sets a temperature-aware model's T."""
        if self.kind == "baseline":
            return self.table.forces(positions, box, species)
        from .graph import periodic_graph

        self.evaluator.set_temperature(temperature if self.meta.temperature_aware else None)
        g = periodic_graph(positions, box, species, self.cutoff)
        return self.evaluator.evaluate(g).forces


def static_metrics(predictor: ForcePredictor, dataset, max_frames: int = 50,
                   temperature: float | None = None) -> dict:
    """Force RMSE, MAE (kcal/(mol Å)) and R^2 per Cartesian component over frames and beads
    (a temperature-aware model evaluated at ``temperature``, the state point's)."""
    species = predictor.species(dataset.type_names, dataset.bead_types)
    pred, ref = [], []
    t0 = time.perf_counter()
    for k in frame_subset(dataset.n_frames, max_frames):
        pred.append(predictor.forces(dataset.positions[k], dataset.boxes[k], species, temperature))
        ref.append(np.asarray(dataset.forces[k], dtype=np.float64))
    pred, ref = np.concatenate(pred).ravel(), np.concatenate(ref).ravel()
    err = pred - ref
    ss_tot = np.sum((ref - ref.mean()) ** 2)
    return {"force_rmse": float(np.sqrt(np.mean(err**2))), "force_mae": float(np.mean(np.abs(err))),
            "force_r2": float(1.0 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
            "n_frames": len(pred) // (3 * dataset.n_beads), "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- reference


def state_of(sp: StatePoint, dataset) -> dict:
    meta = dataset.metadata.get("state_point", {}) or {}
    temperature = sp.temperature if sp.temperature is not None else meta.get("temperature")
    if temperature is None:
        raise DataError(f"state point {sp.name}: no temperature given or in {sp.dataset}'s metadata")
    pressure = sp.pressure if sp.pressure is not None else meta.get("pressure")
    density = float(A.density(dataset.masses, dataset.boxes).mean())
    interval = sp.frame_interval_fs or dataset.metadata.get("frame_interval_fs")
    thermo = dataset.thermo or {}
    return {"temperature": float(temperature), "pressure": None if pressure is None else float(pressure),
            "density": density, "frame_interval_fs": interval,
            # the atomistic pressure at the dataset's (NVT) density, beside the CG NVT pressure
            "pressure_nvt": float(thermo["pressure"].mean()) if "pressure" in thermo else None,
            "compressibility": meta.get("compressibility"),
            # 1/K, atomistic NPT volume-enthalpy fluctuations (what a T-dependent volume term
            # would have to match; None for data made before it was recorded)
            "thermal_expansion": meta.get("thermal_expansion")}


def reference_observables(dataset, r_max: float, frame_interval_fs: float | None,
                          max_frames: int = 500) -> dict:
    idx = frame_subset(dataset.n_frames, max_frames)
    pos, boxes = dataset.positions[idx], dataset.boxes[idx]
    half = len(idx) // 2  # contiguous halves: as independent as the run allows (noise floor)
    # one pass over the frames: the two halves' histograms, and the whole as their sum
    parts = [A.PairHistogram(len(dataset.type_names), r_max).add(
        pos[part], boxes[part], dataset.bead_types, dataset.molecule_ids)
        for part in (slice(0, half), slice(half, None))]
    as_rdfs = (lambda hist: A.rdfs_of(hist, dataset.bead_types, dataset.type_names,
                                      intermolecular=True))
    rdfs = as_rdfs(parts[0] + parts[1])
    halves = (as_rdfs(parts[0]), as_rdfs(parts[1])) if half >= 2 else None
    bonds = A.bond_distances(pos, boxes, dataset.molecule_ids, dataset.bead_types, dataset.type_names)
    out = {"rdfs": rdfs, "rdf_halves": halves, "bonds": bonds,
           "density": float(A.density(dataset.masses, dataset.boxes).mean()), "diffusion": None}
    if frame_interval_fs and dataset.n_frames >= 8:
        un = A.unwrap(dataset.positions, dataset.boxes)
        out["diffusion"] = A.diffusion(un, dataset.boxes, float(frame_interval_fs)).coefficient
    return out


# --------------------------------------------------------------------------- dynamic


def simulation_config(model: Path, settings: EvaluationSettings, state: dict, ensemble: str) -> SimulationConfig:
    return SimulationConfig(
        model=str(model), temperature=state["temperature"], ensemble=ensemble,
        thermostat=settings.thermostat,
        pressure=state["pressure"] if state["pressure"] is not None else 1.0,
        timestep=settings.timestep, steps=settings.steps if ensemble == "nvt" else settings.npt_steps,
        equilibration=settings.equilibration, dump_every=settings.dump_every,
        thermo_every=settings.thermo_every, seed=settings.seed, nprocs=settings.nprocs,
        threads=settings.threads, min_distance=settings.min_distance,
        max_temperature_factor=settings.max_temperature_factor, minimize_steps=settings.minimize_steps,
        backend=settings.backend)


def dynamic_metrics(model: Path, dataset, state: dict, reference: dict, r_max: float,
                    settings: EvaluationSettings, workdir: Path, overwrite: bool = False,
                    reuse: bool = False) -> dict:
    """NVT (and NPT) runs of ``model`` from the dataset's last frame, compared with ``reference``."""
    start = StartStructure.from_dataset(dataset, -1)
    out: dict = {"nvt": None, "npt": None}
    cfg = simulation_config(model, settings, state, "nvt")
    res, blew_up = run_or_blowup(cfg, start, workdir / "nvt", overwrite=overwrite, timeout=settings.timeout,
                                 reuse=reuse)
    if blew_up:
        out["nvt"] = {"blew_up": blew_up, "rdf_error": float("nan")}
    else:
        tr = res.trajectory.production(settings.equilibration)
        pos = tr.wrapped()
        rdfs = A.all_rdfs(pos, tr.boxes, tr.bead_types, tr.type_names, r_max, molecule_ids=tr.molecule_ids)
        errors = {k: A.rdf_error(rdfs[k], reference["rdfs"][k]) for k in rdfs if k in reference["rdfs"]}
        bonds = A.bond_distances(pos, tr.boxes, tr.molecule_ids, tr.bead_types, tr.type_names)
        bond_errors = {k: A.distribution_error(bonds[k], reference["bonds"][k])
                       for k in bonds if k in reference["bonds"]}
        diffusion = None
        if len(tr.positions) >= 8:
            dt_frames = settings.dump_every * settings.timestep
            diffusion = A.diffusion(tr.positions, tr.boxes, dt_frames).coefficient
        out["nvt"] = {
            "blew_up": None, "rdfs": rdfs, "rdf_errors": errors,
            "rdf_error": max(errors.values()) if errors else float("nan"),
            "bond_errors": bond_errors, "bonds": bonds,
            "pressure": float(np.mean(tr.thermo["Press"])) if "Press" in tr.thermo else None,
            "temperature": float(np.mean(tr.thermo["Temp"])) if "Temp" in tr.thermo else None,
            "diffusion": diffusion, "steps_per_s": res.steps_per_s, "n_frames": len(tr.positions),
        }
    if settings.npt_steps > 0 and state["pressure"] is not None:
        cfg = simulation_config(model, settings, state, "npt")
        res, blew_up = run_or_blowup(cfg, start, workdir / "npt", overwrite=overwrite,
                                     timeout=settings.timeout, reuse=reuse)
        if blew_up:
            out["npt"] = {"blew_up": blew_up, "density": float("nan")}
        else:
            tr = res.trajectory.production(settings.equilibration)
            rho = float(np.mean(A.density(tr.masses, tr.boxes)))
            volumes = np.abs(np.linalg.det(tr.boxes))
            out["npt"] = {"blew_up": None, "density": rho,
                          "density_error": (rho - reference["density"]) / reference["density"],
                          "compressibility": A.compressibility(volumes, state["temperature"])
                          if len(volumes) >= 4 else None,
                          "steps_per_s": res.steps_per_s}
    return out


# --------------------------------------------------------------------------- driver


def evaluate(models: dict[str, str | os.PathLike], state_points: list[StatePoint],
             settings: EvaluationSettings | None = None, workdir: str | os.PathLike = "evaluation",
             overwrite: bool = False, progress: bool = True, runs_dir: str | os.PathLike | None = None,
             reuse: bool = False) -> dict:
    """Evaluate every model at every state point; returns the JSON-ready result (also written
    to ``workdir/evaluation.json``).  CG runs live in ``runs_dir/<state>/<model>/`` (default
    ``workdir``); ``reuse`` takes completed runs of the same settings found there."""
    from tqdm import tqdm

    from .data import load_dataset

    settings = settings or EvaluationSettings()
    workdir = Path(workdir)
    target = workdir / "evaluation.json"
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; not overwriting it (use --overwrite)")
    workdir.mkdir(parents=True, exist_ok=True)
    predictors = {name: ForcePredictor(path, settings.backend) for name, path in models.items()}
    result = {"settings": asdict(settings),
              "definitions": {"rdf_bin_width": A.RDF_BIN_WIDTH, "rdf_error_tolerance": A.RDF_ERROR_TOLERANCE,
                              "rdf_error": "mean |g_model - g_ref| over 0.1 Å bins from 0 to "
                                           "min(cutoff, half the shortest box width); max over type pairs",
                              "units": {"force": "kcal/(mol Å)", "pressure": "atm", "density": "g/cm^3",
                                        "diffusion": "Å^2/fs (x 1e4 = 1e-5 cm^2/s)", "temperature": "K"}},
              "models": {n: {"path": str(Path(p).resolve()), "kind": predictors[n].kind,
                             "model_kind": predictors[n].model_kind,
                             "cutoff": predictors[n].cutoff, "type_names": predictors[n].type_names}
                         for n, p in models.items()},
              "state_points": []}
    jobs = [(sp, name) for sp in state_points for name in models]
    bar = tqdm(total=len(jobs), desc="evaluate", unit="run", disable=not progress)
    for sp in state_points:
        ds = load_dataset(dataset_path(sp))
        state = state_of(sp, ds)
        row = {"name": sp.name, "dataset": str(sp.dataset), "trained": sp.trained, **state,
               "models": {}, "reference": {}}
        references = {}
        for name, pred in predictors.items():
            bar.set_postfix_str(f"{sp.name} / {name}")
            r_max = A.rdf_range(ds.boxes, pred.cutoff)
            if r_max not in references:
                references[r_max] = reference_observables(ds, r_max, state["frame_interval_fs"],
                                                          settings.max_reference_frames)
            ref = references[r_max]
            static = static_metrics(pred, ds, settings.max_static_frames, state["temperature"])
            dyn = dynamic_metrics(Path(models[name]), ds, state, ref, r_max, settings,
                                  Path(runs_dir or workdir) / sp.name / slug(name), overwrite=overwrite,
                                  reuse=reuse)
            row["models"][name] = {"r_max": r_max, "static": static, **dyn}
            row["reference"][name] = ref
            bar.update()
        result["state_points"].append(row)
    bar.close()
    add_scores(result["state_points"])
    result["definitions"]["transferability_score"] = (
        "(rdf_null - rdf_error_common) / (rdf_null - rdf_noise_floor) on the bins the RDFs share; "
        "rdf_noise_floor: reference first half vs second half; rdf_null: the nearest trained state "
        "point's reference RDF as the prediction (docs/evaluation.md)")
    write_json(result, target)
    return to_jsonable(result)


def to_jsonable(obj):
    """RDF objects -> dicts, arrays -> lists, NaN -> None (strict JSON)."""
    if isinstance(obj, A.RDF):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.ndim == 1 and obj.size > 2000:  # raw bond distances: keep a histogram
            hist, edges = np.histogram(obj, bins=100)
            return {"histogram": hist.tolist(), "edges": edges.tolist()}
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(obj, path: Path) -> Path:
    from .atomic import write_json_atomic

    return write_json_atomic(path, to_jsonable(obj), indent=1)


def summary_line(result: dict) -> str:
    parts = []
    for row in result["state_points"]:
        for name, m in row["models"].items():
            err = (m.get("nvt") or {}).get("rdf_error")
            parts.append(f"{row['name']}/{name}: RDF err {err:.3f}" if err is not None
                         else f"{row['name']}/{name}: blew up")
    return "; ".join(parts)
