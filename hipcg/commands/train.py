"""``hipcg train CONFIG.yaml``: force matching (see hipcg.train)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_overwrite_flag


def _train(args: argparse.Namespace) -> int:
    from ..train import TrainConfig, train

    config = TrainConfig.from_yaml(args.config, path_prefix=args.section)
    if args.out_dir is not None:
        config.out_dir = str(args.out_dir)
    if args.device is not None:
        config.device = args.device
    train(config, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="force-match a HIP-NN-TS + repulsive prior CG model")
    p.add_argument("config", type=Path, help="training YAML (or a pipeline YAML with a 'train' section)")
    p.add_argument("--out-dir", type=Path, default=None, help="override the config's out_dir")
    p.add_argument("--device", default=None, help="override the config's device (auto, cpu, cuda)")
    p.add_argument("--resume", action="store_true", help="continue from out_dir/checkpoint.pt")
    add_overwrite_flag(p, "a non-empty out_dir (start over)")
    p.add_argument("--section", default="train", help="config section name in a pipeline YAML")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=_train)
