"""Speed of pair_style hipcg (issue 2).

(a) Lennard-Jones model through the plugin vs native lj/cut, 4000 atoms, and the plugin's
    fixed per-step cost (a 32-atom system, where the pair work is negligible);
(b) HIP-NN-TS at the published size (HipnnQuad, 128 features, 20 sensitivities, cutoff 15 Å,
    1 interaction layer, 3 atom layers; random weights: speed does not depend on them) at
    256, 1024 and 4096 beads at liquid-methanol number density 0.0148 beads/Å^3, 1 and 2 threads;
(c) the plugin's overhead over the same traced model's own forward+backward in PyTorch on the
    same frame (same pairs, same threads), measured in the same run.

Prints a table and writes JSON (--json).  Usage:
    .venv/bin/python benchmarks/bench_plugin.py [--quick] [--sizes 256 1024] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hipcg.graph import periodic_graph
from hipcg.lammps.data_file import write_lammps_data
from hipcg.lammps.runner import run_lammps
from hipcg.modelfile import load_model
from hipcg.export import export_model
from hipcg.models.hipnn import HipnnConfig, HipnnEnergy, build_network
from hipcg.lammps.plugin import build_plugin
from hipcg.lammps.selfcheck import CUTOFF, EPSILON, SIGMA, LJSystem, hipcg_pair_lines, lj_cut_pair_lines, lj_script
from hipcg.models.lj import export_lennard_jones

DENSITY = 0.0148  # beads/Å^3, liquid methanol one bead per molecule
MEOH_MASS = 32.04


def loop_seconds_per_step(result, steps: int) -> float:
    for line in result.output.splitlines():
        if line.startswith("Loop time of"):
            return float(line.split()[3]) / steps
    raise RuntimeError("no 'Loop time' line in the LAMMPS output")


def bench_lj(root: Path, plugin: Path, cells: int, steps: int) -> dict:
    system = LJSystem(cells=cells, steps=steps, thermo_every=steps, dump_every=10 * steps)
    model = export_lennard_jones(root / "lj.pt", ["Ar"], [[EPSILON]], [[SIGMA]], CUTOFF, overwrite=True)
    ref = run_lammps(lj_script(system, lj_cut_pair_lines()), root / f"lj_cut_{cells}")
    ours = run_lammps(lj_script(system, hipcg_pair_lines(plugin, model, "Ar", "threads 1")),
                      root / f"lj_hipcg_{cells}")
    t_ref, t_ours = loop_seconds_per_step(ref, steps), loop_seconds_per_step(ours, steps)
    return {"atoms": system.n_atoms, "steps": steps, "lj_cut_steps_per_s": 1 / t_ref,
            "hipcg_steps_per_s": 1 / t_ours, "hipcg_over_lj_cut_time": t_ours / t_ref,
            "extra_ms_per_step": 1e3 * (t_ours - t_ref)}


def bead_frame(n_beads: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n beads on a jittered simple-cubic lattice at DENSITY (no overlaps)."""
    rng = np.random.default_rng(seed)
    length = (n_beads / DENSITY) ** (1 / 3)
    n_side = int(np.ceil(n_beads ** (1 / 3)))
    sites = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    sites = sites[rng.choice(len(sites), n_beads, replace=False)]
    frac = (sites + 0.5 + rng.uniform(-0.3, 0.3, sites.shape)) / n_side
    cell = np.eye(3) * length
    return frac @ cell, cell


def published_model(root: Path, dtype: str) -> tuple[Path, HipnnConfig]:
    config = HipnnConfig()  # the published defaults
    torch.manual_seed(0)
    model = HipnnEnergy(build_network(config, n_types=1))
    return export_model(model, root / f"hipnn_published_{dtype}.pt", ["MeOH"], config, dtype=dtype,
                        overwrite=True), config


def run_nve(root: Path, plugin: Path, model: Path, positions, cell, threads: int, steps: int,
            device: str, style_args: str = "", env: dict | None = None, tag: str = "hipnn"):
    """An NVE run of ``steps`` steps of the beads through ``pair_style hipcg``; the LammpsResult.
    ``style_args``: more pair_style keywords (e.g. ``backend native``); ``env``: for LAMMPS."""
    work = root / f"{tag}_{len(positions)}_{threads}_{device}"
    work.mkdir(parents=True, exist_ok=True)
    data = write_lammps_data(work / "beads.data", positions, np.ones(len(positions), int), [MEOH_MASS], cell)
    script = f"""units real
atom_style atomic
read_data {data}
plugin load {plugin}
pair_style hipcg device {device} threads {threads} {style_args}
pair_coeff * * {model} MeOH
neighbor 2.0 bin
velocity all create 300 12345 loop geom
fix nve all nve
timestep 2.0
thermo {steps}
run {steps}
"""
    return run_lammps(script, work, threads=threads, env=env)


