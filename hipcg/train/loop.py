"""One epoch of force matching (and pressure matching), the metrics, and the checkpoint on disk.

Forces are -dE/dx by autograd with respect to the pair vectors, scattered onto beads exactly as
:func:`hipcg.graph.evaluate` and the plugin do.  With ``loss.pressure > 0`` each frame's
configurational pressure (the virial -sum r . dE/dr over 3V, plus the volume term) is matched
to the atomistic one (:mod:`hipcg.volume`, :class:`.data.PressureTargets`).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

from ..atomic import atomic_path
from ..graph_cache import GraphCache
from ..volume import ATM
from .config import LossConfig, OptimizerConfig
from .data import FrameRef, PressureTargets, ThermalTargets


def model_forces(model: torch.nn.Module, species, first, second, vec, create_graph: bool,
                 node_temperature=None, energy_feature_grad: float = 1.0):
    """(forces, dE/d pair vector, per-bead e_i or None): forces -dW/dx from dW/d(pair vector), as
    hipcg.graph.evaluate and the plugin do.  A temperature-aware model is evaluated at each
    bead's ``node_temperature`` (W = e - (T / T_ref) s'); its e_i for energy matching (features'
    gradient scaled by ``energy_feature_grad``, HipnnEnergy.energy_entropy) come back too."""
    vec = vec.detach().requires_grad_(True)
    node_energy = None
    if getattr(model, "temperature_aware", False):
        e, entropy, node_energy = model.energy_entropy(species, first, second, vec,
                                                       matching_feature_grad=energy_feature_grad)
        t_ref = model.network.reference_temperature.to(entropy.dtype)
        energy = (e - (node_temperature / t_ref) * entropy).sum()
    else:
        energy = model(species, first, second, vec).sum()
    (grad,) = torch.autograd.grad(energy, vec, create_graph=create_graph)
    forces = torch.zeros((species.shape[0], 3), dtype=vec.dtype, device=vec.device)
    # vec = x_second - x_first: dE/dx_first = -grad, dE/dx_second = +grad
    return forces.index_add(0, first, grad).index_add(0, second, -grad), grad, node_energy


def frame_energy_errors(node_energy, target, n_beads):
    """Per frame (E_model - E_atomistic) / N in kcal/mol per bead (NaN where no target)."""
    counts = n_beads.long()
    node_frame = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    frame_e = torch.zeros(len(counts), dtype=torch.float64, device=node_energy.device)
    frame_e = frame_e.index_add(0, node_frame, node_energy.double())
    return (frame_e - target) / n_beads.double()


def energy_loss(errors, frame_state, weights: LossConfig):
    """weight x RMS / energy_scale of the per-bead energy errors, each state point's mean in the
    batch removed (energies match up to a constant per state point): frames alone with their
    state point in a batch carry no information and count for nothing."""
    ok = torch.isfinite(errors)
    loss = errors.new_zeros(())
    total, dof = errors.new_zeros(()), 0
    for state in torch.unique(frame_state[ok]).tolist():
        d = errors[ok & (frame_state == state)]
        if d.numel() > 1:
            c = d - d.mean()
            total = total + (c * c).sum()
            dof += d.numel() - 1
    if dof:
        loss = weights.energy * torch.sqrt(total / dof) / weights.energy_scale
    return loss


def frame_pressures(model, vec, grad, pair_frame, volume, n_beads):
    """Each frame's configurational pressure in atm: the virial W = -sum_pairs r . dE/dr over
    3 V (as pair_style hipcg computes it), plus the model's volume term when it has one."""
    per_pair = -(vec * grad).sum(dim=1)
    virial = torch.zeros(len(volume), dtype=per_pair.dtype, device=per_pair.device)
    pressure = virial.index_add(0, pair_frame, per_pair) / (3.0 * volume * ATM)
    if getattr(model, "volume", None) is not None:
        pressure = pressure + model.volume.pressure(volume / n_beads).to(pressure.dtype)
    return pressure


def pressure_loss(pred, target, weights: LossConfig):
    """weight x RMS of (P_model - P_target) / pressure_scale over frames with a target."""
    ok = torch.isfinite(target)
    if not bool(ok.any()):
        return pred.new_zeros(())
    diff = (pred[ok] - target[ok]) / weights.pressure_scale
    return weights.pressure * torch.sqrt(torch.mean(diff * diff))


def force_loss(pred, ref, weights: LossConfig):
    diff = pred - ref
    loss = pred.new_zeros(())
    if weights.rmse:
        loss = loss + weights.rmse * torch.sqrt(torch.mean(diff * diff))
    if weights.mae:
        loss = loss + weights.mae * torch.mean(diff.abs())
    return loss


class PressureAccumulator:
    """Running sums of the per-frame pressure error (atm): RMSE and mean (bias)."""

    def __init__(self):
        self.n = 0
        self.se = self.e = 0.0

    def add(self, pred, target):
        d = (pred - target).double()
        d = d[torch.isfinite(d)]
        self.n += d.numel()
        self.se += float((d * d).sum())
        self.e += float(d.sum())

    def metrics(self) -> dict:
        if self.n == 0:
            return {}
        return {"pressure_rmse": math.sqrt(self.se / self.n), "pressure_bias": self.e / self.n}


