"""Structural and dynamical observables of bead trajectories: RDF, RDF error, MSD/diffusion, density.

The same functions serve mapped atomistic data (a :class:`hipcg.data.CGDataset`) and CG runs
(LAMMPS dumps), so every comparison in ``hipcg evaluate`` / ``hipcg report``, the tests and the
benchmarks uses one definition.  The definitions are documented in ``docs/evaluation.md``.

Units are LAMMPS ``real``: Å, fs, g/mol.  Arrays: positions (n_frames, n_beads, 3), boxes
(n_frames, 3, 3) with rows the box vectors a, b, c (the dataset convention).

Pair distances come from hipcg's one pair search (:func:`hipcg.graph.periodic_graph`) and are
histogrammed by :class:`PairHistogram`, the single g(r) definition that the report and the
repulsive prior share.  MSDs use MDAnalysis (``EinsteinMSD``) on a Universe built from arrays
with the ``MemoryReader``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

#: Width of the g(r) bins that the RDF error is defined on, Å.
RDF_BIN_WIDTH = 0.1
#: Largest RDF error (mean |g_test - g_ref| over the bins) that counts as "reproduces the structure".
RDF_ERROR_TOLERANCE = 0.05
#: g/mol/Å^3 -> g/cm^3 (1e24 Å^3 per cm^3 / Avogadro's number)
DENSITY_G_CM3 = 1.0e24 / 6.02214076e23
#: Å^2/fs -> 1e-5 cm^2/s (the customary unit for liquid diffusion coefficients)
DIFFUSION_1E5_CM2_S = 1.0e4


# --------------------------------------------------------------------------- boxes


def box_widths(box: np.ndarray) -> np.ndarray:
    """Perpendicular widths of a cell (rows a, b, c): distances between opposite faces."""
    box = np.asarray(box, dtype=np.float64)
    volume = abs(np.linalg.det(box))
    a, b, c = box
    return volume / np.array([np.linalg.norm(np.cross(b, c)), np.linalg.norm(np.cross(c, a)),
                              np.linalg.norm(np.cross(a, b))])


def box_dimensions(box: np.ndarray) -> np.ndarray:
    """MDAnalysis dimensions [lx, ly, lz, alpha, beta, gamma] of a cell with rows a, b, c."""
    box = np.asarray(box, dtype=np.float64)
    lengths = np.linalg.norm(box, axis=1)

    def angle(u, v):
        return np.degrees(np.arccos(np.clip(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)),
                                            -1.0, 1.0)))

    return np.array([*lengths, angle(box[1], box[2]), angle(box[0], box[2]), angle(box[0], box[1])])


def rdf_range(boxes: np.ndarray, cutoff: float | None = None, bin_width: float = RDF_BIN_WIDTH) -> float:
    """r_max of the RDF error: min(cutoff, half the shortest box width over all frames).

    Beyond half the box width the minimum-image RDF is incomplete; beyond the model cutoff
    the model has no direct say.  Rounded down to a whole number of bins.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 3, 3)
    half = 0.5 * min(box_widths(b).min() for b in boxes)
    r_max = half if cutoff is None else min(float(cutoff), half)
    n_bins = int(np.floor(r_max / bin_width + 1e-9))
    if n_bins < 1:
        raise ValueError(f"RDF range {r_max:.3f} Å is shorter than one {bin_width} Å bin")
    return n_bins * bin_width


# --------------------------------------------------------------------------- universes


