"""Training throughput: `hipcg.train` against hippynn's own `setup_and_train`, same data and network.

Data: synthetic one-bead "methanol" frames: 256 beads on a jittered cubic lattice at 0.0148
beads/Å^3 (25.9 Å box), forces from a Lennard-Jones reference (the values do not matter for
throughput, only the pair count: ~53k pairs per frame within 15 Å).

Both runs train the same network (HipnnQuad, 128 features, 20 sensitivities, soft min 2.0,
soft max 13.0, cutoff 15.0, 1 interaction layer, 3 atom layers by default) from the same
initial weights, float32, on the same train / valid frames, with Adam, force-only loss
(RMSE + MAE), the same batch size and number of epochs, eager `_pytorch_raw` kernels for both.
Each side's wall time covers its whole training call (data preparation, per-epoch validation,
the final evaluation); frames/s = training frames x epochs / wall.  Differences that remain:
hippynn also evaluates a fraction of the training set every epoch (fraction_train_eval, set as
low as it goes: one frame) and writes its experiment files; hipcg builds and caches the pair
graphs once instead of running hippynn's pair finder on every batch.  The prior is off for
hipcg so that the two models are identical.

    nice -n 10 .venv/bin/python benchmarks/bench_training.py [--frames 6 --epochs 2 --batch 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HIPPYNN_USE_CUSTOM_KERNELS", "_pytorch_raw")
os.environ.setdefault("HIPPYNN_WARN_LOW_DISTANCES", "False")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hipcg.data import CGDataset, save_dataset  # noqa: E402
from hipcg.graph import evaluate, periodic_graph  # noqa: E402
from hipcg.models.cg import build_cg_model  # noqa: E402
from hipcg.models.hipnn import HipnnConfig  # noqa: E402
from hipcg.models.lj import LennardJones  # noqa: E402

DENSITY = 0.0148  # beads / Å^3, one-bead methanol near 300 K


def synthetic_frames(n_frames: int, n_beads: int = 256, seed: int = 0) -> CGDataset:
    rng = np.random.default_rng(seed)
    n_side = int(np.ceil(n_beads ** (1 / 3)))  # 256 beads: 256 of the 343 sites of a 7^3 lattice
    length = (n_beads / DENSITY) ** (1 / 3)
    spacing = length / n_side
    sites = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    lj = LennardJones([[0.9]], [[3.7]])
    cell = np.eye(3) * length
    pos, frc = [], []
    for _ in range(n_frames):
        grid = sites[rng.choice(len(sites), n_beads, replace=False)]
        p = (grid + 0.5) * spacing + rng.uniform(-0.15, 0.15, grid.shape) * spacing
        pos.append(np.mod(p, length))
        frc.append(evaluate(lj, periodic_graph(pos[-1], cell, np.zeros(n_beads, int), 12.0)).forces)
    return CGDataset(positions=np.array(pos), forces=np.array(frc),
                     boxes=np.repeat(cell[None], n_frames, 0), bead_types=np.zeros(n_beads, int),
                     type_names=["MeOH"], masses=np.full(n_beads, 32.04))


def run_hipcg(data: Path, config: HipnnConfig, n_train: int, n_valid: int, epochs: int, batch: int,
              init_state: dict, workdir: Path) -> float:
    from hipcg import train as T

    n = n_train + n_valid
    cfg = T.TrainConfig.from_dict({
        "state_points": [{"label": "bench", "path": str(data)}], "model": dict(config.__dict__),
        "prior": {"enabled": False},
        "optimizer": {"lr": 1e-4, "batch_size": batch, "max_epochs": epochs, "early_stopping_patience": 100},
        "split": {"train": n_train / n, "valid": n_valid / n, "test": 0.0},
        "device": "cpu", "dtype": "float32", "out_dir": str(workdir / "hipcg")})
    # start from the same weights as the hippynn run
    orig = T.build_cg_model

    def same_init(*a, **k):
        model = orig(*a, **k)
        model.load_state_dict(init_state)
        return model

    T.build_cg_model = same_init
    try:
        t0 = time.perf_counter()
        T.train(cfg, overwrite=True, progress=False, log=lambda *a: None)
        return time.perf_counter() - t0
    finally:
        T.build_cg_model = orig


def run_hippynn(ds: CGDataset, config: HipnnConfig, n_train: int, n_valid: int, epochs: int, batch: int,
                init_state: dict, workdir: Path) -> float:
    from hippynn.databases import Database
    from hippynn.experiment import SetupParams, assemble_for_training, setup_and_train
    from hippynn.graphs import loss

    from hipcg.models.hippynn_graph import build_hippynn_graph

    model = build_cg_model(config, 1, None)
    model.load_state_dict(init_state)
    model = model.float()
    species, positions, cell, energy, forces = build_hippynn_graph(model.network)
    rmse = loss.MSELoss.of_node(forces) ** (1.0 / 2.0)
    mae = loss.MAELoss.of_node(forces)
    train_loss = rmse + mae
    modules, db_info = assemble_for_training(train_loss, {"Loss": train_loss, "RMSE": rmse, "MAE": mae})
    n = n_train + n_valid + 1  # + the test frame hippynn's Database insists on
    arrays = {"Z": np.ones(ds.positions[:n].shape[:2], dtype=np.int64),
              "R": ds.positions[:n].astype(np.float32), "C": ds.boxes[:n].astype(np.float32),
              "F": ds.forces[:n].astype(np.float32)}
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        t0 = time.perf_counter()
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            db = Database(arrays, seed=0, valid_size=n_valid, test_size=1, quiet=True, **db_info)
            params = SetupParams(stopping_key="Loss", batch_size=batch, eval_batch_size=batch,
                                 max_epochs=epochs, learning_rate=1e-4, device="cpu",
                                 fraction_train_eval=1.0 / n_train)
            setup_and_train(modules, db, params)
        return time.perf_counter() - t0
    finally:
        os.chdir(cwd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=6, help="training frames")
    ap.add_argument("--valid", type=int, default=2, help="validation frames")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1, help="frames per step")
    ap.add_argument("--features", type=int, default=128)
    ap.add_argument("--sensitivities", type=int, default=20)
    ap.add_argument("--network", default="HipnnQuad")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    torch.set_default_dtype(torch.float32)
    config = HipnnConfig(network=args.network, n_features=args.features, n_sensitivities=args.sensitivities)
    n_train, n_valid = args.frames, args.valid
    # hippynn's database takes one test frame; it is not trained on
    ds = synthetic_frames(n_train + n_valid + 1)
    g = periodic_graph(ds.positions[0], ds.boxes[0], ds.bead_types, config.cutoff)
    print(f"{ds.n_beads} beads, {g.n_pairs} pairs/frame within {config.cutoff} Å; {config.network} "
          f"{config.n_features} features, {config.n_sensitivities} sensitivities; {n_train} training + "
          f"{n_valid} validation frames, {args.epochs} epochs, batch {args.batch}, float32, "
          f"{torch.get_num_threads()} threads", flush=True)
    torch.manual_seed(0)
    init_state = build_cg_model(config, 1, None).state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = save_dataset(tmp / "bench.npz", CGDataset(
            positions=ds.positions[:n_train + n_valid], forces=ds.forces[:n_train + n_valid],
            boxes=ds.boxes[:n_train + n_valid], bead_types=ds.bead_types, type_names=ds.type_names,
            masses=ds.masses))
        frames = n_train * args.epochs
        best = {"hipcg": float("inf"), "hippynn": float("inf")}
        for _ in range(args.repeats):
            (tmp / "hy").mkdir(exist_ok=True)
            best["hippynn"] = min(best["hippynn"], run_hippynn(ds, config, n_train, n_valid, args.epochs,
                                                               args.batch, init_state, tmp / "hy"))
            print(f"hippynn setup_and_train: {best['hippynn']:.1f} s, {frames / best['hippynn']:.3f} frames/s",
                  flush=True)
            best["hipcg"] = min(best["hipcg"], run_hipcg(data, config, n_train, n_valid, args.epochs,
                                                         args.batch, init_state, tmp))
            print(f"hipcg train:             {best['hipcg']:.1f} s, {frames / best['hipcg']:.3f} frames/s",
                  flush=True)
    print(f"ratio hipcg / hippynn frames/s: {best['hippynn'] / best['hipcg']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
