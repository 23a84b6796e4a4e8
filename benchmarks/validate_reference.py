"""Validate the atomistic reference systems against published values and time them.

* OPLS-AA methanol: NPT density at 298 K, 1 atm against the published value (within 2 %);
* SPC/E water: NPT density at 298 K, 1 atm within 1 % of 0.998 g/cm^3, and the O-O RDF first
  peak (position, height) from the NVT production dump;
* throughput (ns/day, atoms, cores) of each production run: the baseline for CG speed-ups.

Runs go through ``hipcg.reference.run_reference`` so an interrupted validation resumes.
Results are printed as a Markdown table and written to ``--json``.

    nice -n 10 .venv/bin/python benchmarks/validate_reference.py --out /tmp/hipcg_validation
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hipcg.reference import ReferenceConfig, exit_on_sigterm, run_reference

# Published values the runs are held to (see benchmarks/README.md for the sources).
METHANOL_DENSITY = 0.787      # g/cm^3, tolerance 2 %
WATER_DENSITY = 0.998         # g/cm^3, tolerance 1 %
SPCE_RDF_PEAK = (2.75, 3.0)   # Å, g(r) (approximate literature values for SPC/E at 298 K)


def rdf_oo(topology: Path, dump: Path, oxygen_type: int, r_max: float = 8.0, dr: float = 0.02):
    """O-O g(r) over all production frames (orthorhombic minimum image)."""
    from hipcg.trajectory import open_trajectory

    traj = open_trajectory(topology, dump)
    edges = np.arange(0.0, r_max + dr, dr)
    hist = np.zeros(len(edges) - 1)
    n_frames, rho_sum, n_o = 0, 0.0, 0
    for frame in traj.frames():
        sel = frame.types.astype(str) == str(oxygen_type)
        x = frame.positions[sel]
        box = np.diag(frame.box)
        n_o = len(x)
        for i in range(n_o - 1):
            d = x[i + 1:] - x[i]
            d -= box * np.round(d / box)
            r = np.sqrt((d * d).sum(axis=1))
            hist += np.histogram(r, bins=edges)[0]
        rho_sum += n_o / np.prod(box)
        n_frames += 1
    rho = rho_sum / n_frames
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = 2.0 * hist / (n_frames * n_o * rho * shell)
    r = 0.5 * (edges[1:] + edges[:-1])
    smooth = np.convolve(g, np.ones(5) / 5, mode="same")   # 0.1 Å window against bin noise
    k = int(np.argmax(smooth))
    return r, g, float(r[k]), float(smooth[k]), n_frames


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/hipcg_validation"))
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "reference_validation.json")
    ap.add_argument("--methanol-molecules", type=int, default=256)
    ap.add_argument("--water-molecules", type=int, default=256)
    ap.add_argument("--equilibrate-ps", type=float, default=30.0)
    ap.add_argument("--production-ps", type=float, default=10.0)
    ap.add_argument("--systems", nargs="+", default=["water", "methanol"])
    ap.add_argument("--np", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    exit_on_sigterm()

    rows, results = [], {}
    for name in args.systems:
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
        target, tol = (METHANOL_DENSITY, 0.02) if name == "methanol" else (WATER_DENSITY, 0.01)
        dev = m["density_npt_mean"] / target - 1.0
        entry.update(target_density=target, density_deviation=dev, density_pass=abs(dev) <= tol)
        rows.append(f"| {name} density, 298 K, 1 atm | {m['density_npt_mean']:.4f} ± "
                    f"{m['density_npt_std'] / np.sqrt(max(1, m['density_npt_samples'] / 50)):.4f} | "
                    f"{target} ± {tol:.0%} | {dev:+.2%} | {'pass' if abs(dev) <= tol else 'FAIL'} |")
        if name == "water":
            r, g, r_pk, g_pk, nf = rdf_oo(res.directory / "system.data",
                                          res.directory / "production.dump", oxygen_type=1)
            entry.update(rdf_peak_r=r_pk, rdf_peak_g=g_pk, rdf_frames=nf)
            np.savetxt(args.json.parent / "spce_goo.dat", np.c_[r, g], header="r/A g_OO(r)")
            rows.append(f"| SPC/E g_OO first peak (r, height) | {r_pk:.2f} Å, {g_pk:.2f} | "
                        f"~{SPCE_RDF_PEAK[0]} Å, ~{SPCE_RDF_PEAK[1]} | | |")
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