def make_universe(positions: np.ndarray, boxes: np.ndarray, types=None, masses=None,
                  molecule_ids=None, dt: float = 1.0):
    """An MDAnalysis Universe over in-memory frames (MemoryReader); ``dt`` in fs.

    ``molecule_ids`` become residues, so ``exclude_same="residue"`` means "other molecules".
    """
    import MDAnalysis as mda
    from MDAnalysis.coordinates.memory import MemoryReader

    positions = np.asarray(positions, dtype=np.float32)
    if positions.ndim == 2:
        positions = positions[None]
    n_frames, n_atoms = positions.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 3, 3)
    if len(boxes) == 1 and n_frames > 1:
        boxes = np.repeat(boxes, n_frames, axis=0)
    if len(boxes) != n_frames:
        raise ValueError(f"{len(boxes)} boxes for {n_frames} frames")
    if molecule_ids is None:
        molecule_ids = np.arange(n_atoms)
    _, resindex = np.unique(np.asarray(molecule_ids), return_inverse=True)
    u = mda.Universe.empty(n_atoms, n_residues=int(resindex.max()) + 1 if n_atoms else 0,
                           atom_resindex=resindex, trajectory=False)
    u.add_TopologyAttr("types", [str(t) for t in (np.zeros(n_atoms, int) if types is None else types)])
    u.add_TopologyAttr("masses", np.ones(n_atoms) if masses is None else np.asarray(masses, float))
    dims = np.stack([box_dimensions(b) for b in boxes]).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MemoryReader's note about missing time information
        u.load_new(positions, format=MemoryReader, dimensions=dims, dt=dt)
    return u


# --------------------------------------------------------------------------- RDF


@dataclass
class RDF:
    """g(r) of one bead-type pair on bins of ``bin_width`` from 0 to ``r_max``."""

    r: np.ndarray  # bin centres, Å
    g: np.ndarray
    type_a: str
    type_b: str
    bin_width: float = RDF_BIN_WIDTH
    intermolecular: bool = True  # beads of the same molecule excluded

    @property
    def r_max(self) -> float:
        return float(len(self.r) * self.bin_width)

    @property
    def label(self) -> str:
        return f"{self.type_a}-{self.type_b}"

    def to_dict(self) -> dict:
        return {"type_a": self.type_a, "type_b": self.type_b, "bin_width": self.bin_width,
                "intermolecular": self.intermolecular, "r": self.r.tolist(), "g": self.g.tolist()}


@dataclass
class PairHistogram:
    """Pair-distance counts per ordered bead-type pair, summed over frames of one or more systems.

    The one g(r) code path of hipcg (report, evaluation and the repulsive prior).  Pairs come
    from :func:`hipcg.graph.pair_distances` (every periodic image, float64).  A pair (i, j)
    counts unless i and j are the same molecule (any image); without molecule ids every bead
    is its own molecule, so all pairs i != j count.  Each frame adds its own ideal-gas pair
    density N_pairs / V, so frames of different boxes pool correctly:
    g(r) = counts(r) / (sum over frames of N_pairs / V * 4/3 pi (r_hi^3 - r_lo^3)).

    Written here rather than taken from MDAnalysis' ``InterRDF`` because that one is minimum
    image only (r_max <= half the box, too short for the prior's onset search in small boxes),
    normalises by the mean volume, and takes one pair of atom groups per pass; this one bins
    every type pair from one neighbour list per frame (benchmarks/README.md: 2.7x faster).
    """

    n_types: int
    r_max: float
    bin_width: float = RDF_BIN_WIDTH
    n_bins: int = field(init=False)
    edges: np.ndarray = field(init=False, repr=False)  # (n_bins + 1,) Å
    counts: np.ndarray = field(init=False, repr=False)  # (n_types, n_types, n_bins)
    pair_density: np.ndarray = field(init=False, repr=False)  # (n_types, n_types), 1/Å^3

    def __post_init__(self):
        self.n_bins = int(round(self.r_max / self.bin_width))
        self.edges = np.arange(self.n_bins + 1) * self.bin_width
        self.counts = np.zeros((self.n_types, self.n_types, self.n_bins))
        self.pair_density = np.zeros((self.n_types, self.n_types))

    def add(self, positions_frames, boxes, type_index: np.ndarray, molecule_ids=None) -> "PairHistogram":
        """Add frames; ``type_index`` holds 0 .. n_types-1 per bead."""
        from .graph import pair_distances

        positions_frames = np.asarray(positions_frames, dtype=np.float64).reshape(-1, len(type_index), 3)
        boxes = np.broadcast_to(np.asarray(boxes, dtype=np.float64).reshape(-1, 3, 3), (len(positions_frames), 3, 3))
        mol = np.arange(len(type_index)) if molecule_ids is None else np.unique(molecule_ids, return_inverse=True)[1]
        per_molecule = np.zeros((mol.max(initial=-1) + 1, self.n_types))  # beads of each type
        np.add.at(per_molecule, (mol, type_index), 1.0)
        n_of = per_molecule.sum(axis=0)
        n_pairs = np.outer(n_of, n_of) - per_molecule.T @ per_molecule  # minus same-molecule pairs
        for positions, box in zip(positions_frames, boxes):
            i, j, r = pair_distances(positions, box, self.n_bins * self.bin_width)
            other = mol[i] != mol[j]
            i, j, r = i[other], j[other], r[other]
            k = np.minimum((r / self.bin_width).astype(np.int64), self.n_bins - 1)
            flat = (type_index[i] * self.n_types + type_index[j]) * self.n_bins + k
            half = np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)
            self.counts += half + half.transpose(1, 0, 2)  # each unordered pair is (i, j) and (j, i)
            self.pair_density += n_pairs / abs(np.linalg.det(box))
        return self

    def __add__(self, other: "PairHistogram") -> "PairHistogram":
        """The histogram of both sets of frames (counts and pair densities add: exact)."""
        if (self.n_types, self.n_bins, self.bin_width) != (other.n_types, other.n_bins, other.bin_width):
            raise ValueError("histograms on different types or bins cannot be added")
        total = PairHistogram(self.n_types, self.r_max, self.bin_width)
        total.counts = self.counts + other.counts
        total.pair_density = self.pair_density + other.pair_density
        return total

    @property
    def r(self) -> np.ndarray:
        """Bin centres, Å."""
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def g(self) -> np.ndarray:
        """g(r) of every ordered type pair, (n_types, n_types, n_bins); 0 where no pair exists."""
        shell = 4.0 / 3.0 * np.pi * (self.edges[1:] ** 3 - self.edges[:-1] ** 3)
        expected = self.pair_density[..., None] * shell
        return np.divide(self.counts, expected, out=np.zeros_like(self.counts), where=expected > 0)


