"""pair_style hipcg: backend native (fused C++ HIP-NN) against backend torch (TorchScript), issue 13.

Side by side in one run, interleaved per size and thread count, LAMMPS NVE loop times (neighbour
lists, communication and integration included; bench_plugin.plugin_step_time) of the same model
file through both backends:

(a) the default pipeline's model (pipelines/methanol.yaml train.model: HipnnQuad, 32 features,
    12 sensitivities, soft range 2.5-8 Å, cutoff 9 Å, 1 interaction layer, 3 atom layers,
    exported in float32) at 100 and 1,000 beads;
(b) the published size (HipnnQuad, 128 features, 20 sensitivities, cutoff 15 Å, float64) at
    256 beads (--published).

Random weights (speed does not depend on them), one bead type, beads inserted at random at the
liquid-methanol number density 0.0148 beads/Å^3 with no two closer than 3 Å.

Usage: .venv/bin/python benchmarks/bench_native.py [--sizes 100 1000] [--threads 1 2]
       [--published] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bead_systems import random_liquid  # noqa: E402
from bench_plugin import plugin_step_time  # noqa: E402

from hipcg.export import export_model  # noqa: E402
from hipcg.lammps.plugin import build_plugin  # noqa: E402
from hipcg.models.hipnn import HipnnConfig, HipnnEnergy, build_network  # noqa: E402

DENSITY = 0.0148  # beads/Å^3
DEFAULT_MODEL = HipnnConfig(network="HipnnQuad", n_features=32, n_sensitivities=12, dist_soft_min=2.5,
                            dist_soft_max=8.0, cutoff=9.0, n_interaction_layers=1, n_atom_layers=3)
PUBLISHED_MODEL = HipnnConfig()


def export(root: Path, name: str, config: HipnnConfig, dtype: str) -> Path:
    torch.manual_seed(0)
    model = HipnnEnergy(build_network(config, n_types=1))
    return export_model(model, root / f"{name}_{dtype}.pt", ["MeOH"], config, dtype=dtype, overwrite=True)


def steps_per_second(root: Path, plugin: Path, model: Path, box, backend: str, threads: int,
                     steps: int) -> float:
    """An explicit backend: LAMMPS stops with an error rather than run the other one."""
    seconds, _ = plugin_step_time(root, plugin, model, box.positions, box.cell, threads, steps, "cpu",
                                  style_args=f"backend {backend}")
    return 1.0 / seconds


def pick_steps(seconds_per_step_guess: float, budget_s: float = 4.0) -> int:
    return int(min(2000, max(3, budget_s / seconds_per_step_guess)))


def bench(root: Path, plugin: Path, label: str, model: Path, sizes, thread_counts) -> list[dict]:
    rows = []
    for n in sizes:
        box = random_liquid(n, DENSITY, 3.0, seed=n, n_types=1)
        for threads in thread_counts:
            rates = {}
            for backend in ("torch", "native"):
                probe = steps_per_second(root, plugin, model, box, backend, threads, 3)
                rates[backend] = steps_per_second(root, plugin, model, box, backend, threads,
                                                  pick_steps(1.0 / probe))
            row = {"model": label, "beads": n, "threads": threads,
                   "torch_steps_per_s": rates["torch"], "native_steps_per_s": rates["native"],
                   "speedup": rates["native"] / rates["torch"]}
            rows.append(row)
            print(f"{label:10s} {n:6d} beads {threads} thr: torch {rates['torch']:9.2f} steps/s, "
                  f"native {rates['native']:9.2f} steps/s, native/torch {row['speedup']:6.1f}x", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--published", action="store_true", help="also the published size at 256 beads")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    plugin = build_plugin()
    start = time.perf_counter()
    results = {"date": datetime.date.today().isoformat(), "machine": platform.node(),
               "cpus": os.cpu_count(), "torch": torch.__version__, "rows": []}
    with tempfile.TemporaryDirectory(prefix="hipcg-native-") as tmp:
        root = Path(tmp)
        model = export(root, "default", DEFAULT_MODEL, "float32")
        results["rows"] += bench(root, plugin, "default", model, args.sizes, args.threads)
        if args.published:
            model = export(root, "published", PUBLISHED_MODEL, "float64")
            results["rows"] += bench(root, plugin, "published", model, [256], args.threads)
    results["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
