"""``hipcg simulate``: write a readable LAMMPS input + data file for a CG model and run it."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_overwrite_flag

from ..errors import DataError, InputError

# CLI flag -> SimulationConfig field (None: not given, keep the config file's / default value)
_FLAGS = {"ensemble": str, "thermostat": str, "temperature": float, "pressure": float,
          "timestep": float, "steps": int, "dump_every": int, "thermo_every": int, "seed": int,
          "nprocs": int, "threads": int, "device": str, "min_distance": float,
          "max_temperature_factor": float, "minimize_steps": int, "equilibration": float,
          "backend": str}


def _config(args):
    from ..config import load_yaml

    from ..simulate import SimulationConfig

    data = {}
    if args.config:
        data = load_yaml(args.config, what="simulation config") or {}
        if not isinstance(data, dict):
            raise InputError(f"{args.config}: expected a mapping of SimulationConfig keys "
                             "(temperature, steps, ...)")
    for name in _FLAGS:
        value = getattr(args, name)
        if value is not None:
            data[name] = value
    data["model"] = str(args.model)
    if args.data is None and "minimize_steps" not in data:
        data["minimize_steps"] = 200  # a fresh lattice box needs relaxing first
    return SimulationConfig.from_dict(data)


def _start(args, config):
    from ..simulate import StartStructure, fresh_box

    if args.data is not None:
        from ..data import load_dataset

        ds = load_dataset(args.data)
        if args.temperature is None and not args.config:
            t = (ds.metadata.get("state_point") or {}).get("temperature")
            if t:
                config.temperature = float(t)
        try:
            return StartStructure.from_dataset(ds, args.frame)
        except DataError as err:
            raise DataError(f"{args.data}: --frame: {err}") from None
    if not (args.beads and args.density and args.types and args.masses):
        raise InputError("give --data DATASET, or --beads N --density RHO --types A [B ..] --masses M [..]")
    if len(args.types) != len(args.masses):
        raise InputError("--types and --masses need one value per type")
    for flag, values in (("--beads", [args.beads]), ("--density", [args.density]),
                         ("--masses", args.masses), ("--fractions", args.fractions or [1.0])):
        if any(not v > 0 for v in values):
            raise InputError(f"simulate {flag}: must be > 0 (got {' '.join(map(str, values))})")
    return fresh_box(args.beads, args.types, args.masses, args.density, args.fractions, seed=config.seed)


def _run(args: argparse.Namespace) -> int:
    from ..simulate import run_simulation, write_inputs

    config = _config(args)
    start = _start(args, config)
    if args.write_only:
        path = write_inputs(config, start, args.out, overwrite=args.overwrite)
        print(f"wrote {path} and {path.parent / 'data.lammps'}; run with: cd {path.parent} && lmp -in {path.name}")
        return 0
    print(f"{config.ensemble.upper()} {config.steps} steps of {len(start.positions)} beads at "
          f"{config.temperature} K with {config.model} ...", flush=True)
    res = run_simulation(config, start, args.out, overwrite=args.overwrite, read=True)
    th = res.trajectory.thermo
    t = th.get("Temp")
    p = th.get("Press")
    rho = th.get("Density")
    print(f"done: {res.steps} steps in {res.wall_s:.1f} s ({res.steps_per_s:.1f} steps/s); final "
          f"T {t[-1]:.1f} K, P {p[-1]:.1f} atm, density {rho[-1]:.4f} g/cm^3; files in {res.workdir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="run a CG model (or baseline table) in LAMMPS",
                       description="Write in.lammps + data.lammps (readable, editable) and run them. "
                                   "Stops with the step and reason if the run blows up.")
    p.add_argument("--model", required=True, type=Path,
                   help="model file (.pt) or baseline descriptor (.json from hipcg baseline)")
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--config", type=Path, help="YAML with SimulationConfig fields (flags override)")
    src = p.add_argument_group("start structure")
    src.add_argument("--data", type=Path, help="CG dataset (.npz): start from one of its frames")
    src.add_argument("--frame", type=int, default=-1, help="frame of --data (default: last)")
    src.add_argument("--beads", type=int, help="fresh box: number of beads")
    src.add_argument("--density", type=float, help="fresh box: density, g/cm^3")
    src.add_argument("--types", nargs="+", help="fresh box: bead type names")
    src.add_argument("--masses", nargs="+", type=float, help="fresh box: mass per type, g/mol")
    src.add_argument("--fractions", nargs="+", type=float, help="fresh box: number fraction per type")
    md = p.add_argument_group("dynamics (default: SimulationConfig)")
    md.add_argument("--ensemble", choices=["nvt", "npt"])
    md.add_argument("--thermostat", choices=["langevin", "nose-hoover"])
    md.add_argument("--temperature", type=float, help="K (default: the dataset's state point)")
    md.add_argument("--pressure", type=float, help="atm (NPT)")
    md.add_argument("--timestep", type=float, help="fs")
    md.add_argument("--steps", type=int)
    md.add_argument("--dump-every", dest="dump_every", type=int)
    md.add_argument("--thermo-every", dest="thermo_every", type=int)
    md.add_argument("--seed", type=int)
    md.add_argument("--equilibration", type=float, help="fraction discarded before averages")
    md.add_argument("--minimize-steps", dest="minimize_steps", type=int)
    md.add_argument("--min-distance", dest="min_distance", type=float, help="blow-up floor, Å")
    md.add_argument("--max-temperature-factor", dest="max_temperature_factor", type=float)
    par = p.add_argument_group("parallel")
    par.add_argument("--np", dest="nprocs", type=int, help="MPI ranks (mpirun -np N)")
    par.add_argument("--threads", type=int, help="threads per rank")
    par.add_argument("--device", choices=["cpu", "cuda"])
    par.add_argument("--backend", choices=["auto", "native", "torch"],
                     help="pair_style hipcg backend (default auto: native on the CPU for HIP-NN)")
    p.add_argument("--write-only", action="store_true", help="write the inputs, do not run")
    add_overwrite_flag(p, "an existing run folder")
    p.set_defaults(func=_run)
