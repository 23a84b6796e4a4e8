"""``hipcg report``: evaluation.json -> report.md, report.html (self-contained), report.json, PNGs."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_overwrite_flag


def _run(args: argparse.Namespace) -> int:
    from ..report import rows, write_report

    paths = write_report(args.evaluation, args.out, overwrite=args.overwrite)
    import json

    n = len(rows(json.loads(Path(args.evaluation).read_text())))
    print(f"report: {n} rows -> {paths['report.md']}, {paths['report.html'].name}, "
          f"{paths['report.json'].name} and {sum(p.suffix == '.png' for p in paths.values())} figures")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="transferability report from hipcg evaluate's JSON")
    p.add_argument("evaluation", type=Path, help="evaluation.json written by hipcg evaluate")
    p.add_argument("--out", type=Path, default=Path("report"), help="output directory")
    add_overwrite_flag(p, "an existing report")
    p.set_defaults(func=_run)
