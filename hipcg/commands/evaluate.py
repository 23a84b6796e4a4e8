"""``hipcg evaluate``: static and dynamic metrics of models at every state point -> evaluation.json."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from . import add_overwrite_flag

from ..errors import InputError
from ..statepoint import StatePoint


def _parse_models(items: list[str]) -> dict[str, str]:
    models = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem, item
        models[name] = path
    return models


@dataclass
class _ConfigFile:
    """``hipcg evaluate --config FILE``: models, state points and EvaluationSettings keys."""

    models: dict[str, Path] = field(default_factory=dict)  # display label -> model file
    state_points: list[StatePoint] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def _run(args: argparse.Namespace) -> int:
    from ..config import from_yaml_file, slug
    from ..evaluate import EvaluationSettings, evaluate, summary_line
    from ..statepoint import check_state_points

    cfg = _ConfigFile()
    if args.config:
        cfg = from_yaml_file(_ConfigFile, args.config, "evaluation config")
        check_state_points(cfg.state_points, "state_points", need_train=False)
    models = _parse_models(args.model or []) or {k: str(v) for k, v in cfg.models.items()}
    points = list(cfg.state_points)
    points += [StatePoint(slug(Path(p).stem), role="train", dataset=Path(p)) for p in args.train or []]
    points += [StatePoint(slug(Path(p).stem), role="test", dataset=Path(p)) for p in args.test or []]
    settings = dict(cfg.settings)
    for key in ("steps", "npt_steps", "timestep", "nprocs", "threads", "dump_every", "backend"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if not models or not points:
        raise InputError("need at least one --model and one --train/--test dataset (or --config)")
    result = evaluate(models, points, EvaluationSettings.from_dict(settings), args.out,
                      overwrite=args.overwrite)
    print(f"{args.out / 'evaluation.json'}: {summary_line(result)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="force errors and CG MD vs mapped atomistic, per state point")
    p.add_argument("--model", action="append", help="NAME=PATH (model .pt or baseline .json); repeat")
    p.add_argument("--train", nargs="+", type=Path, help="datasets of state points the models were trained on")
    p.add_argument("--test", nargs="+", type=Path, help="held-out state points")
    p.add_argument("--config", type=Path, help="YAML: models, state_points (name, dataset, role: train|test, "
                   "temperature, pressure, frame_interval_fs), settings (EvaluationSettings)")
    p.add_argument("--out", type=Path, default=Path("evaluation"), help="output directory")
    p.add_argument("--steps", type=int, help="NVT steps per run")
    p.add_argument("--npt-steps", dest="npt_steps", type=int, help="NPT steps (0: no density)")
    p.add_argument("--timestep", type=float, help="fs")
    p.add_argument("--dump-every", dest="dump_every", type=int)
    p.add_argument("--np", dest="nprocs", type=int, help="MPI ranks per run")
    p.add_argument("--threads", type=int)
    p.add_argument("--backend", choices=["auto", "native", "torch"],
                   help="pair_style hipcg backend, and the static force metrics' (default auto)")
    add_overwrite_flag(p, "existing results")
    p.set_defaults(func=_run)
