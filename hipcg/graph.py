"""Pair graphs of periodic frames and the energy/force/virial evaluation of a model on them.

This is the Python twin of what ``pair_style hipcg`` does inside LAMMPS: the same inputs
(species, pair indices, pair vectors x_j - x_i within the cutoff) and the same derivatives
(forces and virial from dE/d pair vector).  Tests, the ASE calculator and the benchmarks use it
as the reference for the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase.neighborlist import primitive_neighbor_list


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


def periodic_graph(positions: np.ndarray, cell: np.ndarray, species: np.ndarray, cutoff: float,
                   pbc: tuple[bool, bool, bool] = (True, True, True)) -> PairGraph:
    """Build the pair graph of a (possibly triclinic) periodic frame with ASE's neighbour list.

    ``cell`` rows are the box vectors (ASE convention).  Every periodic image within the cutoff
    is a separate pair, so small boxes (cutoff > half the box) are handled correctly.
    """
    positions = np.asarray(positions, dtype=np.float64)
    first, second, vec = primitive_neighbor_list(
        "ijD", pbc, np.asarray(cell, dtype=np.float64), positions, cutoff, self_interaction=False
    )
    keep = np.einsum("ij,ij->i", vec, vec) < cutoff * cutoff  # strict, like the plugin
    return PairGraph(np.asarray(species, dtype=np.int64), first[keep].astype(np.int64),
                     second[keep].astype(np.int64), vec[keep])


@dataclass
class EnergyForces:
    energy: float  # kcal/mol
    forces: np.ndarray  # (n, 3) kcal/mol/Å
    virial: np.ndarray  # (3, 3) kcal/mol, W_ab = sum_i x_ia F_ib (unwrapped pair form)
    node_energies: np.ndarray  # (n,)


def evaluate(model: torch.nn.Module, graph: PairGraph, dtype: torch.dtype = torch.float64,
             device: str | torch.device = "cpu") -> EnergyForces:
    """Energy, forces and virial of ``model`` on ``graph``, exactly as the LAMMPS plugin does."""
    species = torch.as_tensor(graph.species, device=device)
    first = torch.as_tensor(graph.pair_first, device=device)
    second = torch.as_tensor(graph.pair_second, device=device)
    vec = torch.as_tensor(graph.pair_vec, dtype=torch.float64).to(device, dtype).requires_grad_(True)
    node_energy = model(species, first, second, vec)
    energy = node_energy.sum()
    (grad,) = torch.autograd.grad(energy, vec, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(vec)
    grad = grad.detach().to("cpu", torch.float64)
    forces = torch.zeros((graph.n_nodes, 3), dtype=torch.float64)
    forces.index_add_(0, torch.as_tensor(graph.pair_first), grad)
    forces.index_add_(0, torch.as_tensor(graph.pair_second), -grad)
    virial = -(torch.as_tensor(graph.pair_vec).T @ grad)
    return EnergyForces(float(energy.detach().cpu()), forces.numpy(), virial.numpy(),
                        node_energy.detach().to("cpu", torch.float64).numpy())
