"""Learned CG dynamics against the reference MD: simulated time per wall second vs chain length.

For each chain length L (a multiple of the system's 40), the held-out sequences are repeated
end to end to length L and written into a copy of the system file; LAMMPS runs each chain
(one core each, ``--parallel`` at a time) for a short production, whose loop timing gives the
reference's simulated time per wall second; the bead trajectory of that run gives the starting
windows, and the trained model (``--model``, e.g. the pipeline's
``runs/polymer-dynamics/03-train/dynamics_model.pt``) rolls every sequence out, batched, for
``--steps`` learned steps on ``--threads`` cores, with ``--starts`` rollouts per sequence (one
row per value: the network's cost per chain falls a little as the batch grows).  Prints one
line per length and batch, and writes JSON.

Only speed is measured here: the model was trained on 40-mers, and its accuracy on longer
chains is not claimed.

    .venv/bin/python benchmarks/bench_dynamics_length.py \\
        --model runs/polymer-dynamics/03-train/dynamics_model.pt --lengths 40 80 160 --starts 4 16 \\
        --out benchmarks/results/dynamics_length.json
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import tempfile
import time
from pathlib import Path

import numpy as np


def system_copy(base: Path, length: int, out: Path, repeats_of: list[str]) -> Path:
    """A copy of the chain system file with chain_length ``length`` and, as its test
    sequences, each named one repeated to that length (train: the file's first training
    sequence, repeated; the runs here are all of role test)."""
    from hipcg.dynamics.chains import load_chain_system

    system = load_chain_system(base)
    text = base.read_text()
    head = text[:text.index("\nsequences:")]
    head = re.sub(r"\nchain_length:\s*\d+", f"\nchain_length: {length}", head)
    head = re.sub(r"\nname:\s*\S+", f"\nname: polymer-L{length}", head)
    seqs = {name: system.sequence(name) * (length // system.chain_length) for name in repeats_of}
    first = system.names("train")[0]
    repeat = length // system.chain_length
    lines = ["", "sequences:", "  train:", f"    {first}: {system.sequence(first) * repeat}", "  test:"]
    lines += [f"    {name}: {s}" for name, s in seqs.items()]
    path = out / f"polymer-L{length}" / "system.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + "\n".join(lines) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--lengths", type=int, nargs="+", default=[40, 80, 160])
    ap.add_argument("--sequences", nargs="+", default=["rand-f15", "rand-f50", "rand-f85", "alt-AAAB",
                                                        "alt-ABBB", "diblock-A15B25", "multiblock-A4B4",
                                                        "triblock-B6A28B6"])
    ap.add_argument("--md-steps", type=int, default=200_000, help="production MD steps per chain")
    ap.add_argument("--steps", type=int, default=100, help="learned steps per rollout")
    ap.add_argument("--starts", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from hipcg.dynamics.beads import map_chain
    from hipcg.dynamics.chains import ChainRunConfig, load_chain_system, run_chains
    from hipcg.dynamics.rollout import RolloutConfig, rollout_batch
    from hipcg.dynamics.train import load_dynamics_model
    from hipcg.systems import locate_system_yaml

    model = load_dynamics_model(args.model)
    per_bead = 4
    rows = []
    with tempfile.TemporaryDirectory(prefix="hipcg-dynlen-") as tmp:
        tmp = Path(tmp)
        for length in args.lengths:
            path = system_copy(locate_system_yaml("polymer"), length, tmp, args.sequences)
            system = load_chain_system(path)
            frame_every = round(model.frame_interval_fs / system.timestep_fs)
            cfg = ChainRunConfig(system=str(path), equilibrate_steps=10_000,
                                 production_steps=args.md_steps, frame_every=frame_every,
                                 parallel=args.parallel)
            runs = run_chains(cfg, tmp / f"runs-L{length}", roles="test", progress=False)
            trajs = [map_chain(run, system, per_bead) for run in runs.values()]
            md = np.array([t.md_fs_per_wall_second for t in trajs])
            for starts in args.starts:
                rc = RolloutConfig(steps=args.steps, starts=starts, threads=args.threads,
                                   checkpoint_every=10 * args.steps)
                t0 = time.perf_counter()
                results = rollout_batch(model, trajs, rc, tmp / f"rollouts-L{length}-{starts}", progress=False)
                wall = time.perf_counter() - t0
                learned = results[0].fs_per_wall_second
                blowups = sum(b is not None for r in results for b in r.blowups)
                row = {"chain_length": length, "beads": int(trajs[0].n_beads), "sequences": len(trajs),
                       "rollouts": len(trajs) * starts, "md_fs_per_wall_second_median": float(np.median(md)),
                       "md_fs_per_wall_second": md.tolist(), "learned_fs_per_wall_second": learned,
                       "speedup_median": float(np.median(learned / md)),
                       "ms_per_learned_step": 1000.0 * sum(r.wall_seconds for r in results) / args.steps,
                       "rollout_wall_seconds": wall, "blowups": blowups}
                rows.append(row)
                print(f"L={length:4d} ({row['beads']} beads): MD {row['md_fs_per_wall_second_median'] / 1e6:.2f} "
                      f"ns/s per chain; learned {learned / 1e6:.1f} ns/s ({row['rollouts']} rollouts batched, "
                      f"{row['ms_per_learned_step']:.1f} ms per learned step); ratio {row['speedup_median']:.1f}x"
                      + (f"; {blowups} blow-ups" if blowups else ""), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": platform.node(),
                                        "model": str(args.model), "threads": args.threads,
                                        "learned_step_fs": model.learned_step_fs, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
