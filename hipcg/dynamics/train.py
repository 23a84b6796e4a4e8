"""Training of the learned dynamics: Gaussian NLL of the next acceleration, plus the score model.

Samples are windows of a bead trajectory: ``history + 1`` frames ``step_frames`` apart (the
past and the present) and the next frame one learned step later.  The target is the second
difference ``a = x_{t+1} - 2 x_t + x_{t-1}``; input-noise augmentation (Sanchez-Gonzalez et
al. 2020, as in Fu et al.) perturbs the history's positions and computes the target from the
perturbed present, so the network learns to steer a slightly-off state back onto the data.
The score model is trained beside it by denoising score matching on the present frames.

Each training trajectory's last ``validation_fraction`` of frames (a time split: neighbouring
frames are correlated) is held out for validation; the epoch with the lowest validation NLL is
kept.  A checkpoint after every epoch (atomic) lets a killed run resume.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .. import UNITS
from ..atomic import atomic_path, write_json_atomic
from ..config import NonNegative, Positive, PositiveInt, check_fields, from_dict
from ..errors import ConfigError, DataError, ModelFileError
from .model import (ChainTopology, DynamicsModelConfig, DynamicsNet, ScoreNet, denoising_loss,
                    gaussian_nll, geometric_levels)

MODEL_FORMAT = "hipcg-dynamics-model"
MODEL_VERSION = 1


@dataclass
class ScoreConfig:
    """The denoising score model and the correction it applies after each learned step.
    Noise levels are fractions of the training data's displacement per learned step."""

    enabled: bool = True
    sigma_max: Positive = 0.3
    sigma_min: Positive = 0.03
    levels: PositiveInt = 3
    steps_per_level: PositiveInt = 1
    step_size: Positive = 0.5          # eta: x += eta sigma^2 score
    noise: NonNegative = 0.0           # 0: deterministic push; 1: annealed Langevin sampling
    features: Literal["hipnn", "pairwise"] = "hipnn"  # ScoreNet's pair features

    def __post_init__(self) -> None:
        check_fields(self, "dynamics.score")
        if self.sigma_min > self.sigma_max:
            raise ConfigError(f"dynamics.score: sigma_min {self.sigma_min} > sigma_max {self.sigma_max}")


