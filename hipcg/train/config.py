"""The ``train:`` section: what to fit, to which state points, and how (``hipcg train``).

Ranges and allowed values are declared on each field (:mod:`hipcg.config`); cross-field rules
live in ``__post_init__``.  Paths in a config file are relative to that file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from ..config import (Check, ConfigError, NonNegative, NonNegativeInt, Positive,
                      PositiveInt, Range, from_dict, load_yaml)
from ..models.hipnn import HipnnConfig
from ..prior import PriorConfig
from ..statepoint import StatePoint, check_state_points


def _is_device(name: str) -> bool:
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


Device = Annotated[str, Check(_is_device, "allowed values are auto, cpu, cuda, cuda:N")]
Kernels = Literal["auto", "_pytorch_raw", "pytorch", "triton", "numba", "cupy", "sparse"]


@dataclass
class LossConfig:
    rmse: NonNegative = 1.0  # weight of the force RMSE
    mae: NonNegative = 1.0  # weight of the force MAE
    # weight of pressure matching: RMS over frames of (P_model - P_atomistic) / pressure_scale;
    # > 0 adds a volume term to the model (hipcg.volume) and needs thermo_pressure in the datasets
    pressure: NonNegative = 0.0
    pressure_scale: Positive = 1000.0  # atm
    # weight of energy matching (temperature-aware models only): RMS over frames of the per-bead
    # error of E(R) against the atomistic energy, each state point's mean removed, / energy_scale
    energy: NonNegative = 0.0
    energy_scale: Positive = 0.1  # kcal/mol per bead
    # how much energy matching trains the shared features (1) or only the heads' split into E
    # and S (0): the gradient of the energy loss into the features is scaled by this
    energy_feature_grad: Annotated[float, Range(ge=0, le=1)] = 1.0


@dataclass
class OptimizerConfig:
    lr: Positive = 1e-3
    weight_decay: NonNegative = 0.0
    batch_size: PositiveInt = 4  # frames per step
    max_epochs: PositiveInt = 200
    plateau_patience: NonNegativeInt = 5  # epochs without improvement before lr *= plateau_factor
    plateau_factor: Annotated[float, Range(gt=0, lt=1)] = 0.5
    min_lr: NonNegative = 1e-6  # training stops once the lr falls below this
    early_stopping_patience: PositiveInt = 20  # epochs without a better validation loss
    grad_clip: NonNegative = 0.0  # max gradient norm; 0 = off


@dataclass
class SplitConfig:
    train: Annotated[float, Range(gt=0, le=1)] = 0.8
    valid: Annotated[float, Range(ge=0, lt=1)] = 0.1
    test: Annotated[float, Range(ge=0, lt=1)] = 0.1
    blocks: PositiveInt = 1  # contiguous blocks per state point, each split train|valid|test in order
    gap: NonNegativeInt = 0  # frames dropped at each split boundary (decorrelation)

    def __post_init__(self):
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-9:
            raise ConfigError(f"train + valid + test must be 1, got {total:g}")


@dataclass
class TrainConfig:
    state_points: list[StatePoint]  # each needs a dataset; role train (split) or test (held out)
    model: HipnnConfig = field(default_factory=HipnnConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    seed: int = 0
    # several role-train state points: each epoch takes the same number of frames from each
    balance_states: bool = True
    device: Device = "auto"
    dtype: Literal["float32", "float64"] = "float32"  # training precision (export may write float64)
    kernels: Kernels = "auto"  # hippynn message-passing kernels, see hipcg.train.devices
    out_dir: Annotated[str, Check(bool, "must not be empty")] = "train_out"

    @classmethod
    def from_dict(cls, d: dict, path_prefix: str = "train", base_dir: str | Path | None = None
                  ) -> "TrainConfig":
        """Build and validate; errors name the key path, e.g. ``train.optimizer.lr: must be > 0``.

        Relative dataset paths and ``out_dir`` are taken relative to ``base_dir`` when given.
        """
        config = from_dict(cls, d, path_prefix)
        check_state_points(config.state_points, f"{path_prefix}.state_points")
        if config.loss.energy and not config.model.temperature_aware:
            raise ConfigError(f"{path_prefix}.loss.energy: energy matching fits the energy head of "
                              "a temperature-aware model; set model.temperature_aware: true or "
                              "loss.energy: 0 (a plain model's energy is W(R; T), not E(R))")
        for i, sp in enumerate(config.state_points):
            if sp.dataset is None:
                raise ConfigError(f"{path_prefix}.state_points[{i}].dataset: required key missing "
                                  "(the CG dataset .npz from hipcg map)")
        if base_dir is not None:
            base = Path(base_dir)
            for sp in config.state_points:
                sp.dataset = sp.dataset if sp.dataset.is_absolute() else base / sp.dataset
            if not Path(config.out_dir).is_absolute():
                config.out_dir = str(base / config.out_dir)
        return config

    @classmethod
    def from_yaml(cls, path: str | Path, path_prefix: str = "train") -> "TrainConfig":
        path = Path(path)
        try:
            d = load_yaml(path, what="training config")
        except ConfigError as err:
            raise ConfigError(f"cannot read YAML: {err}") from None
        if isinstance(d, dict) and path_prefix in d and isinstance(d[path_prefix], dict):
            d = d[path_prefix]  # a section of the pipeline file
        return cls.from_dict(d if d is not None else {}, path_prefix, base_dir=path.parent)

    def to_dict(self) -> dict:
        """Plain JSON/YAML data (paths as strings): checkpoints compare it on resume."""
        d = asdict(self)
        for sp in d["state_points"]:
            sp["dataset"] = str(sp["dataset"])
        return d