def rdf(positions_frames: np.ndarray, boxes: np.ndarray, types: np.ndarray, type_a, type_b,
        r_max: float, bin_width: float = RDF_BIN_WIDTH, molecule_ids: np.ndarray | None = None,
        type_names: list[str] | None = None) -> RDF:
    """Radial distribution function between beads of ``type_a`` and ``type_b`` (:class:`PairHistogram`).

    ``types`` are per-bead labels (ints or names); ``type_a``/``type_b`` are compared with them.
    With ``molecule_ids`` the RDF is intermolecular (pairs within a molecule are left out, and
    the normalisation counts only the pairs that remain), otherwise every pair i != j counts.
    """
    labels, type_index = np.unique(np.asarray(types), return_inverse=True)
    found = [np.flatnonzero(labels == t) for t in (type_a, type_b)]
    if any(len(k) == 0 for k in found):
        raise ValueError(f"no beads of type {type_a!r} or {type_b!r}")
    hist = PairHistogram(len(labels), r_max, bin_width).add(positions_frames, boxes, type_index, molecule_ids)
    name = (lambda t: type_names[t] if type_names is not None and not isinstance(t, str) else str(t))
    return RDF(hist.r, hist.g()[found[0][0], found[1][0]], name(type_a), name(type_b), bin_width,
               intermolecular=molecule_ids is not None)


def type_pairs(n_types: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(n_types) for b in range(a, n_types)]


def all_rdfs(positions_frames, boxes, bead_types, type_names, r_max, molecule_ids=None,
             bin_width: float = RDF_BIN_WIDTH) -> dict[str, RDF]:
    """RDF of every bead-type pair present, keyed "A-B" (one pass over the frames)."""
    bead_types = np.asarray(bead_types)
    hist = PairHistogram(len(type_names), r_max, bin_width).add(positions_frames, boxes, bead_types, molecule_ids)
    return rdfs_of(hist, bead_types, type_names, intermolecular=molecule_ids is not None)


