"""pair_style hipcg with traced hippynn HIP-NN-TS models: MPI, periodic images, derivatives."""

from __future__ import annotations

import numpy as np
import pytest

from bead_systems import bead_script, jittered_lattice, small_hipnn
from hipcg.graph import evaluate, periodic_graph
from hipcg.lammps.dump import read_dump
from hipcg.lammps.runner import run_lammps
from hipcg.modelfile import load_model

NKTV2P = 68568.415  # LAMMPS units real: pressure [atm] = virial [kcal/mol] / V [Å^3] * NKTV2P
STRESS_KEYS = ("Pxx", "Pyy", "Pzz", "Pxy", "Pxz", "Pyz")


def run_frame(plugin, model, box, workdir, nprocs=1, n_layers=2, cutoff=5.0, extra="", run="run 0"):
    workdir.mkdir(parents=True, exist_ok=True)
    data = box.write(workdir / "beads.data")
    comm = n_layers * cutoff + 1.0 if n_layers > 1 else None
    result = run_lammps(bead_script(plugin, model, data, comm_cutoff=comm, extra=extra, run=run),
                        workdir, nprocs=nprocs)
    return result.thermo[-1], read_dump(workdir / "forces.dump")


def forces_of(frame):
    return np.stack([frame["fx"], frame["fy"], frame["fz"]], axis=1)


@pytest.fixture(scope="module")
def two_layer_model(tmp_path_factory):
    return small_hipnn(tmp_path_factory.mktemp("models"), n_layers=2)


def python_reference(model_path, box, cutoff):
    module, meta = load_model(model_path)
    graph = periodic_graph(box.positions, box.cell, box.species, cutoff)
    return evaluate(module, graph, dtype=meta.torch_dtype), graph


@pytest.mark.parametrize("tilt", [(0.0, 0.0, 0.0), (2.0, -1.5, 1.0)], ids=["orthorhombic", "triclinic"])
def test_two_layer_model_matches_python_graph_in_periodic_box(plugin_path, two_layer_model, tmp_path, tilt):
    """Serial LAMMPS with ghosts == Python on the periodic graph (images via ASE), box < 2 x reach."""
    model_path, _, config = two_layer_model
    box = jittered_lattice(5, 2.6, seed=3, tilt=tilt)  # 125 beads, 13 Å box, 2 x cutoff = 10 Å
    thermo, frames = run_frame(plugin_path, model_path, box, tmp_path)
    ref, graph = python_reference(model_path, box, config.cutoff)
    assert graph.n_pairs > 20 * len(box.positions)
    assert abs(ref.energy) > 1e-3 and np.abs(ref.forces).max() > 1e-3
    np.testing.assert_allclose(thermo["PotEng"][0], ref.energy, rtol=1e-12)
    np.testing.assert_allclose(thermo["c_pe_sum"][0], ref.energy, rtol=1e-12)
    np.testing.assert_allclose(frames[0]["c_pea"], ref.node_energies, rtol=1e-10, atol=1e-12)
    scale = np.abs(ref.forces).max()
    assert np.abs(forces_of(frames[0]) - ref.forces).max() < 1e-10 * scale
    # pressure tensor from the virial (no velocities): P = W / V * nktv2p
    volume = abs(np.linalg.det(box.cell))
    w = ref.virial
    expected = np.array([w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]]) / volume * NKTV2P
    got = np.array([thermo[k][0] for k in STRESS_KEYS])
    assert np.abs(got - expected).max() < 1e-9 * np.abs(expected).max()
    # per-bead virials (compute stress/atom, pressure x volume) add up to the global virial
    per_atom_sum = np.array([thermo[f"c_sa_sum[{k}]"][0] for k in range(1, 7)])
    assert np.abs(-per_atom_sum / volume - expected).max() < 1e-9 * np.abs(expected).max()


def test_two_layer_model_two_ranks_equal_one_rank(plugin_path, two_layer_model, tmp_path):
    model_path, _, config = two_layer_model
    box = jittered_lattice(6, 2.7, seed=5)  # 216 beads, 16.2 Å box split in two domains
    serial, f1 = run_frame(plugin_path, model_path, box, tmp_path / "np1", nprocs=1)
    parallel, f2 = run_frame(plugin_path, model_path, box, tmp_path / "np2", nprocs=2)
    assert "2 by 1 by 1" in (tmp_path / "np2" / "log.lammps").read_text() or \
        "1 by 2 by 1" in (tmp_path / "np2" / "log.lammps").read_text() or \
        "1 by 1 by 2" in (tmp_path / "np2" / "log.lammps").read_text()
    scale = np.abs(forces_of(f1[0])).max()
    assert scale > 1e-3
    assert np.abs(forces_of(f1[0]) - forces_of(f2[0])).max() < 1e-10 * scale
    np.testing.assert_allclose(parallel["PotEng"][0], serial["PotEng"][0], rtol=1e-12)
    np.testing.assert_allclose(parallel["Press"][0], serial["Press"][0], rtol=1e-10)
    np.testing.assert_allclose(f2[0]["c_pea"], f1[0]["c_pea"], rtol=1e-10, atol=1e-12)