class EnergyAccumulator:
    """Per-bead energy errors by state point: RMSE with each state's mean offset removed, and
    R^2 against the variance of the atomistic per-bead energy (what of it E(R) explains)."""

    def __init__(self):
        self.errors: dict[int, list[float]] = {}
        self.targets: dict[int, list[float]] = {}

    def add(self, errors, targets, frame_state, n_beads):
        for e, t, s, n in zip(errors.tolist(), targets.tolist(), frame_state.tolist(), n_beads.tolist()):
            if math.isfinite(e):
                self.errors.setdefault(s, []).append(e)
                self.targets.setdefault(s, []).append(t / n)

    def metrics(self) -> dict:
        import numpy as np

        if not any(len(v) > 1 for v in self.errors.values()):
            return {}
        res = np.concatenate([np.asarray(v) - np.mean(v) for v in self.errors.values() if len(v) > 1])
        tgt = np.concatenate([np.asarray(v) - np.mean(v) for v in self.targets.values() if len(v) > 1])
        var = float(np.mean(tgt * tgt))
        return {"energy_rmse": float(np.sqrt(np.mean(res * res))),
                "energy_r2": 1.0 - float(np.mean(res * res)) / var if var > 0 else float("nan")}


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


def _batch(cache: GraphCache, refs, device, pressure: PressureTargets | None,
           thermal: ThermalTargets | None = None):
    """The graph of ``refs`` and, with pressure targets, their per-frame pressure inputs; with
    a temperature-aware model, (node temperature, energy target, frame state, frame beads)."""
    species, first, second, vec, ref = cache.batch(refs, device)
    extra = None
    if pressure is not None:
        extra = (cache.pair_frame(refs, device), *pressure.batch(refs, device, vec.dtype))
    heat = thermal.batch(refs, device, vec.dtype) if thermal is not None else None
    return species, first, second, vec, ref, extra, heat


def evaluate_frames(model, cache: GraphCache, refs: list[FrameRef], device, batch_size: int,
                    loss_weights: LossConfig | None = None,
                    pressure: PressureTargets | None = None,
                    thermal: ThermalTargets | None = None) -> tuple[dict, float]:
    """Metrics over ``refs`` and the mean per-batch loss (frame-weighted)."""
    acc, acc_p, acc_e = Accumulator(), PressureAccumulator(), EnergyAccumulator()
    loss_sum = 0.0
    for k in range(0, len(refs), batch_size):
        chunk = refs[k:k + batch_size]
        species, first, second, vec, ref, extra, heat = _batch(cache, chunk, device, pressure, thermal)
        pred, grad, node_e = model_forces(model, species, first, second, vec, create_graph=False,
                                          node_temperature=heat[0] if heat else None)
        pred = pred.detach()
        acc.add(pred, ref)
        value = float(force_loss(pred, ref, loss_weights)) if loss_weights is not None else 0.0
        if extra is not None:
            pair_frame, target, volume, n_beads = extra
            p_pred = frame_pressures(model, vec, grad.detach(), pair_frame, volume, n_beads).detach()
            acc_p.add(p_pred, target)
            if loss_weights is not None and loss_weights.pressure:
                value += float(pressure_loss(p_pred, target, loss_weights))
        if heat is not None:
            _, e_target, frame_state, frame_beads = heat
            errors = frame_energy_errors(node_e.detach(), e_target, frame_beads)
            acc_e.add(errors, e_target, frame_state, frame_beads)
            if loss_weights is not None and loss_weights.energy:
                value += float(energy_loss(errors, frame_state, loss_weights))
        loss_sum += value * len(chunk)
    return {**acc.metrics(), **acc_p.metrics(), **acc_e.metrics()}, loss_sum / max(len(refs), 1)


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
                grad_clip: float, pressure: PressureTargets | None = None,
                thermal: ThermalTargets | None = None) -> float:
    """One optimiser pass over ``batches`` (a list, or a tqdm bar over it); the mean loss."""
    model.train()
    loss_sum, n_frames = 0.0, 0
    for batch in batches:
        species, first, second, vec, ref, extra, heat = _batch(cache, batch, device, pressure, thermal)
        pred, grad, node_e = model_forces(model, species, first, second, vec, create_graph=True,
                                          node_temperature=heat[0] if heat else None,
                                          energy_feature_grad=loss.energy_feature_grad)
        value = force_loss(pred, ref, loss)
        if extra is not None and loss.pressure:
            pair_frame, target, volume, n_beads = extra
            value = value + pressure_loss(frame_pressures(model, vec, grad, pair_frame, volume, n_beads),
                                          target, loss)
        if heat is not None and loss.energy:
            _, e_target, frame_state, frame_beads = heat
            value = value + energy_loss(frame_energy_errors(node_e, e_target, frame_beads),
                                        frame_state, loss)
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


def frame_virial(model, cache: GraphCache, ref: FrameRef, device,
                 thermal: ThermalTargets | None = None) -> float:
    """W = -sum_pairs r . dE/dr of the model (network + prior, no volume term) on one frame."""
    species, first, second, vec, _ = cache.batch([ref], device)
    node_t = thermal.batch([ref], device, vec.dtype)[0] if thermal is not None else None
    _, grad, _ = model_forces(model, species, first, second, vec, create_graph=False,
                              node_temperature=node_t)
    return float(-(vec.double() * grad.detach().double()).sum())


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
