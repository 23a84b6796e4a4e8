"""The classical baseline: pairwise force matching (multiscale coarse-graining, MS-CG).

For each bead-type pair a central pair force f(r) (positive = repulsive) is expanded in linear
hat functions on a grid of spacing ``dr`` up to the cutoff, f(r) = sum_k c_k phi_k(r), so the
CG force on bead i is linear in the coefficients:

    F_i = sum_{j != i, r_ij < rc} f_{t_i t_j}(r_ij) (x_i - x_j) / r_ij  =  G_i c.

The coefficients minimise sum over frames and beads |F_mapped - G c|^2; the normal equations
G^T G c = G^T F are accumulated frame by frame (memory independent of the number of frames)
and solved with a small ridge term, which also pins grid points that no sampled pair reaches.
f(rc) = 0 is imposed (the last grid point is dropped) so the force is continuous at the cutoff.

The fitted f(r) is integrated to U(r) = int_r^rc f dr' and written as a LAMMPS
``pair_style table`` file (linear interpolation, consistent energy and force columns), with a
descriptor JSON next to it that ``hipcg simulate`` accepts in place of a model file.  Pairs
are all bead pairs within the cutoff, intramolecular ones included, exactly as LAMMPS applies
a pair style to an ``atom_style atomic`` system.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np

from .atomic import write_json_atomic, write_text_atomic
from .analysis import type_pairs
from .config import NonNegative, Positive, PositiveInt, Range
from .errors import ConfigError, DataError, OutputExistsError
from .graph import periodic_graph
from .volume import VolumeFit, VolumeTerm, fit_to_datasets
from .local_density import LocalDensity, basis_rows as ld_basis_rows, write_ld_file
from .local_density import choose_cutoffs as choose_ld_cutoffs

DESCRIPTOR_KIND = "hipcg-baseline-table"


def _pair_index(a: np.ndarray, b: np.ndarray, n_types: int) -> np.ndarray:
    """Index of the unordered type pair (a, b) in :func:`hipcg.analysis.type_pairs` order."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # row lo starts after sum_{k<lo} (n_types - k) pairs
    return lo * n_types - lo * (lo - 1) // 2 + (hi - lo)


@dataclass
class PairForceTable:
    """Tabulated pair forces: f[p] on the grid r for type pair p (type_pairs order)."""

    type_names: list[str]
    cutoff: float
    r: np.ndarray  # (K,) grid, Å
    f: np.ndarray  # (P, K) kcal/(mol Å), positive = repulsive
    r_inner: np.ndarray  # (P,) first well-sampled grid point per pair (below: a repulsive wall)
    wall_slope: np.ndarray | None = None  # (P,) -df/dr of the wall, kcal/(mol Å^2)
    local_density: LocalDensity | None = None  # the many-body LD term, when fitted with one
    volume: VolumeTerm | None = None  # pressure matching's volume term (hipcg.volume)

    def __post_init__(self):
        if self.wall_slope is None:
            self.wall_slope = np.full(len(self.r_inner), MIN_WALL_SLOPE)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return type_pairs(len(self.type_names))

    def force(self, p: int, r: np.ndarray) -> np.ndarray:
        """f(r) of pair p: linear interpolation; a stiff linear wall below the sampled range."""
        r = np.asarray(r, dtype=np.float64)
        f = np.interp(r, self.r, self.f[p], right=0.0)
        inner = self.r_inner[p]
        f_in = np.interp(inner, self.r, self.f[p])
        wall = f_in + self.wall_slope[p] * (inner - r)  # continuous at r_inner
        return np.where(r < inner, wall, f)

    def pair_scales(self, positions: np.ndarray, box: np.ndarray, bead_types: np.ndarray):
        """(i, vec, s) over the frame's ordered pairs: bead i's force is sum s * vec, with
        vec = x_j - x_i (pair tables and, when fitted, the local-density term)."""
        g = periodic_graph(positions, box, bead_types, self.cutoff)
        i, j, d = g.pair_first, g.pair_second, g.pair_vec
        r = np.linalg.norm(d, axis=1)
        p = _pair_index(bead_types[i], bead_types[j], len(self.type_names))
        f = np.zeros(len(r))
        for q in np.unique(p):
            sel = p == q
            f[sel] = self.force(int(q), r[sel])
        s = -f / r  # d points from i to j: repulsion (f > 0) pushes i away
        if self.local_density is not None:
            s = s + self.local_density.pair_scales(i, j, d, len(positions))
        return i, d, s

    def forces(self, positions: np.ndarray, box: np.ndarray, bead_types: np.ndarray) -> np.ndarray:
        """CG forces on every bead of one frame, kcal/(mol Å)."""
        i, d, s = self.pair_scales(positions, box, bead_types)
        out = np.zeros((len(positions), 3))
        np.add.at(out, i, s[:, None] * d)
        return out

    def virial_trace(self, positions: np.ndarray, box: np.ndarray, bead_types: np.ndarray) -> float:
        """W = sum_i x_i . F_i of the frame (kcal/mol): each ordered pair (i, j) and its twin
        (j, i) add x_i . s d + x_j . s (-d) = -s |d|^2, i.e. -s |d|^2 / 2 per ordered pair."""
        _, d, s = self.pair_scales(positions, box, bead_types)
        return float(-0.5 * np.sum(s * np.einsum("ij,ij->i", d, d)))


