"""The learned-dynamics report: ``report.json``, ``report.md`` and its figures.

``report.json`` holds, per held-out sequence, ``rg_rollout``, ``rg_reference``,
``tau_rollout``, ``tau_reference`` (Å and fs; relaxation times of Rg^2 by the integral to the
first zero crossing, with the exponential fit beside them) and overall ``rg_r2`` and
``tau_r2``.  Figures: Rg and relaxation time, rollout against reference (scatter, with the
reference's first half against its second half as the noise floor); the Rg^2 autocorrelation
of every sequence; the bead-bead distance distributions.  When the study ran the baseline
(force-matched HIP-NN-TS with Langevin dynamics), its figures stand beside the rollout's
everywhere: ``report.json["baseline"]`` holds the same keys.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..atomic import write_json_atomic, write_text_atomic

PER_SEQUENCE = ("name", "sequence", "fraction_A", "rg_rollout", "rg_reference", "rg_reference_halves",
                "tau_rollout", "tau_reference", "tau_reference_halves", "tau_exp_rollout",
                "tau_exp_reference", "distance_overlap", "collisions", "bond_caps", "blowups", "speedup",
                "rollout_fs_per_wall_second", "reference_fs_per_wall_second")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _plt().close(fig)
    return path


def plot_scatter(rows: list[dict], overall: dict, path: Path, baseline: dict | None = None) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    panels = (("rg", 1.0, "mean Rg (Å)", "rg_r2"), ("tau", 1e-3, "Rg² relaxation time (ps)", "tau_r2"))
    for ax, (key, unit, label, r2) in zip(axes, panels):
        ref = np.array([r[f"{key}_reference"] for r in rows]) * unit
        roll = np.array([r[f"{key}_rollout"] for r in rows]) * unit
        halves = np.array([r[f"{key}_reference_halves"] for r in rows]) * unit
        ax.scatter(halves[:, 0], halves[:, 1], marker="x", color="0.6",
                   label=f"reference: 2nd half vs 1st (r² {overall[f'{r2}_reference_halves']:.2f})")
        ax.scatter(ref, roll, color="C0", label=f"learned rollout (r² {overall[r2]:.2f})")
        for r, x, y in zip(rows, ref, roll):
            ax.annotate(r["name"], (x, y), fontsize=7, xytext=(3, 2), textcoords="offset points")
        finite = [ref, roll[np.isfinite(roll)], halves.ravel()]
        if baseline is not None:
            base = np.array([r[f"{key}_rollout"] for r in baseline["sequences"]]) * unit
            ax.scatter(ref, base, color="C3", marker="s", s=18,
                       label=f"baseline: force-matched, Langevin (r² {baseline['overall'][r2]:.2f})")
            finite.append(base[np.isfinite(base)])
        finite = np.concatenate(finite)
        lo, hi = float(np.min(finite)), float(np.max(finite))
        pad = 0.08 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
        ax.set_xlabel(f"reference MD: {label}")
        ax.set_ylabel(f"rollout: {label}")
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("held-out sequences")
    fig.tight_layout()
    return _save(fig, path)


def _grid(n: int):
    cols = min(4, n)
    return cols, math.ceil(n / cols)


def plot_acf(rows: list[dict], path: Path) -> Path:
    plt = _plt()
    cols, nrows = _grid(len(rows))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False)
    for ax, r in zip(axes.ravel(), rows):
        for key, style in (("reference", "k-"), ("rollout", "C0-")):
            acf = np.asarray(r[f"acf_{key}"], dtype=float)
            if len(acf):
                t = np.arange(len(acf)) * r[f"acf_dt_{key}_fs"] * 1e-3
                ax.plot(t, acf, style, lw=1, label=key)
        ax.axhline(0.0, color="0.7", lw=0.5)
        ax.set_xlim(0, 6 * max(r["tau_reference"], 1.0) * 1e-3)
        ax.set_title(r["name"], fontsize=9)
        ax.set_xlabel("lag (ps)", fontsize=8)
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("Rg² autocorrelation")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_distances(rows: list[dict], path: Path) -> Path:
    plt = _plt()
    cols, nrows = _grid(len(rows))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False)
    for ax, r in zip(axes.ravel(), rows):
        bins = np.asarray(r["distance_bins"])
        mid = 0.5 * (bins[1:] + bins[:-1])
        ax.plot(mid, r["distance_hist_reference"], "k-", lw=1, label="reference")
        ax.plot(mid, r["distance_hist_rollout"], "C0-", lw=1, label="rollout")
        ax.set_title(f"{r['name']} (overlap {r['distance_overlap']:.2f})", fontsize=9)
        ax.set_xlabel("bead-bead distance (Å)", fontsize=8)
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _fmt(x, spec=".3g") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def markdown(evaluation: dict, figures: dict[str, Path]) -> str:
    o, rows = evaluation["overall"], evaluation["sequences"]
    tr = evaluation.get("training", {})
    base = evaluation.get("baseline")
    b = base["overall"] if base else None
    extra = lambda key, spec=".3g": f" {_fmt(b[key], spec)} |" if b else ""  # noqa: E731
    lines = [
        "# Learned large-timestep CG dynamics: held-out sequences", "",
        f"Learned step {_fmt(tr.get('learned_step_fs', float('nan')) / 1000, '.3g')} ps; best epoch "
        f"{tr.get('best_epoch')}, validation NLL {_fmt(tr.get('val_nll'))}.", "",
        "| | learned rollout |" + (" baseline: force-matched HIP-NN-TS, Langevin |" if b else "")
        + " reference, half vs half (noise floor) |", "|---|---|" + ("---|" if b else "") + "---|",
        f"| Rg r² | {_fmt(o['rg_r2'])} |{extra('rg_r2')} {_fmt(o['rg_r2_reference_halves'])} |",
        f"| relaxation-time r² (integral) | {_fmt(o['tau_r2'])} |{extra('tau_r2')} "
        f"{_fmt(o['tau_r2_reference_halves'])} |",
        f"| relaxation-time r² (exponential fit) | {_fmt(o['tau_exp_r2'])} |{extra('tau_exp_r2')} |",
        f"| collision steps | {o['collisions']} |{extra('collisions', 'd')} |",
        f"| blow-ups | {o['blowups']} |{extra('blowups', 'd')} |",
        f"| simulated time per wall second / reference MD's (median) | {_fmt(o['speedup'])} |"
        f"{extra('speedup')} |", "",
        f"Bond-cap steps {o.get('bond_caps', 0)} of {o.get('rollout_steps', 'n/a')} rollout steps; "
        "speeds on one core each (the rollouts of all sequences as one batch); the reference's are "
        "those of the data stage, which runs `data.parallel` chains at a time, so on a 2-core machine the "
        "ratio reads higher than with the machine otherwise idle (`benchmarks/bench_dynamics_length.py`).", "",
        "| sequence | Rg rollout (Å) | Rg reference (Å) | tau rollout (ps) | tau reference (ps) | "
        "distance overlap | collisions | bond caps | blow-ups |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {_fmt(r['rg_rollout'])} | {_fmt(r['rg_reference'])} | "
                     f"{_fmt(r['tau_rollout'] / 1000)} | {_fmt(r['tau_reference'] / 1000)} | "
                     f"{_fmt(r['distance_overlap'], '.2f')} | {sum(r['collisions'])} | {sum(r.get('bond_caps', []))} | "
                     f"{sum(b is not None for b in r['blowups'])} |")
    lines.append("")
    lines += [f"![{name}]({path.name})" for name, path in figures.items()]
    return "\n".join(lines) + "\n"


def write_dynamics_report(evaluation: dict, outdir: str | Path) -> dict[str, Path]:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rows, overall = evaluation["sequences"], evaluation["overall"]
    baseline = evaluation.get("baseline")
    figures = {"rg_scatter": plot_scatter(rows, overall, outdir / "rg_scatter.png", baseline),
               "acf": plot_acf(rows, outdir / "acf.png"),
               "distances": plot_distances(rows, outdir / "distances.png")}
    report = {"units": {"rg": "Å", "tau": "fs"},
              "sequences": [{k: r.get(k) for k in PER_SEQUENCE} for r in rows],
              **{k: overall[k] for k in overall}, "training": evaluation.get("training", {})}
    if baseline is not None:
        report["baseline"] = {"model": "force-matched HIP-NN-TS (hipcg.train), Langevin dynamics in LAMMPS",
                              "sequences": [{k: r.get(k) for k in PER_SEQUENCE} for r in baseline["sequences"]],
                              **baseline["overall"]}
    paths = {"report_json": write_json_atomic(outdir / "report.json", report, default=float),
             "markdown": write_text_atomic(outdir / "report.md", markdown(evaluation, figures))}
    return paths | figures
