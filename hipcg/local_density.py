"""Local-density (LD) potentials: the classical many-body CG term of LAMMPS ``pair_style
local/density`` (Sanyal & Shell, J. Chem. Phys. 145, 034109, 2016), fitted by force matching.

U_LD = sum_i F(rho_i), rho_i = sum_{j != i} phi(r_ij), with LAMMPS's indicator function
phi = 1 below R1, c0 + c2 r^2 + c4 r^4 + c6 r^6 between R1 and R2 (phi(R1) = 1, phi(R2) = 0,
phi' = 0 at both), 0 beyond R2.  The force on bead i is
f_i = -sum_j [F'(rho_i) + F'(rho_j)] phi'(r_ij) (x_i - x_j) / r_ij, linear in F', so F' on a
grid of hat functions joins the pairwise force basis of :func:`hipcg.baseline.fit_pair_forces`.

One LD potential acting on and counting every bead type (a mean-field term on the total local
density).  The cutoffs are chosen on the training data (:func:`choose_cutoffs`).
Written here because no library fits LD potentials by force matching; the energy and force
conventions follow LAMMPS's source so that what we fit is what LAMMPS runs (checked by the
tests against LAMMPS itself).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import write_text_atomic


@dataclass
class LocalDensity:
    """One LD potential: cutoffs (Å) and F'(rho) on a rho grid (linear between nodes)."""

    r1: float
    r2: float
    rho: np.ndarray  # (M,) grid, rho[0] = 0; F' is 0 at both ends (LAMMPS clamps the spline there)
    fprime: np.ndarray = field(default=None)  # (M,) kcal/mol per unit density

    def __post_init__(self):
        self.rho = np.asarray(self.rho, dtype=np.float64)
        self.fprime = np.zeros(len(self.rho)) if self.fprime is None else np.asarray(self.fprime, float)

    def coefficients(self) -> tuple[float, float, float, float]:
        """c0, c2, c4, c6 of phi, exactly as LAMMPS derives them from R1 and R2."""
        uc2, lc2 = self.r2 ** 2, self.r1 ** 2
        ratio = lc2 / uc2
        denom = (1.0 - ratio) ** 3
        return ((1 - 3.0 * ratio) / denom, 6.0 * ratio / (uc2 * denom),
                -(3.0 + 3.0 * ratio) / (uc2 * uc2 * denom), 2.0 / (uc2 ** 3 * denom))

    def phi(self, r: np.ndarray) -> np.ndarray:
        c0, c2, c4, c6 = self.coefficients()
        r2 = np.asarray(r, dtype=np.float64) ** 2
        mid = c0 + r2 * (c2 + r2 * (c4 + c6 * r2))
        return np.where(r2 < self.r1 ** 2, 1.0, np.where(r2 > self.r2 ** 2, 0.0, mid))

    def dphi(self, r: np.ndarray) -> np.ndarray:
        """d phi / dr (zero outside (R1, R2))."""
        c0, c2, c4, c6 = self.coefficients()
        r = np.asarray(r, dtype=np.float64)
        r2 = r * r
        mid = (2.0 * c2 + r2 * (4.0 * c4 + 6.0 * c6 * r2)) * r
        return np.where((r2 >= self.r1 ** 2) & (r2 < self.r2 ** 2), mid, 0.0)

    def densities(self, first: np.ndarray, r: np.ndarray, n_beads: int) -> np.ndarray:
        """rho_i over an ordered pair list (every (i, j) and (j, i) present)."""
        return np.bincount(first, weights=self.phi(r), minlength=n_beads)

    def fprime_at(self, rho: np.ndarray) -> np.ndarray:
        return np.interp(rho, self.rho, self.fprime, left=0.0, right=0.0)

    def pair_scales(self, first, second, vec, n_beads: int) -> np.ndarray:
        """Per ordered pair the s of f_i += s (x_j - x_i) (``vec`` = x_second - x_first)."""
        r = np.linalg.norm(vec, axis=1)
        fp = self.fprime_at(self.densities(first, r, n_beads))
        return (fp[first] + fp[second]) * self.dphi(r) / r

    def forces(self, first, second, vec, n_beads: int) -> np.ndarray:
        """LD forces on every bead (kcal/(mol Å))."""
        out = np.zeros((n_beads, 3))
        np.add.at(out, first, self.pair_scales(first, second, vec, n_beads)[:, None] * vec)
        return out

    def energy_table(self, n_points: int) -> tuple[np.ndarray, np.ndarray]:
        """(rho, F) on ``n_points`` from 0 to rho_max; F(0) = 0, F = int F' (exact for linear F')."""
        rho = np.linspace(self.rho[0], self.rho[-1], n_points)
        fp = self.fprime_at(rho)
        energy = np.concatenate([[0.0], np.cumsum(0.5 * (fp[1:] + fp[:-1]) * np.diff(rho))])
        return rho, energy

    def to_dict(self) -> dict:
        return {"r1": self.r1, "r2": self.r2, "rho": self.rho.tolist(), "fprime": self.fprime.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "LocalDensity":
        return cls(float(d["r1"]), float(d["r2"]), np.asarray(d["rho"]), np.asarray(d["fprime"]))


def write_ld_file(ld: LocalDensity, n_types: int, path: str | os.PathLike, n_points: int = 1000) -> Path:
    """The ``pair_style local/density`` file: one potential, every type central and neighbour."""
    rho, energy = ld.energy_table(n_points)
    types = " ".join(str(t) for t in range(1, n_types + 1))
    lines = ["# hipcg: force-matched local-density potential, units real (F in kcal/mol)",
             "# one LD potential; central and neighbour filters: every bead type",
             f"1 {n_points}", "", f"{ld.r1:.10g} {ld.r2:.10g}", types, types,
             f"{rho[0]:.10g} {rho[-1]:.10g} {rho[1] - rho[0]:.12g}"]
    lines += [f"{e:.12g}" for e in energy]
    lines.append("")
    return write_text_atomic(path, "\n".join(lines) + "\n")


def basis_rows(ld: LocalDensity, first, second, vec, n_beads: int) -> np.ndarray:
    """Force basis of F' (hat functions on the free grid nodes 1..M-2): (3 n, M - 2)."""
    r = np.linalg.norm(vec, axis=1)
    rho = ld.densities(first, r, n_beads)
    grid = ld.rho
    free = len(grid) - 2
    k = np.clip(np.searchsorted(grid, rho, side="right") - 1, 0, len(grid) - 2)
    t = np.clip((rho - grid[k]) / (grid[k + 1] - grid[k]), 0.0, 1.0)
    radial = ld.dphi(r) / r  # f_i += F'-sum * radial * (x_j - x_i)
    keep = radial != 0.0
    i, j, vec, radial = first[keep], second[keep], vec[keep], radial[keep]
    rows, cols, vals = [], [], []
    for bead in (i, j):  # F'(rho_i) and F'(rho_j) both act along the pair (i, j)
        for node, weight in ((k[bead], 1.0 - t[bead]), (k[bead] + 1, t[bead])):
            ok = (node >= 1) & (node <= free)  # end nodes are fixed at F' = 0
            for c in range(3):
                rows.append(i[ok] * 3 + c)
                cols.append(node[ok] - 1)
                vals.append(weight[ok] * radial[ok] * vec[ok, c])
    flat = np.concatenate(rows) * free + np.concatenate(cols)
    return np.bincount(flat, np.concatenate(vals), minlength=3 * n_beads * free).reshape(3 * n_beads, free)


def choose_cutoffs(r: np.ndarray, g: np.ndarray, width: float = 1.5) -> tuple[float, float]:
    """R2 = the first minimum of g(r) after its main peak (the first coordination shell);
    R1 = R2 - ``width``: the LD then counts the neighbours of the first shell, the many-body
    quantity CG liquids most need (Sanyal & Shell 2016 use first-shell cutoffs)."""
    r, g = np.asarray(r), np.asarray(g)
    peak = int(np.argmax(g))
    after = g[peak:]
    # the first local minimum after the peak (a smoothed g: bin noise must not stop it early)
    smooth = np.convolve(after, np.ones(5) / 5, mode="same")
    interior = np.flatnonzero((smooth[1:-1] < smooth[:-2]) & (smooth[1:-1] <= smooth[2:])) + 1
    r2 = float(r[peak + (interior[0] if len(interior) else len(after) - 1)])
    return max(0.5, r2 - width), r2