@dataclass
class DynamicsTrainConfig:
    model: DynamicsModelConfig = field(default_factory=DynamicsModelConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    step_frames: PositiveInt = 4             # learned step = this many data frame intervals
    epochs: PositiveInt = 20
    windows_per_sequence: PositiveInt = 512  # windows drawn per training sequence per epoch
    batch: PositiveInt = 64                  # windows per optimiser step (one sequence each)
    learning_rate: Positive = 1e-3
    input_noise: NonNegative = 0.05          # std of history noise, fraction of step_scale
    validation_fraction: Positive = 0.1
    validation_windows: PositiveInt = 256    # per training sequence, fixed
    seed: int = 0
    threads: PositiveInt = 2
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_fields(self, "dynamics.train")
        if not self.validation_fraction < 0.5:
            raise ConfigError(f"dynamics.train.validation_fraction: must be < 0.5 (got {self.validation_fraction})")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dynamics.train.dtype: float32 or float64 (got {self.dtype!r})")


@dataclass
class Windows:
    """All windows of one trajectory part: positions (F, n, 3) and the valid present frames."""

    topo: ChainTopology
    positions: torch.Tensor
    starts: np.ndarray   # frame index of the present of each valid window
    name: str


def _windows(traj, first: int, last: int, step: int, history: int, dtype) -> Windows:
    pos = torch.as_tensor(np.asarray(traj.positions[first:last]), dtype=dtype)
    lo, hi = history * step, len(pos) - 1 - step
    if hi < lo:
        raise DataError(f"bead trajectory {traj.name}: {len(pos)} frames are too few for "
                        f"windows of {history} past steps of {step} frames and one step ahead")
    return Windows(ChainTopology.from_trajectory(traj), pos, np.arange(lo, hi + 1), traj.name)


def gather(w: Windows, present: np.ndarray, step: int, history: int) -> torch.Tensor:
    """(B, history + 2, n, 3): the history (oldest first), the present, then the next frame."""
    offsets = np.arange(-history, 2) * step
    return w.positions[torch.as_tensor(present[:, None] + offsets[None, :])]


def noisy_target(frames: torch.Tensor, noise_std: float, generator: torch.Generator | None):
    """(history with noise, target acceleration from the noisy present)."""
    history, nxt = frames[:, :-1], frames[:, -1]
    if noise_std > 0:
        history = history + noise_std * torch.randn(history.shape, generator=generator, dtype=history.dtype)
    target = nxt - 2.0 * history[:, -1] + history[:, -2]
    return history, target


def data_scales(trains: list[Windows], step: int) -> dict:
    """RMS displacement per learned step and RMS second difference (Å), per component; the
    closest bead approach and the longest bonded distance in the data (Å)."""
    u2, a2, count, closest, longest = 0.0, 0.0, 0, math.inf, 0.0
    for w in trains:
        x = w.positions.double()
        u = x[step:] - x[:-step]
        a = x[2 * step:] - 2 * x[step:-step] + x[:-2 * step]
        u2 += float((u ** 2).mean()) * u.numel()
        a2 += float((a ** 2).mean()) * u.numel()
        count += u.numel()
        d = torch.cdist(x, x)
        n = x.shape[1]
        off = ~torch.eye(n, dtype=torch.bool)
        closest = min(closest, float(d[:, off].min()))
        bb = w.topo.bead_bonds
        if len(bb):
            longest = max(longest, float(d[:, bb[:, 0], bb[:, 1]].max()))
    return {"step_scale": math.sqrt(u2 / count), "accel_scale": math.sqrt(a2 / count),
            "closest_distance": closest, "longest_bond": longest}


def _seed_all(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _batches(trains: list[Windows], cfg: DynamicsTrainConfig, rng: np.random.Generator):
    out = []
    for k, w in enumerate(trains):
        picks = rng.choice(w.starts, size=cfg.windows_per_sequence, replace=len(w.starts) < cfg.windows_per_sequence)
        out += [(k, picks[i:i + cfg.batch]) for i in range(0, len(picks), cfg.batch)]
    rng.shuffle(out)
    return out


def _validate(dyn: DynamicsNet, score: ScoreNet | None, vals: list[Windows], cfg, levels_abs, step) -> dict:
    gen = torch.Generator().manual_seed(12345)
    nll, mse, sl, n = 0.0, 0.0, 0.0, 0
    per_sequence = {}
    with torch.no_grad():
        for w in vals:
            picks = np.linspace(w.starts[0], w.starts[-1], min(cfg.validation_windows, len(w.starts))).astype(int)
            frames = gather(w, picks, step, cfg.model.history)
            hist, target = noisy_target(frames, 0.0, None)
            mean, tril = dyn(w.topo, hist)
            s = dyn.accel_scale.to(mean.dtype)
            v = float(gaussian_nll(target / s, mean / s, tril / s))
            m = float((((target - mean) / s) ** 2).sum(-1).mean())
            nll += v; mse += m; n += 1
            per_sequence[w.name] = {"nll": v, "mse": m}
            if score is not None:
                sig = torch.as_tensor(levels_abs, dtype=hist.dtype)[torch.arange(len(picks)) % len(levels_abs)]
                sl += float(denoising_loss(score, w.topo, hist[:, -1], sig, gen))
    return {"nll": nll / n, "mse": mse / n, "score_loss": sl / n if score is not None else None,
            "per_sequence": per_sequence}


def train_dynamics(trajectories: list, cfg: DynamicsTrainConfig, out_dir: str | Path,
                   resume: bool = True, progress: bool = True) -> dict:
    """Train on ``trajectories`` (:class:`~hipcg.dynamics.beads.BeadTrajectory`, role train);
    write ``out_dir/dynamics_model.pt`` and ``training.json``; return the summary."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not trajectories:
        raise DataError("dynamics training: no training trajectories")
    torch.set_num_threads(cfg.threads)
    dtype = getattr(torch, cfg.dtype)
    step, k = cfg.step_frames, cfg.model.history
    intervals = {round(t.frame_interval_fs, 6) for t in trajectories}
    if len(intervals) != 1:
        raise DataError(f"dynamics training: trajectories have different frame intervals {sorted(intervals)} fs")
    frame_fs = intervals.pop()
    trains, vals = [], []
    for t in trajectories:
        cut = int(round(t.n_frames * (1.0 - cfg.validation_fraction)))
        trains.append(_windows(t, 0, cut, step, k, dtype))
        vals.append(_windows(t, cut, t.n_frames, step, k, dtype))
    gen = _seed_all(cfg.seed)
    scales = data_scales(trains, step)
    dyn = DynamicsNet(cfg.model).to(dtype)
    dyn.set_scales(scales["step_scale"], scales["accel_scale"])
    score = None
    levels_abs = [s * scales["step_scale"] for s in
                  geometric_levels(cfg.score.sigma_max, cfg.score.sigma_min, cfg.score.levels)]
    if cfg.score.enabled:
        score = ScoreNet(cfg.model, cfg.score.features).to(dtype)
        score.sigma_ref.fill_(scales["step_scale"])
    params = list(dyn.parameters()) + (list(score.parameters()) if score is not None else [])
    opt = torch.optim.Adam(params, lr=cfg.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.learning_rate * 0.05)
    history, start_epoch, best = [], 0, None
    ckpt = out_dir / "checkpoint.pt"
    fingerprint = json.dumps({"cfg": asdict(cfg), "data": [(t.name, t.n_frames) for t in trajectories]},
                             sort_keys=True, default=str)
    if resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state.get("fingerprint") == fingerprint:
            dyn.load_state_dict(state["dynamics"])
            if score is not None:
                score.load_state_dict(state["score"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            history, start_epoch, best = state["history"], state["epoch"], state["best"]
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
    rng = np.random.default_rng(cfg.seed + 7919 * start_epoch)
    t0 = time.perf_counter()
    bar = tqdm(range(start_epoch, cfg.epochs), desc="dynamics train", disable=not progress,
               initial=start_epoch, total=cfg.epochs)
    for epoch in bar:
        dyn.train()
        losses = []
        for seq, picks in _batches(trains, cfg, rng):
            w = trains[seq]
            frames = gather(w, picks, step, k)
            hist, target = noisy_target(frames, cfg.input_noise * scales["step_scale"], gen)
            mean, tril = dyn(w.topo, hist)
            s = dyn.accel_scale.to(dtype)
            loss = gaussian_nll(target / s, mean / s, tril / s)
            if score is not None:
                sig = torch.as_tensor(levels_abs, dtype=dtype)[
                    torch.randint(len(levels_abs), (len(picks),), generator=gen)]
                loss = loss + denoising_loss(score, w.topo, frames[:, k], sig, gen)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            losses.append(float(loss.detach()))
        sched.step()
        dyn.eval()
        val = _validate(dyn, score, vals, cfg, levels_abs, step)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_nll": val["nll"],
               "val_mse": val["mse"], "val_score_loss": val["score_loss"],
               "seconds": round(time.perf_counter() - t0, 1)}
        history.append(row)
        if best is None or val["nll"] < best["val_nll"]:
            best = {"epoch": epoch + 1, "val_nll": val["nll"], "val_mse": val["mse"],
                    "per_sequence": val["per_sequence"], "dynamics": copy.deepcopy(dyn.state_dict()),
                    "score": copy.deepcopy(score.state_dict()) if score is not None else None}
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_nll=f"{val['nll']:.3f}")
        with atomic_path(ckpt) as tmp:
            torch.save({"fingerprint": fingerprint, "dynamics": dyn.state_dict(),
                        "score": score.state_dict() if score is not None else None,
                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "history": history, "epoch": epoch + 1, "best": best,
                        "generator": gen.get_state(), "torch_rng": torch.get_rng_state()}, tmp)
    model_path = out_dir / "dynamics_model.pt"
    save_dynamics_model(model_path, cfg, best["dynamics"], best["score"], scales,
                        frame_fs, [t.name for t in trajectories])
    summary = {"model": str(model_path), "best_epoch": best["epoch"], "val_nll": best["val_nll"],
               "val_mse": best["val_mse"], "per_sequence": best["per_sequence"],
               "scales": scales, "learned_step_fs": frame_fs * step, "history": history,
               "train_seconds": history[-1]["seconds"] if history else 0.0}
    write_json_atomic(out_dir / "training.json", summary)
    if progress:
        print(f"dynamics trained: best epoch {best['epoch']}/{cfg.epochs}, validation NLL "
              f"{best['val_nll']:.3f}, MSE {best['val_mse']:.3f} (accel units), learned step "
              f"{frame_fs * step / 1000:.2f} ps")
    return summary


@dataclass
class DynamicsModel:
    """A trained dynamics model as loaded from its file."""

    config: DynamicsTrainConfig
    dynamics: DynamicsNet
    score: ScoreNet | None
    scales: dict
    frame_interval_fs: float
    trained_on: list[str]

    @property
    def learned_step_fs(self) -> float:
        return self.frame_interval_fs * self.config.step_frames

    def score_levels(self) -> list[float]:
        c = self.config.score
        return [s * self.scales["step_scale"] for s in geometric_levels(c.sigma_max, c.sigma_min, c.levels)]


def save_dynamics_model(path, cfg: DynamicsTrainConfig, dynamics_state, score_state, scales,
                        frame_fs: float, trained_on: list[str]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": MODEL_FORMAT, "version": MODEL_VERSION, "units": UNITS,
                    "config": asdict(cfg), "dynamics": dynamics_state, "score": score_state,
                    "scales": scales, "frame_interval_fs": frame_fs, "trained_on": trained_on}, tmp)
    return path


def load_dynamics_model(path) -> DynamicsModel:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such dynamics model file")
    try:
        blob = torch.load(path, weights_only=False, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same error to a user
        raise ModelFileError(f"{path}: not a readable dynamics model ({err})") from None
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: format: not a {MODEL_FORMAT} file")
    if blob.get("units") != UNITS:
        raise ModelFileError(f"{path}: units: {blob.get('units')!r}; hipcg works in {UNITS!r}")
    cfg = from_dict(DynamicsTrainConfig, blob["config"], "dynamics.train")
    dtype = getattr(torch, cfg.dtype)
    dyn = DynamicsNet(cfg.model).to(dtype)
    dyn.load_state_dict(blob["dynamics"])
    dyn.eval()
    score = None
    if blob.get("score") is not None:
        score = ScoreNet(cfg.model, cfg.score.features).to(dtype)
        score.load_state_dict(blob["score"])
        score.eval()
    return DynamicsModel(cfg, dyn, score, blob["scales"], float(blob["frame_interval_fs"]),
                         list(blob["trained_on"]))
