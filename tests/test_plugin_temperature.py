"""pair_style hipcg with temperature-aware models (W = E - T S): the `temperature` keyword.

Real LAMMPS through the built plugin: energies, per-bead energies and forces of both backends
at two temperatures against hipcg.graph.evaluate of the loaded model after set_temperature and
against the eager model's two heads (e_i - (T / T_ref) s_i); a temperature changed by
re-issuing pair_style between runs; 1 rank vs 2 ranks; the keyword's errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bead_systems import bead_script, jittered_lattice, small_hipnn
from hipcg.export import export_model
from hipcg.graph import evaluate, periodic_graph
from hipcg.lammps.dump import read_dump
from hipcg.lammps.runner import LammpsError, run_lammps
from hipcg.modelfile import load_model
from hipcg.models.cg import build_cg_model
from hipcg.models.hipnn import HipnnConfig, set_temperature
from hipcg.prior import RepulsivePrior

CUTOFF = 5.0
T_REF = 300.0
T1, T2 = 250.0, 450.0    # neither is T_ref: the entropy head's scale T / T_ref really enters
TOL = 1e-10              # float64


def aware_model(tmp, dtype="float64", seed=11):
    """A temperature-aware HIP-NN-TS CGModel with a prior, two bead types, random heads."""
    config = HipnnConfig(network="HipnnQuad", n_features=10, n_sensitivities=5, dist_soft_min=1.5,
                         dist_soft_max=CUTOFF - 1.0, cutoff=CUTOFF, n_interaction_layers=1,
                         n_atom_layers=2)
    torch.manual_seed(seed)
    prior = RepulsivePrior(2, [[2.6, 2.4], [2.4, 2.2]], 0.01, [[5.0, 6.0], [6.0, 8.0]], 0.5)
    model = build_cg_model(config, 2, prior, reference_temperature=T_REF)
    with torch.no_grad():    # entropy term of the same size as the energy head's
        for layer in model.network.entropy_head.layers:
            layer.weight.normal_(0.0, 0.5)
            if layer.bias is not None:
                layer.bias.normal_(0.0, 0.5)
    path = export_model(model, tmp / f"aware_{dtype}.pt", ["A", "B"], config, dtype=dtype,
                        overwrite=True)
    return path, model


def forces_of(frame):
    return np.stack([frame["fx"], frame["fy"], frame["fz"]], axis=1)


def relative(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


def run_two_temperatures(plugin, model, box, workdir, backend, nprocs=1, temperatures=(T1, T2)):
    """run 0 at temperatures[0], then pair_style re-issued at each further temperature and run 0
    again (pair_coeff kept); one result dict per temperature."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = box.write(workdir / "beads.data")
    lines = ["run 0"]
    for k, t in enumerate(temperatures[1:], start=1):
        lines += [f"pair_style hipcg backend {backend} temperature {t}", "undump forces" if k == 1
                  else f"undump f{k - 1}", f"dump f{k} all custom 1 forces{k}.dump id type fx fy fz c_pea",
                  f"dump_modify f{k} sort id format float %.17g", "run 0"]
    result = run_lammps(bead_script(plugin, model, data, run="\n".join(lines),
                                    style_args=f"backend {backend} temperature {temperatures[0]}"),
                        workdir, nprocs=nprocs)
    log = (workdir / "log.lammps").read_text()
    out = []
    for k, t in enumerate(temperatures):
        frame = read_dump(workdir / ("forces.dump" if k == 0 else f"forces{k}.dump"))[-1]
        out.append({"T": t, "energy": result.thermo[k]["PotEng"][0],
                    "pe_atom": np.asarray(frame["c_pea"]), "forces": forces_of(frame)})
    return log, out


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    root = tmp_path_factory.mktemp("taware")
    path, eager = aware_model(root)
    box = jittered_lattice(5, 2.6, seed=3, tilt=(1.0, -0.5, 0.7))    # 125 beads, triclinic
    graph = periodic_graph(box.positions, box.cell, box.species, CUTOFF)
    return {"root": root, "path": path, "eager": eager, "box": box, "graph": graph}


@pytest.fixture(scope="module")
def serial(plugin_path, system):
    return {backend: run_two_temperatures(plugin_path, system["path"], system["box"],
                                          system["root"] / f"serial_{backend}", backend)
            for backend in ("native", "torch")}


