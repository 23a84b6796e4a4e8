"""The native evaluator from Python (hipcg.backends.ModelEvaluator) against the torch backend.

What the ASE calculator, ``hipcg evaluate``'s force metrics and the refine stage pay per frame:
the same model file and pair graph (vesin, hipcg.graph.periodic_graph) through ``backend
native`` (libhipcgnative.so via ctypes) and ``backend torch`` (TorchScript forward + autograd),
interleaved, median of repeated evaluations; the pair search is timed on its own.  Models and
boxes as benchmarks/bench_native.py (random weights, one bead type, 0.0148 beads/Å^3).

Usage: .venv/bin/python benchmarks/bench_native_python.py [--sizes 100 1000] [--threads 1]
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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bead_systems import random_liquid  # noqa: E402
from bench_native import DEFAULT_MODEL, DENSITY, PUBLISHED_MODEL, export  # noqa: E402

from hipcg.backends import ModelEvaluator  # noqa: E402
from hipcg.graph import periodic_graph  # noqa: E402


def median_ms(fn, budget_s: float = 2.0) -> float:
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < budget_s or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def bench(model: Path, label: str, cutoff: float, sizes, threads: int) -> list[dict]:
    rows = []
    evaluators = {b: ModelEvaluator(model, backend=b, threads=threads) for b in ("torch", "native")}
    for n in sizes:
        box = random_liquid(n, DENSITY, 3.0, seed=n, n_types=1)
        graph = periodic_graph(box.positions, box.cell, box.species, cutoff)
        row = {"model": label, "beads": n, "pairs": graph.n_pairs, "threads": threads,
               "graph_ms": median_ms(lambda: periodic_graph(box.positions, box.cell, box.species, cutoff))}
        for backend, ev in evaluators.items():
            row[f"{backend}_ms"] = median_ms(lambda: ev.evaluate(graph))
        row["speedup"] = row["torch_ms"] / row["native_ms"]
        a, b = evaluators["native"].evaluate(graph), evaluators["torch"].evaluate(graph)
        row["max_force_difference_relative"] = float(np.abs(a.forces - b.forces).max() / np.abs(b.forces).max())
        rows.append(row)
        print(f"{label:10s} {n:6d} beads ({graph.n_pairs} pairs), {threads} thr: torch {row['torch_ms']:8.2f} ms, "
              f"native {row['native_ms']:8.3f} ms ({row['speedup']:.1f}x), pair search {row['graph_ms']:.2f} ms, "
              f"forces agree to {row['max_force_difference_relative']:.1e}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--published", action="store_true", help="also the published size at 256 beads")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {"date": datetime.date.today().isoformat(), "machine": platform.node(),
               "cpus": os.cpu_count(), "torch": torch.__version__, "rows": []}
    with tempfile.TemporaryDirectory(prefix="hipcg-native-py-") as tmp:
        root = Path(tmp)
        results["rows"] += bench(export(root, "default", DEFAULT_MODEL, "float32"), "default",
                                 DEFAULT_MODEL.cutoff, args.sizes, args.threads)
        if args.published:
            results["rows"] += bench(export(root, "published", PUBLISHED_MODEL, "float64"), "published",
                                     PUBLISHED_MODEL.cutoff, [256], args.threads)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
