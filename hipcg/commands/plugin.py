"""``hipcg build-plugin`` and ``hipcg check-plugin``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import _DeprecatedFlag


def _build_plugin(args: argparse.Namespace) -> int:
    from ..lammps.plugin import build_plugin

    print(build_plugin(rebuild=args.rebuild, jobs=args.jobs, verbose=True))
    return 0


def _check_plugin(args: argparse.Namespace) -> int:
    from ..lammps.plugin import build_plugin
    from ..lammps.selfcheck import LJSystem, check_plugin

    start = time.perf_counter()
    plugin = build_plugin(verbose=True)
    system = LJSystem(cells=args.cells, steps=args.steps)
    print(f"plugin: {plugin}")
    print(f"running {system.steps} NVE steps of {system.n_atoms} LJ atoms with lj/cut and with "
          f"pair_style hipcg on {args.np} MPI rank(s) ...", flush=True)
    passed, cmp = check_plugin(workdir=args.workdir, system=system, nprocs=args.np,
                               tolerance=args.tolerance, plugin=plugin)
    print(f"largest relative difference, hipcg vs lj/cut over {cmp.steps} steps:")
    print(f"  potential energy  {cmp.energy:.2e}")
    print(f"  per-atom energy   {cmp.per_atom_energy:.2e}")
    print(f"  forces            {cmp.forces:.2e}")
    print(f"  pressure          {cmp.pressure:.2e}")
    verdict = "PASS" if passed else "FAIL"
    print(f"{verdict}: worst {cmp.worst:.2e} vs tolerance {args.tolerance:.0e} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0 if passed else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-plugin", help="build hipcgplugin.so (if missing or stale) and print its path")
    p.add_argument("--rebuild", action="store_true", help="rebuild even if an up-to-date build exists")
    p.add_argument("--force", action=_DeprecatedFlag, dest="rebuild", new="--rebuild", default=False)
    p.add_argument("--jobs", "-j", type=int, default=None, help="parallel compile jobs")
    p.set_defaults(func=_build_plugin)

    p = sub.add_parser("check-plugin", help="self-test: pair_style hipcg + LJ model against lj/cut")
    p.add_argument("--np", type=int, default=1, help="MPI ranks (mpirun -np N)")
    p.add_argument("--steps", type=int, default=100, help="NVE steps")
    p.add_argument("--cells", type=int, default=5, help="fcc cells per side (4 cells^3 atoms)")
    p.add_argument("--tolerance", type=float, default=1e-10, help="largest relative difference")
    p.add_argument("--workdir", type=Path, default=None, help="keep the LAMMPS runs here")
    p.set_defaults(func=_check_plugin)
