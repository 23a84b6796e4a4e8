"""``hipcg map``: atomistic trajectory + mapping file -> CG dataset (.npz)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def open_universe(trajectory: Path, topology: Path | None = None, fmt: str | None = None,
                  topology_format: str | None = None, atom_style: str | None = None):
    """Open an MDAnalysis Universe; errors name the file that could not be read."""
    import MDAnalysis as mda

    for path in (topology, trajectory):
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such file")
    kwargs = {}
    if fmt:
        kwargs["format"] = fmt
    if topology_format:
        kwargs["topology_format"] = topology_format
    if atom_style:
        kwargs["atom_style"] = atom_style
    args = [str(topology), str(trajectory)] if topology else [str(trajectory)]
    try:
        return mda.Universe(*args, **kwargs)
    except Exception as err:  # MDAnalysis raises many types; say which files it was
        files = " + ".join(args)
        raise RuntimeError(f"MDAnalysis could not open {files}: {err}") from err


def _map(args: argparse.Namespace) -> int:
    from ..data import DatasetError
    from ..mapping import MappingError, load_mapping, write_dataset

    try:
        if args.out.exists() and not args.force:
            raise FileExistsError(f"{args.out} exists; not overwriting it without --force")
        mapping = load_mapping(args.mapping)
        universe = open_universe(args.trajectory, args.topology, args.format,
                                 args.topology_format, args.atom_style)
        state = {"temperature": args.temperature, "pressure": args.pressure}
        summary = write_dataset(
            universe, mapping, args.out, start=args.start, stop=args.stop, step=args.stride,
            velocities=False if args.no_velocities else None,
            metadata={"state_point": {k: v for k, v in state.items() if v is not None},
                      "topology": str(args.topology) if args.topology else None},
            overwrite=args.force, progress=not args.quiet, source=str(args.trajectory),
            dtype="float32" if args.float32 else "float64")
    except (MappingError, DatasetError, FileExistsError, FileNotFoundError, RuntimeError) as err:
        print(f"hipcg map: error: {err}", file=sys.stderr)
        return 2
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
                   help="trajectory with forces (LAMMPS dump with fx fy fz, TRR, ...)")
    p.add_argument("--topology", type=Path, default=None,
                   help="topology (LAMMPS data, PSF, GRO, PDB, TPR, ...); names/resnames help")
    p.add_argument("--format", default=None, help="trajectory format for MDAnalysis "
                   "(e.g. LAMMPSDUMP; default: from the file extension)")
    p.add_argument("--topology-format", default=None, help="topology format (e.g. DATA)")
    p.add_argument("--atom-style", default=None,
                   help="LAMMPS data atom style, e.g. 'id resid type charge x y z' (default: guessed)")
    p.add_argument("--out", type=Path, required=True, help="dataset file to write (.npz)")
    p.add_argument("--start", type=int, default=None, help="first frame (default 0)")
    p.add_argument("--stop", type=int, default=None, help="stop before this frame (default: end)")
    p.add_argument("--stride", type=int, default=None, help="use every n-th frame (default 1)")
    p.add_argument("--temperature", type=float, default=None, help="state point temperature, K")
    p.add_argument("--pressure", type=float, default=None, help="state point pressure, atm")
    p.add_argument("--no-velocities", action="store_true", help="do not store bead velocities")
    p.add_argument("--float32", action="store_true",
                   help="store positions/forces/velocities as float32 (half the size)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_map)
