"""Validate the atomistic reference systems against published values and time them.

* OPLS-AA methanol: NPT density at 298 K, 1 atm against the published OPLS-AA value;
* SPC/E water: NPT density at 298 K, 1 atm against 0.998 g/cm^3, and the O-O RDF first peak
  (position, height) from the NVT production dump against the published SPC/E values;
* throughput (ns/day, atoms, cores) of each production run: the baseline for CG speed-ups.

The targets, their tolerances and their literature sources are data: the ``reference`` block of
each ``datasets/<system>/system.yaml``. Runs go through ``hipcg.reference.run_reference`` so an
interrupted validation resumes. Results are printed as a Markdown table and merged into ``--json``
(entries of systems not run this time are kept).

    .venv/bin/python benchmarks/validate_reference.py --out /tmp/hipcg_validation
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hipcg.frame_thermo import read_samples
from hipcg.reference import ReferenceConfig, exit_on_sigterm, run_reference
from hipcg.systems import load_system


def rdf_oo(topology: Path, dump: Path, oxygen_type: int, r_max: float = 8.0, dr: float = 0.02):
    """O-O g(r) over all production frames (hipcg.analysis.rdf, the package's one RDF), and
    its smoothed first maximum."""
    from hipcg.analysis import rdf
    from hipcg.trajectory import open_trajectory

    traj = open_trajectory(topology, dump)
    oxygens = np.flatnonzero(np.asarray(traj.universe.atoms.types).astype(str) == str(oxygen_type))
    positions, boxes = [], []
    for frame in traj.frames():
        positions.append(frame.positions[oxygens])
        boxes.append(frame.box)
    g_oo = rdf(np.asarray(positions), np.asarray(boxes), np.zeros(len(oxygens), dtype=int), 0, 0,
               r_max, bin_width=dr)  # every O-O pair i != j (one oxygen per molecule)
    r, g = g_oo.r, g_oo.g
    smooth = np.convolve(g, np.ones(5) / 5, mode="same")   # 0.1 Å window against bin noise
    k = int(np.argmax(smooth))
    return r, g, float(r[k]), float(smooth[k]), len(positions)


def block_error(values: np.ndarray, n_blocks: int = 5) -> float:
    """Standard error of the mean from block averages (samples are correlated over ps)."""
    blocks = np.array([b.mean() for b in np.array_split(values, n_blocks)])
    return float(blocks.std(ddof=1) / np.sqrt(n_blocks))


def plot_density(name: str, samples: np.ndarray, dt_fs: float, window: tuple[float, float],
                 target: dict, experiment: float | None, path: Path) -> None:
    """NPT density against time with the averaging window and the published value (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = samples[:, 0] * dt_fs / 1000.0
    value, tol = float(target["value"]), float(target["tolerance"])
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(t, samples[:, 2], lw=0.4, color="0.6", label="NPT samples")
    ps = max(1, int(round(1000.0 / dt_fs / max(1.0, samples[1, 0] - samples[0, 0]))))  # ~1 ps
    n = len(t) // ps * ps
    ax.plot(t[:n].reshape(-1, ps).mean(1), samples[:n, 2].reshape(-1, ps).mean(1), color="C0",
            label="1 ps means")
    ax.axvspan(*window, color="C0", alpha=0.08, label="averaging window")
    ax.axhline(value, color="C3", label=f"target {value:g}")
    ax.axhspan(value * (1 - tol), value * (1 + tol), color="C3", alpha=0.1, label=f"±{tol:.0%}")
    if experiment:
        ax.axhline(experiment, color="k", ls="--", lw=0.8, label=f"experiment {experiment:g}")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("density (g/cm³)")
    ax.set_title(f"{name}, 298 K, 1 atm")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_goo(r: np.ndarray, g: np.ndarray, peak: dict, path: Path) -> None:
    """The O-O g(r) with the reference first maximum marked (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(r, g, lw=1.0, label="SPC/E, this run")
    ax.plot([peak["r"]], [peak["g"]], "kx", ms=8, label=f"{peak.get('kind', 'reference')} first maximum")
    ax.axhline(1.0, color="0.7", lw=0.6)
    ax.set_xlim(2.0, r.max())
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g_OO(r)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def density_entry(name: str, m: dict, samples: np.ndarray, target: dict) -> tuple[dict, list[str]]:
    """Density figures of one run (metadata ``m``, NPT ``samples``) against the system file's
    target (value, tolerance, source)."""
    lo, hi = m["npt_window_ps"]
    window = samples[samples[:, 0] * m["timestep_fs"] / 1000.0 > lo]
    err = block_error(window[:, 2])
    value, tol = float(target["value"]), float(target["tolerance"])
    dev = m["density_npt_mean"] / value - 1.0
    entry = {"target_density": value, "target_tolerance": tol,
             "target_source": " ".join(str(target["source"]).split()),
             "density_npt_sem_blocks": err, "density_deviation": dev,
             "density_pass": abs(dev) <= tol}
    rows = [f"| {name} density, 298 K, 1 atm ({lo:g}-{hi:g} ps NPT) | {m['density_npt_mean']:.4f} ± "
            f"{err:.4f} | {value} ± {tol:.0%} | {dev:+.2%} | {'pass' if abs(dev) <= tol else 'FAIL'} |"]
    return entry, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/hipcg_validation"))
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "reference_validation.json")
    ap.add_argument("--methanol-molecules", type=int, default=256)
    ap.add_argument("--water-molecules", type=int, default=256)
    ap.add_argument("--equilibrate-ps", type=float, default=100.0,
                    help="NPT length; the density is averaged over its second half")
    ap.add_argument("--production-ps", type=float, default=10.0)
    ap.add_argument("--systems", nargs="+", default=["water", "methanol"])
    ap.add_argument("--np", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    exit_on_sigterm()

    rows = []
    results = json.loads(args.json.read_text()) if args.json.is_file() else {}
    for name in args.systems:
        refs = load_system(name).reference
        n = args.methanol_molecules if name == "methanol" else args.water_molecules
        cfg = ReferenceConfig(system=name, temperatures=[298.0], pressure=1.0, molecules=n,
                              equilibrate_ps=args.equilibrate_ps, production_ps=args.production_ps,
                              every_fs=100.0, restart_every_ps=5.0, out=args.out,
                              nprocs=args.np, threads=args.threads)
        t0 = time.perf_counter()
        (res,) = run_reference(cfg)
        m = res.metadata
        entry = {k: m[k] for k in ("n_molecules", "n_atoms", "density_npt_mean", "density_npt_std",
                                   "density_npt_samples", "npt_window_ps", "timestep_fs",
                                   "equilibrate_ps", "production_ps", "ns_per_day", "nprocs",
                                   "threads", "cutoff", "kspace", "lammps_version")}
        entry["wall_s_this_call"] = time.perf_counter() - t0
        samples = read_samples(res.directory / "npt_samples.dat")
        density, density_rows = density_entry(name, m, samples, refs["density_298K"])
        entry.update(density)
        rows += density_rows
        exp = float(refs["experiment_density_298K"]["value"]) if "experiment_density_298K" in refs else None
        args.json.parent.mkdir(parents=True, exist_ok=True)
        plot_density(name, samples, m["timestep_fs"],
                     tuple(m["npt_window_ps"]), refs["density_298K"], exp,
                     args.json.parent / f"{name}_density_npt.png")
        if exp is not None:
            entry["experiment_density"] = exp
            rows.append(f"| {name} density vs experiment | {m['density_npt_mean']:.4f} | {exp} | "
                        f"{m['density_npt_mean'] / exp - 1:+.2%} | (force field's own error) |")
        if "goo_first_peak_298K" in refs:
            peak = refs["goo_first_peak_298K"]
            r, g, r_pk, g_pk, nf = rdf_oo(res.directory / "system.data",
                                          res.directory / "production.dump", oxygen_type=1)
            entry.update(rdf_peak_r=r_pk, rdf_peak_g=g_pk, rdf_frames=nf,
                         rdf_target_r=peak["r"], rdf_target_g=peak["g"],
                         rdf_target_source=" ".join(str(peak["source"]).split()))
            np.savetxt(args.json.parent / "spce_goo.dat", np.c_[r, g], header="r/A g_OO(r)")
            plot_goo(r, g, peak, args.json.parent / "spce_goo.png")
            rows.append(f"| {name} g_OO first peak (r, height) | {r_pk:.2f} Å, {g_pk:.2f} | "
                        f"{peak['r']} Å, {peak['g']} | {r_pk - peak['r']:+.2f} Å, "
                        f"{g_pk / peak['g'] - 1:+.1%} | |")
        cores = m["nprocs"] * m["threads"]
        rows.append(f"| {name} throughput ({m['n_atoms']} atoms, {cores} core(s), "
                    f"dt {m['timestep_fs']:g} fs) | {m['ns_per_day']:.2f} ns/day | | | |")
        results[name] = entry
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print("| quantity | measured | reference | deviation | verdict |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
