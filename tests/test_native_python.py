"""The native evaluator from Python (libhipcgnative.so through hipcg.native / hipcg.backends).

What the ASE calculator and ``hipcg evaluate`` report must be what ``pair_style hipcg backend
native`` runs: Python native against Python torch (hipcg.graph.evaluate) for every network kind
hipcg exports, float64 and float32; Python native against the real LAMMPS plugin on the same
frame; temperature-aware models at two temperatures; threads 1 vs 2; backend choice and errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units

from bead_systems import bead_script, jittered_lattice, random_liquid, small_hipnn
from hipcg.backends import ModelEvaluator
from hipcg.calculator import KCAL_PER_MOL, HipcgCalculator
from hipcg.errors import ModelFileError
from hipcg.graph import evaluate, periodic_graph
from hipcg.lammps.dump import read_dump
from hipcg.lammps.runner import run_lammps
from hipcg.modelfile import load_model
from hipcg.models.hipnn import set_temperature
from hipcg.models.lj import export_lennard_jones
from hipcg.native import NativeUnsupported

TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
CASES = [  # network, interaction layers, atom layers, prior
    ("HipnnQuad", 2, 2, False),
    ("HipnnQuad", 1, 3, True),
    ("HipnnVec", 2, 2, False),
    ("Hipnn", 2, 2, True),
]


@pytest.fixture(scope="module", autouse=True)
def native_library(plugin_path):
    """The native library is built with the plugin (one build for both)."""
    return plugin_path


def relative(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


def graph_of(box, cutoff=5.0):
    return periodic_graph(box.positions, box.cell, box.species, cutoff)


def assert_same(result, reference, tol):
    assert abs(reference.energy) > 1e-3 and np.abs(reference.forces).max() > 1e-3
    assert relative(result.energy, reference.energy) < tol
    assert relative(result.node_energies, reference.node_energies) < tol
    assert relative(result.forces, reference.forces) < tol
    assert relative(result.virial, reference.virial) < tol


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("network,n_layers,n_atom,prior", CASES,
                         ids=[f"{c[0]}-L{c[1]}-A{c[2]}{'-prior' if c[3] else ''}" for c in CASES])
def test_python_native_equals_torch(tmp_path, network, n_layers, n_atom, prior, dtype):
    path, _, _ = small_hipnn(tmp_path, n_layers=n_layers, dtype=dtype, network=network,
                             n_atom_layers=n_atom, prior=prior, seed=n_layers + n_atom)
    graph = graph_of(random_liquid(150, 0.03, 2.3, seed=4))
    native = ModelEvaluator(path, backend="native")
    torch_ = ModelEvaluator(path, backend="torch")
    assert (native.backend, torch_.backend) == ("native", "torch")
    assert_same(native.evaluate(graph), torch_.evaluate(graph), TOLERANCE[dtype])


def test_python_native_equals_the_lammps_plugin(plugin_path, tmp_path):
    """The same frame through LAMMPS (backend native, its own neighbour list, ghosts) and through
    the calculator (vesin's pair graph): energies, per-bead energies, forces, stress."""
    path, _, _ = small_hipnn(tmp_path, n_layers=2, prior=True, seed=3)
    box = jittered_lattice(5, 2.6, seed=3, tilt=(1.0, -0.5, 0.7))
    data = box.write(tmp_path / "beads.data")
    result = run_lammps(bead_script(plugin_path, path, data, comm_cutoff=11.0,
                                    style_args="backend native"), tmp_path)
    frame = read_dump(tmp_path / "forces.dump")[0]
    lammps_forces = np.stack([frame["fx"], frame["fy"], frame["fz"]], axis=1)

    atoms = Atoms(numbers=[1] * len(box.positions), positions=box.positions, cell=box.cell, pbc=True)
    atoms.arrays["hipcg_type"] = np.array(["A", "B"])[box.species]
    atoms.calc = HipcgCalculator(path)
    assert atoms.calc.evaluator.backend == "native"
    energy = atoms.get_potential_energy() / KCAL_PER_MOL
    assert relative(energy, result.thermo[-1]["PotEng"][0]) < 1e-10
    assert relative(atoms.get_potential_energies() / KCAL_PER_MOL, frame["c_pea"]) < 1e-10
    assert relative(atoms.get_forces() / KCAL_PER_MOL, lammps_forces) < 1e-10
    # run 0 without velocities: LAMMPS' pressure tensor is the virial's alone, P = -stress
    pressure = -atoms.get_stress(voigt=False) / (1.01325 * units.bar)  # atm
    ours = [pressure[0, 0], pressure[1, 1], pressure[2, 2], pressure[0, 1], pressure[0, 2],
            pressure[1, 2]]
    theirs = [result.thermo[-1][k][0] for k in ("Pxx", "Pyy", "Pzz", "Pxy", "Pxz", "Pyz")]
    assert relative(ours, theirs) < 1e-6  # LAMMPS' thermo output has 8 significant digits


def test_temperature_aware_model_natively(tmp_path):
    from test_plugin_temperature import aware_model

    path, _ = aware_model(tmp_path)
    graph = graph_of(jittered_lattice(5, 2.6, seed=2))
    module, meta = load_model(path)
    native = ModelEvaluator(path, backend="native", temperature=250.0)
    results = {}
    for t in (250.0, 450.0, 250.0):
        native.set_temperature(t)
        set_temperature(module, t)
        results[t] = native.evaluate(graph)
        assert_same(results[t], evaluate(module, graph), 1e-10)
    assert abs(results[450.0].energy - results[250.0].energy) > 1e-2
    with pytest.raises(ModelFileError, match="temperature-aware"):
        ModelEvaluator(path, backend="native")


def test_threads_agree_to_round_off(tmp_path):
    path, _, _ = small_hipnn(tmp_path, n_layers=2, prior=True, seed=5)
    graph = graph_of(random_liquid(200, 0.03, 2.3, seed=6))
    one = ModelEvaluator(path, backend="native", threads=1).evaluate(graph)
    two = ModelEvaluator(path, backend="native", threads=2).evaluate(graph)
    np.testing.assert_array_equal(one.node_energies, two.node_energies)
    assert relative(two.forces, one.forces) < 1e-13


def test_backend_choice_and_errors(tmp_path):
    quad, _, _ = small_hipnn(tmp_path, n_layers=1, seed=1)
    assert ModelEvaluator(quad).backend == "native"  # auto: native for HIP-NN on the CPU
    lj = export_lennard_jones(tmp_path / "lj.pt", ["A", "B"], [[0.2, 0.2], [0.2, 0.2]],
                              [[3.0, 3.0], [3.0, 3.0]], 6.0)
    assert ModelEvaluator(lj).backend == "torch"  # not a HIP-NN model: torch, no warning
    with pytest.raises(ModelFileError, match="backend native runs HIP-NN models on the CPU only"):
        ModelEvaluator(lj, backend="native")
    with pytest.raises(ModelFileError, match="backend 'jax'"):
        ModelEvaluator(quad, backend="jax")


def test_a_model_the_native_evaluator_cannot_read(tmp_path):
    """A HIP-NN model file whose module carries a parameter the evaluator does not know: an error
    naming it when native was asked for; torch with a warning under auto."""
    import torch

    path, model, config = small_hipnn(tmp_path, n_layers=1, seed=2)
    model.register_parameter("mystery", torch.nn.Parameter(torch.zeros(3)))
    from hipcg.export import export_model

    odd = export_model(model, tmp_path / "odd.pt", ["A", "B"], config, dtype="float64", overwrite=True)
    with pytest.raises(NativeUnsupported, match="mystery"):
        ModelEvaluator(odd, backend="native")
    with pytest.warns(RuntimeWarning, match="mystery"):
        assert ModelEvaluator(odd).backend == "torch"
