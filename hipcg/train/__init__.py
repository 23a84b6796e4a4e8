"""Force matching of a HIP-NN(-TS) + repulsive-prior CG model (``hipcg train``).

The loop drives the hippynn network modules directly instead of hippynn's database/graph
machinery: each frame's pair graph is built once (:class:`hipcg.graph_cache.GraphCache`: all
periodic images, as the LAMMPS plugin passes them) and cached; a batch is several frames
concatenated with node offsets (:mod:`.loop`).  Splits are contiguous blocks of frames
(:mod:`.data`).  Every epoch writes ``checkpoint.pt`` atomically; ``resume=True`` continues
from it and, because each epoch's batch order comes from ``seed + epoch`` alone, ends where an
uninterrupted run with the same seed ends.

Modules: :mod:`.config` (the ``train:`` section), :mod:`.devices`, :mod:`.data`, :mod:`.loop`;
this one ties them together and writes the run folder.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .. import UNITS, __version__
from ..atomic import write_json_atomic, write_text_atomic
from ..config import ConfigError  # noqa: F401  (re-exported: hipcg.train.ConfigError)
from ..errors import OutputExistsError
from ..graph_cache import GraphCache
from ..models.cg import CGModel, build_cg_model
from ..models.hipnn import HipnnConfig
from ..prior import RepulsivePrior, fit_prior
from .config import LossConfig, OptimizerConfig, SplitConfig, TrainConfig  # noqa: F401
from ..volume import VolumeFit, VolumeTerm, fit_to_datasets
from .data import (FrameRef, PressureTargets, Sets, ThermalTargets, load_datasets,  # noqa: F401
                   load_pressure_targets, load_thermal_targets, make_sets, reference_temperature,
                   split_frames)
from .devices import resolve_device, select_kernels
from .loop import (epoch_batches, evaluate_frames, frame_virial, save_atomic, snapshot, stop_reason,
                   train_epoch)

CHECKPOINT = "checkpoint.pt"
BEST = "model_state.pt"  # best weights + everything `hipcg export` needs
REPORT = "report.json"
CONFIG_COPY = "config.yaml"


@dataclass
class TrainResult:
    out_dir: Path
    epochs: int
    best_epoch: int
    best_valid_loss: float
    metrics: dict  # {state point: {split: {rmse, mae, r2, ...}}}
    prior: dict | None
    finished: bool
    seconds: float
    volume_fit: dict | None = None  # pressure matching's volume term (hipcg.volume), if on


@dataclass
class _Run:
    """What the epochs work on: built fresh or restored from the checkpoint."""

    model: CGModel
    optimizer: torch.optim.Optimizer
    scheduler: object
    params: list
    prior: dict | None
    state: dict
    volume_fit: VolumeFit | None = None
    thermal: ThermalTargets | None = None  # temperature-aware models: temperatures and energies


def _format_table(metrics: dict) -> str:
    has_p = any("pressure_rmse" in m for splits in metrics.values() for m in splits.values())
    has_e = any("energy_rmse" in m for splits in metrics.values() for m in splits.values())
    p_head = (f" {'P bias':>8} {'P RMSE':>8}" if has_p else "") + (f" {'E RMSE':>9} {'E R^2':>6}" if has_e else "")
    p_unit = (f" {'atm':>8} {'atm':>8}" if has_p else "") + (f" {'kcal/bead':>9} {'':>6}" if has_e else "")
    lines = [f"{'state point':<16} {'split':<8} {'frames':>6} {'RMSE':>10} {'MAE':>10} {'R^2':>8}{p_head}",
             f"{'':<16} {'':<8} {'':>6} {'kcal/mol/Å':>10} {'kcal/mol/Å':>10} {'':>8}{p_unit}"]
    for name, splits in metrics.items():
        for split, m in splits.items():
            p_cols = (f" {m['pressure_bias']:>8.0f} {m['pressure_rmse']:>8.0f}" if "pressure_rmse" in m
                      else (f" {'-':>8} {'-':>8}" if has_p else ""))
            if has_e:
                p_cols += (f" {m['energy_rmse']:>9.4f} {m['energy_r2']:>6.3f}" if "energy_rmse" in m
                           else f" {'-':>9} {'-':>6}")
            lines.append(f"{name:<16} {split:<8} {m['frames']:>6} {m['rmse']:>10.4f} "
                         f"{m['mae']:>10.4f} {m['r2']:>8.4f}{p_cols}")
    return "\n".join(lines)


def _open_output(config: TrainConfig, resume: bool, overwrite: bool) -> Path:
    out = Path(config.out_dir)
    if out.exists() and any(out.iterdir()) and not resume and not overwrite:
        raise OutputExistsError(f"{out} is not empty; use resume=True (--resume) to continue or "
                                "overwrite=True (--overwrite) to start over")
    if resume and not (out / CHECKPOINT).exists():
        raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {out}")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _load_checkpoint(path: Path, config: TrainConfig) -> dict:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    saved, now = dict(checkpoint["config"]), config.to_dict()
    for key in ("out_dir", "device", "kernels"):  # may legitimately change between runs
        saved.pop(key, None)
        now.pop(key, None)
    if saved != now:
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise ConfigError(f"--resume: the configuration differs from the checkpoint's in {diff}")
    return checkpoint


def _build_run(config: TrainConfig, datasets, type_names, checkpoint, device, dtype,
               thermal: ThermalTargets | None = None) -> _Run:
    torch.manual_seed(config.seed)
    if checkpoint is not None:
        prior = RepulsivePrior.from_dict(checkpoint["prior"]) if checkpoint["prior"] else None
    elif config.prior.enabled:
        train_ds = [ds for sp, ds in zip(config.state_points, datasets) if sp.role == "train"]
        prior = fit_prior(train_ds, type_names, config.prior)
    else:
        prior = None
    # with pressure matching a volume term; its values come from fit_volume or the checkpoint
    volume = VolumeTerm(0.0, 0.0, 1.0) if config.loss.pressure else None
    t_ref = reference_temperature(config, thermal) if thermal is not None else None
    model = build_cg_model(config.model, len(type_names), prior, volume, t_ref).to(device=device,
                                                                                 dtype=dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = config.optimizer
    optimizer = torch.optim.Adam(params, lr=opt.lr, weight_decay=opt.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=opt.plateau_factor, patience=opt.plateau_patience, min_lr=0.0)
    state = {"epoch": 0, "best_valid": float("inf"), "best_epoch": 0, "since_best": 0,
             "history": [], "finished": False, "best_state": None}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = checkpoint["state"]
    return _Run(model, optimizer, scheduler, params, prior.to_dict(type_names) if prior else None,
                state, thermal=thermal)


def fit_volume(model: CGModel, cache: GraphCache, sets: Sets, datasets, device,
               thermal: ThermalTargets | None = None) -> VolumeFit:
    """Set the model's volume term to the closed-form optimum of the pressure loss for its
    current network (least squares over the training frames, state points weighed equally):
    at the start, so that the term begins where the pressure is right, and on the best weights
    at the end, so that Adam's last steps do not leave a bias."""
    by_state: dict[int, list[int]] = {}
    for ref in sets.of("train"):
        by_state.setdefault(ref.state, []).append(ref.frame)
    states = sorted(by_state)
    index = {id(datasets[i]): i for i in states}
    model.eval()
    fit = fit_to_datasets(lambda ds, k: frame_virial(model, cache, FrameRef(index[id(ds)], k), device,
                                                     thermal),
                          [datasets[i] for i in states], [by_state[i] for i in states])
    model.volume.set(fit.term)
    return fit


