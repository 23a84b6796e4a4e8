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

--profile adds, per size and thread count, a run of each backend with HIPCG_PROFILE=1: the
plugin's own per-call timing of the model evaluation alone (forward + backward on the step's
graph, no neighbour lists, graph build or force scatter), and for the native backend the
network's arithmetic per evaluation (network_flops below) divided by that time: GFLOP/s.

Usage: .venv/bin/python benchmarks/bench_native.py [--sizes 100 1000] [--threads 1 2]
       [--published] [--profile] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bead_systems import random_liquid  # noqa: E402
from bench_plugin import plugin_step_time, run_nve  # noqa: E402

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


def network_flops(config: HipnnConfig, n_nodes: int, n_pairs: int, n_types: int = 1) -> dict:
    """Floating-point operations of one forward + backward evaluation (a multiply-add = 2).

    Per interaction block with N graph nodes, P pairs (ordered, within the cutoff), input width
    Fi (= n_types for the first block, a one-hot), width F, S sensitivities, C tensor components
    (1, 4 or 9 for Hipnn, HipnnVec, HipnnQuad) and A atom layers:

      forward   environment sums    2 P C S          (one-hot input: one feature per pair)
                                  + 2 P C S Fi + P C S     (dense input: z_j (x) T s, blocks > 0)
                interaction         2 N C (S Fi) F   (V_c E for each tensor component)
                self + residual     2 N Fi F + 2 N F F  (+ 2 N Fi F with an adjust layer)
                atom layers         A * 2 * 2 N F F  (base and residual Linear)
      backward  atom layers         A * 2 * 2 N F F
                residual, self      2 N F F (+ 2 N Fi F + 2 N Fi F for blocks > 0)
                dE/dE               2 N C F (S Fi)
                per pair            2 P S (2 C + 1)  (dE/ds . ds/dr and dE/dT, one-hot)
                                  + 4 P C S Fi       (dense input: to the pairs and to z_j)

    Left out (lower order or not multiply-adds): exp of the sensitivities (P S per block),
    softplus (N F per layer), tensor norms, the cutoff function, geometry and the energy head.
    """
    order = {"Hipnn": 1, "HipnnVec": 4, "HipnnQuad": 9}[config.network]
    F, S, A, N, P = config.n_features, config.n_sensitivities, config.n_atom_layers, n_nodes, n_pairs
    forward = backward = 0
    fi = n_types
    for b in range(config.n_interaction_layers):
        one_hot = b == 0
        forward += 2 * P * order * S if one_hot else 2 * P * order * S * fi + P * order * S
        forward += 2 * N * order * S * fi * F + 2 * N * fi * F + 2 * N * F * F
        if fi != F:
            forward += 2 * N * fi * F
        forward += A * 2 * 2 * N * F * F
        backward += A * 2 * 2 * N * F * F + 2 * N * F * F
        if not one_hot:
            backward += 4 * N * fi * F + 4 * P * order * S * fi
        backward += 2 * N * order * F * S * fi + 2 * P * S * (2 * order + 1)
        fi = F
    return {"forward": forward, "backward": backward, "total": forward + backward}


PROFILE_LINE = re.compile(r"pair hipcg profile \(rank 0, (\d+) calls, (\d+) pairs/call\): graph ([\d.]+) ms, "
                          r"model \((\w+) backend, forward \+ backward\) ([\d.]+) ms, forces\+virial ([\d.]+) ms")


def profile_backend(root: Path, plugin: Path, model: Path, box, backend: str, threads: int,
                    steps: int) -> dict:
    """The plugin's per-call timings (HIPCG_PROFILE=1) over an NVE run of ``steps`` steps."""
    result = run_nve(root, plugin, model, box.positions, box.cell, threads, steps, "cpu",
                     f"backend {backend}", env={"HIPCG_PROFILE": "1"}, tag=f"profile_{backend}")
    for line in result.output.splitlines():
        m = PROFILE_LINE.search(line)
        if m:
            return {"calls": int(m.group(1)), "pairs": int(m.group(2)), "graph_ms": float(m.group(3)),
                    "model_ms": float(m.group(5)), "scatter_ms": float(m.group(6))}
    raise RuntimeError("no 'pair hipcg profile' line in the LAMMPS output")


def pick_steps(seconds_per_step_guess: float, budget_s: float = 4.0) -> int:
    return int(min(2000, max(3, budget_s / seconds_per_step_guess)))


def bench(root: Path, plugin: Path, label: str, model: Path, config: HipnnConfig, sizes, thread_counts,
          profile: bool = False) -> list[dict]:
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
            if profile:
                # interleaved again: torch, native, each over about the same wall time
                for backend in ("torch", "native"):
                    prof = profile_backend(root, plugin, model, box, backend, threads,
                                           pick_steps(1.0 / rates[backend], 3.0))
                    row[f"{backend}_profile"] = prof
                # one interaction layer: the local beads plus one shared node per type
                flops = network_flops(config, n + 1, row["native_profile"]["pairs"])
                row["network_flops"] = flops
                row["native_gflops"] = flops["total"] / (row["native_profile"]["model_ms"] * 1e-3) / 1e9
                t, nat = row["torch_profile"], row["native_profile"]
                print(f"{'':10s} {'':6s}       {threads} thr: model per call torch {t['model_ms']:.3f} ms, "
                      f"native {nat['model_ms']:.3f} ms ({t['model_ms'] / nat['model_ms']:.1f}x; graph "
                      f"{nat['graph_ms']:.3f} ms, forces {nat['scatter_ms']:.3f} ms; {nat['pairs']} pairs); "
                      f"{flops['total'] / 1e6:.2f} MFLOP per evaluation, native {row['native_gflops']:.1f} "
                      f"GFLOP/s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--published", action="store_true", help="also the published size")
    parser.add_argument("--published-sizes", type=int, nargs="+", default=[256],
                        help="bead counts for --published (default 256)")
    parser.add_argument("--profile", action="store_true",
                        help="also the plugin's per-call model timings (HIPCG_PROFILE=1) and GFLOP/s")
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
        results["rows"] += bench(root, plugin, "default", model, DEFAULT_MODEL, args.sizes, args.threads,
                                 args.profile)
        if args.published:
            model = export(root, "published", PUBLISHED_MODEL, "float64")
            results["rows"] += bench(root, plugin, "published", model, PUBLISHED_MODEL, args.published_sizes, args.threads,
                                     args.profile)
    results["seconds"] = round(time.perf_counter() - start, 1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