#: kcal/(mol Å^2): least slope of the repulsive wall below the sampled range.  Only reached
#: by beads closer than (almost) anything in the training data, i.e. on the way to a blow-up.
MIN_WALL_SLOPE = 10.0
#: a grid point counts as sampled when its hat function saw this many pair distances
MIN_SAMPLES = 20


@dataclass
class BaselineConfig:
    """The ``baseline:`` section (and ``hipcg baseline``'s flags)."""

    enabled: bool = True
    dr: Positive = 0.1  # Å, grid of the tabulated pair force
    ridge: NonNegative = 1e-6  # relative to the mean diagonal of G^T G
    stride: PositiveInt = 1  # use every n-th training frame
    points: Annotated[int, Range(ge=2)] = 2000  # rows of the LAMMPS table
    # also fit the classical many-body model: pair tables + a local-density potential
    local_density: bool = False
    ld_width: Positive = 1.5  # Å, R2 - R1 of the LD indicator (R2: first minimum of g(r))
    ld_nodes: Annotated[int, Range(ge=4)] = 40  # grid nodes of F'(rho)
    # fit a volume term to the atomistic per-frame pressure (hipcg.volume); needs datasets
    # with thermo_pressure; LAMMPS then runs it as pair_style hipcg/volume (the plugin)
    pressure_matching: bool = False