def rdfs_of(hist: PairHistogram, bead_types, type_names, intermolecular: bool) -> dict[str, RDF]:
    """The :class:`RDF` of every bead-type pair present in a filled histogram, keyed "A-B"."""
    bead_types = np.asarray(bead_types)
    g = hist.g()
    n_of = np.bincount(bead_types, minlength=len(type_names))
    out = {}
    for a, b in type_pairs(len(type_names)):
        if n_of[a] and n_of[b] and not (a == b and n_of[a] < 2):
            res = RDF(hist.r, g[a, b], type_names[a], type_names[b], hist.bin_width,
                      intermolecular=intermolecular)
            out[res.label] = res
    return out


def rdf_error(g_test, g_ref) -> float:
    """Mean absolute difference of g(r) over the common bins (the RDF error, docs/evaluation.md).

    Accepts arrays on the same bins or :class:`RDF` objects; for RDFs of different ranges
    (same bin width) the common range from 0 is used.
    """
    if isinstance(g_test, RDF) and isinstance(g_ref, RDF):
        if abs(g_test.bin_width - g_ref.bin_width) > 1e-12:
            raise ValueError("RDFs on different bin widths cannot be compared")
    a = np.asarray(g_test.g if isinstance(g_test, RDF) else g_test, dtype=np.float64)
    b = np.asarray(g_ref.g if isinstance(g_ref, RDF) else g_ref, dtype=np.float64)
    if not (isinstance(g_test, RDF) and isinstance(g_ref, RDF)) and a.shape != b.shape:
        raise ValueError(f"g(r) arrays on different bins: {a.shape} vs {b.shape}")
    n = min(len(a), len(b))
    if n == 0:
        raise ValueError("empty g(r)")
    diff = np.abs(a[:n] - b[:n])
    if not np.all(np.isfinite(diff)):
        return float("nan")
    return float(diff.mean())


# --------------------------------------------------------------------------- intramolecular


def bond_distances(positions_frames, boxes, molecule_ids, bead_types, type_names) -> dict[str, np.ndarray]:
    """Minimum-image distances between beads of the same molecule, pooled per type pair "A-B".

    Used for the intramolecular bead distributions of multi-bead mappings (empty for one bead
    per molecule).
    """
    from MDAnalysis.lib.distances import calc_bonds

    positions_frames = np.asarray(positions_frames, dtype=np.float64)
    if positions_frames.ndim == 2:
        positions_frames = positions_frames[None]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 3, 3)
    mol = np.asarray(molecule_ids)
    first, second = [], []
    for m in np.unique(mol):
        members = np.flatnonzero(mol == m)
        for i in range(len(members)):
            for j in range(i + 1, len(members)):
                first.append(members[i])
                second.append(members[j])
    if not first:
        return {}
    first, second = np.array(first), np.array(second)
    ta, tb = bead_types[first], bead_types[second]
    lo, hi = np.minimum(ta, tb), np.maximum(ta, tb)
    dists = np.stack([calc_bonds(p[first], p[second], box=box_dimensions(b))
                      for p, b in zip(positions_frames, boxes)])
    out = {}
    for a, b in sorted(set(zip(lo.tolist(), hi.tolist()))):
        sel = (lo == a) & (hi == b)
        out[f"{type_names[a]}-{type_names[b]}"] = dists[:, sel].ravel()
    return out


def distribution_error(d_test: np.ndarray, d_ref: np.ndarray, bin_width: float = 0.05) -> float:
    """Half the L1 distance between two normalised histograms (0 = identical, 1 = disjoint)."""
    lo = min(d_test.min(), d_ref.min())
    hi = max(d_test.max(), d_ref.max()) + bin_width
    edges = np.arange(lo, hi + bin_width, bin_width)
    p, _ = np.histogram(d_test, edges)
    q, _ = np.histogram(d_ref, edges)
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


# --------------------------------------------------------------------------- density, MSD


