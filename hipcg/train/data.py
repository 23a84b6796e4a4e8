"""Training data: the state points' datasets, checked, and their frames split into sets.

Splits are contiguous blocks of frames (neighbouring MD frames are correlated, a random split
leaks); held-out state points (role ``test``) are only evaluated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..data import CGDataset, DatasetError, load_dataset
from ..volume import pressure_targets
from .config import SplitConfig, TrainConfig


@dataclass
class FrameRef:
    state: int  # index into the list of state points
    frame: int


def split_frames(n_frames: int, split: SplitConfig) -> dict[str, list[int]]:
    """Contiguous blocks: each of ``split.blocks`` blocks is cut train | valid | test in order."""
    out = {"train": [], "valid": [], "test": []}
    bounds = np.linspace(0, n_frames, split.blocks + 1).round().astype(int)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        n = hi - lo
        n_train = int(round(split.train * n))
        n_valid = int(round(split.valid * n))
        cuts = [lo, lo + n_train, lo + n_train + n_valid, hi]
        for k, name in enumerate(("train", "valid", "test")):
            a, b = cuts[k], cuts[k + 1]
            if k > 0:
                a += split.gap  # frames next to the previous part are dropped
            out[name].extend(range(a, max(a, b)))
    return out


def load_datasets(config: TrainConfig) -> tuple[list[CGDataset], list[str]]:
    """Every state point's dataset (NaN/Inf are refused by load_dataset, with frame and bead)."""
    datasets = []
    type_names = None
    for i, sp in enumerate(config.state_points):
        where = f"train.state_points[{i}] ({sp.name})"
        try:
            ds = load_dataset(sp.dataset)
        except DatasetError as err:
            raise DatasetError(f"{where}: {err}") from None
        if type_names is None:
            type_names = ds.type_names
        elif ds.type_names != type_names:
            raise DatasetError(f"{where}: bead types {ds.type_names} differ from the first state "
                               f"point's {type_names}")
        if ds.n_frames == 0:
            raise DatasetError(f"{sp.dataset}: no frames")
        if np.any(np.abs(np.linalg.det(ds.boxes)) <= 0):
            raise DatasetError(f"{sp.dataset}: a frame has a degenerate box (zero volume)")
        datasets.append(ds)
    return datasets, type_names


@dataclass
class Sets:
    """Frames per (state point name, split); held-out state points have only 'heldout'."""

    refs: dict[tuple[str, str], list[FrameRef]]

    def of(self, split: str) -> list[FrameRef]:
        return [r for (name, s), refs in self.refs.items() if s == split for r in refs]


def make_sets(config: TrainConfig, datasets: list[CGDataset]) -> Sets:
    refs = {}
    for i, (sp, ds) in enumerate(zip(config.state_points, datasets)):
        if sp.role != "train":
            refs[(sp.name, "heldout")] = [FrameRef(i, f) for f in range(ds.n_frames)]
            continue
        parts = split_frames(ds.n_frames, config.split)
        if not parts["train"]:
            raise DatasetError(f"{sp.dataset}: {ds.n_frames} frames leave no training frames "
                               f"after the split {asdict(config.split)}")
        for name, frames in parts.items():
            refs[(sp.name, name)] = [FrameRef(i, f) for f in frames]
    return Sets(refs)


@dataclass
class PressureTargets:
    """Per state point and frame: the target configurational pressure (atm; NaN where a held-out
    dataset has none), the box volume (Å^3) and the bead count (pressure matching)."""

    target: list[np.ndarray]
    volume: list[np.ndarray]
    n_beads: list[int]

    def batch(self, refs: list[FrameRef], device, dtype):
        """(target, volume, n_beads) tensors of the frames ``refs``."""
        import torch

        target = [self.target[r.state][r.frame] for r in refs]
        volume = [self.volume[r.state][r.frame] for r in refs]
        n = [float(self.n_beads[r.state]) for r in refs]
        return tuple(torch.as_tensor(np.asarray(a, dtype=np.float64)).to(device, dtype)
                     for a in (target, volume, n))


