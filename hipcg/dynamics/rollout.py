"""Rollouts of the learned dynamics from held-out starting frames, resumable, with their checks.

One learned step (explicit Euler on the predicted acceleration, as Fu et al.):

    a ~ N(mu, std^2)                       (DynamicsNet, per bead, isotropic std)
    x_{t+1} = x_t + (x_t - x_{t-1}) + a    (velocity update, then position update)
    x_{t+1} <- annealed score correction   (ScoreNet, optional)

``starts`` independent rollouts of one sequence run as one batch, each from its own reference
window (evenly spread over the reference trajectory).  Checks after every step:

* collision: a bead pair closer than ``collision_fraction`` x the closest approach seen in the
  training data; counted per rollout, not fatal;
* blow-up: a non-finite position, or a bonded bead pair farther apart than
  ``blowup_fraction`` x the longest bonded distance in the training data: that rollout stops
  there (its step, bead pair and distance are recorded and printed); the others go on.

Every ``checkpoint_every`` steps the positions so far and the random state are written
atomically to ``rollout.npz``; a killed rollout resumes from there with the same result as an
unbroken one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from ..config import Positive, PositiveInt, check_fields
from ..errors import DataError
from .model import ChainTopology, annealed_correction


@dataclass
class RolloutConfig:
    steps: PositiveInt = 1000             # learned steps per rollout
    starts: PositiveInt = 4               # independent rollouts per sequence
    seed: int = 0
    correction: bool = True               # apply the score model after each step (if trained)
    collision_fraction: Positive = 0.5
    blowup_fraction: Positive = 2.0
    checkpoint_every: PositiveInt = 200
    threads: PositiveInt = 1

    def __post_init__(self) -> None:
        check_fields(self, "rollout")


@dataclass
class RolloutResult:
    name: str
    positions: np.ndarray        # (starts, steps + 1, n, 3) Å; a stopped rollout holds NaN after its stop
    time_fs: np.ndarray          # (steps + 1,)
    collisions: np.ndarray       # (starts,) steps with at least one colliding pair
    blowups: list                # per start: None or {"step", "pair", "distance"}
    wall_seconds: float          # time spent stepping (resumed parts added)
    learned_step_fs: float

    @property
    def fs_per_wall_second(self) -> float:
        """Simulated time per wall-clock second, summed over the batch's rollouts."""
        n = self.positions.shape[0]
        return float(n * (self.positions.shape[1] - 1) * self.learned_step_fs / self.wall_seconds) \
            if self.wall_seconds > 0 else float("nan")


