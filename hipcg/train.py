"""Force matching of a HIP-NN(-TS) + repulsive-prior CG model (``hipcg train``).

The loop drives the hippynn network modules directly instead of hippynn's database/graph
machinery: each frame's pair graph is built once (:func:`fast_periodic_graph`, the pairs of
:func:`hipcg.graph.periodic_graph`: all periodic images, as the LAMMPS plugin passes them) and cached; a batch is several frames
concatenated with node offsets; forces are -dE/dx by autograd with respect to the pair vectors,
scattered onto beads exactly as :func:`hipcg.graph.evaluate` and the plugin do.  Only forces
enter the loss, so no energies are needed.

Splits are contiguous blocks of frames (neighbouring MD frames are correlated, a random split
leaks).  Every epoch writes ``checkpoint.pt`` atomically; ``resume=True`` continues from it and,
because each epoch's batch order comes from ``seed + epoch`` alone, ends where an uninterrupted
run with the same seed ends.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import UNITS, __version__
from .config import ConfigError, Rules, from_dict  # ConfigError is re-exported: hipcg.train.ConfigError
from .data import CGDataset, DatasetError, load_dataset
from .graph import PairGraph
from .models.cg import CGModel, build_cg_model
from .models.hipnn import NETWORKS, HipnnConfig
from .prior import PriorConfig, RepulsivePrior, fit_prior
from .errors import OutputExistsError

CHECKPOINT = "checkpoint.pt"
BEST = "model_state.pt"  # best weights + everything `hipcg export` needs
REPORT = "report.json"
CONFIG_COPY = "config.yaml"




# --------------------------------------------------------------------------- configuration


@dataclass
class StatePoint:
    label: str
    path: str  # CG dataset (.npz) from `hipcg map`
    role: str = "train"  # "train": split train/valid/test; "heldout": evaluated only


@dataclass
class LossConfig:
    rmse: float = 1.0  # weight of the force RMSE
    mae: float = 1.0  # weight of the force MAE


@dataclass
class OptimizerConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 4  # frames per step
    max_epochs: int = 200
    plateau_patience: int = 5  # epochs without improvement before lr *= plateau_factor
    plateau_factor: float = 0.5
    min_lr: float = 1e-6  # training stops once the lr falls below this
    early_stopping_patience: int = 20  # epochs without a better validation loss
    grad_clip: float = 0.0  # max gradient norm; 0 = off


@dataclass
class SplitConfig:
    train: float = 0.8
    valid: float = 0.1
    test: float = 0.1
    blocks: int = 1  # contiguous blocks per state point, each split train|valid|test in order
    gap: int = 0  # frames dropped at each split boundary (decorrelation)


@dataclass
class TrainConfig:
    state_points: list[StatePoint]
    model: HipnnConfig = field(default_factory=HipnnConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "float32"  # training precision (export can still write float64)
    kernels: str = "auto"  # hippynn message-passing kernels, see select_kernels
    out_dir: str = "train_out"

    @classmethod
    def from_dict(cls, d: dict, path_prefix: str = "train", base_dir: str | Path | None = None
                  ) -> "TrainConfig":
        """Build and validate; errors name the key path, e.g. ``train.optimizer.lr: must be > 0``.

        Relative dataset paths and ``out_dir`` are taken relative to ``base_dir`` when given.
        """
        config = _build(cls, d, path_prefix)
        if base_dir is not None:
            base = Path(base_dir)
            for sp in config.state_points:
                sp.path = str(base / sp.path) if not Path(sp.path).is_absolute() else sp.path
            if not Path(config.out_dir).is_absolute():
                config.out_dir = str(base / config.out_dir)
        return config

    @classmethod
    def from_yaml(cls, path: str | Path, path_prefix: str = "train") -> "TrainConfig":
        import yaml

        path = Path(path)
        try:
            d = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read YAML: {err}") from None
        if isinstance(d, dict) and path_prefix in d and isinstance(d[path_prefix], dict):
            d = d[path_prefix]  # a section of the pipeline file
        return cls.from_dict(d if d is not None else {}, path_prefix, base_dir=path.parent)

    def to_dict(self) -> dict:
        return asdict(self)


def _allowed_device(v: str) -> bool:
    return v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit())


# (predicate, message) per dataclass field; the key path is prefixed when raised
_RULES: Rules = {
    StatePoint: {"role": (lambda v: v in ("train", "heldout"), "allowed values are ['heldout', 'train']"),
                 "label": (lambda v: bool(v.strip()), "must not be empty")},
    LossConfig: {"rmse": (lambda v: v >= 0, "must be >= 0"), "mae": (lambda v: v >= 0, "must be >= 0")},
    OptimizerConfig: {
        "lr": (lambda v: v > 0, "must be > 0"), "weight_decay": (lambda v: v >= 0, "must be >= 0"),
        "batch_size": (lambda v: v >= 1, "must be >= 1"), "max_epochs": (lambda v: v >= 1, "must be >= 1"),
        "plateau_patience": (lambda v: v >= 0, "must be >= 0"),
        "plateau_factor": (lambda v: 0 < v < 1, "must be in (0, 1)"),
        "min_lr": (lambda v: v >= 0, "must be >= 0"),
        "early_stopping_patience": (lambda v: v >= 1, "must be >= 1"),
        "grad_clip": (lambda v: v >= 0, "must be >= 0")},
    SplitConfig: {"train": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
                  "valid": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
                  "test": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
                  "blocks": (lambda v: v >= 1, "must be >= 1"), "gap": (lambda v: v >= 0, "must be >= 0")},
    PriorConfig: {"rdf_threshold": (lambda v: v >= 0, "must be >= 0"),
                  "p": (lambda v: 0 < v < 1, "must be in (0, 1)"), "dr": (lambda v: v > 0, "must be > 0"),
                  "strength_scale": (lambda v: v >= 0, "must be >= 0"),
                  "bin_width": (lambda v: v > 0, "must be > 0"), "r_max": (lambda v: v > 0, "must be > 0"),
                  "max_frames": (lambda v: v >= 1, "must be >= 1")},
    HipnnConfig: {"network": (lambda v: v in NETWORKS, f"allowed values are {sorted(NETWORKS)}"),
                  "n_features": (lambda v: v >= 1, "must be >= 1"),
                  "n_sensitivities": (lambda v: v >= 1, "must be >= 1"),
                  "n_interaction_layers": (lambda v: v >= 1, "must be >= 1"),
                  "n_atom_layers": (lambda v: v >= 1, "must be >= 1"),
                  "cutoff": (lambda v: v > 0, "must be > 0")},
    TrainConfig: {"device": (_allowed_device, "allowed values are auto, cpu, cuda, cuda:N"),
                  "dtype": (lambda v: v in ("float32", "float64"), "allowed values are ['float32', 'float64']"),
                  "kernels": (lambda v: v in ("auto", "_pytorch_raw", "pytorch", "triton", "numba", "cupy", "sparse"),
                              "allowed values are auto, _pytorch_raw, pytorch, triton, numba, cupy, sparse"),
                  "state_points": (lambda v: len(v) > 0, "needs at least one state point"),
                  "out_dir": (lambda v: bool(v), "must not be empty")},
}


def _build(cls, d, prefix: str):
    """Typed config with key-path errors (hipcg.config) plus training's cross-field checks."""
    obj = from_dict(cls, d, prefix, rules=_RULES)
    split = obj.split if cls is TrainConfig else obj
    if isinstance(split, SplitConfig) and abs(split.train + split.valid + split.test - 1.0) > 1e-9:
        where = f"{prefix}.split" if cls is TrainConfig else prefix
        raise ConfigError(f"{where}: train + valid + test must be 1, got "
                          f"{split.train + split.valid + split.test:g}")
    if cls is TrainConfig:
        labels = [sp.label for sp in obj.state_points]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{prefix}.state_points: labels must be unique, got {labels}")
        if not any(sp.role == "train" for sp in obj.state_points):
            raise ConfigError(f"{prefix}.state_points: at least one needs role 'train'")
    return obj


