"""Benchmark pair-search engines for hipcg's one neighbour list (issue 11).

The contract is :func:`hipcg.graph.periodic_graph`'s: every ordered pair (i, j) with
|x_j + shift - x_i| < cutoff (strict), every periodic image its own pair (i == j images
included, so boxes narrower than twice the cutoff work), vectors in float64.  Each candidate's
pair set and vectors are checked against ASE's ``primitive_neighbor_list`` (the oracle).

Frames: beads on a jittered cubic lattice (no overlaps, liquid-like pair counts) at the
methanol bead density 0.0148 beads/Å^3, in an orthorhombic and a triclinic box.  Times are
the median of ``--repeats`` calls per candidate, candidates interleaved within each repeat
(the machine is shared and noisy); ratios are against the brute force over periodic images
that hipcg.train used before (``brute_force_images`` below, kept here only for the record).

    .venv/bin/python benchmarks/bench_neighbours.py              # ~1 min on 2 cores
    PYTHONPATH=/path/to/matscipy .venv/bin/python benchmarks/bench_neighbours.py  # + matscipy
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hipcg.analysis import box_widths  # noqa: E402

DENSITY = 0.0148  # beads/Å^3, one bead per methanol at 0.787 g/cm^3
SIZES = (32, 100, 256, 1000)
CUTOFFS = (9.0, 15.0)


def liquid_frame(n_beads: int, triclinic: bool, seed: int = 0):
    """(positions, cell rows) of ``n_beads`` on a jittered lattice at DENSITY, some outside the box."""
    rng = np.random.default_rng(seed)
    length = (n_beads / DENSITY) ** (1 / 3)
    cell = np.eye(3) * length
    if triclinic:  # same volume, tilted: perpendicular widths shrink, more periodic images
        cell[1, 0], cell[2, 0], cell[2, 1] = 0.3 * length, -0.2 * length, 0.15 * length
    side = int(np.ceil(n_beads ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    sites = grid[rng.choice(len(grid), n_beads, replace=False)]
    frac = (sites + 0.5 + rng.uniform(-0.3, 0.3, sites.shape)) / side
    frac[: n_beads // 10] += rng.integers(-1, 2, (n_beads // 10, 3))  # unwrapped beads too
    return frac @ cell, cell


def half_width(cell) -> float:
    return 0.5 * float(box_widths(cell).min())


# --------------------------------------------------------------------------- candidates


def ase_pairs(pos, cell, cutoff):
    from ase.neighborlist import primitive_neighbor_list

    i, j, d = primitive_neighbor_list("ijD", (True,) * 3, cell, pos, cutoff, self_interaction=False)
    keep = np.einsum("ij,ij->i", d, d) < cutoff * cutoff  # ASE keeps r == cutoff
    return i[keep], j[keep], d[keep]


def vesin_pairs(pos, cell, cutoff):
    from vesin import NeighborList

    i, j, d = NeighborList(cutoff=cutoff, full_list=True).compute(pos, cell, True, "ijD")
    keep = np.einsum("ij,ij->i", d, d) < cutoff * cutoff
    return i[keep], j[keep], d[keep]


def matscipy_pairs(pos, cell, cutoff):
    from matscipy.neighbours import neighbour_list

    i, j, d = neighbour_list("ijD", positions=pos, cell=cell, pbc=(True,) * 3, cutoff=cutoff)
    keep = np.einsum("ij,ij->i", d, d) < cutoff * cutoff
    return i[keep], j[keep], d[keep]


def mdanalysis_pairs(pos, cell, cutoff):
    """Minimum-image cell list: only valid while the cutoff is below half the box width."""
    from MDAnalysis.lib.distances import minimize_vectors, self_capped_distance

    from hipcg.analysis import box_dimensions

    if cutoff >= half_width(cell):
        return None
    dims = box_dimensions(cell)
    pairs, _ = self_capped_distance(pos, cutoff, box=dims)
    a, b = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    d = minimize_vectors(pos[b] - pos[a], dims)
    keep = np.einsum("ij,ij->i", d, d) < cutoff * cutoff
    a, b, d = a[keep], b[keep], d[keep]
    return np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([d, -d])


def brute_force_images(pos, cell, cutoff):
    """hipcg.train.fast_periodic_graph before issue 11: numpy over all reachable image shifts."""
    frac = pos @ np.linalg.inv(cell)
    pos = (frac - np.floor(frac)) @ cell
    reach = np.ceil(cutoff / box_widths(cell)).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in reach], indexing="ij"), -1).reshape(-1, 3)
    shifts = grid @ cell
    zero = int(np.flatnonzero((grid == 0).all(axis=1))[0])
    n = len(pos)
    chunk = max(1, int(4_000_000 // (len(shifts) * n)))
    out = []
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        d = (pos[None, None, :, :] - pos[None, lo:hi, None, :]) + shifts[:, None, None, :]
        keep = np.einsum("scnk,scnk->scn", d, d) < cutoff * cutoff
        idx = np.arange(lo, hi)
        keep[zero, idx - lo, idx] = False
        s_i, c_i, j = np.nonzero(keep)
        out.append((idx[c_i], j, d[s_i, c_i, j]))
    return tuple(np.concatenate(x) for x in zip(*out))


CANDIDATES = {"vesin": vesin_pairs, "matscipy": matscipy_pairs, "MDAnalysis": mdanalysis_pairs,
              "old brute force": brute_force_images, "ASE": ase_pairs}


# --------------------------------------------------------------------------- checks and timing


def canonical(i, j, d):
    """Pairs sorted by (i, j, image vector) so that two engines' outputs compare row by row."""
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    order = np.lexsort(np.round(np.c_[i, j, d], 6).T[::-1])
    return i[order], j[order], np.asarray(d)[order]