def _log_volume(fit: VolumeFit, when: str, log) -> None:
    t = fit.term
    log(f"volume term ({when}): P_V = {t.p0:.1f} atm at v0 = {t.v0:.3f} Å^3/bead, K = {t.bulk:.1f} atm"
        + ("" if fit.bulk_fitted else " (one volume: K not identifiable, 0)")
        + f"; per-frame pressure residual {fit.rmse:.0f} atm over {fit.frames} frames")


def _log_prior(run: _Run, type_names, log) -> None:
    if run.model.prior is None:
        return
    log("repulsive prior (E = (s p / a) exp(a (t - r)), a = ln(1/p)/dr):")
    for pp in run.model.prior.params(type_names):
        log(f"  {pp.types[0]}-{pp.types[1]}: t = {pp.t:.3f} Å, s = {pp.s:.3f} kcal/(mol Å), "
            f"p = {pp.p:g}, dr = {pp.dr:g} Å")


def _end_epoch(run: _Run, epoch: int, train_loss: float, valid_loss: float,
               opt: OptimizerConfig) -> None:
    """Scheduler step, history, best weights and the stop decision after one epoch."""
    run.scheduler.step(valid_loss)
    lr = run.optimizer.param_groups[0]["lr"]
    state = run.state
    state["epoch"] = epoch
    state["history"].append({"epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss,
                             "lr": lr})
    if valid_loss < state["best_valid"]:
        state.update(best_valid=valid_loss, best_epoch=epoch, since_best=0,
                     best_state=snapshot(run.model))
    else:
        state["since_best"] += 1
    state["stop_reason"] = stop_reason(state, lr, opt)
    state["finished"] = state["stop_reason"] is not None