def fit_pair_forces(frames, type_names: list[str], cutoff: float, dr: float = 0.1,
                    ridge: float = 1e-6, progress: bool = False,
                    local_density: LocalDensity | None = None) -> PairForceTable:
    """Force-match tabulated pair forces to ``frames``.

    ``frames`` yields (positions (n, 3), forces (n, 3), box (3, 3), bead_types (n,)), e.g.
    :func:`dataset_frames`.  ``ridge`` is relative to the mean diagonal of G^T G.
    ``local_density``: also fit the F'(rho) of this LD potential (its cutoffs and rho grid;
    R2 <= ``cutoff``) in the same least squares: the pair + LD model.
    """
    if local_density is not None and local_density.r2 > cutoff:
        raise ConfigError(f"local density R2 = {local_density.r2} Å exceeds the cutoff {cutoff} Å")
    n_ld = 0 if local_density is None else len(local_density.rho) - 2
    n_types = len(type_names)
    n_pairs = len(type_pairs(n_types))
    grid = np.arange(0.0, cutoff + 0.5 * dr, dr)
    grid[-1] = cutoff
    k_free = len(grid) - 1  # last point (the cutoff) is fixed at f = 0
    m = n_pairs * k_free
    gtg = np.zeros((m + n_ld, m + n_ld))
    gtf = np.zeros(m + n_ld)
    samples = np.zeros((n_pairs, len(grid)))
    n_frames = 0
    iterator = frames
    if progress:
        from tqdm import tqdm

        iterator = tqdm(frames, desc="force matching", unit="frame")
    for positions, forces, box, types in iterator:
        g = periodic_graph(positions, box, types, cutoff)
        i, j, d = g.pair_first, g.pair_second, g.pair_vec
        r = np.linalg.norm(d, axis=1)
        p = _pair_index(types[i], types[j], n_types)
        k = np.minimum(np.searchsorted(grid, r, side="right") - 1, len(grid) - 2)
        np.add.at(samples, (p, k), 1.0)
        np.add.at(samples, (p, k + 1), 1.0)
        t = (r - grid[k]) / (grid[k + 1] - grid[k])
        unit = -d / r[:, None]  # force direction on i for f > 0
        n = len(positions)
        # each ordered pair (i, j) adds to bead i's rows: (1 - t) to point k, t to point k + 1;
        # one bincount over flat (row, column) indices builds the dense per-frame G
        flat, vals = [], []
        for weight, kk in ((1.0 - t, k), (t, k + 1)):
            free = kk < k_free
            col = p[free] * k_free + kk[free]
            for c in range(3):
                flat.append((i[free] * 3 + c) * m + col)
                vals.append(weight[free] * unit[free, c])
        g = np.bincount(np.concatenate(flat), np.concatenate(vals), minlength=n * 3 * m).reshape(n * 3, m)
        if n_ld:
            near = r < local_density.r2
            g = np.hstack([g, ld_basis_rows(local_density, i[near], j[near], d[near], n)])
        gtg += g.T @ g
        gtf += g.T @ np.asarray(forces, dtype=np.float64).reshape(-1)
        n_frames += 1
    if n_frames == 0:
        raise DataError("no frames to fit")
    diag = np.diag(gtg)
    scale = diag[diag > 0].mean() if np.any(diag > 0) else 1.0
    coef = np.linalg.solve(gtg + ridge * scale * np.eye(m + n_ld), gtf)
    f = np.zeros((n_pairs, len(grid)))
    f[:, :k_free] = coef[:m].reshape(n_pairs, k_free)
    fitted_ld = None
    if n_ld:
        fitted_ld = LocalDensity(local_density.r1, local_density.r2, local_density.rho,
                                 np.concatenate([[0.0], coef[m:], [0.0]]))
    # below the first well-sampled grid point the coefficients are ridge noise: replace them by
    # a repulsive wall that continues the fitted force with at least its own steepness
    r_inner = np.full(n_pairs, float(cutoff))
    slope = np.full(n_pairs, MIN_WALL_SLOPE)
    for q in range(n_pairs):
        ok = np.flatnonzero(samples[q] >= MIN_SAMPLES)
        if len(ok) == 0:
            f[q] = 0.0  # pair never seen within the cutoff: no interaction, wall at the cutoff
            continue
        k0 = ok[0]
        r_inner[q] = grid[k0]
        if k0 + 1 < len(grid):
            slope[q] = max(MIN_WALL_SLOPE, -(f[q, k0 + 1] - f[q, k0]) / (grid[k0 + 1] - grid[k0]))
    table = PairForceTable(list(type_names), float(cutoff), grid, f, r_inner, slope, fitted_ld)
    for q in range(n_pairs):
        below = grid < r_inner[q]
        f[q, below] = table.force(q, grid[below])
    return table


def fit_volume(table: PairForceTable, datasets, stride: int = 1) -> VolumeFit:
    """Pressure matching of fitted tables (Das & Andersen's volume term, fitted after the
    forces): the term that brings the tables' virial pressure onto the atomistic pressure over
    every ``stride``-th frame of ``datasets``; sets ``table.volume`` and returns the fit."""
    fit = fit_to_datasets(lambda ds, k: table.virial_trace(ds.positions[k], ds.boxes[k], ds.bead_types),
                          datasets, [range(0, ds.n_frames, stride) for ds in datasets])
    table.volume = fit.term
    return fit