def max_deviation(result, oracle) -> float:
    """Largest |vector difference| against the oracle; inf if the pair sets differ."""
    a, b = canonical(*result), canonical(*oracle)
    if len(a[0]) != len(b[0]) or not (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])):
        return float("inf")
    return float(np.abs(a[2] - b[2]).max(initial=0.0))


def available() -> dict:
    out = {}
    for name, fn in CANDIDATES.items():
        try:
            fn(*liquid_frame(8, False), 3.0)
            out[name] = fn
        except ImportError as err:
            print(f"# {name}: not installed ({err})")
    return out


def bench_case(candidates: dict, n_beads: int, triclinic: bool, cutoff: float, repeats: int) -> dict:
    pos, cell = liquid_frame(n_beads, triclinic)
    oracle = ase_pairs(pos, cell, cutoff)
    times = {name: [] for name in candidates}
    dev = {}
    for rep in range(repeats):
        for name, fn in candidates.items():
            if name == "ASE" and rep > 0 and times[name][0] > 1.0:
                continue  # slow; one call is a good enough figure
            t0 = time.perf_counter()
            res = fn(pos, cell, cutoff)
            times[name].append(time.perf_counter() - t0)
            if res is None:
                dev[name] = None
            elif rep == 0:
                dev[name] = max_deviation(res, oracle)
    ms = {k: 1e3 * float(np.median(v)) if dev[k] is not None else None for k, v in times.items()}
    return {"beads": n_beads, "box": "triclinic" if triclinic else "orthorhombic", "cutoff": cutoff,
            "small": cutoff >= half_width(cell), "pairs": len(oracle[0]), "ms": ms, "dev": dev}


def print_row(row: dict, names: list[str]):
    ref = row["ms"]["old brute force"]
    cells = []
    for k in names:
        ms, dev = row["ms"][k], row["dev"][k]
        if ms is None:
            cells.append("n/a")
        else:
            flag = "" if dev <= 1e-12 else (" WRONG" if dev == float("inf") else f" dev {dev:.1e}")
            cells.append(f"{ms:.2f} ({ms / ref:.2f}x){flag}")
    small = " (rc > L/2)" if row["small"] else ""
    print(f"| {row['beads']} {row['box']}{small} | {row['cutoff']:.0f} | {row['pairs']} | " + " | ".join(cells) + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args(argv)
    candidates = available()
    names = list(candidates)
    print("| beads, box | cutoff Å | pairs | " + " | ".join(f"{k} ms (ratio)" for k in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    wrong = []
    for n in args.sizes:
        for triclinic in (False, True):
            for cutoff in CUTOFFS:
                row = bench_case(candidates, n, triclinic, cutoff, args.repeats)
                print_row(row, names)
                wrong += [k for k, d in row["dev"].items() if d is not None and d > 1e-12]
    print("pair sets and vectors (1e-12 Å) equal to ASE's:", "all" if not wrong else f"NOT for {sorted(set(wrong))}")


if __name__ == "__main__":
    main()
