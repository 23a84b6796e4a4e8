"""``hipcg map``: atomistic trajectory + mapping file -> CG dataset (.npz)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import OutputExistsError
from . import add_overwrite_flag


# MDAnalysis format names accepted for --format, for users who know them
_FORMAT_ALIASES = {"lammpsdump": "lammps", "data": "lammps", "trr": "gromacs", "tpr": "gromacs",
                   "gro": "gromacs", "xyz": "extxyz"}


def _format_name(value: str) -> str:
    name = _FORMAT_ALIASES.get(value.lower(), value.lower())
    if name not in ("lammps", "gromacs", "extxyz"):
        raise argparse.ArgumentTypeError(f"{value!r}: choose lammps, gromacs or extxyz")
    return name


def _map(args: argparse.Namespace) -> int:
    from ..config import from_args
    from ..mapping import MapSettings, load_mapping, write_dataset
    from ..trajectory import open_trajectory

    settings = from_args(MapSettings, {"mapping": args.mapping, "start": args.start,
                                       "stop": args.stop, "stride": args.stride}, "map")
    if args.out.exists() and not args.overwrite:
        raise OutputExistsError(f"{args.out} exists; not overwriting it without --overwrite")
    mapping = load_mapping(args.mapping)
    # one opener for the CLI and the pipeline: it knows each format's units
    trajectory = open_trajectory(args.topology or args.trajectory,
                                 args.trajectory if args.topology else None,
                                 format=args.format, dump_units=args.dump_units,
                                 atom_style=args.atom_style, thermo=args.thermo)
    state = {"temperature": args.temperature, "pressure": args.pressure}
    summary = write_dataset(
        trajectory, mapping, args.out, start=settings.start, stop=settings.stop, step=settings.stride,
        velocities=False if args.no_velocities else None,
        metadata={"state_point": {k: v for k, v in state.items() if v is not None},
                  "topology": str(args.topology) if args.topology else None},
        overwrite=args.overwrite, progress=not args.quiet, source=str(args.trajectory),
        dtype="float32" if args.float32 else "float64")
    thermo = summary["thermo"]
    print(f"per-frame thermo from {thermo['source']}: {', '.join(thermo['keys'])}" if thermo["available"]
          else "no per-frame thermo: pressure and energy matching are off for this dataset "
               "(give --thermo)")
    print(f"{summary['path']}: {summary['frames']} frames, {summary['beads']} beads, "
          f"mean |F| {summary['mean_abs_force']:.3f} kcal/(mol Å), "
          f"density {summary['density']:.4f} g/cm^3, {summary['seconds']:.1f} s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("map", help="map an atomistic trajectory to beads: write a CG dataset (.npz)",
                       description="Map atoms to beads (positions, summed forces, velocities, "
                                   "boxes) frame by frame and write one CG dataset file.")
    p.add_argument("--mapping", type=Path, required=True, help="mapping file (YAML)")
    p.add_argument("--trajectory", type=Path, required=True,
                   help="trajectory with forces: LAMMPS dump (x y z fx fy fz), GROMACS TRR, extxyz")
    p.add_argument("--topology", type=Path, default=None,
                   help="topology: LAMMPS data file, GROMACS TPR/GRO (none for extxyz)")
    p.add_argument("--format", type=_format_name, default=None,
                   help="lammps, gromacs or extxyz (default: from the file suffixes)")
    p.add_argument("--dump-units", choices=["real", "metal"], default="real",
                   help="LAMMPS 'units' the dump was written in (default real); converted to real")
    p.add_argument("--atom-style", default=None,
                   help="LAMMPS data columns in MDAnalysis form (default that of atom_style full: "
                        "'id resid type charge x y z')")
    p.add_argument("--thermo", type=Path, default=None,
                   help="per-frame pressure and energies: a LAMMPS log (thermo_style with step, vol, "
                        "press, pxx..pyz, pe, ke at every dumped step), a GROMACS .edr, or a hipcg "
                        "nvt_samples.dat (found automatically next to a hipcg reference dump)")
    p.add_argument("--out", type=Path, required=True, help="dataset file to write (.npz)")
    p.add_argument("--start", type=int, default=None, help="first frame (default 0)")
    p.add_argument("--stop", type=int, default=None, help="stop before this frame (default: end)")
    p.add_argument("--stride", type=int, default=None, help="use every n-th frame (default 1)")
    p.add_argument("--temperature", type=float, default=None, help="state point temperature, K")
    p.add_argument("--pressure", type=float, default=None, help="state point pressure, atm")
    p.add_argument("--no-velocities", action="store_true", help="do not store bead velocities")
    p.add_argument("--float32", action="store_true",
                   help="store positions/forces/velocities as float32 (half the size)")
    add_overwrite_flag(p, "an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_map)