def test_two_layer_energy_reaches_two_cutoffs(two_layer_model):
    """Why ghosts must reach n_layers x cutoff: a 2-layer bead energy needs its neighbours' pairs."""
    model_path, _, config = two_layer_model
    module, _ = load_model(model_path)
    box = jittered_lattice(5, 2.6, seed=3)
    graph = periodic_graph(box.positions, box.cell, box.species, config.cutoff)
    full = evaluate(module, graph).node_energies[0]

    def energy_of_bead0(keep):
        sub = type(graph)(graph.species, graph.pair_first[keep], graph.pair_second[keep], graph.pair_vec[keep])
        return evaluate(module, sub).node_energies[0]

    neighbours = np.unique(graph.pair_second[graph.pair_first == 0])
    assert energy_of_bead0(np.isin(graph.pair_first, np.append(neighbours, 0))) == pytest.approx(full, abs=1e-12)
    assert abs(energy_of_bead0(graph.pair_first == 0) - full) > 1e-6


def test_forces_equal_central_differences_of_energy(plugin_path, two_layer_model, tmp_path):
    """F = -dE/dx checked inside LAMMPS: displace single beads by +-h and re-evaluate."""
    model_path, _, config = two_layer_model
    box = jittered_lattice(5, 2.6, seed=11)
    h = 1e-4
    probes = [(3, "x"), (40, "y"), (77, "z"), (124, "x")]
    lines = ["run 0", 'print "E0 $(pe:%.17g)"']
    for atom, axis in probes:
        delta = {"x": (h, 0, 0), "y": (0, h, 0), "z": (0, 0, h)}[axis]
        lines.append(f"group probe{atom} id {atom + 1}")
        for sign, tag in ((1, "plus"), (-2, "minus")):
            d = " ".join(str(sign * c) for c in delta)
            lines += [f"displace_atoms probe{atom} move {d} units box", "run 0",
                      f'print "FD {atom} {axis} {tag} $(pe:%.17g)"']
        d = " ".join(str(c) for c in delta)
        lines.append(f"displace_atoms probe{atom} move {d} units box")
    workdir = tmp_path
    data = box.write(workdir / "beads.data")
    result = run_lammps(bead_script(plugin_path, model_path, data, comm_cutoff=11.0,
                                    run="\n".join(lines)), workdir)
    energies = {}
    for line in result.output.splitlines():
        if line.startswith("FD "):
            _, atom, axis, tag, value = line.split()
            energies[(int(atom), axis, tag)] = float(value)
    forces = forces_of(read_dump(workdir / "forces.dump")[0])
    assert len(energies) == 2 * len(probes)
    for atom, axis in probes:
        fd = -(energies[(atom, axis, "plus")] - energies[(atom, axis, "minus")]) / (2 * h)
        analytic = forces[atom, "xyz".index(axis)]
        assert abs(analytic) > 1e-3
        assert fd == pytest.approx(analytic, rel=1e-6, abs=1e-7)


def test_one_layer_model_ghost_species_nodes(plugin_path, tmp_path):
    """One layer: ghosts are represented by per-species nodes; results must not change."""
    model_path, _, config = small_hipnn(tmp_path, n_layers=1, seed=4)
    box = jittered_lattice(5, 2.6, seed=8, tilt=(1.0, 0.5, -0.7))
    ref, _ = python_reference(model_path, box, config.cutoff)
    for nprocs in (1, 2):
        thermo, frames = run_frame(plugin_path, model_path, box, tmp_path / f"np{nprocs}", nprocs=nprocs,
                                   n_layers=1)
        np.testing.assert_allclose(thermo["PotEng"][0], ref.energy, rtol=1e-12)
        scale = np.abs(ref.forces).max()
        assert np.abs(forces_of(frames[0]) - ref.forces).max() < 1e-10 * scale
        np.testing.assert_allclose(frames[0]["c_pea"], ref.node_energies, rtol=1e-10, atol=1e-12)


def test_float32_model_close_to_float64(plugin_path, tmp_path):
    path64, model, config = small_hipnn(tmp_path, n_layers=1, seed=2)
    path32, _, _ = small_hipnn(tmp_path, n_layers=1, seed=2, dtype="float32")
    box = jittered_lattice(5, 2.6, seed=9)
    ref, _ = python_reference(path64, box, config.cutoff)
    thermo, frames = run_frame(plugin_path, path32, box, tmp_path / "f32", n_layers=1)
    scale = np.abs(ref.forces).max()
    err = np.abs(forces_of(frames[0]) - ref.forces).max() / scale
    assert 1e-12 < err < 1e-5  # float32 really ran, and is accurate to float32 precision
    assert thermo["PotEng"][0] == pytest.approx(ref.energy, rel=1e-5)


def test_energy_conserved_in_nve(plugin_path, two_layer_model, tmp_path):
    model_path, _, config = two_layer_model
    box = jittered_lattice(5, 2.6, seed=21)
    thermo, _ = run_frame(plugin_path, model_path, box, tmp_path, extra="""
mass * 30.0
velocity all create 300 4321 loop geom
fix nve all nve
timestep 1.0
thermo 5
thermo_style custom step pe ke etotal
thermo_modify format float %.17g""", run="run 80")
    etotal = np.asarray(thermo["TotEng"])
    ke = np.asarray(thermo["KinEng"])
    assert ke.std() > 0.05  # energy flows between kinetic and potential
    assert np.abs(etotal - etotal[0]).max() < 0.02 * ke.std()
