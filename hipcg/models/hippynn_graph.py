"""The same network as a hippynn graph (hippynn's own pair finder, energy head and forces).

Used as an independent reference for exported models (tests) and to train with hippynn's
``setup_and_train`` (benchmarks).  hippynn species are atomic-number-like with 0 = padding, so
bead type k is species k + 1; its one-hot encoder then gives exactly our one-hot input.
"""

from __future__ import annotations

import torch

from .hipnn import HipnnEnergy  # noqa: F401  (sets the hippynn kernel environment first)


def build_hippynn_graph(model: HipnnEnergy, periodic: bool = True):
    """Nodes (species, positions, cell, energy, forces) sharing ``model``'s torch modules."""
    from hippynn.graphs import inputs, networks, physics, targets

    net_module = model.network
    net_module.species_set = torch.arange(model.n_types + 1)  # 0 = padding
    species = inputs.SpeciesNode(db_name="Z")
    positions = inputs.PositionsNode(db_name="R")
    cell = inputs.CellNode(db_name="C")
    cls = {"Hipnn": networks.Hipnn, "HipnnVec": networks.HipnnVec, "HipnnQuad": networks.HipnnQuad}[
        type(net_module).__name__]
    parents = (species, positions, cell) if periodic else (species, positions)
    network = cls("hipnn", parents, periodic=periodic, module=net_module)
    energy = targets.HEnergyNode("energy", network, module=model.head)
    forces = physics.GradientNode("forces", (energy, positions), sign=-1)
    forces.db_name = "F"
    return species, positions, cell, energy, forces


def hippynn_energy_forces(model: HipnnEnergy, positions, cell, bead_types):
    """Energy (per frame) and forces of one or more periodic frames through hippynn's graph."""
    from hippynn.graphs import GraphModule

    species, pos_node, cell_node, energy, forces = build_hippynn_graph(model)
    graph = GraphModule([species, pos_node, cell_node], [energy.mol_energy, forces])
    dtype = next(model.parameters()).dtype
    pos = torch.as_tensor(positions, dtype=dtype)
    if pos.ndim == 2:
        pos = pos[None]
    z = torch.as_tensor(bead_types, dtype=torch.int64).expand(pos.shape[0], -1) + 1
    c = torch.as_tensor(cell, dtype=dtype)
    if c.ndim == 2:
        c = c[None].expand(pos.shape[0], 3, 3)
    e, f = graph(z, pos, c)
    return e.detach().squeeze(-1), f.detach()