def density(masses: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mass density per frame, g/cm^3 (masses in g/mol, boxes in Å)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 3, 3)
    volumes = np.abs(np.linalg.det(boxes))
    return float(np.sum(masses)) / volumes * DENSITY_G_CM3


def compressibility(volumes: np.ndarray, temperature: float) -> float:
    """Isothermal compressibility from NPT volume fluctuations, 1/atm:
    kappa_T = (<V^2> - <V>^2) / (k_B T <V>) (volumes in Å^3, T in K; unit factors from ASE)."""
    from .volume import ATM, KB

    volumes = np.asarray(volumes, dtype=np.float64)
    return float(volumes.var() / (KB * temperature * volumes.mean()) * ATM)


def thermal_expansion(volumes: np.ndarray, enthalpies: np.ndarray, temperature: float) -> float:
    """Isobaric thermal expansion from NPT fluctuations, 1/K:
    alpha_P = <dV dH> / (k_B T^2 <V>), H = potential + kinetic energy + P V (kcal/mol)."""
    from .volume import KB

    v = np.asarray(volumes, dtype=np.float64)
    h = np.asarray(enthalpies, dtype=np.float64)
    return float(np.mean((v - v.mean()) * (h - h.mean())) / (KB * temperature ** 2 * v.mean()))


def unwrap(positions_frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Unwrap a wrapped trajectory by removing jumps larger than half a box between frames.

    Valid when no bead moves more than half a box width between stored frames; LAMMPS dumps
    with image flags (xu yu zu) should be preferred where available.
    """
    pos = np.asarray(positions_frames, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 3, 3)
    if len(boxes) == 1:
        boxes = np.repeat(boxes, len(pos), axis=0)
    out = pos.copy()
    for k in range(1, len(pos)):
        inv = np.linalg.inv(boxes[k])
        d = pos[k] - pos[k - 1]
        frac = d @ inv
        d -= np.round(frac) @ boxes[k]
        out[k] = out[k - 1] + d
    return out


@dataclass
class Diffusion:
    coefficient: float  # Å^2/fs
    lag_times: np.ndarray  # fs
    msd: np.ndarray  # Å^2
    fit_range: tuple[float, float]  # fs
    extras: dict = field(default_factory=dict)

    @property
    def coefficient_1e5_cm2_s(self) -> float:
        return self.coefficient * DIFFUSION_1E5_CM2_S


def diffusion(unwrapped_frames: np.ndarray, boxes: np.ndarray, dt_fs: float,
              selection: np.ndarray | None = None, fit_start: float = 0.2,
              fit_end: float = 0.8) -> Diffusion:
    """Self-diffusion coefficient from the Einstein relation MSD(t) = 6 D t (MDAnalysis EinsteinMSD).

    ``unwrapped_frames`` must be unwrapped (see :func:`unwrap`); ``dt_fs`` is the time between
    frames.  The slope is fitted between ``fit_start`` and ``fit_end`` of the longest lag, to skip
    the ballistic start and the noisy tail.  D is in Å^2/fs (x 1e4 = 1e-5 cm^2/s).
    """
    from MDAnalysis.analysis.msd import EinsteinMSD

    frames = np.asarray(unwrapped_frames)
    if selection is not None:
        frames = frames[:, np.asarray(selection)]
    if len(frames) < 4:
        raise ValueError(f"need at least 4 frames for a diffusion coefficient, got {len(frames)}")
    u = make_universe(frames, boxes, dt=dt_fs)
    calc = EinsteinMSD(u, select="all", msd_type="xyz", fft=False)
    calc.run()
    msd = np.asarray(calc.results.timeseries, dtype=np.float64)
    lag = np.arange(len(msd)) * dt_fs
    lo = max(1, int(fit_start * (len(msd) - 1)))
    hi = max(lo + 2, int(fit_end * (len(msd) - 1)) + 1)
    slope = np.polyfit(lag[lo:hi], msd[lo:hi], 1)[0]
    return Diffusion(float(slope / 6.0), lag, msd, (float(lag[lo]), float(lag[hi - 1])))
