"""Rollouts of the learned dynamics from held-out starting frames, resumable, with their checks.

One learned step (explicit Euler on the predicted acceleration, as Fu et al.):

    a = mu + L z,  z ~ N(0, 1)             (DynamicsNet: mean, covariance factor over beads)
    x_{t+1} = x_t + (x_t - x_{t-1}) + a    (velocity update, then position update)
    x_{t+1} <- annealed score correction   (ScoreNet, optional)

``starts`` independent rollouts of each sequence, each from its own reference window (evenly
spread over the reference trajectory), and all sequences with the same bead bonds run as one
batch: the network's cost per step is mostly fixed overhead, so a batch of 32 chains costs
little more than one.  Checks after every step:

* collision: a bead pair closer than ``collision_fraction`` x the closest approach seen in the
  training data; counted per rollout, not fatal;
* bond cap (a prior, like the force field's repulsive prior): a bonded bead pair stretched
  beyond ``bond_cap`` x the longest bonded distance in the training data is pulled back to
  that length along its axis, mass-weighted so the pair's centre of mass stays put (a few
  projection passes over the chain).  Such a stretch is outside everything the network was
  trained on, so it cannot be trusted to pull the pair back; the steps at which the cap acted
  are counted per rollout and reported (``bond_caps``), so it is never silent.  0 disables it;
* blow-up: a non-finite position, or a bonded bead pair farther apart than
  ``blowup_fraction`` x the longest bonded distance in the training data: that rollout stops
  there (its step, bead pair and distance are recorded and printed); the others go on.

Every ``checkpoint_every`` steps the positions so far and the random state are written
atomically to ``checkpoint.npz``; a killed rollout resumes from there with the same result as an
unbroken one.  At the end each sequence's result goes to ``<name>.npz`` (:func:`load_rollout`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from ..config import NonNegative, Positive, PositiveInt, check_fields
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
    bond_cap: NonNegative = 1.0           # x the longest training bond; 0: no cap
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
    wall_seconds: float          # this sequence's share of the batch's stepping time
    learned_step_fs: float
    threads: int = 1             # CPU threads the batch ran on
    bond_caps: np.ndarray | None = None  # (starts,) steps at which the bond cap acted

    @property
    def fs_per_wall_second(self) -> float:
        """Simulated time per wall-clock second, summed over this sequence's rollouts (with
        ``wall_seconds`` its share of the batch, this is the whole batch's throughput)."""
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


def cap_bonds(x: np.ndarray, bonds: np.ndarray, masses: np.ndarray, limit: float,
              passes: int = 50, tolerance: float = 1e-4) -> np.ndarray:
    """Pull bonded pairs of ``x`` (B, n, 3) longer than ``limit`` back to ``limit`` along
    their axis, in place (mass-weighted: each pair's centre of mass stays); passes repeat
    until no bond is longer than ``limit`` (1 + ``tolerance``), since moving one bond can
    stretch its neighbour (as SHAKE iterates).  Returns (B,) whether it acted."""
    acted = np.zeros(len(x), dtype=bool)
    if not len(bonds) or limit <= 0:
        return acted
    i, j = bonds[:, 0], bonds[:, 1]
    wi = (masses[j] / (masses[i] + masses[j]))[None, :, None]
    for _ in range(passes):
        d = x[:, j] - x[:, i]                                        # (B, m, 3)
        r = np.linalg.norm(d, axis=-1)
        over = r > limit * (1.0 + tolerance)
        if not over.any():
            break
        acted |= over.any(axis=1)
        excess = np.where(over, (r - limit) / np.where(over, r, 1.0), 0.0)[..., None] * d
        delta = np.zeros_like(x)
        np.add.at(delta, (slice(None), i), wi * excess)
        np.add.at(delta, (slice(None), j), -(1.0 - wi) * excess)
        x += delta
    return acted


def _check_step(x: np.ndarray, bonds: np.ndarray, blowup_at: float, collide_at: float):
    """For a batch of configurations (B, n, 3): a blow-up record or None for each, and whether
    each has a colliding pair."""
    n = x.shape[1]
    finite = np.isfinite(x).all(axis=2)                                  # (B, n)
    d = np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)
    d[:, np.arange(n), np.arange(n)] = np.inf
    collided = np.nan_to_num(d, nan=np.inf).min(axis=(1, 2)) < collide_at
    records = []
    for b in range(len(x)):
        if not finite[b].all():
            bad = int(np.nonzero(~finite[b])[0][0])
            records.append({"pair": [bad, bad], "distance": float("nan")})
            continue
        if len(bonds):
            bd = d[b, bonds[:, 0], bonds[:, 1]]
            k = int(np.argmax(bd))
            if bd[k] > blowup_at:
                records.append({"pair": [int(bonds[k, 0]), int(bonds[k, 1])], "distance": float(bd[k])})
                continue
        records.append(None)
    return records, collided


