"""pair_style hipcg backend native (the fused C++ HIP-NN evaluator) against backend torch.

Real LAMMPS and real MPI: energies, per-bead energies, forces (local + ghost, reverse
communicated), the pressure tensor (virial) and per-bead virials of the two backends on the
same frame, for every network kind hipcg exports, 1 and 2 interaction layers, with and without
the repulsive prior, float64 and float32; 1 rank vs 2 ranks; threads 1 vs 2; bad input.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bead_systems import bead_script, jittered_lattice, random_liquid, small_hipnn
from hipcg.lammps.dump import read_dump
from hipcg.lammps.runner import LammpsError, run_lammps
from hipcg.modelfile import load_model, save_model
from hipcg.models.lj import export_lennard_jones

CUTOFF = 5.0
STRESS = ("Pxx", "Pyy", "Pzz", "Pxy", "Pxz", "Pyz")
# float64: both backends do the same arithmetic in another order; float32: each rounds on its own
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


def run_backend(plugin, model, box, workdir, backend, n_layers, nprocs=1, threads=None):
    workdir.mkdir(parents=True, exist_ok=True)
    data = box.write(workdir / "beads.data")
    style = f"backend {backend}" + (f" threads {threads}" if threads else "")
    comm = n_layers * CUTOFF + 1.0 if n_layers > 1 else None
    result = run_lammps(bead_script(plugin, model, data, comm_cutoff=comm, style_args=style),
                        workdir, nprocs=nprocs, threads=threads or 1)
    frame = read_dump(workdir / "forces.dump")[0]
    return {"log": (workdir / "log.lammps").read_text(), "energy": result.thermo[-1]["PotEng"][0],
            "pe_atom": np.asarray(frame["c_pea"]),
            "forces": np.stack([frame["fx"], frame["fy"], frame["fz"]], axis=1),
            "pressure": np.array([result.thermo[-1][k][0] for k in STRESS]),
            "stress_atom_sum": np.array([result.thermo[-1][f"c_sa_sum[{k}]"][0] for k in range(1, 7)])}


def relative(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


def assert_same(native, torch_, tol):
    assert "pair hipcg: backend native" in native["log"]
    assert abs(torch_["energy"]) > 1e-3 and np.abs(torch_["forces"]).max() > 1e-3
    assert relative(native["energy"], torch_["energy"]) < tol
    assert relative(native["pe_atom"], torch_["pe_atom"]) < tol
    assert relative(native["forces"], torch_["forces"]) < tol
    assert relative(native["pressure"], torch_["pressure"]) < tol
    assert relative(native["stress_atom_sum"], torch_["stress_atom_sum"]) < tol


CASES = [  # network, interaction layers, atom layers, prior
    ("HipnnQuad", 2, 2, False),
    ("HipnnQuad", 1, 3, True),
    ("HipnnQuad", 3, 1, True),
    ("HipnnVec", 2, 2, False),
    ("Hipnn", 2, 2, True),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("network,n_layers,n_atom,prior", CASES,
                         ids=[f"{c[0]}-L{c[1]}-A{c[2]}{'-prior' if c[3] else ''}" for c in CASES])
def test_native_equals_torch(plugin_path, tmp_path, network, n_layers, n_atom, prior, dtype):
    model, _, _ = small_hipnn(tmp_path, n_layers=n_layers, dtype=dtype, network=network,
                              n_atom_layers=n_atom, prior=prior, seed=n_layers + n_atom)
    box = jittered_lattice(5, 2.6, seed=3, tilt=(1.0, -0.5, 0.7))    # triclinic, box < 2 x reach
    torch_ = run_backend(plugin_path, model, box, tmp_path / "torch", "torch", n_layers)
    native = run_backend(plugin_path, model, box, tmp_path / "native", "native", n_layers)
    assert_same(native, torch_, TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_native_equals_torch_on_liquid_frame(plugin_path, tmp_path, dtype):
    """A Lennard-Jones-like liquid (random insertion, 0.03 beads/Å^3, closest approach 2.3 Å)."""
    model, _, _ = small_hipnn(tmp_path, n_layers=2, dtype=dtype, prior=True, seed=7)
    box = random_liquid(200, 0.03, 2.3, seed=4)
    torch_ = run_backend(plugin_path, model, box, tmp_path / "torch", "torch", 2)
    native = run_backend(plugin_path, model, box, tmp_path / "native", "native", 2)
    assert_same(native, torch_, TOLERANCE[dtype])


@pytest.fixture(scope="module")
def quad2(tmp_path_factory):
    return small_hipnn(tmp_path_factory.mktemp("native"), n_layers=2, prior=True, seed=5)[0]


def test_native_two_ranks_equal_one_rank(plugin_path, quad2, tmp_path):
    box = jittered_lattice(6, 2.7, seed=5)    # 216 beads, 16.2 Å: two domains
    serial = run_backend(plugin_path, quad2, box, tmp_path / "np1", "native", 2)
    parallel = run_backend(plugin_path, quad2, box, tmp_path / "np2", "native", 2, nprocs=2)
    assert "by" in parallel["log"] and ("2 by 1 by 1" in parallel["log"] or "1 by 2 by 1" in
                                        parallel["log"] or "1 by 1 by 2" in parallel["log"])
    assert_same(parallel, serial, 1e-10)


def test_native_threads_agree_to_round_off(plugin_path, quad2, tmp_path):
    box = jittered_lattice(5, 2.6, seed=8)
    one = run_backend(plugin_path, quad2, box, tmp_path / "t1", "native", 2, threads=1)
    two = run_backend(plugin_path, quad2, box, tmp_path / "t2", "native", 2, threads=2)
    assert one["energy"] == two["energy"]    # per-node energies do not depend on the threads
    assert_same(two, one, 1e-13)


def test_default_backend_is_native_for_hipnn(plugin_path, quad2, tmp_path):
    workdir = tmp_path
    data = jittered_lattice(4, 2.6, seed=1).write(workdir / "beads.data")
    run_lammps(bead_script(plugin_path, quad2, data, comm_cutoff=11.0), workdir)
    assert "pair hipcg: backend native" in (workdir / "log.lammps").read_text()


def lammps_error(plugin, model, tmp_path, style_args, n_types=2) -> str:
    data = jittered_lattice(3, 3.5, seed=1).write(tmp_path / "beads.data")
    with pytest.raises(LammpsError) as err:
        run_lammps(bead_script(plugin, model, data, comm_cutoff=11.0, style_args=style_args),
                   tmp_path, timeout=120)
    assert "Segmentation" not in err.value.output and "signal" not in err.value.output.lower()
    return err.value.message


def lj_model(tmp_path):
    return export_lennard_jones(tmp_path / "lj.pt", ["A", "B"], [[0.2, 0.2], [0.2, 0.2]],
                                [[3.0, 3.0], [3.0, 3.0]], 6.0)


def test_native_refuses_a_model_it_cannot_evaluate(plugin_path, tmp_path):
    msg = lammps_error(plugin_path, lj_model(tmp_path), tmp_path, "backend native")
    assert "cannot be evaluated natively" in msg and "lennard-jones" in msg


def test_unsupported_model_falls_back_to_torch_with_a_warning(plugin_path, tmp_path):
    data = jittered_lattice(3, 3.5, seed=1).write(tmp_path / "beads.data")
    result = run_lammps(bead_script(plugin_path, lj_model(tmp_path), data), tmp_path)
    assert "WARNING: pair_style hipcg: model" in result.output and "backend torch" in result.output


def test_weights_that_do_not_match_the_network_are_an_error(plugin_path, tmp_path):
    """Metadata says HipnnQuad, the module is a Hipnn: the tensor-part scales are missing."""
    path, _, _ = small_hipnn(tmp_path, n_layers=1, network="Hipnn")
    module, meta = load_model(path)
    wrong = save_model(module, tmp_path / "wrong.pt", dataclasses.replace(meta, model="hipnn:HipnnQuad"))
    msg = lammps_error(plugin_path, wrong, tmp_path, "backend native")
    assert "missing parameter" in msg and "vecscales" in msg


def test_native_on_cuda_is_an_error(plugin_path, quad2, tmp_path):
    msg = lammps_error(plugin_path, quad2, tmp_path, "backend native device cuda")
    assert "backend native runs on the CPU only" in msg


def test_unknown_backend_is_an_error(plugin_path, quad2, tmp_path):
    msg = lammps_error(plugin_path, quad2, tmp_path, "backend fast")
    assert "backend must be native or torch" in msg


def test_load_time_check_catches_what_parameters_do_not_show(plugin_path, tmp_path):
    """Same parameter names, another activation (tanh, not hipcg's softplus): the native path
    would compute a different network; the load-time comparison with TorchScript refuses it."""
    import torch

    from hipcg.export import export_model
    from hipcg.models.hipnn import NETWORKS, HipnnConfig, HipnnEnergy

    config = HipnnConfig(network="HipnnQuad", n_features=12, n_sensitivities=5, dist_soft_min=1.5,
                         dist_soft_max=4.0, cutoff=CUTOFF, n_interaction_layers=1, n_atom_layers=2)
    torch.manual_seed(3)
    network = NETWORKS["HipnnQuad"](n_features=12, n_sensitivities=5, dist_soft_min=1.5,
                                    dist_soft_max=4.0, dist_hard_max=CUTOFF, n_atom_layers=2,
                                    n_interaction_layers=1, n_input_features=2,
                                    activation=torch.nn.Tanh)
    path = export_model(HipnnEnergy(network), tmp_path / "tanh.pt", ["A", "B"], config)
    msg = lammps_error(plugin_path, path, tmp_path, "backend native")
    assert "disagrees with the TorchScript module" in msg
    data = jittered_lattice(3, 3.5, seed=1).write(tmp_path / "beads.data")
    result = run_lammps(bead_script(plugin_path, path, data), tmp_path / "default")
    assert "backend torch" in result.output and "WARNING" in result.output