def _final_metrics(run: _Run, cache: GraphCache, sets: Sets, device, batch_size: int,
                   datasets, pressure: PressureTargets | None, log) -> dict:
    """Best weights on every split of every state point (and the held-out ones); with pressure
    matching the volume term is first refitted on them (closed form, :func:`fit_volume`)."""
    run.model.load_state_dict(run.state["best_state"])
    run.model.eval()
    if run.model.volume is not None:
        run.volume_fit = fit_volume(run.model, cache, sets, datasets, device, run.thermal)
        run.state["best_state"] = snapshot(run.model)
        _log_volume(run.volume_fit, "refitted on the best weights", log)
    metrics: dict = {}
    for (name, split), refs in sets.refs.items():
        if refs:
            m, _ = evaluate_frames(run.model, cache, refs, device, batch_size, pressure=pressure,
                                   thermal=run.thermal)
            metrics.setdefault(name, {})[split] = {**m, "frames": len(refs)}
    return metrics


def _write_outputs(out: Path, config: TrainConfig, run: _Run, datasets, type_names,
                   metrics: dict) -> None:
    import hippynn

    state = run.state
    state_points = [{"name": sp.name, "role": sp.role, "dataset": str(sp.dataset),
                     "state_point": ds.metadata.get("state_point", {})}
                    for sp, ds in zip(config.state_points, datasets)]
    volume = run.volume_fit.to_dict() if run.volume_fit is not None else None
    t_ref = (float(run.model.network.reference_temperature) if run.model.temperature_aware
             else None)
    save_atomic({"model_config": asdict(config.model), "type_names": type_names,
                 "reference_temperature": t_ref,
                 "energy_keys": run.thermal.energy_key if run.thermal is not None else None,
                 "prior": run.prior, "volume_term": volume,
                 "state_dict": state["best_state"], "state_points": state_points,
                 "metrics": metrics, "best_epoch": state["best_epoch"],
                 "train_dtype": config.dtype, "hipcg_version": __version__}, out / BEST)
    write_json_atomic(out / REPORT, default=float, data={
        "units": UNITS, "epochs": state["epoch"], "best_epoch": state["best_epoch"],
        "stop_reason": state.get("stop_reason"), "best_valid_loss": state["best_valid"],
        "metrics": metrics, "prior": run.prior, "volume_term": volume, "state_points": state_points,
        "reference_temperature": t_ref,
        "history": state["history"], "type_names": type_names,
        "versions": {"hipcg": __version__, "hippynn": hippynn.__version__, "torch": torch.__version__}})


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False, progress: bool = True,
          stop_after_epochs: int | None = None, log=print) -> TrainResult:
    """Train; see the module docstring.  ``stop_after_epochs`` returns early after that many
    epochs of this call (used by tests to stand in for a kill between checkpoints)."""
    import yaml

    t_start = time.perf_counter()
    out = _open_output(config, resume, overwrite)
    device = resolve_device(config.device)
    kernels = select_kernels(config.kernels, device)
    dtype = torch.float32 if config.dtype == "float32" else torch.float64
    datasets, type_names = load_datasets(config)
    sets = make_sets(config, datasets)
    train_refs, valid_refs = sets.of("train"), sets.of("valid")
    pressure = load_pressure_targets(config, datasets)
    thermal = load_thermal_targets(config, datasets)
    checkpoint = _load_checkpoint(out / CHECKPOINT, config) if resume else None
    run = _build_run(config, datasets, type_names, checkpoint, device, dtype, thermal)
    cache = GraphCache(datasets, config.model.cutoff, dtype)
    if checkpoint is None:
        write_text_atomic(out / CONFIG_COPY, yaml.safe_dump(config.to_dict(), sort_keys=False))
        _log_prior(run, type_names, log)
        if run.model.volume is not None:
            _log_volume(fit_volume(run.model, cache, sets, datasets, device, thermal), "start", log)
        if thermal is not None:
            log(f"temperature-aware: W = E - (T / {float(run.model.network.reference_temperature):g} K) "
                f"S'; energy matching on {sorted(set(k for k in thermal.energy_key if k))} "
                f"(weight {config.loss.energy:g})")
    else:
        log(f"resuming {out} after epoch {run.state['epoch']}")
    log(f"{len(train_refs)} training / {len(valid_refs)} validation frames, device {device}, "
        f"{config.dtype}, hippynn kernels {kernels}")

    opt = config.optimizer
    calls = 0
    while not run.state["finished"]:
        calls += 1
        epoch = run.state["epoch"] + 1
        batches = epoch_batches(train_refs, opt.batch_size, config.seed, epoch, config.balance_states)
        train_loss = train_epoch(run.model, run.optimizer, run.params, cache,
                                 _progress(batches, f"epoch {epoch}", progress), device, config.loss,
                                 opt.grad_clip, pressure, thermal)
        run.model.eval()
        # the best epoch, the lr schedule and early stopping steer on the forces (and pressure)
        # of the validation frames: their energies are mostly noise to a CG model (E(R) explains
        # 15-30 % of a one-bead methanol's), and steering on them picked an epoch-8 model whose
        # forces had not converged
        valid_loss = (evaluate_frames(run.model, cache, valid_refs, device, opt.batch_size,
                                      replace(config.loss, energy=0.0), pressure, thermal)[1]
                      if valid_refs else train_loss)  # no validation frames: steer on training
        _end_epoch(run, epoch, train_loss, valid_loss, opt)
        if progress:
            log(f"epoch {epoch}: train loss {train_loss:.4f}, valid loss {valid_loss:.4f}, "
                f"lr {run.state['history'][-1]['lr']:.2e}" + (" *" if run.state["best_epoch"] == epoch else ""))
        save_atomic({"config": config.to_dict(), "prior": run.prior, "type_names": type_names,
                     "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                     "scheduler": run.scheduler.state_dict(), "state": run.state,
                     "hipcg_version": __version__}, out / CHECKPOINT)
        if stop_after_epochs is not None and calls >= stop_after_epochs and not run.state["finished"]:
            return TrainResult(out, epoch, run.state["best_epoch"], run.state["best_valid"], {},
                               run.prior, False, time.perf_counter() - t_start)

    metrics = _final_metrics(run, cache, sets, device, opt.batch_size, datasets, pressure, log)
    _write_outputs(out, config, run, datasets, type_names, metrics)
    seconds = time.perf_counter() - t_start
    log(_format_table(metrics))
    log(f"trained {run.state['epoch']} epochs ({run.state.get('stop_reason')}), best epoch "
        f"{run.state['best_epoch']}, valid loss {run.state['best_valid']:.4f}; {out / BEST} "
        f"({seconds:.1f} s)")
    return TrainResult(out, run.state["epoch"], run.state["best_epoch"], run.state["best_valid"],
                       metrics, run.prior, True, seconds,
                       run.volume_fit.to_dict() if run.volume_fit is not None else None)


def _progress(items, desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, leave=False, unit="batch", file=sys.stderr, dynamic_ncols=True)


def load_trained(out_dir: str | Path, dtype: torch.dtype = torch.float64) -> tuple[CGModel, dict]:
    """The best model of a finished training run (CPU) and its saved record."""
    path = Path(out_dir) / BEST
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {out_dir} a finished `hipcg train` run?")
    record = torch.load(path, map_location="cpu", weights_only=False)
    prior = RepulsivePrior.from_dict(record["prior"], dtype=dtype) if record["prior"] else None
    volume = VolumeTerm.from_dict(record["volume_term"], str(path)) if record.get("volume_term") else None
    model = build_cg_model(HipnnConfig(**record["model_config"]), len(record["type_names"]), prior,
                           volume, record.get("reference_temperature"))
    model = model.to(dtype)
    model.load_state_dict({k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
                           for k, v in record["state_dict"].items()})
    return model.eval(), record
