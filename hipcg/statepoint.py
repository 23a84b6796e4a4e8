"""One thermodynamic state point, as every stage sees it (pipeline, train, evaluate).

A state point has a name (also the name of its files and folders), a temperature and a
pressure, a role (``train``: the models are fitted to it; ``test``: held out, only evaluated)
and, once mapped, the CG dataset that holds its frames.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .config import Positive, SafeName
from .errors import ConfigError

# Spellings of earlier hipcg versions: train's {label, path, role: heldout}, evaluate's
# {dataset, trained: bool}.  They still load, with a FutureWarning that names the key.
_OLD_KEYS = {"label": "name", "path": "dataset"}
_OLD_ROLES = {"heldout": "test"}


@dataclass
class StatePoint:
    name: SafeName
    temperature: Positive | None = None  # K; None: the dataset's metadata says
    pressure: float | None = None  # atm; None: the dataset's metadata, else 1 atm
    role: Literal["train", "test"] = "test"
    dataset: Path | None = None  # mapped CG dataset (.npz), once there is one
    frame_interval_fs: Positive | None = None  # time between dataset frames (reference D)

    @property
    def trained(self) -> bool:
        return self.role == "train"

    @staticmethod
    def upgrade_config(data, path: str):
        return upgrade(data, path)


def _renamed(data: dict, path: str, warn) -> dict:
    """``data`` with the old keys and role values in today's spelling; ``warn(old, new)`` is
    told of each rename."""
    data = dict(data)
    if "label" in data and "role" not in data:
        data["role"] = "train"  # the old training section's default
    for old, new in _OLD_KEYS.items():
        if old in data and new not in data:
            warn(f"{path}.{old}", f"{path}.{new}")
            data[new] = data.pop(old)
    if "trained" in data and "role" not in data:
        warn(f"{path}.trained", f"{path}.role: train | test")
        data["role"] = "train" if data.pop("trained") else "test"
    if data.get("role") in _OLD_ROLES:
        warn(f"{path}.role: {data['role']}", f"role: {_OLD_ROLES[data['role']]}")
        data["role"] = _OLD_ROLES[data["role"]]
    return data


def upgrade(data, path: str):
    """Rename a state point's old keys and values to today's (with a deprecation message)."""
    return _renamed(data, path, _deprecated) if isinstance(data, dict) else data


def _deprecated(old: str, new: str) -> None:
    # FutureWarning, not DeprecationWarning: Python shows it to end users by default
    warnings.warn(f"{old} is deprecated; write {new}", FutureWarning, stacklevel=5)


def check_state_points(points: list[StatePoint], path: str = "state_points",
                       need_train: bool = True) -> None:
    names = [sp.name for sp in points]
    if not names:
        raise ConfigError(f"{path}: at least one state point is needed")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: names must be unique, got {names}")
    if need_train and not any(sp.role == "train" for sp in points):
        raise ConfigError(f"{path}: at least one state point needs role: train")


def dataset_path(sp: StatePoint) -> Path:
    if sp.dataset is None:
        raise ConfigError(f"state point {sp.name}: no dataset (run the map stage, or give dataset:)")
    return Path(sp.dataset)


def upgrade_record(record: dict) -> dict:
    """A state point as stored in a run or model file by any hipcg version, in today's keys
    (runs written before the rename say label/path/heldout); no warning: the user wrote none."""
    return _renamed(record, "", lambda old, new: None)
