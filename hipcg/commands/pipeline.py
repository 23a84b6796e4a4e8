"""``hipcg pipeline run|status FILE``: the whole study from one YAML file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from ..pipeline import run_pipeline
    from ..stages import load_pipeline

    start = time.perf_counter()
    pipeline = load_pipeline(args.file)
    outcome = run_pipeline(pipeline, from_stage=args.from_stage, only=args.only,
                           overwrite=args.overwrite)
    ran = [s for s, o in outcome.items() if o == "ran"]
    print(f"pipeline {args.file}: {len(ran)} stage(s) ran ({', '.join(ran) or 'none'}), "
          f"{len(outcome) - len(ran)} up to date, {time.perf_counter() - start:.0f} s; "
          f"outputs in {pipeline.root}")
    report = pipeline.record("report")
    if report and report.get("outputs", {}).get("markdown"):
        print(f"report: {report['outputs']['markdown']}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from ..stages import load_pipeline

    pipeline = load_pipeline(args.file)
    print(f"{args.file} -> {pipeline.root}")
    for stage, state, rec in pipeline.status():
        when = f"  finished {rec['finished']} in {rec['seconds']:.0f} s" if rec else ""
        print(f"  {stage:<10} {state:<12}{when}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="run a study: reference -> map -> train -> export -> "
                       "simulate -> evaluate -> report")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="run the stages that are not up to date")
    run.add_argument("file", type=Path, help="pipeline YAML, e.g. pipelines/methanol.yaml")
    run.add_argument("--from", dest="from_stage", default=None, metavar="STAGE",
                     help="re-run this stage and everything after it")
    run.add_argument("--only", default=None, metavar="STAGE",
                     help="run only this stage (its upstream must be up to date)")
    run.add_argument("--overwrite", action="store_true",
                     help="write into an out: folder that holds another study's outputs")
    run.set_defaults(func=_run)
    status = actions.add_parser("status", help="show which stages are done, stale or pending")
    status.add_argument("file", type=Path)
    status.set_defaults(func=_status)