def reference(system, temperature):
    module, meta = load_model(system["path"])
    assert meta.temperature_aware and meta.reference_temperature == T_REF
    assert meta.model.endswith("+temperature")
    set_temperature(module, temperature)
    return evaluate(module, system["graph"], dtype=meta.torch_dtype)


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_energy_and_forces_equal_python_at_two_temperatures(serial, system, backend):
    log, runs = serial[backend]
    assert f"pair hipcg: backend {backend}" in log
    assert "WARNING: pair_style hipcg" not in log
    for run in runs:
        assert f"pair hipcg: temperature-aware model, T = {run['T']:g} K (T_ref = {T_REF:g} K)" in log
        ref = reference(system, run["T"])
        assert abs(ref.energy) > 1e-3 and np.abs(ref.forces).max() > 1e-3
        assert relative(run["energy"], ref.energy) < TOL
        assert relative(run["pe_atom"], ref.node_energies) < TOL
        assert relative(run["forces"], ref.forces) < TOL


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_energy_is_linear_in_temperature(serial, system, backend):
    """LAMMPS's W(T) = sum_i e_i - (T / T_ref) s_i with (e, s) the eager model's two heads."""
    g = system["graph"]
    inputs = (torch.as_tensor(g.species), torch.as_tensor(g.pair_first),
              torch.as_tensor(g.pair_second), torch.as_tensor(g.pair_vec, dtype=torch.float64))
    with torch.no_grad():
        e, s = system["eager"].energy_entropy(*inputs)
    e_sum, s_sum = float(e.sum()), float(s.sum())
    assert abs(s_sum) > 0.05 * abs(e_sum)    # the entropy term is not negligible
    _, runs = serial[backend]
    for run in runs:
        expected = e_sum - run["T"] / T_REF * s_sum
        assert relative(run["energy"], expected) < TOL
        per_bead = e.numpy() - run["T"] / T_REF * s.numpy()
        assert relative(run["pe_atom"], per_bead) < TOL


def test_reissued_temperature_takes_effect(plugin_path, serial, system):
    """pair_style re-issued between runs: the second run is the fresh run at that temperature,
    and it differs from the first; back to T1 gives the first run again."""
    log, runs = run_two_temperatures(plugin_path, system["path"], system["box"],
                                     system["root"] / "reissue", "native",
                                     temperatures=(T2, T1, T2))
    _, (at_t1, at_t2) = serial["native"]
    assert relative(at_t1["energy"], at_t2["energy"]) > 1e-3
    assert relative(at_t1["forces"], at_t2["forces"]) > 1e-3
    assert relative(runs[0]["energy"], at_t2["energy"]) < TOL    # fresh at T2
    assert relative(runs[0]["forces"], at_t2["forces"]) < TOL
    assert relative(runs[1]["energy"], at_t1["energy"]) < TOL    # re-issued at T1
    assert relative(runs[1]["forces"], at_t1["forces"]) < TOL
    assert relative(runs[2]["energy"], at_t2["energy"]) < TOL    # and back at T2
    assert relative(runs[2]["forces"], at_t2["forces"]) < TOL
    assert log.count("pair hipcg: backend native") == 3    # rebuilt (and self-checked) each time


def test_two_ranks_equal_one_rank(plugin_path, serial, system):
    log, runs = run_two_temperatures(plugin_path, system["path"], system["box"],
                                     system["root"] / "np2", "torch", nprocs=2)
    assert any(f"{p} by {q} by {r}" in log for p, q, r in ((2, 1, 1), (1, 2, 1), (1, 1, 2)))
    _, one_rank = serial["torch"]
    for parallel, single in zip(runs, one_rank):
        assert relative(parallel["energy"], single["energy"]) < TOL
        assert relative(parallel["pe_atom"], single["pe_atom"]) < TOL
        assert relative(parallel["forces"], single["forces"]) < TOL


# ------------------------------------------------------------------------------------ errors

def lammps_error(plugin, model, workdir, style_args="", run="run 0") -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    data = jittered_lattice(3, 3.5, seed=1).write(workdir / "beads.data")
    with pytest.raises(LammpsError) as err:
        run_lammps(bead_script(plugin, model, data, style_args=style_args, run=run), workdir,
                   timeout=120)
    assert "Segmentation" not in err.value.output and "signal" not in err.value.output.lower()
    return err.value.message


def test_aware_model_without_temperature_is_an_error(plugin_path, system, tmp_path):
    msg = lammps_error(plugin_path, system["path"], tmp_path)
    assert "is temperature-aware" in msg and str(system["path"]) in msg
    assert "add 'temperature T'" in msg and "pair_style" in msg


def test_temperature_for_a_plain_model_is_an_error(plugin_path, tmp_path):
    plain, _, _ = small_hipnn(tmp_path, n_layers=1, seed=2)
    msg = lammps_error(plugin_path, plain, tmp_path / "load", style_args="temperature 300")
    assert "is not temperature-aware" in msg and str(plain) in msg
    # also when pair_style is re-issued with a temperature after the plain model is loaded
    msg = lammps_error(plugin_path, plain, tmp_path / "reissue",
                       run="run 0\npair_style hipcg temperature 300\nrun 0")
    assert "is not temperature-aware" in msg and str(plain) in msg


@pytest.mark.parametrize("value", ["0", "-300"])
def test_temperature_must_be_positive(plugin_path, system, tmp_path, value):
    msg = lammps_error(plugin_path, system["path"], tmp_path, style_args=f"temperature {value}")
    assert f"temperature must be > 0 K (finite), not {value}" in msg
