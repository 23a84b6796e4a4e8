"""One epoch of force matching, the metrics, and the checkpoint on disk.

Forces are -dE/dx by autograd with respect to the pair vectors, scattered onto beads exactly as
:func:`hipcg.graph.evaluate` and the plugin do; only forces enter the loss.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

from ..atomic import atomic_path
from ..graph_cache import GraphCache
from .config import LossConfig, OptimizerConfig
from .data import FrameRef


def model_forces(model: torch.nn.Module, species, first, second, vec, create_graph: bool):
    """Forces -dE/dx from dE/d(pair vector), as hipcg.graph.evaluate and the plugin do."""
    vec = vec.detach().requires_grad_(True)
    energy = model(species, first, second, vec).sum()
    (grad,) = torch.autograd.grad(energy, vec, create_graph=create_graph)
    forces = torch.zeros((species.shape[0], 3), dtype=vec.dtype, device=vec.device)
    # vec = x_second - x_first: dE/dx_first = -grad, dE/dx_second = +grad
    return forces.index_add(0, first, grad).index_add(0, second, -grad)


def force_loss(pred, ref, weights: LossConfig):
    diff = pred - ref
    loss = pred.new_zeros(())
    if weights.rmse:
        loss = loss + weights.rmse * torch.sqrt(torch.mean(diff * diff))
    if weights.mae:
        loss = loss + weights.mae * torch.mean(diff.abs())
    return loss


class Accumulator:
    """Running sums for force RMSE, MAE and R^2 (float64)."""

    def __init__(self):
        self.n = 0
        self.se = self.ae = self.s = self.ss = 0.0

    def add(self, pred, ref):
        d = (pred - ref).double()
        r = ref.double()
        self.n += d.numel()
        self.se += float((d * d).sum())
        self.ae += float(d.abs().sum())
        self.s += float(r.sum())
        self.ss += float((r * r).sum())

    def metrics(self) -> dict:
        if self.n == 0:
            return {"components": 0, "rmse": float("nan"), "mae": float("nan"), "r2": float("nan")}
        ss_tot = self.ss - self.s * self.s / self.n
        return {"components": self.n, "rmse": math.sqrt(self.se / self.n), "mae": self.ae / self.n,
                "r2": 1.0 - self.se / ss_tot if ss_tot > 0 else float("nan")}


def evaluate_frames(model, cache: GraphCache, refs: list[FrameRef], device, batch_size: int,
                    loss_weights: LossConfig | None = None) -> tuple[dict, float]:
    """Metrics over ``refs`` and the mean per-batch loss (frame-weighted)."""
    acc = Accumulator()
    loss_sum = 0.0
    for k in range(0, len(refs), batch_size):
        chunk = refs[k:k + batch_size]
        species, first, second, vec, ref = cache.batch(chunk, device)
        pred = model_forces(model, species, first, second, vec, create_graph=False).detach()
        acc.add(pred, ref)
        if loss_weights is not None:
            loss_sum += float(force_loss(pred, ref, loss_weights)) * len(chunk)
    return acc.metrics(), loss_sum / max(len(refs), 1)


def balanced(train_refs: list[FrameRef], gen: torch.Generator) -> list[FrameRef]:
    """The same number of frames from every state point (the smallest one's count), drawn
    afresh each epoch, so that a long trajectory at one state does not outweigh the others."""
    by_state: dict[int, list[FrameRef]] = {}
    for ref in train_refs:
        by_state.setdefault(ref.state, []).append(ref)
    n = min(len(refs) for refs in by_state.values())
    picked = []
    for state in sorted(by_state):
        refs = by_state[state]
        picked += [refs[i] for i in torch.randperm(len(refs), generator=gen)[:n].tolist()]
    return picked


def epoch_batches(train_refs: list[FrameRef], batch_size: int, seed: int, epoch: int,
                  balance: bool = False):
    """The epoch's batches; their order depends on (seed, epoch) only, so a resumed run
    repeats it exactly.  ``balance``: equal frames per state point (:func:`balanced`)."""
    gen = torch.Generator().manual_seed(seed * 100003 + epoch)
    if balance and len({r.state for r in train_refs}) > 1:
        train_refs = balanced(train_refs, gen)
    order = torch.randperm(len(train_refs), generator=gen)
    return [[train_refs[i] for i in order[k:k + batch_size].tolist()]
            for k in range(0, len(order), batch_size)]


def train_epoch(model, optimizer, params, cache: GraphCache, batches, device, loss: LossConfig,
                grad_clip: float) -> float:
    """One optimiser pass over ``batches`` (a list, or a tqdm bar over it); the mean loss."""
    model.train()
    loss_sum, n_frames = 0.0, 0
    for batch in batches:
        species, first, second, vec, ref = cache.batch(batch, device)
        pred = model_forces(model, species, first, second, vec, create_graph=True)
        value = force_loss(pred, ref, loss)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        loss_sum += float(value.detach()) * len(batch)
        n_frames += len(batch)
        if hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{float(value.detach()):.4f}")
    return loss_sum / max(n_frames, 1)


def stop_reason(state: dict, lr: float, opt: OptimizerConfig) -> str | None:
    if state["epoch"] >= opt.max_epochs:
        return "max_epochs"
    if state["since_best"] >= opt.early_stopping_patience:
        return "early stopping"
    if lr < opt.min_lr:
        return "lr below min_lr"
    return None


def snapshot(model: torch.nn.Module) -> dict:
    """A detached CPU copy of the state dict; hippynn layers also keep non-tensor extra state."""
    return {k: v.detach().cpu().clone() if torch.is_tensor(v) else copy.deepcopy(v)
            for k, v in model.state_dict().items()}


def save_atomic(obj, path: Path) -> None:
    """torch.save through hipcg.atomic: a kill mid-write leaves the previous file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
