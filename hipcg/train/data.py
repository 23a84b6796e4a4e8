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
