"""How long a timestep does a CG model take?  NVE energy conservation against the timestep.

A one-bead CG liquid has no bond vibrations: the timestep is limited only by how fast the
smoothed forces change along a trajectory.  This script starts from a CG data file (e.g. the
default study's ``06-simulate/T300/hip-nn-ts/nvt/data.lammps``), thermalises it with a short
NVT run at a small timestep, then runs NVE over the same physical time at each timestep and
reports, per timestep: the drift of the total energy (slope of a linear fit, in k_B T per bead
per ns), its fluctuation (RMS about the fit, in k_B T per bead), the mean temperature and the
steps/s and ns/day of the run.  The NVE runs all start from the same thermalised state.

    .venv/bin/python benchmarks/bench_cg_timestep.py \\
        --data runs/methanol/06-simulate/T300/hip-nn-ts/nvt/data.lammps \\
        --model runs/methanol/05-refine/hip-nn-ts/model/model_float32.pt --type MeOH \\
        --timesteps 2 4 6 8 10 12 --ps 40 --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from hipcg.lammps.plugin import build_plugin
from hipcg.lammps.runner import run_lammps
from hipcg.volume import KB


def model_setup(read: str, plugin: Path, model: Path, type_name: str, threads: int) -> str:
    """The input's first lines: the system (``read``: a read_data/read_restart line) and the model."""
    return f"""units real
atom_style atomic
atom_modify map array
newton on
{read}
plugin load {plugin}
pair_style hipcg device cpu threads {threads}
pair_coeff * * {model} {type_name}
neighbor 2.0 bin
neigh_modify every 1 delay 0 check yes
"""


def thermalise(data: Path, plugin: Path, model: Path, type_name: str, temperature: float,
               threads: int, workdir: Path) -> Path:
    script = model_setup(f"read_data {data}", plugin, model, type_name, threads) + f"""velocity all create {temperature} 4242 dist gaussian mom yes rot yes
fix t all nvt temp {temperature} {temperature} 100.0
timestep 2.0
thermo 500
run 5000
unfix t
write_restart start.restart
"""
    run_lammps(script, workdir, threads=threads, input_name="in.thermalise", log_name="log.thermalise")
    return workdir / "start.restart"


def count_atoms(data: Path) -> int:
    """The ``N atoms`` line of a LAMMPS data file's header."""
    for line in data.read_text().splitlines()[:40]:
        parts = line.split()
        if len(parts) == 2 and parts[1] == "atoms":
            return int(parts[0])
    raise ValueError(f"{data}: no 'N atoms' line in the header")


def nve(restart: Path, plugin: Path, model: Path, type_name: str, dt: float, ps: float,
        threads: int, workdir: Path, n_beads: int) -> dict:
    steps = int(round(ps * 1000 / dt))
    every = max(1, int(round(20.0 / dt)))  # a thermo line every ~20 fs
    script = model_setup(f"read_restart {restart}", plugin, model, type_name, threads) + f"""fix e all nve
timestep {dt}
thermo_style custom step time temp pe etotal
thermo_modify norm no flush yes
thermo {every}
run {steps}
"""
    res = run_lammps(script, workdir, threads=threads, input_name=f"in.nve_{dt:g}",
                     log_name=f"log.nve_{dt:g}")
    run = res.thermo[-1]
    t_ps = np.asarray(run["Time"]) / 1000.0
    etot = np.asarray(run["TotEng"])
    temp = float(np.mean(run["Temp"]))
    loop = [line for line in res.output.splitlines() if line.startswith("Loop time")]
    seconds = float(loop[-1].split()[3]) if loop else float("nan")
    slope, intercept = np.polyfit(t_ps, etot, 1)
    kt = KB * temp  # kcal/mol
    return {"timestep_fs": dt, "steps": steps, "mean_temperature": temp,
            "drift_kT_per_bead_per_ns": float(slope * 1000.0 / kt / n_beads),
            "fluctuation_kT_per_bead": float(np.std(etot - (slope * t_ps + intercept)) / kt / n_beads),
            "steps_per_s": steps / seconds, "ns_per_day": steps / seconds * dt * 86400 / 1e6,
            "n_beads": n_beads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--type", default="MeOH", help="the model's type name for LAMMPS type 1")
    ap.add_argument("--temperature", type=float, default=300.0)
    ap.add_argument("--timesteps", type=float, nargs="+", default=[2, 4, 6, 8, 10, 12])
    ap.add_argument("--ps", type=float, default=40.0, help="NVE length per timestep")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    plugin = build_plugin()
    with tempfile.TemporaryDirectory(prefix="hipcg_dt_") as tmp:
        work = Path(tmp)
        restart = thermalise(args.data.resolve(), plugin, args.model.resolve(), args.type,
                             args.temperature, args.threads, work)
        rows = []
        for dt in args.timesteps:
            row = nve(restart, plugin, args.model.resolve(), args.type, dt, args.ps, args.threads, work,
                      count_atoms(args.data))
            rows.append(row)
            print(f"dt {dt:5.1f} fs: T {row['mean_temperature']:6.1f} K, drift "
                  f"{row['drift_kT_per_bead_per_ns']:+.4f} kT/bead/ns, fluctuation "
                  f"{row['fluctuation_kT_per_bead']:.5f} kT/bead, {row['steps_per_s']:.0f} steps/s, "
                  f"{row['ns_per_day']:.0f} ns/day", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