def check_limits(scales: dict, cfg: RolloutConfig) -> tuple[float, float]:
    """(collision distance, blow-up bond length) in Å, from the training data's ``scales``."""
    return (cfg.collision_fraction * scales["closest_distance"],
            cfg.blowup_fraction * scales["longest_bond"])


def check_frames(result: RolloutResult, bonds: np.ndarray, collide_at: float,
                 blowup_at: float) -> RolloutResult:
    """The per-step checks applied afterwards to every frame of trajectories made elsewhere
    (the baseline's LAMMPS runs, whose frames are as far apart as learned steps): collisions
    counted per run, its first blow-up recorded.  Positions are left as they are."""
    starts, frames = result.positions.shape[:2]
    collisions, blowups = np.zeros(starts, int), [None] * starts
    for f in range(1, frames):
        records, collided = _check_step(result.positions[:, f], bonds, blowup_at, collide_at)
        for b, (rec, hit) in enumerate(zip(records, collided)):
            if blowups[b] is None and rec is not None:
                blowups[b] = {"step": f, **rec}
            collisions[b] += int(hit)
    return dataclasses.replace(result, collisions=collisions, blowups=blowups)


def _groups(trajs: list) -> list[list[int]]:
    """Indices of sequences that can share a batch: same bead count and bead bonds."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(trajs):
        key = (int(t.n_beads), tuple(map(tuple, np.asarray(t.bead_bonds, dtype=int).reshape(-1, 2).tolist())))
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def rollout_batch(model, trajs: list, cfg: RolloutConfig, workdir: str | Path,
                  progress: bool = True, stop_after: int | None = None) -> list[RolloutResult]:
    """Roll ``model`` (:class:`~hipcg.dynamics.train.DynamicsModel`) out from windows of each of
    ``trajs`` (reference :class:`~hipcg.dynamics.beads.BeadTrajectory`), ``cfg.starts`` per
    sequence; one :class:`RolloutResult` per sequence, in order, also saved as
    ``workdir/<name>.npz``.  ``stop_after``: return (None) after that many steps of this call,
    as a kill would (tests of resuming)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    names = [t.name for t in trajs]
    if len(set(names)) != len(names):
        raise DataError(f"rollout: sequence names repeat: {names}")
    results: dict[str, RolloutResult] = {}
    for g, members in enumerate(_groups(trajs)):
        group = [trajs[i] for i in members]
        out = _rollout_group(model, group, cfg, workdir / f"checkpoint-{g}.npz", progress, stop_after)
        if out is None:
            return None
        for res in out:
            save_rollout(workdir / f"{res.name}.npz", res)
            results[res.name] = res
    return [results[name] for name in names]


def rollout(model, traj, cfg: RolloutConfig, workdir: str | Path, progress: bool = True,
            stop_after: int | None = None) -> RolloutResult | None:
    """The rollouts of one sequence (:func:`rollout_batch` of one)."""
    out = rollout_batch(model, [traj], cfg, workdir, progress, stop_after)
    return None if out is None else out[0]


