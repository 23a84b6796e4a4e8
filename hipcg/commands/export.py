"""``hipcg export RUN_DIR -o model.pt``: trained run -> model file for pair_style hipcg."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_overwrite_flag


def _export(args: argparse.Namespace) -> int:
    from ..export import export_run
    from ..modelfile import read_metadata

    path = export_run(args.run_dir, args.output, dtype=args.dtype, overwrite=args.overwrite)
    meta = read_metadata(path)
    print(f"{path}: {meta.model}, types {' '.join(meta.type_names)}, cutoff {meta.cutoff} Å, "
          f"{meta.n_interaction_layers} interaction layer(s), {meta.dtype}")
    style = "pair_style hipcg" + (" temperature T   # K: W(R; T) = E - T S, T_ref "
                                   f"{meta.reference_temperature:g} K" if meta.temperature_aware else "")
    print(f"LAMMPS: {style}\n        pair_coeff * * {path} {' '.join(meta.type_names)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write the model file (TorchScript) of a trained run")
    p.add_argument("run_dir", type=Path, help="out_dir of `hipcg train`")
    p.add_argument("-o", "--output", type=Path, required=True, help="model file to write")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    add_overwrite_flag(p, "an existing model file")
    p.set_defaults(func=_export)
