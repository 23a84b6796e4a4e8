"""``hipcg reference``: all-atom reference trajectories with forces at state points."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import add_overwrite_flag


def _reference(args: argparse.Namespace) -> int:
    from ..reference import ReferenceConfig, exit_on_sigterm, run_reference

    cfg = ReferenceConfig(
        system=args.system, temperatures=args.temperatures, out=args.out, pressure=args.pressure,
        molecules=args.molecules, equilibrate_ps=args.equilibrate_ps,
        production_ps=args.production_ps, every_fs=args.every_fs, timestep_fs=args.timestep_fs,
        cutoff=args.cutoff, kspace_accuracy=args.kspace_accuracy, seed=args.seed,
        restart_every_ps=args.restart_every_ps, compress_ps=args.compress_ps,
        settle_ps=args.settle_ps, nprocs=args.np, threads=args.threads, overwrite=args.overwrite,
        progress=not args.no_progress)
    exit_on_sigterm()
    start = time.perf_counter()
    results = run_reference(cfg)
    parts = []
    for r in results:
        m = r.metadata
        rate = f", {m['ns_per_day']:.2f} ns/day" if m.get("ns_per_day") else ""
        parts.append(f"T={r.temperature:g} K: {m['density_npt_mean']:.4f} g/cm^3, "
                     f"{m['frames']} frames{' (done before)' if r.skipped else rate}")
    print(f"{cfg.system}: {len(results)} state point(s) in {Path(cfg.out)} "
          f"({time.perf_counter() - start:.0f} s): " + "; ".join(parts))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reference",
        help="all-atom LAMMPS trajectories with forces at (T, P) state points",
        description="Build a box of molecules, minimise, equilibrate in NPT, then run NVT at the "
                    "mean NPT volume, dumping positions, velocities and forces (units real). "
                    "Finished state points are skipped; interrupted ones resume from their last "
                    "restart file.")
    p.add_argument("--system", required=True,
                   help="system name under datasets/ (methanol, water) or a system.yaml path")
    p.add_argument("--temperatures", "-T", type=float, nargs="+", required=True, help="K")
    p.add_argument("--pressure", "-P", type=float, default=1.0, help="atm (default 1)")
    p.add_argument("--molecules", "-n", type=int, default=256)
    p.add_argument("--equilibrate-ps", type=float, default=50.0, help="NPT length")
    p.add_argument("--production-ps", type=float, default=100.0, help="NVT length")
    p.add_argument("--every-fs", type=float, default=100.0, help="dump interval")
    p.add_argument("--timestep-fs", type=float, default=None,
                   help="default: the system file's (methanol 1, water 2)")
    p.add_argument("--cutoff", type=float, default=12.0, help="LJ / real-space cutoff, Å")
    p.add_argument("--kspace-accuracy", type=float, default=1.0e-5, help="PPPM relative accuracy")
    p.add_argument("--restart-every-ps", type=float, default=10.0,
                   help="restart-file interval: the most a killed run loses")
    p.add_argument("--compress-ps", type=float, default=5.0, help="NVT squeeze after insertion")
    p.add_argument("--settle-ps", type=float, default=2.0, help="NVT after rescaling to the mean volume")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--np", type=int, default=1, help="MPI ranks (mpirun -np N)")
    p.add_argument("--threads", type=int, default=1, help="OpenMP threads per rank (OPENMP package)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    add_overwrite_flag(p, "existing state points")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_reference)
