"""Pair graphs of periodic frames and the energy/force/virial evaluation of a model on them.

This is the Python twin of what ``pair_style hipcg`` does inside LAMMPS: the same inputs
(species, pair indices, pair vectors x_j - x_i within the cutoff) and the same derivatives
(forces and virial from dE/d pair vector).  Tests, the ASE calculator and the benchmarks use it
as the reference for the plugin.

It is also hipcg's one pair search (vesin's cell list, chosen in
``benchmarks/bench_neighbours.py``): training graphs, the baseline's pair forces, the RDFs of
the report and the prior, and simulate's start-structure check all go through
:func:`periodic_graph`, :func:`pair_distances` (half list) or :func:`closest_pair`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PairGraph:
    """All ordered pairs (i, j), i != j or periodic images, with |r_ij| < cutoff."""

    species: np.ndarray  # (n,) model type index per bead
    pair_first: np.ndarray  # (p,) i
    pair_second: np.ndarray  # (p,) j
    pair_vec: np.ndarray  # (p, 3) x_j + image shift - x_i, Å, float64

    @property
    def n_nodes(self) -> int:
        return len(self.species)

    @property
    def n_pairs(self) -> int:
        return len(self.pair_first)


def _search(positions, cell, cutoff: float, pbc, full_list: bool, quantities: str):
    """vesin's cell list: the one pair search of hipcg (benchmarks/bench_neighbours.py).

    Every periodic image within the cutoff is its own pair, so small boxes (cutoff > half the
    box) and triclinic cells work; positions need not be wrapped.  ``cell`` rows are the box
    vectors.  Results are copies: vesin's own arrays die with the NeighborList object.
    """
    from vesin import NeighborList  # imports torch: kept out of the start-up of every command

    points = np.ascontiguousarray(positions, dtype=np.float64)
    box = np.ascontiguousarray(cell, dtype=np.float64)
    return NeighborList(cutoff=float(cutoff), full_list=full_list).compute(
        points, box, [bool(p) for p in pbc], quantities, copy=True)


def periodic_graph(positions: np.ndarray, cell: np.ndarray, species: np.ndarray, cutoff: float,
                   pbc: tuple[bool, bool, bool] = (True, True, True)) -> PairGraph:
    """The pair graph of a (possibly triclinic) periodic frame, as ``pair_style hipcg`` sees it.

    Ordered pairs (i, j) in both directions, periodic images of i itself included, r < cutoff
    strictly; ``pbc`` False along a direction means open boundaries there.
    """
    first, second, vec = _search(positions, cell, cutoff, pbc, True, "ijD")
    keep = np.einsum("ij,ij->i", vec, vec) < cutoff * cutoff  # the plugin's test, on these vectors
    return PairGraph(np.asarray(species, dtype=np.int64), first[keep].astype(np.int64),
                     second[keep].astype(np.int64), vec[keep])


def pair_distances(positions: np.ndarray, cell: np.ndarray, cutoff: float):
    """(i, j, r): every periodic pair of :func:`periodic_graph` once, not in both directions.

    A half list, about 3x faster than the full graph, for counting pairs (RDFs).
    """
    first, second, dist = _search(positions, cell, cutoff, (True, True, True), False, "ijd")
    keep = dist < cutoff
    return first[keep].astype(np.int64), second[keep].astype(np.int64), dist[keep]


def closest_pair(positions: np.ndarray, cell: np.ndarray, below: float) -> tuple[float, int, int] | None:
    """(distance, i, j) of the closest periodic pair if it is closer than ``below``, else None."""
    first, second, dist = _search(positions, cell, below, (True, True, True), False, "ijd")
    if len(dist) == 0:
        return None
    k = int(np.argmin(dist))
    return float(dist[k]), int(first[k]), int(second[k])


@dataclass
class EnergyForces:
    energy: float  # kcal/mol
    forces: np.ndarray  # (n, 3) kcal/mol/Å
    virial: np.ndarray  # (3, 3) kcal/mol, W_ab = sum_i x_ia F_ib (unwrapped pair form)
    node_energies: np.ndarray  # (n,)


def evaluate(model: "torch.nn.Module", graph: PairGraph, dtype: "torch.dtype | None" = None,  # None: float64
             device: "str | torch.device" = "cpu") -> EnergyForces:
    """Energy, forces and virial of ``model`` on ``graph``, exactly as the LAMMPS plugin does."""
    import torch  # here, not at module level: the pair search must not pull torch into start-up

    dtype = torch.float64 if dtype is None else dtype  # default: float64
    species = torch.as_tensor(graph.species, device=device)
    first = torch.as_tensor(graph.pair_first, device=device)
    second = torch.as_tensor(graph.pair_second, device=device)
    vec = torch.as_tensor(graph.pair_vec, dtype=torch.float64).to(device, dtype).requires_grad_(True)
    node_energy = model(species, first, second, vec)
    energy = node_energy.sum()
    (grad,) = torch.autograd.grad(energy, vec, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(vec)
    return from_pair_gradient(graph, node_energy.detach().to("cpu", torch.float64).numpy(),
                              grad.detach().to("cpu", torch.float64).numpy())


def from_pair_gradient(graph: PairGraph, node_energies: np.ndarray, grad: np.ndarray) -> EnergyForces:
    """Energy, forces and virial from per-node energies and dE/d pair vector (p, 3), as the
    plugin turns them into LAMMPS forces: F_i += g, F_j -= g, W = -sum_pairs r (x) g."""
    grad = np.asarray(grad, dtype=np.float64).reshape(-1, 3)
    n = graph.n_nodes
    forces = np.stack([np.bincount(graph.pair_first, grad[:, a], n)
                       - np.bincount(graph.pair_second, grad[:, a], n) for a in range(3)], axis=1)
    virial = -(np.asarray(graph.pair_vec).T @ grad)
    return EnergyForces(float(np.sum(node_energies)), forces, virial,
                        np.asarray(node_energies, dtype=np.float64))


def with_volume_term(result: EnergyForces, term: "VolumeTerm | None", box: np.ndarray) -> EnergyForces:
    """``result`` plus a model's volume term (:mod:`hipcg.volume`) for the frame's ``box``
    (rows are the box vectors), as ``pair_style hipcg`` adds it: energy N u(V/N), an isotropic
    virial, u(v) on every bead; forces are unchanged (the term depends on the volume only)."""
    if term is None:
        return result
    n = len(result.node_energies)
    volume = abs(float(np.linalg.det(np.asarray(box, dtype=np.float64))))
    per_bead = float(term.energy(n, volume)) / n
    return EnergyForces(result.energy + per_bead * n, result.forces,
                        result.virial + term.virial(n, volume), result.node_energies + per_bead)
