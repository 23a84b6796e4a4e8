"""Throughput of the atomistic reference runs: the baseline that CG speed-ups are measured against.

Continues a finished ``hipcg reference`` state point from its final NPT restart with the same
force field and settings, for ``--steps`` NVT steps in each layout (MPI ranks x OpenMP threads),
and prints LAMMPS' own Performance figures plus the machine's CPU steal over each run (these
machines are shared virtual machines: steal is time the host gave to someone else).

    .venv/bin/python benchmarks/bench_reference_throughput.py /tmp/hipcg_validation/methanol_T298_P1 \
        --layouts 1x1 2x1 1x2 --steps 2000
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

from hipcg.lammps.runner import run_lammps
from hipcg.reference import ReferenceConfig, make_plan, setup_commands
from hipcg.systems import load_system


def cpu_times() -> list[int] | None:
    try:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    except OSError:
        return None


def steal_fraction(before: list[int] | None, after: list[int] | None) -> float | None:
    if not before or not after:
        return None
    delta = [b - a for a, b in zip(before, after)]
    return delta[7] / max(1, sum(delta))


def measure(state_point: Path, ranks: int, threads: int, steps: int) -> dict:
    meta = json.loads((state_point / "metadata.json").read_text())
    ident = json.loads((state_point / "config.json").read_text())
    system = load_system(meta["system"]["file"])
    cfg = ReferenceConfig(system=str(system.path), temperatures=[meta["temperature"]],
                          cutoff=ident["cutoff"], kspace_accuracy=ident["kspace_accuracy"],
                          thermo_every=steps, out=state_point)
    plan = make_plan(cfg, system)
    restart = state_point / "npt.final.restart"
    # OpenMP styles through the input itself, the same as `-sf omp -pk omp N` on the command line
    lines = [f"package omp {threads}", "suffix omp"] if threads > 1 else []
    lines += setup_commands(system, cfg, plan, str(restart))
    lines += [system.shake_command() or "",
              f"fix thermostat all nvt temp {meta['temperature']} {meta['temperature']} {cfg.tdamp_fs}",
              "run 100",          # neighbour lists, PPPM set-up and caches out of the timing
              f"run {steps}"]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = cpu_times()
        out = run_lammps("\n".join(lines) + "\n", tmp, nprocs=ranks, threads=threads).output
        steal = steal_fraction(t0, cpu_times())
    perf = re.findall(r"Performance: ([\d.]+) ns/day, [\d.]+ hours/ns, ([\d.]+) timesteps/s", out)
    ns_day, steps_s = map(float, perf[-1])
    return {"system": meta["system"]["name"], "atoms": meta["n_atoms"], "ranks": ranks,
            "threads": threads, "timestep_fs": plan.dt, "steps": steps, "ns_per_day": ns_day,
            "steps_per_s": steps_s, "cpu_steal": steal}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("state_points", nargs="+", type=Path, help="finished hipcg reference directories")
    ap.add_argument("--layouts", nargs="+", default=["1x1", "2x1", "1x2"],
                    help="RANKSxTHREADS, e.g. 2x1 = mpirun -np 2, 1 thread each")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    rows = []
    print("| system | atoms | ranks x threads | timestep | ns/day | steps/s | CPU steal |")
    print("|---|---|---|---|---|---|---|")
    for sp in args.state_points:
        for layout in args.layouts:
            ranks, threads = (int(x) for x in layout.split("x"))
            r = measure(sp, ranks, threads, args.steps)
            rows.append(r)
            steal = "n/a" if r["cpu_steal"] is None else f"{r['cpu_steal']:.0%}"
            print(f"| {r['system']} | {r['atoms']} | {ranks} x {threads} | {r['timestep_fs']:g} fs | "
                  f"{r['ns_per_day']:.2f} | {r['steps_per_s']:.1f} | {steal} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
