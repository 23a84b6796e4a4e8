"""``hipcg baseline``: pairwise force matching (MS-CG) -> LAMMPS pair_style table."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from . import add_overwrite_flag

from ..config import NonNegativeInt, Positive
from ..errors import InputError


@dataclass
class _Flags:
    """The command's own flags beside the baseline: section's, with their ranges."""

    cutoff: Positive | None = None  # Å
    max_frames: NonNegativeInt = 0


def _run(args: argparse.Namespace) -> int:
    from ..baseline import (BaselineConfig, dataset_frames, fit_pair_forces, local_density_for,
                            write_table)
    from ..config import from_args
    from ..data import load_dataset

    t0 = time.perf_counter()
    settings = from_args(BaselineConfig, {"dr": args.dr, "ridge": args.ridge, "points": args.points,
                                          "ld_width": args.ld_width}, "baseline")
    from_args(_Flags, {"cutoff": args.cutoff, "max_frames": args.max_frames}, "baseline")
    cutoff = args.cutoff
    datasets = [load_dataset(p) for p in args.data]
    if cutoff is None:
        if args.model is None:
            raise InputError("give --cutoff or --model (whose cutoff the baseline then uses)")
        from ..modelfile import read_metadata

        cutoff = read_metadata(args.model).cutoff
    names = datasets[0].type_names
    if any(d.type_names != names for d in datasets):
        raise InputError("datasets have different type names")

    def frames():
        for d in datasets:
            stride = max(1, d.n_frames // args.max_frames) if args.max_frames else 1
            yield from dataset_frames(d, range(0, d.n_frames, stride))

    ld = local_density_for(datasets, cutoff, settings) if args.local_density else None
    table = fit_pair_forces(frames(), names, cutoff, dr=settings.dr, ridge=settings.ridge, progress=True,
                            local_density=ld)
    out = write_table(table, args.out, n_points=settings.points, overwrite=args.overwrite,
                      info={"datasets": [str(p) for p in args.data], "dr": settings.dr,
                            "ridge": settings.ridge})
    print(f"baseline: {len(table.pairs)} pair table(s), cutoff {cutoff} Å -> {out} "
          f"(+ {out.with_suffix('.table').name}) in {time.perf_counter() - t0:.1f} s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baseline", help="fit the pairwise force-matching baseline (pair_style table)")
    p.add_argument("--data", nargs="+", required=True, type=Path, help="training CG datasets (.npz)")
    p.add_argument("--out", required=True, type=Path, help="descriptor .json (the .table goes next to it)")
    p.add_argument("--cutoff", type=float, help="Å (default: the cutoff of --model)")
    p.add_argument("--model", type=Path, help="model file whose cutoff to use")
    p.add_argument("--dr", type=float, default=0.1, help="grid spacing of the force basis, Å")
    p.add_argument("--ridge", type=float, default=1e-6, help="relative ridge regularisation")
    p.add_argument("--points", type=int, default=2000, help="table points")
    p.add_argument("--local-density", action="store_true",
                   help="also fit a local-density potential (pair_style hybrid/overlay table "
                        "local/density): R2 at the first minimum of g(r), R1 = R2 - --ld-width")
    p.add_argument("--ld-width", type=float, default=1.5, help="R2 - R1 of the LD indicator, Å")
    p.add_argument("--max-frames", dest="max_frames", type=int, default=0,
                   help="use at most about this many frames per dataset (0: all)")
    add_overwrite_flag(p, "existing table files")
    p.set_defaults(func=_run)