def local_density_for(datasets, cutoff: float, config: BaselineConfig) -> LocalDensity:
    """An LD potential shaped on the training data: R2 at the first minimum of the all-pairs
    g(r) (the first coordination shell), R1 = R2 - ld_width; the rho grid from 0 to 1.5x the
    largest local density in the data, so LAMMPS's end clamps (F' = 0) lie outside it."""
    from .analysis import PairHistogram

    hist = PairHistogram(1, min(cutoff, 12.0), 0.1)
    for ds in datasets:
        step = max(1, ds.n_frames // 50)
        hist.add(ds.positions[::step], ds.boxes[::step], np.zeros(ds.n_beads, dtype=int))
    r, g = hist.r, hist.g()[0, 0]
    r1, r2 = choose_ld_cutoffs(r, g, config.ld_width)
    probe = LocalDensity(r1, min(r2, cutoff), np.linspace(0.0, 1.0, 3))
    rho_max = 0.0
    for ds in datasets:
        for k in range(0, ds.n_frames, max(1, ds.n_frames // 20)):
            gr = periodic_graph(ds.positions[k], ds.boxes[k], ds.bead_types, probe.r2)
            rho = probe.densities(gr.pair_first, np.linalg.norm(gr.pair_vec, axis=1), ds.n_beads)
            rho_max = max(rho_max, float(rho.max()))
    return LocalDensity(r1, probe.r2, np.linspace(0.0, 1.5 * rho_max, config.ld_nodes))


def dataset_frames(dataset, frames=None):
    """Frame iterator over a :class:`hipcg.data.CGDataset` for :func:`fit_pair_forces`."""
    idx = range(dataset.n_frames) if frames is None else frames
    for k in idx:
        yield dataset.positions[k], dataset.forces[k], dataset.boxes[k], dataset.bead_types


# --------------------------------------------------------------------------- LAMMPS table


def section_name(a: str, b: str) -> str:
    return f"{a}_{b}"


def tabulate(table: PairForceTable, p: int, n_points: int, r_lo: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(r, U, f) on n_points from r_lo to the cutoff; U(rc) = 0, U = int_r^rc f (trapezoid)."""
    r = np.linspace(r_lo, table.cutoff, n_points)
    f = table.force(p, r)
    seg = 0.5 * (f[1:] + f[:-1]) * np.diff(r)
    u = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]])
    return r, u, f


def write_table(table: PairForceTable, path: str | os.PathLike, n_points: int = 2000,
                r_lo: float = 0.5, overwrite: bool = False, info: dict | None = None) -> Path:
    """Write ``<path>.table`` (LAMMPS pair_style table) and ``<path>.json`` (descriptor).

    ``path`` is the descriptor (``.json``); the table file sits next to it.  Returns the
    descriptor path, which ``hipcg simulate --model`` accepts.
    """
    path = Path(path)
    if path.suffix != ".json":
        path = path.with_suffix(".json")
    table_path = path.with_suffix(".table")
    for target in (path, table_path):
        if target.exists() and not overwrite:
            raise OutputExistsError(f"{target} exists; not overwriting it (use --overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# hipcg baseline: pairwise force-matched (MS-CG) CG pair potentials, units real",
             "# columns: index, r (Å), U (kcal/mol), f = -dU/dr (kcal/mol/Å)", ""]
    sections = {}
    for p, (a, b) in enumerate(table.pairs):
        name = section_name(table.type_names[a], table.type_names[b])
        sections[f"{table.type_names[a]}-{table.type_names[b]}"] = name
        r, u, f = tabulate(table, p, n_points, r_lo)
        lines += [name, f"N {n_points} R {r_lo:.10g} {table.cutoff:.10g}", ""]
        lines += [f"{k + 1} {rk:.10g} {uk:.12g} {fk:.12g}" for k, (rk, uk, fk) in enumerate(zip(r, u, f))]
        lines.append("")
    write_text_atomic(table_path, "\n".join(lines))
    ld_extra = {}
    if table.local_density is not None:
        ld_path = path.with_suffix(".ld")
        write_ld_file(table.local_density, len(table.type_names), ld_path)
        ld_extra = {"local_density": table.local_density.to_dict(), "ld_file": ld_path.name}
    volume = {"volume_term": table.volume.to_dict()} if table.volume is not None else {}
    desc = {"kind": DESCRIPTOR_KIND, **ld_extra, **volume, "type_names": table.type_names, "cutoff": table.cutoff,
            "table": table_path.name, "n_points": n_points, "r_lo": r_lo, "sections": sections,
            "r": table.r.tolist(), "f": table.f.tolist(), "r_inner": table.r_inner.tolist(),
            "wall_slope": table.wall_slope.tolist(),
            "info": info or {}}
    return write_json_atomic(path, desc, indent=1)


def read_descriptor(path: str | os.PathLike) -> dict:
    path = Path(path)
    desc = json.loads(path.read_text())
    if desc.get("kind") != DESCRIPTOR_KIND:
        raise DataError(f"{path} is not a hipcg baseline descriptor (kind {desc.get('kind')!r})")
    desc["table_path"] = str((path.parent / desc["table"]).resolve())
    if desc.get("ld_file"):
        desc["ld_path"] = str((path.parent / desc["ld_file"]).resolve())
    return desc


def descriptor_volume(desc: dict, source: str = "baseline descriptor") -> VolumeTerm | None:
    """The volume term a baseline descriptor carries, if any."""
    return VolumeTerm.from_dict(desc["volume_term"], source) if desc.get("volume_term") else None


def descriptor_files(path: str | os.PathLike) -> list[Path]:
    """A descriptor and the files it names beside it (table, LD file): what a copy must take."""
    path = Path(path)
    desc = json.loads(path.read_text())
    return [path] + [path.parent / desc[k] for k in ("table", "ld_file") if desc.get(k)]


def load_baseline(path: str | os.PathLike) -> PairForceTable:
    desc = read_descriptor(path)
    ld = desc.get("local_density")
    return PairForceTable(desc["type_names"], desc["cutoff"], np.asarray(desc["r"]),
                          np.asarray(desc["f"]), np.asarray(desc["r_inner"]),
                          np.asarray(desc["wall_slope"]),
                          LocalDensity.from_dict(ld) if ld else None,
                          descriptor_volume(desc, str(path)))


def table_pair_lines(desc: dict, type_names: list[str], plugin: Path | None = None) -> list[str]:
    """pair_style table lines for LAMMPS types named ``type_names`` (LAMMPS type k+1 = names[k]);
    a local-density term and a volume term join through hybrid/overlay (the volume term is
    ``pair_style hipcg/volume`` of the plugin, ``plugin``)."""
    order = {name: k for k, name in enumerate(desc["type_names"])}
    ld = desc.get("ld_path")
    volume = descriptor_volume(desc)
    extra = (["local/density"] if ld else []) + (["hipcg/volume"] if volume else [])
    table = "table" if extra else ""  # hybrid/overlay names the sub-style in pair_coeff
    lines = ["# the baseline: force-matched pair tables (+ a local-density term, + a volume term) "
             "(hipcg baseline)"]
    if volume is not None:
        if plugin is None:
            raise ValueError("a baseline with a volume term needs the plugin (hipcg/volume)")
        lines.append(f"plugin load {plugin}")
    lines.append(" ".join(["pair_style hybrid/overlay table linear", str(desc["n_points"]), *extra])
                 if extra else f"pair_style table linear {desc['n_points']}")
    for a in range(len(type_names)):
        for b in range(a, len(type_names)):
            x, y = sorted((type_names[a], type_names[b]), key=lambda n: order[n])
            section = desc["sections"][f"{x}-{y}"]
            lines.append(" ".join(filter(None, [f"pair_coeff {a + 1} {b + 1}", table, desc["table_path"],
                                                 section, str(desc["cutoff"])])))
    if ld:
        lines.append(f"pair_coeff * * local/density {ld}")
    if volume is not None:
        lines.append(f"pair_coeff * * hipcg/volume {volume.p0:.10g} {volume.bulk:.10g} {volume.v0:.10g}"
                     "  # volume term: p0 (atm), K (atm), v0 (Å^3 per bead)")
    return lines