def plugin_step_time(root: Path, plugin: Path, model: Path, positions, cell, threads: int, steps: int,
                     device: str, style_args: str = "") -> tuple[float, int]:
    """Seconds per NVE step; ``style_args``: more pair_style keywords (e.g. ``backend native``)."""
    result = run_nve(root, plugin, model, positions, cell, threads, steps, device, style_args)
    return loop_seconds_per_step(result, steps), 0


def keep_freed_memory_in_heap() -> None:
    """The allocator setting the plugin applies in LAMMPS (see docs/plugin.md), applied here
    too so that the PyTorch reference is measured under the same conditions."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    libc.mallopt(M_TOP_PAD, 64 << 20)


def torch_step_time(model_path: Path, positions, cell, cutoff: float, threads: int, repeats: int,
                    device: str) -> tuple[float, int]:
    """Forward + backward of the traced model on the frame's pair graph, as a plain PyTorch user."""
    torch.set_num_threads(threads)
    module, meta = load_model(model_path, map_location=device)
    graph = periodic_graph(positions, cell, np.zeros(len(positions), int), cutoff)
    species = torch.as_tensor(graph.species, device=device)
    first = torch.as_tensor(graph.pair_first, device=device)
    second = torch.as_tensor(graph.pair_second, device=device)
    vec0 = torch.as_tensor(graph.pair_vec, device=device, dtype=meta.torch_dtype)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        vec = vec0.clone().requires_grad_(True)
        energy = module(species, first, second, vec).sum()
        (grad,) = torch.autograd.grad(energy, vec)
        grad.cpu()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:])), graph.n_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, small sizes only")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    plugin = build_plugin()
    keep_freed_memory_in_heap()
    results: dict = {"date": datetime.date.today().isoformat(), "machine": platform.node(),
                     "cpus": os.cpu_count(), "device": args.device, "torch": torch.__version__,
                     "dtype": args.dtype}
    with tempfile.TemporaryDirectory(prefix="hipcg-bench-") as tmp:
        root = Path(tmp)
        lj_steps = 50 if args.quick else 200
        results["lj_4000"] = bench_lj(root, plugin, cells=10, steps=lj_steps)
        results["lj_32"] = bench_lj(root, plugin, cells=2, steps=5 * lj_steps)
        r = results["lj_4000"]
        print(f"(a) LJ {r['atoms']} atoms: lj/cut {r['lj_cut_steps_per_s']:.1f} steps/s, hipcg "
              f"{r['hipcg_steps_per_s']:.1f} steps/s ({r['hipcg_over_lj_cut_time']:.2f}x the time)")
        print(f"    fixed per-step cost (32 atoms): {results['lj_32']['extra_ms_per_step']:.2f} ms "
              f"(hipcg {results['lj_32']['hipcg_steps_per_s']:.0f} vs lj/cut "
              f"{results['lj_32']['lj_cut_steps_per_s']:.0f} steps/s)", flush=True)

        model, config = published_model(root, args.dtype)
        rows = []
        sizes = [s for s in args.sizes if not args.quick or s <= 1024]
        for n in sizes:
            positions, cell = bead_frame(n)
            steps = max(2, int(4000 / n)) if not args.quick else 2
            for threads in args.threads:
                t_plugin, _ = plugin_step_time(root, plugin, model, positions, cell, threads, steps, args.device)
                t_torch, n_pairs = torch_step_time(model, positions, cell, config.cutoff, threads,
                                                   repeats=max(2, steps // 2), device=args.device)
                row = {"beads": n, "threads": threads, "pairs": n_pairs, "steps": steps,
                       "plugin_steps_per_s": 1 / t_plugin, "torch_fwd_bwd_s": t_torch,
                       "plugin_s_per_step": t_plugin, "overhead": t_plugin / t_torch - 1,
                       "us_per_pair": 1e6 * t_plugin / n_pairs}
                rows.append(row)
                print(f"(b,c) {n:5d} beads {threads} thr: {row['plugin_steps_per_s']:8.2f} steps/s "
                      f"({row['us_per_pair']:.2f} µs/pair, {n_pairs} pairs); torch fwd+bwd "
                      f"{1e3 * t_torch:.1f} ms, plugin step {1e3 * t_plugin:.1f} ms: overhead "
                      f"{100 * row['overhead']:+.1f}%", flush=True)
        results["hipnn_published"] = rows
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print("done:", json.dumps({k: v for k, v in results.items() if k not in ("hipnn_published",)})[:300])


if __name__ == "__main__":
    main()