def start_frames(n_frames: int, starts: int, history: int, step: int) -> np.ndarray:
    """Present-frame indices of ``starts`` windows spread evenly over a reference trajectory."""
    first = history * step
    if n_frames <= first:
        raise DataError(f"a reference of {n_frames} frames is too short for a history of "
                        f"{history} steps of {step} frames")
    return np.linspace(first, n_frames - 1, starts + 2)[1:-1].astype(int) if starts > 1 \
        else np.array([(first + n_frames - 1) // 2])


def _bonded_check(x: np.ndarray, bonds: np.ndarray, limit: float):
    """(stretched?, pair, distance) of the worst bonded pair of one configuration."""
    if not np.isfinite(x).all():
        bad = int(np.nonzero(~np.isfinite(x).all(axis=1))[0][0])
        return True, (bad, bad), float("nan")
    if not len(bonds):
        return False, None, 0.0
    d = np.linalg.norm(x[bonds[:, 1]] - x[bonds[:, 0]], axis=1)
    k = int(np.argmax(d))
    return bool(d[k] > limit), (int(bonds[k, 0]), int(bonds[k, 1])), float(d[k])


def rollout(model, traj, cfg: RolloutConfig, workdir: str | Path, progress: bool = True,
            stop_after: int | None = None) -> RolloutResult:
    """Roll ``model`` (:class:`~hipcg.dynamics.train.DynamicsModel`) out from windows of
    ``traj`` (a reference :class:`~hipcg.dynamics.beads.BeadTrajectory`).  ``stop_after``:
    return after that many steps of this call (tests of resuming)."""
    from tqdm.auto import tqdm

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    tc, dyn, score = model.config, model.dynamics, model.score
    step, k = tc.step_frames, tc.model.history
    if abs(traj.frame_interval_fs - model.frame_interval_fs) > 1e-6 * model.frame_interval_fs:
        raise DataError(f"bead trajectory {traj.name}: frames {traj.frame_interval_fs:g} fs apart, "
                        f"the model was trained on {model.frame_interval_fs:g} fs")
    dtype = next(dyn.parameters()).dtype
    topo = ChainTopology.from_trajectory(traj)
    bonds = np.asarray(traj.bead_bonds, dtype=int).reshape(-1, 2)
    collide_at = cfg.collision_fraction * model.scales["closest_distance"]
    blowup_at = cfg.blowup_fraction * model.scales["longest_bond"]
    presents = start_frames(traj.n_frames, cfg.starts, k, step)
    n = traj.n_beads
    identity = json.dumps({"cfg": asdict(cfg), "traj": traj.name, "presents": presents.tolist(),
                           "model": model.trained_on, "scales": model.scales}, sort_keys=True)
    ckpt = workdir / "rollout.npz"
    positions = np.full((cfg.starts, cfg.steps + 1 + k, n, 3), np.nan)
    for b, p in enumerate(presents):
        positions[b, :k + 1] = traj.positions[p - k * step: p + 1: step]
    done, collisions, blowups, wall = 0, np.zeros(cfg.starts, int), [None] * cfg.starts, 0.0
    gen = torch.Generator().manual_seed(cfg.seed)
    if ckpt.exists():
        with np.load(ckpt, allow_pickle=False) as z:
            if str(z["identity"][()]) == identity:
                positions, done = z["positions"], int(z["done"])
                collisions, wall = z["collisions"], float(z["wall"])
                blowups = json.loads(str(z["blowups"][()]))
                gen.set_state(torch.as_tensor(z["generator"], dtype=torch.uint8))
    alive = np.array([b is None for b in blowups])
    levels = model.score_levels() if (cfg.correction and score is not None) else []
    with torch.no_grad():
        emb_dyn = dyn.embedding(topo)
        emb_score = score.embedding(topo) if levels else None

    def save():
        with atomic_path(ckpt) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, identity=np.array(identity), positions=positions, done=np.array(done),
                     collisions=collisions, wall=np.array(wall), blowups=np.array(json.dumps(blowups)),
                     generator=gen.get_state().numpy())

    bar = tqdm(total=cfg.steps, initial=done, desc=f"rollout {traj.name}", disable=not progress)
    this_call = 0
    while done < cfg.steps and alive.any():
        if stop_after is not None and this_call >= stop_after:
            break
        t0 = time.perf_counter()
        live = np.nonzero(alive)[0]
        hist = torch.as_tensor(positions[live, done: done + k + 1], dtype=dtype)
        with torch.no_grad():
            mean, std = dyn(topo, hist, embedding=emb_dyn)
            z = torch.randn(mean.shape, generator=gen, dtype=dtype)
            x = 2.0 * hist[:, -1] - hist[:, -2] + mean + std[..., None] * z
            if levels:
                c = tc.score
                x = annealed_correction(score, topo, x, levels, c.steps_per_level, c.step_size,
                                        c.noise, gen, embedding=emb_score)
        x = x.double().numpy()
        wall += time.perf_counter() - t0
        done += 1
        this_call += 1
        positions[live, done + k] = x
        for b, xb in zip(live, x):
            stretched, pair, dist = _bonded_check(xb, bonds, blowup_at)
            if stretched:
                alive[b] = False
                blowups[b] = {"step": done, "pair": pair, "distance": dist}
                positions[b, done + k:] = np.nan
                print(f"rollout {traj.name} #{b}: blew up at learned step {done}: beads {pair[0]}-{pair[1]} "
                      f"{dist:.2f} Å apart (limit {blowup_at:.2f} Å); this rollout stops here")
                continue
            d = np.linalg.norm(xb[:, None] - xb[None], axis=-1)
            np.fill_diagonal(d, np.inf)
            collisions[b] += int(d.min() < collide_at)
        bar.update(1)
        if done % cfg.checkpoint_every == 0:
            save()
    bar.close()
    save()
    time_fs = np.arange(cfg.steps + 1) * model.learned_step_fs
    return RolloutResult(traj.name, positions[:, k:], time_fs, collisions, blowups, wall,
                         model.learned_step_fs)