# --------------------------------------------------------------------------- devices, kernels


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available")
    return device


def select_kernels(choice: str, device: torch.device) -> str:
    """Pick hippynn's envsum/sensesum/featsum implementation.

    On CPU the eager ``_pytorch_raw`` kernels: hippynn's default there is a ``torch.compile``d
    kernel that costs ~30 s on the first call and recompiles for every new pair count (every
    batch).  On CUDA triton/numba/cupy when installed (fastest), else the eager kernels.
    """
    from hippynn import custom_kernels

    if choice == "auto":
        choice = "_pytorch_raw"
        if device.type == "cuda":
            custom_kernels.populate_custom_kernel_availability()
            for impl in ("triton", "numba", "cupy"):
                if impl in custom_kernels.CUSTOM_KERNELS_AVAILABLE:
                    choice = impl
                    break
    import warnings

    with warnings.catch_warnings():  # "_pytorch_raw" is not on hippynn's list of names: fine
        warnings.simplefilter("ignore", UserWarning)
        return custom_kernels.set_custom_kernels(choice)


# --------------------------------------------------------------------------- data


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


def fast_periodic_graph(positions, cell, species, cutoff: float) -> PairGraph:
    """The pairs of :func:`hipcg.graph.periodic_graph` (same set, other order), vectorised.

    ASE's neighbour list takes ~4 s for 256 beads at a 15 Å cutoff; this brute force over the
    periodic images that can reach the cutoff takes ~0.1 s.  Positions are wrapped first, so
    image shifts -k..k with k = ceil(cutoff / perpendicular width) along each cell vector are
    enough.  Work is chunked over first beads to bound memory.
    """
    cell = np.asarray(cell, dtype=np.float64)
    frac = np.asarray(positions, dtype=np.float64) @ np.linalg.inv(cell)
    pos = (frac - np.floor(frac)) @ cell
    volume = abs(np.linalg.det(cell))
    widths = volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    reach = np.ceil(cutoff / widths).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in reach], indexing="ij"), -1).reshape(-1, 3)
    shifts = grid @ cell  # (S, 3)
    zero = int(np.flatnonzero((grid == 0).all(axis=1))[0])
    n = len(pos)
    chunk = max(1, int(4_000_000 // (len(shifts) * n)))
    firsts, seconds, vecs = [], [], []
    cut2 = cutoff * cutoff
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        d = (pos[None, None, :, :] - pos[None, lo:hi, None, :]) + shifts[:, None, None, :]  # (S, c, n, 3)
        r2 = np.einsum("scnk,scnk->scn", d, d)
        keep = r2 < cut2
        idx = np.arange(lo, hi)
        keep[zero, idx - lo, idx] = False  # a bead is not its own neighbour (other images are)
        s_i, c_i, j = np.nonzero(keep)
        firsts.append(idx[c_i])
        seconds.append(j)
        vecs.append(d[s_i, c_i, j])
    first = np.concatenate(firsts)
    order = np.argsort(first, kind="stable")  # grouped by first bead, like ASE
    return PairGraph(np.asarray(species, dtype=np.int64), first[order].astype(np.int64),
                     np.concatenate(seconds)[order].astype(np.int64), np.concatenate(vecs)[order])


class GraphCache:
    """Each frame's pair graph, built once (ASE neighbour list) and kept as compact tensors."""

    def __init__(self, datasets: list[CGDataset], cutoff: float, dtype: torch.dtype):
        self.datasets = datasets
        self.cutoff = cutoff
        self.dtype = dtype
        self._cache: dict[tuple[int, int], tuple] = {}

    def get(self, ref: FrameRef):
        key = (ref.state, ref.frame)
        item = self._cache.get(key)
        if item is None:
            ds = self.datasets[ref.state]
            g = fast_periodic_graph(ds.positions[ref.frame], ds.boxes[ref.frame], ds.bead_types, self.cutoff)
            # int32 indices and training-precision vectors halve the cache; pair vectors are
            # formed in float64 first (differences of absolute coordinates lose digits in float32)
            item = (torch.as_tensor(ds.bead_types), torch.as_tensor(g.pair_first, dtype=torch.int32),
                    torch.as_tensor(g.pair_second, dtype=torch.int32),
                    torch.as_tensor(g.pair_vec).to(self.dtype),
                    torch.as_tensor(np.asarray(ds.forces[ref.frame], dtype=np.float64)).to(self.dtype))
            self._cache[key] = item
        return item

    def batch(self, refs: list[FrameRef], device: torch.device):
        parts = [self.get(r) for r in refs]
        offsets = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
        species = torch.cat([p[0] for p in parts])
        first = torch.cat([p[1].long() + int(o) for p, o in zip(parts, offsets)])
        second = torch.cat([p[2].long() + int(o) for p, o in zip(parts, offsets)])
        vec = torch.cat([p[3] for p in parts])
        forces = torch.cat([p[4] for p in parts])
        return (species.to(device), first.to(device), second.to(device), vec.to(device),
                forces.to(device))


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


# --------------------------------------------------------------------------- training


def _snapshot(model: torch.nn.Module) -> dict:
    """A detached CPU copy of the state dict; hippynn layers also keep non-tensor extra state."""
    import copy

    return {k: v.detach().cpu().clone() if torch.is_tensor(v) else copy.deepcopy(v)
            for k, v in model.state_dict().items()}


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_datasets(config: TrainConfig) -> tuple[list[CGDataset], list[str]]:
    datasets = []
    type_names = None
    for i, sp in enumerate(config.state_points):
        try:
            ds = load_dataset(sp.path)
        except DatasetError as err:
            raise DatasetError(f"train.state_points[{i}] ({sp.label}): {err}") from None
        if type_names is None:
            type_names = ds.type_names
        elif ds.type_names != type_names:
            raise DatasetError(f"train.state_points[{i}] ({sp.label}): bead types {ds.type_names} "
                               f"differ from the first state point's {type_names}")
        if not np.all(np.isfinite(ds.positions)) or not np.all(np.isfinite(ds.forces)):
            raise DatasetError(f"{sp.path}: positions or forces contain NaN or inf")
        if ds.n_frames == 0:
            raise DatasetError(f"{sp.path}: no frames")
        volumes = np.abs(np.linalg.det(ds.boxes))
        if np.any(volumes <= 0):
            raise DatasetError(f"{sp.path}: a frame has a degenerate box (zero volume)")
        datasets.append(ds)
    return datasets, type_names


@dataclass
class Sets:
    """Frames per (state point label, split); held-out state points have only 'heldout'."""

    refs: dict[tuple[str, str], list[FrameRef]]

    def of(self, split: str) -> list[FrameRef]:
        return [r for (label, s), refs in self.refs.items() if s == split for r in refs]


def make_sets(config: TrainConfig, datasets: list[CGDataset]) -> Sets:
    refs = {}
    for i, (sp, ds) in enumerate(zip(config.state_points, datasets)):
        if sp.role == "heldout":
            refs[(sp.label, "heldout")] = [FrameRef(i, f) for f in range(ds.n_frames)]
            continue
        parts = split_frames(ds.n_frames, config.split)
        if not parts["train"]:
            raise DatasetError(f"{sp.path}: {ds.n_frames} frames leave no training frames "
                               f"after the split {asdict(config.split)}")
        for name, frames in parts.items():
            refs[(sp.label, name)] = [FrameRef(i, f) for f in frames]
    return Sets(refs)


@dataclass
class TrainResult:
    out_dir: Path
    epochs: int
    best_epoch: int
    best_valid_loss: float
    metrics: dict  # {label: {split: {rmse, mae, r2, ...}}}
    prior: dict | None
    finished: bool
    seconds: float


def _format_table(metrics: dict) -> str:
    lines = [f"{'state point':<16} {'split':<8} {'frames':>6} {'RMSE':>10} {'MAE':>10} {'R^2':>8}",
             f"{'':<16} {'':<8} {'':>6} {'kcal/mol/Å':>10} {'kcal/mol/Å':>10} {'':>8}"]
    for label, splits in metrics.items():
        for split, m in splits.items():
            lines.append(f"{label:<16} {split:<8} {m['frames']:>6} {m['rmse']:>10.4f} "
                         f"{m['mae']:>10.4f} {m['r2']:>8.4f}")
    return "\n".join(lines)


def train(config: TrainConfig, resume: bool = False, force: bool = False, progress: bool = True,
          stop_after_epochs: int | None = None, log=print) -> TrainResult:
    """Train; see the module docstring.  ``stop_after_epochs`` returns early after that many
    epochs of this call (used by tests to stand in for a kill between checkpoints)."""
    t_start = time.perf_counter()
    out = Path(config.out_dir)
    ckpt_path = out / CHECKPOINT
    if out.exists() and any(out.iterdir()) and not resume and not force:
        raise OutputExistsError(f"{out} is not empty; use resume=True (--resume) to continue or "
                              "force=True (--force) to start over")
    if resume and not ckpt_path.exists():
        raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {out}")
    out.mkdir(parents=True, exist_ok=True)

    device = resolve_device(config.device)
    kernels = select_kernels(config.kernels, device)
    dtype = torch.float32 if config.dtype == "float32" else torch.float64
    datasets, type_names = _load_datasets(config)
    sets = make_sets(config, datasets)
    train_refs, valid_refs = sets.of("train"), sets.of("valid")

    checkpoint = None
    if resume:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        saved = dict(checkpoint["config"])
        now = config.to_dict()
        for key in ("out_dir", "device", "kernels"):  # may legitimately change between runs
            saved.pop(key, None)
            now.pop(key, None)
        if saved != now:
            diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise ConfigError(f"--resume: the configuration differs from the checkpoint's in {diff}")

    torch.manual_seed(config.seed)
    if checkpoint is not None:
        prior = RepulsivePrior.from_dict(checkpoint["prior"]) if checkpoint["prior"] else None
    elif config.prior.enabled:
        train_ds = [ds for sp, ds in zip(config.state_points, datasets) if sp.role == "train"]
        prior = fit_prior(train_ds, type_names, config.prior)
    else:
        prior = None
    model = build_cg_model(config.model, len(type_names), prior).to(device=device, dtype=dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.optimizer.lr, weight_decay=config.optimizer.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.optimizer.plateau_factor,
        patience=config.optimizer.plateau_patience, min_lr=0.0)
    state = {"epoch": 0, "best_valid": float("inf"), "best_epoch": 0, "since_best": 0,
             "history": [], "finished": False, "best_state": None}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = checkpoint["state"]
        log(f"resuming {out} after epoch {state['epoch']}")

    prior_dict = prior.to_dict(type_names) if prior is not None else None
    if checkpoint is None:
        import yaml

        (out / CONFIG_COPY).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        if prior is not None:
            log("repulsive prior (E = (s p / a) exp(a (t - r)), a = ln(1/p)/dr):")
            for pp in prior.params(type_names):
                log(f"  {pp.types[0]}-{pp.types[1]}: t = {pp.t:.3f} Å, s = {pp.s:.3f} kcal/(mol Å), "
                    f"p = {pp.p:g}, dr = {pp.dr:g} Å")
    log(f"{len(train_refs)} training / {len(valid_refs)} validation frames, device {device}, "
        f"{config.dtype}, hippynn kernels {kernels}")

    cache = GraphCache(datasets, config.model.cutoff, dtype)
    opt = config.optimizer
    bs = opt.batch_size
    epochs_this_call = 0
    while not state["finished"]:
        epoch = state["epoch"] + 1
        # the batch order depends on (seed, epoch) only, so a resumed run repeats it exactly
        order = torch.randperm(len(train_refs), generator=torch.Generator().manual_seed(config.seed * 100003 + epoch))
        batches = [[train_refs[i] for i in order[k:k + bs].tolist()] for k in range(0, len(order), bs)]
        model.train()
        loss_sum = 0.0
        bar = _progress(batches, f"epoch {epoch}", progress)
        for batch in bar:
            species, first, second, vec, ref = cache.batch(batch, device)
            pred = model_forces(model, species, first, second, vec, create_graph=True)
            loss = force_loss(pred, ref, config.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if opt.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, opt.grad_clip)
            optimizer.step()
            loss_sum += float(loss.detach()) * len(batch)
            if progress:
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        train_loss = loss_sum / len(train_refs)
        model.eval()
        if valid_refs:
            _, valid_loss = evaluate_frames(model, cache, valid_refs, device, bs, config.loss)
        else:  # no validation frames: steer on the training loss
            valid_loss = train_loss
        scheduler.step(valid_loss)
        lr = optimizer.param_groups[0]["lr"]
        state["epoch"] = epoch
        state["history"].append({"epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss, "lr": lr})
        if valid_loss < state["best_valid"]:
            state.update(best_valid=valid_loss, best_epoch=epoch, since_best=0,
                         best_state=_snapshot(model))
        else:
            state["since_best"] += 1
        reason = None
        if epoch >= opt.max_epochs:
            reason = "max_epochs"
        elif state["since_best"] >= opt.early_stopping_patience:
            reason = "early stopping"
        elif lr < opt.min_lr:
            reason = "lr below min_lr"
        state["finished"] = reason is not None
        state["stop_reason"] = reason
        if progress:
            log(f"epoch {epoch}: train loss {train_loss:.4f}, valid loss {valid_loss:.4f}, lr {lr:.2e}"
                + (" *" if state["best_epoch"] == epoch else ""))
        _atomic_save({"config": config.to_dict(), "prior": prior_dict, "type_names": type_names,
                      "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "state": state,
                      "hipcg_version": __version__}, ckpt_path)
        epochs_this_call += 1
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs and not state["finished"]:
            return TrainResult(out, epoch, state["best_epoch"], state["best_valid"], {}, prior_dict,
                               False, time.perf_counter() - t_start)

    # best weights -> final evaluation on every split and held-out state point
    model.load_state_dict(state["best_state"])
    model.eval()
    metrics: dict = {}
    for (label, split), refs in sets.refs.items():
        if not refs:
            continue
        m, _ = evaluate_frames(model, cache, refs, device, bs)
        m["frames"] = len(refs)
        metrics.setdefault(label, {})[split] = m
    state_points = [{"label": sp.label, "role": sp.role, "path": sp.path,
                     "state_point": ds.metadata.get("state_point", {})}
                    for sp, ds in zip(config.state_points, datasets)]
    _atomic_save({"model_config": asdict(config.model), "type_names": type_names,
                  "prior": prior_dict, "state_dict": state["best_state"], "state_points": state_points,
                  "metrics": metrics, "best_epoch": state["best_epoch"],
                  "train_dtype": config.dtype, "hipcg_version": __version__}, out / BEST)
    import hippynn

    report = {"units": UNITS, "epochs": state["epoch"], "best_epoch": state["best_epoch"],
              "stop_reason": state.get("stop_reason"), "best_valid_loss": state["best_valid"],
              "metrics": metrics, "prior": prior_dict, "state_points": state_points,
              "history": state["history"], "type_names": type_names,
              "versions": {"hipcg": __version__, "hippynn": hippynn.__version__, "torch": torch.__version__}}
    tmp = out / f".{REPORT}.tmp"
    tmp.write_text(json.dumps(report, indent=2, default=float))
    os.replace(tmp, out / REPORT)
    seconds = time.perf_counter() - t_start
    log(_format_table(metrics))
    log(f"trained {state['epoch']} epochs ({state.get('stop_reason')}), best epoch {state['best_epoch']}, "
        f"valid loss {state['best_valid']:.4f}; {out / BEST} ({seconds:.1f} s)")
    return TrainResult(out, state["epoch"], state["best_epoch"], state["best_valid"], metrics,
                       prior_dict, True, seconds)


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
    model = build_cg_model(HipnnConfig(**record["model_config"]), len(record["type_names"]), prior)
    model = model.to(dtype)
    model.load_state_dict({k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
                           for k, v in record["state_dict"].items()})
    return model.eval(), record
