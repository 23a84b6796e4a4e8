"""Benchmark ``hipcg map`` (issue 4): frames/s against a bare MDAnalysis read, and peak memory.

A synthetic liquid of 1536 OPLS-AA methanols (9216 atoms, 0.787 g/cm^3, wrapped coordinates
so molecules cross the boundary) is written as a LAMMPS text dump (what our LAMMPS runs
write) and as a GROMACS TRR (a fast binary reader: the harder test for the 25% budget).

* speed: in one process, alternately (best of ``--repeats``) reads every frame with
  MDAnalysis, touching positions, forces, velocities and box ("read"), and reads + maps
  every frame ("map"); then reads + maps + writes the dataset file ("map+write").
* memory: ``hipcg``'s mapping + dataset writing in a fresh process per size, for the default
  number of frames and 10x as many; peak RSS (``ru_maxrss``) must not grow with frames.

    .venv/bin/python benchmarks/bench_mapping.py            # all; ~8 min on 2 cores
    .venv/bin/python benchmarks/bench_mapping.py --only speed --format trr
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_MOL = 1536
NAMES = ["C", "O", "HO", "H1", "H2", "H3"]
MASSES = np.array([12.011, 15.9994, 1.008, 1.008, 1.008, 1.008])
TYPES = np.array([1, 2, 3, 4, 4, 4])
XYZ = np.array([[0.0, 0.0, 0.0], [1.41, 0.0, 0.0], [1.7099, 0.8962, 0.0],
                [-0.3638, 0.5137, 0.8898], [-0.3638, -1.0275, 0.0], [-0.3638, 0.5137, -0.8898]])
DEFAULT_FRAMES = {"dump": 30, "trr": 200}


def box_length() -> float:
    mass = N_MOL * MASSES.sum()  # g/mol
    return (mass / 0.787 / 6.02214076e23 * 1e24) ** (1 / 3)  # Å


def synthetic_frames(n_distinct: int, seed: int = 0):
    """``n_distinct`` frames (positions wrapped, forces, velocities; real units)."""
    rng = np.random.default_rng(seed)
    L = box_length()
    grid = np.stack(np.meshgrid(*[np.arange(12)] * 3, indexing="ij"), -1).reshape(-1, 3)
    sites = grid[rng.choice(len(grid), N_MOL, replace=False)] * (L / 12)
    q, _ = np.linalg.qr(rng.normal(size=(N_MOL, 3, 3)))
    mol = np.einsum("mij,aj->mai", q, XYZ - XYZ[:2].mean(0)) + sites[:, None]
    out = []
    for _ in range(n_distinct):
        x = (mol + rng.normal(0, 0.05, mol.shape)).reshape(-1, 3)
        x -= L * np.floor(x / L)
        out.append((x, rng.normal(0, 20, x.shape), rng.normal(0, 0.005, x.shape)))
    return L, out


def write_data(path: Path, L: float) -> None:
    n = 6 * N_MOL
    lines = ["synthetic methanol (hipcg benchmark)", "", f"{n} atoms", "4 atom types", "",
             f"0 {L} xlo xhi", f"0 {L} ylo yhi", f"0 {L} zlo zhi", "", "Masses", "",
             "1 12.011", "2 15.9994", "3 1.008", "4 1.008", "", "Atoms # full", ""]
    lines += [f"{i + 1} {i // 6 + 1} {TYPES[i % 6]} 0.0 0.0 0.0 0.0" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def write_dump(path: Path, n_frames: int, L: float, frames) -> None:
    """Text dump as LAMMPS writes it; distinct frames are formatted once and cycled."""
    n = 6 * N_MOL
    ids = np.arange(1, n + 1)
    bodies = []
    for x, f, v in frames:
        cols = np.column_stack([ids, np.tile(TYPES, N_MOL), x, v, f])
        fmt = "%d %d" + " %.6f" * 9
        bodies.append("\n".join(fmt % tuple(r) for r in cols) + "\n")
    with open(path, "w") as fh:
        for k in range(n_frames):
            fh.write(f"ITEM: TIMESTEP\n{k * 100}\nITEM: NUMBER OF ATOMS\n{n}\n"
                     f"ITEM: BOX BOUNDS pp pp pp\n0 {L}\n0 {L}\n0 {L}\n"
                     "ITEM: ATOMS id type x y z vx vy vz fx fy fz\n")
            fh.write(bodies[k % len(bodies)])


def write_trr(path: Path, n_frames: int, L: float, frames) -> None:
    from MDAnalysis.coordinates.TRR import TRRWriter

    u = universe_for_writing(L, frames[0])
    with TRRWriter(str(path), 6 * N_MOL) as w:
        for k in range(n_frames):
            x, f, v = frames[k % len(frames)]
            ts = u.trajectory.ts
            ts.positions, ts.forces, ts.velocities = x, f * 4.184, v * 1000  # to MDA base units
            ts.frame, ts.time = k, k * 0.1
            w.write(u.atoms)


def universe_for_writing(L, frame):
    import MDAnalysis as mda
    from MDAnalysis.coordinates.memory import MemoryReader

    u = mda.Universe.empty(6 * N_MOL, n_residues=N_MOL, atom_resindex=np.repeat(np.arange(N_MOL), 6),
                           trajectory=True)
    x, f, v = frame
    u.load_new(x[None].astype(np.float32), format=MemoryReader, forces=f[None].astype(np.float32),
               velocities=v[None].astype(np.float32), dimensions=[[L, L, L, 90, 90, 90]])
    return u


def build_files(work: Path, fmt: str, n_frames: int) -> tuple[Path, Path]:
    L, frames = synthetic_frames(10)
    data = work / "methanol.data"
    if not data.exists():
        write_data(data, L)
    traj = work / f"methanol_{n_frames}.{fmt}"
    if not traj.exists():
        (write_dump if fmt == "dump" else write_trr)(traj, n_frames, L, frames)
    return data, traj


def open_universe(data: Path, traj: Path):
    import MDAnalysis as mda

    kw = {"format": "LAMMPSDUMP", "dt": 0.1} if traj.suffix == ".dump" else {}
    u = mda.Universe(str(data), str(traj), topology_format="DATA",
                     atom_style="id resid type charge x y z", **kw)
    u.add_TopologyAttr("names", NAMES * N_MOL)
    u.add_TopologyAttr("resnames", ["MOH"] * N_MOL)
    return u


def mapping():
    from hipcg.mapping import parse_mapping

    return parse_mapping({"molecules": {"MOH": "MeOH"}}, source="methanol (bench)")


def bare_read(u) -> int:
    n = 0
    for ts in u.trajectory:
        ts.positions, ts.forces, ts.velocities, ts.triclinic_dimensions  # noqa: B018
        n += 1
    return n


def read_and_map(u, cgmap) -> int:
    from hipcg.mapping import map_trajectory

    return sum(1 for _ in map_trajectory(u, cgmap))


def speed(data: Path, traj: Path, repeats: int, work: Path) -> dict:
    from hipcg.mapping import CGMap, write_dataset

    u = open_universe(data, traj)
    t = time.perf_counter()
    cgmap = CGMap.build(u, mapping())
    build_s = time.perf_counter() - t
    # Wall time and this process's CPU time: on a shared machine the CPU-time ratio is the
    # steadier measure of the work mapping adds.
    wall = {"read": [], "map": [], "write": []}
    cpu = {"read": [], "map": [], "write": []}
    out = work / "speed.npz"

    def timed(key, fn):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        wall[key].append(time.perf_counter() - w)
        cpu[key].append(time.process_time() - c)
        return result

    for _ in range(repeats):  # interleaved, so load from other processes hits all alike
        n = timed("read", lambda: bare_read(u))
        assert timed("map", lambda: read_and_map(u, cgmap)) == n
        timed("write", lambda: write_dataset(u, cgmap, out, overwrite=True))
        out.unlink()
    r, m, w = (min(wall[k]) for k in ("read", "map", "write"))
    rc, mc, wc = (min(cpu[k]) for k in ("read", "map", "write"))
    return {"file": traj.name, "frames": n, "atoms": len(u.atoms), "beads": cgmap.n_beads,
            "build_map_s": build_s, "read_fps": n / r, "map_fps": n / m,
            "map_write_fps": n / w, "map_overhead": m / r - 1, "map_write_overhead": w / r - 1,
            "map_overhead_cpu": mc / rc - 1, "map_write_overhead_cpu": wc / rc - 1}


def memory_child(data: Path, traj: Path, work: Path) -> dict:
    from hipcg.mapping import write_dataset

    u = open_universe(data, traj)
    out = work / f"mem_{traj.stem}.npz"
    summary = write_dataset(u, mapping(), out, overwrite=True)
    size = out.stat().st_size
    out.unlink()
    return {"file": traj.name, "frames": summary["frames"], "seconds": summary["seconds"],
            "dataset_MB": size / 2**20,
            "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", choices=["dump", "trr", "both"], default="both")
    ap.add_argument("--only", choices=["speed", "memory"], default=None)
    ap.add_argument("--frames", type=int, default=None, help="default trajectory length")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None, help="keep trajectories here")
    ap.add_argument("--child", nargs=2, metavar=("DATA", "TRAJ"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hipcg-bench-map-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(memory_child(Path(args.child[0]), Path(args.child[1]), work)))
        return 0
    formats = ["dump", "trr"] if args.format == "both" else [args.format]
    results = {}
    for fmt in formats:
        n = args.frames or DEFAULT_FRAMES[fmt]
        if args.only in (None, "speed"):
            data, traj = build_files(work, fmt, n)
            res = speed(data, traj, args.repeats, work)
            results[f"speed_{fmt}"] = res
            print(f"[{fmt}] {res['frames']} frames, {res['atoms']} atoms -> {res['beads']} beads: "
                  f"read {res['read_fps']:.1f} frames/s, read+map {res['map_fps']:.1f} frames/s "
                  f"(+{100 * res['map_overhead']:.1f}%), read+map+write "
                  f"{res['map_write_fps']:.1f} frames/s (+{100 * res['map_write_overhead']:.1f}%); "
                  f"map built in {res['build_map_s'] * 1e3:.0f} ms; CPU time: map "
                  f"+{100 * res['map_overhead_cpu']:.1f}%, map+write "
                  f"+{100 * res['map_write_overhead_cpu']:.1f}%", flush=True)
        if args.only in (None, "memory"):
            for size in (n, 10 * n):
                data, traj = build_files(work, fmt, size)
                proc = subprocess.run([sys.executable, __file__, "--workdir", str(work),
                                       "--child", str(data), str(traj)],
                                      capture_output=True, text=True, check=True)
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                results[f"memory_{fmt}_{size}"] = res
                print(f"[{fmt}] map+write {res['frames']} frames: peak RSS "
                      f"{res['peak_rss_MB']:.0f} MiB, {res['seconds']:.1f} s, dataset "
                      f"{res['dataset_MB']:.0f} MiB", flush=True)
                if size == 10 * n:
                    traj.unlink()  # the 10x files are large; keep the default-size ones
    print(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
