"""``hipcg evaluate``: static and dynamic metrics of models at every state point -> evaluation.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parse_models(items: list[str]) -> dict[str, str]:
    models = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem, item
        models[name] = path
    return models


def _run(args: argparse.Namespace) -> int:
    import yaml

    from ..evaluate import EvaluationSettings, StatePoint, evaluate, summary_line

    cfg = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    models = _parse_models(args.model or []) or dict(cfg.get("models", {}))
    points = [StatePoint(**sp) for sp in cfg.get("state_points", [])]
    points += [StatePoint(Path(p).stem, str(p), True) for p in args.train or []]
    points += [StatePoint(Path(p).stem, str(p), False) for p in args.test or []]
    settings = dict(cfg.get("settings", {}))
    for key in ("steps", "npt_steps", "timestep", "nprocs", "threads", "dump_every"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if not models or not points:
        print("error: need at least one --model and one --train/--test dataset (or --config)",
              file=sys.stderr)
        return 1
    result = evaluate(models, points, EvaluationSettings.from_dict(settings), args.out,
                      force=args.force)
    print(f"{args.out / 'evaluation.json'}: {summary_line(result)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="force errors and CG MD vs mapped atomistic, per state point")
    p.add_argument("--model", action="append", help="NAME=PATH (model .pt or baseline .json); repeat")
    p.add_argument("--train", nargs="+", type=Path, help="datasets of state points the models were trained on")
    p.add_argument("--test", nargs="+", type=Path, help="held-out state points")
    p.add_argument("--config", type=Path, help="YAML: models, state_points (name, dataset, trained, "
                   "temperature, pressure, frame_interval_fs), settings (EvaluationSettings)")
    p.add_argument("--out", type=Path, default=Path("evaluation"), help="output directory")
    p.add_argument("--steps", type=int, help="NVT steps per run")
    p.add_argument("--npt-steps", dest="npt_steps", type=int, help="NPT steps (0: no density)")
    p.add_argument("--timestep", type=float, help="fs")
    p.add_argument("--dump-every", dest="dump_every", type=int)
    p.add_argument("--np", dest="nprocs", type=int, help="MPI ranks per run")
    p.add_argument("--threads", type=int)
    p.add_argument("--force", action="store_true", help="overwrite existing results")
    p.set_defaults(func=_run)