def load_pressure_targets(config: TrainConfig, datasets: list[CGDataset]) -> PressureTargets | None:
    """The pressure-matching targets, or None when ``loss.pressure`` is 0.  A training dataset
    without per-frame pressures is an error naming the file and the key ``thermo_pressure``."""
    if not config.loss.pressure:
        return None
    targets, volumes = [], []
    for i, (sp, ds) in enumerate(zip(config.state_points, datasets)):
        volume = np.abs(np.linalg.det(ds.boxes))
        if sp.role != "train" and not (ds.thermo and "pressure" in ds.thermo):
            targets.append(np.full(ds.n_frames, np.nan))  # held out and no pressure: no metric
        else:
            try:
                targets.append(pressure_targets(ds, why="train.loss.pressure > 0 (pressure matching)")[0])
            except DatasetError as err:
                raise DatasetError(f"train.state_points[{i}] ({sp.name}): {err}") from None
        volumes.append(volume)
    return PressureTargets(targets, volumes, [ds.n_beads for ds in datasets])


@dataclass
class ThermalTargets:
    """What a temperature-aware model trains on besides forces, per state point: the
    temperature its frames' forces belong to (F = -grad W(R; T)) and, for energy matching, each
    frame's atomistic energy (kcal/mol; None where a held-out dataset has none).  ``energy_key``
    says which: ``nonbonded_energy`` (pe less the bonded terms) where the dataset has it, else
    ``potential_energy``."""

    temperature: list[float]
    energy: list[np.ndarray | None]
    n_beads: list[int]
    energy_key: list[str | None]

    def batch(self, refs: list[FrameRef], device, dtype):
        """(per-node temperature, per-frame energy target, per-frame state, per-frame beads)."""
        import torch

        n = [self.n_beads[r.state] for r in refs]
        node_t = np.repeat([self.temperature[r.state] for r in refs], n)
        target = [self.energy[r.state][r.frame] if self.energy[r.state] is not None else np.nan
                  for r in refs]
        as_t = lambda a, dt: torch.as_tensor(np.asarray(a)).to(device, dt)  # noqa: E731
        return (as_t(node_t, dtype), as_t(np.asarray(target, dtype=np.float64), torch.float64),
                as_t([r.state for r in refs], torch.int64), as_t(np.asarray(n, dtype=np.float64), dtype))


ENERGY_KEYS = ("nonbonded_energy", "potential_energy")


def load_thermal_targets(config: TrainConfig, datasets: list[CGDataset]) -> ThermalTargets | None:
    """None unless the model is temperature-aware.  Energy matching (``loss.energy > 0``) needs
    per-frame energies in every training dataset: an error naming the file and the keys."""
    from ..volume import state_temperature

    if not config.model.temperature_aware:
        return None
    temps, energies, keys = [], [], []
    for i, (sp, ds) in enumerate(zip(config.state_points, datasets)):
        try:
            temps.append(state_temperature(ds))
        except DatasetError as err:
            raise DatasetError(f"train.state_points[{i}] ({sp.name}): {err} (a temperature-aware "
                               "model needs each state point's temperature)") from None
        key = next((k for k in ENERGY_KEYS if ds.thermo and k in ds.thermo), None)
        if key is None and sp.role == "train" and config.loss.energy:
            raise DatasetError(f"train.state_points[{i}] ({sp.name}): {sp.dataset} has no per-frame "
                               "energies (thermo_nonbonded_energy or thermo_potential_energy); "
                               "energy matching (train.loss.energy > 0) needs them")
        keys.append(key)
        energies.append(np.asarray(ds.thermo[key], dtype=np.float64) if key else None)
    return ThermalTargets(temps, energies, [ds.n_beads for ds in datasets], keys)


def reference_temperature(config: TrainConfig, targets: ThermalTargets) -> float:
    """T_ref of a temperature-aware model: the mean temperature of its training state points."""
    t = [targets.temperature[i] for i, sp in enumerate(config.state_points) if sp.role == "train"]
    return float(np.mean(t))