def _rollout_group(model, trajs: list, cfg: RolloutConfig, ckpt: Path, progress: bool,
                   stop_after: int | None) -> list[RolloutResult] | None:
    from tqdm.auto import tqdm

    torch.set_num_threads(cfg.threads)
    tc, dyn, score = model.config, model.dynamics, model.score
    step, k = tc.step_frames, tc.model.history
    for traj in trajs:
        if abs(traj.frame_interval_fs - model.frame_interval_fs) > 1e-6 * model.frame_interval_fs:
            raise DataError(f"bead trajectory {traj.name}: frames {traj.frame_interval_fs:g} fs apart, "
                            f"the model was trained on {model.frame_interval_fs:g} fs")
    dtype = next(dyn.parameters()).dtype
    topos = [ChainTopology.from_trajectory(t) for t in trajs]
    bonds = np.asarray(trajs[0].bead_bonds, dtype=int).reshape(-1, 2)
    collide_at, blowup_at = check_limits(model.scales, cfg)
    cap_at = cfg.bond_cap * model.scales["longest_bond"]
    masses = np.asarray(trajs[0].bead_masses, dtype=float)
    presents = [start_frames(t.n_frames, cfg.starts, k, step) for t in trajs]
    n, total = trajs[0].n_beads, len(trajs) * cfg.starts
    identity = json.dumps({"cfg": asdict(cfg), "trajs": [t.name for t in trajs],
                           "presents": [p.tolist() for p in presents],
                           "model": model.trained_on, "scales": model.scales}, sort_keys=True)
    positions = np.full((total, cfg.steps + 1 + k, n, 3), np.nan)
    for s, (traj, pres) in enumerate(zip(trajs, presents)):
        for b, p in enumerate(pres):
            positions[s * cfg.starts + b, :k + 1] = traj.positions[p - k * step: p + 1: step]
    done, collisions, blowups, wall = 0, np.zeros(total, int), [None] * total, 0.0
    caps = np.zeros(total, int)
    gen = torch.Generator().manual_seed(cfg.seed)
    if ckpt.exists():
        with np.load(ckpt, allow_pickle=False) as z:
            if str(z["identity"][()]) == identity:
                done = int(z["done"])
                positions[:, :done + k + 1] = z["positions"]
                collisions, wall, caps = z["collisions"], float(z["wall"]), z["caps"]
                blowups = json.loads(str(z["blowups"][()]))
                gen.set_state(torch.as_tensor(z["generator"], dtype=torch.uint8))
    alive = np.array([b is None for b in blowups])
    levels = model.score_levels() if (cfg.correction and score is not None) else []
    with torch.inference_mode():
        emb_dyn = torch.stack([dyn.embedding(t) for t in topos]).repeat_interleave(cfg.starts, 0)
        emb_score = (torch.stack([score.embedding(t) for t in topos]).repeat_interleave(cfg.starts, 0)
                     if levels else None)

    def save():
        with atomic_path(ckpt) as tmp, open(tmp, "wb") as fh:
            # only the frames so far: the rest is NaN, and a long batch is tens of MB in full
            np.savez(fh, identity=np.array(identity), positions=positions[:, :done + k + 1], done=np.array(done),
                     collisions=collisions, wall=np.array(wall), blowups=np.array(json.dumps(blowups)),
                     generator=gen.get_state().numpy(), caps=caps)

    label = trajs[0].name if len(trajs) == 1 else f"{len(trajs)} sequences"
    bar = tqdm(total=cfg.steps, initial=done, desc=f"rollout {label} x {cfg.starts}", disable=not progress)
    this_call = 0
    while done < cfg.steps and alive.any():
        if stop_after is not None and this_call >= stop_after:
            bar.close()
            save()
            return None
        t0 = time.perf_counter()
        live = np.nonzero(alive)[0]
        hist = torch.as_tensor(positions[live, done: done + k + 1], dtype=dtype)
        with torch.inference_mode():
            mean, tril = dyn(topos[0], hist, embedding=emb_dyn[live])
            z = torch.randn(mean.shape, generator=gen, dtype=dtype)
            x = 2.0 * hist[:, -1] - hist[:, -2] + mean + tril @ z
            if levels:
                c = tc.score
                x = annealed_correction(score, topos[0], x, levels, c.steps_per_level, c.step_size,
                                        c.noise, gen, embedding=emb_score[live])
        x = x.double().numpy()
        if cap_at > 0:
            caps[live] += cap_bonds(x, bonds, masses, cap_at)
        records, collided = _check_step(x, bonds, blowup_at, collide_at)
        wall += time.perf_counter() - t0
        done += 1
        this_call += 1
        positions[live, done + k] = x
        for b, rec, hit in zip(live, records, collided):
            if rec is not None:
                alive[b] = False
                blowups[b] = {"step": done, **rec}
                positions[b, done + k:] = np.nan
                seq, start = trajs[b // cfg.starts].name, b % cfg.starts
                print(f"rollout {seq} #{start}: blew up at learned step {done}: beads "
                      f"{rec['pair'][0]}-{rec['pair'][1]} {rec['distance']:.2f} Å apart (limit "
                      f"{blowup_at:.2f} Å); this rollout stops here")
            else:
                collisions[b] += int(hit)
        bar.update(1)
        if done % cfg.checkpoint_every == 0:
            save()
    bar.close()
    save()
    time_fs = np.arange(cfg.steps + 1) * model.learned_step_fs
    share = wall / len(trajs)
    return [RolloutResult(t.name, positions[s * cfg.starts:(s + 1) * cfg.starts, k:], time_fs,
                          collisions[s * cfg.starts:(s + 1) * cfg.starts],
                          blowups[s * cfg.starts:(s + 1) * cfg.starts], share,
                          model.learned_step_fs, cfg.threads, caps[s * cfg.starts:(s + 1) * cfg.starts])
            for s, t in enumerate(trajs)]


def save_rollout(path: str | Path, result: RolloutResult) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, name=np.array(result.name), positions=result.positions, time_fs=result.time_fs,
                 collisions=np.asarray(result.collisions), blowups=np.array(json.dumps(result.blowups)),
                 wall_seconds=np.array(result.wall_seconds),
                 learned_step_fs=np.array(result.learned_step_fs), threads=np.array(result.threads),
                 bond_caps=np.zeros(len(result.positions), int) if result.bond_caps is None else result.bond_caps)
    return path


def load_rollout(path: str | Path) -> RolloutResult:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such rollout file")
    try:
        with np.load(path, allow_pickle=False) as z:
            return RolloutResult(str(z["name"][()]), z["positions"], z["time_fs"], z["collisions"],
                                 json.loads(str(z["blowups"][()])), float(z["wall_seconds"]),
                                 float(z["learned_step_fs"]), int(z["threads"]), z["bond_caps"])
    except (KeyError, ValueError, OSError) as err:
        raise DataError(f"{path}: not a readable rollout file ({err})") from None
