"""hipcg export: the model file equals hippynn's graph + prior, the plugin, ASE; CG MD RDF oracle."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import lj_fluid  # noqa: E402
from bead_systems import bead_script  # noqa: E402

from hipcg.cli import main  # noqa: E402
from hipcg.data import load_dataset  # noqa: E402
from hipcg.export import export_model, export_run  # noqa: E402
from hipcg.graph import evaluate, periodic_graph  # noqa: E402
from hipcg.lammps.data_file import write_lammps_data  # noqa: E402
from hipcg.lammps.dump import read_dump  # noqa: E402
from hipcg.lammps.runner import run_lammps  # noqa: E402
from hipcg.modelfile import load_model  # noqa: E402
from hipcg.models.cg import build_cg_model  # noqa: E402
from hipcg.models.hipnn import HipnnConfig  # noqa: E402
from hipcg.models.hippynn_graph import hippynn_energy_forces  # noqa: E402
from hipcg.prior import fit_prior  # noqa: E402
from hipcg.train import load_trained  # noqa: E402

TOL = {"float32": 1e-5, "float64": 1e-10}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "lj_shared"


@pytest.fixture(scope="module")
def run_dir(base):
    return lj_fluid.trained_run(base)


@pytest.fixture(scope="module")
def heldout(base):
    return load_dataset(lj_fluid.lj_dataset(base, seed=777, frames=20, name="lj_b"))


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    paths = {"float64": export_run(run_dir, out / "lj64.pt", dtype="float64")}
    assert main(["export", str(run_dir), "-o", str(out / "lj32.pt"), "--dtype", "float32"]) == 0
    paths["float32"] = out / "lj32.pt"
    return paths


def reference_energy_forces(model, frames, dtype):
    """hippynn's own graph (pair finder, HEnergy, autograd forces) + the prior on our graph."""
    model = model.to(dtype)
    e, f = hippynn_energy_forces(model.network, frames.positions, frames.boxes, frames.bead_types)
    energies, forces = [], []
    for k in range(len(frames.positions)):
        graph = periodic_graph(frames.positions[k], frames.boxes[k], frames.bead_types, model.network.network.dist_hard_max)
        p = evaluate(model.prior, graph, dtype=dtype) if model.prior is not None else None
        energies.append(float(e[k]) + (p.energy if p else 0.0))
        forces.append(f[k].double().numpy() + (p.forces if p else 0.0))
    return np.array(energies), np.array(forces)


def check_file_against(path, model, frames, cutoff):
    module, meta = load_model(path)
    e_ref, f_ref = reference_energy_forces(model, frames, meta.torch_dtype)
    tol = TOL[meta.dtype]
    for k in range(len(frames.positions)):
        res = evaluate(module, periodic_graph(frames.positions[k], frames.boxes[k], frames.bead_types, cutoff),
                       dtype=meta.torch_dtype)
        assert abs(res.energy - e_ref[k]) <= tol * abs(e_ref[k]), (meta.dtype, res.energy, e_ref[k])
        assert np.abs(res.forces - f_ref[k]).max() <= tol * np.abs(f_ref[k]).max(), meta.dtype


class Frames:
    def __init__(self, ds, idx, bead_types=None):
        self.positions = ds.positions[idx]
        self.boxes = ds.boxes[idx]
        self.bead_types = ds.bead_types if bead_types is None else bead_types


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_exported_equals_hippynn_graph_on_heldout_frames(run_dir, exported, heldout, dtype):
    model, record = load_trained(run_dir, torch.float64)
    frames = Frames(heldout, [0, 10, 19])
    check_file_against(exported[dtype], model, frames, record["model_config"]["cutoff"])


def test_hipnn_quad_with_prior_two_types_equals_hippynn_graph(heldout, tmp_path):
    """HIP-NN-TS (l=2, pair-vector sign matters) + a two-type prior, both precisions."""
    types = np.arange(heldout.n_beads) % 2
    ds = heldout
    two = type(ds)(positions=ds.positions[:4], forces=ds.forces[:4], boxes=ds.boxes[:4], bead_types=types,
                   type_names=["A", "B"], masses=ds.masses)
    config = HipnnConfig(network="HipnnQuad", n_features=12, n_sensitivities=6, dist_soft_min=2.5,
                         dist_soft_max=6.0, cutoff=7.0, n_interaction_layers=1, n_atom_layers=2)
    torch.manual_seed(2)
    model = build_cg_model(config, 2, fit_prior([two], two.type_names)).double()
    for dtype in ("float64", "float32"):
        path = export_model(model, tmp_path / f"quad_{dtype}.pt", ["A", "B"], config, dtype=dtype)
        check_file_against(path, model.double(), Frames(two, [0, 3]), config.cutoff)
        model = model.double()


def test_metadata(exported):
    for dtype, path in exported.items():
        _, meta = load_model(path)
        assert meta.dtype == dtype and meta.units == "real" and meta.type_names == ["Ar"]
        assert meta.cutoff == lj_fluid.CUTOFF and meta.n_interaction_layers == 1
        assert meta.model == "hipnn:Hipnn+prior"
        info = meta.info
        assert [sp["name"] for sp in info["trained_on"]] == ["lj120"]
        assert [sp["name"] for sp in info["held_out"]] == ["lj120-b"]
        assert set(info["versions"]) >= {"hipcg", "hippynn", "torch"}
        (pair,) = info["prior"]["pairs"]
        assert set(pair) == {"types", "t", "p", "s", "dr"}
        assert info["hyperparameters"]["n_features"] == 16
        assert info["metrics"]["lj120"]["test"]["r2"] >= 0.99


def test_export_cli_messages(run_dir, exported, tmp_path, capsys):
    assert main(["export", str(run_dir), "-o", str(tmp_path / "m.pt")]) == 0
    assert "pair_coeff * * " in capsys.readouterr().out
    assert main(["export", str(run_dir), "-o", str(exported["float64"])]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["export", str(run_dir.parent / "nope"), "-o", str(tmp_path / "x.pt")]) == 2
    assert "finished `hipcg train` run" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_plugin_equals_python(plugin_path, exported, heldout, tmp_path, dtype):
    pos, box = heldout.positions[5], heldout.boxes[5]
    data = write_lammps_data(tmp_path / "beads.data", pos, heldout.bead_types + 1, [lj_fluid.MASS], box)
    run = run_lammps(bead_script(plugin_path, exported[dtype], data, type_names="Ar"), tmp_path)
    module, meta = load_model(exported[dtype])
    ref = evaluate(module, periodic_graph(pos, box, heldout.bead_types, meta.cutoff), dtype=meta.torch_dtype)
    # float32: the plugin forms pair vectors from LAMMPS's (re-wrapped) float64 coordinates
    tol = 1e-10 if dtype == "float64" else 1e-5
    assert abs(run.thermo[-1]["PotEng"][0] - ref.energy) <= tol * abs(ref.energy)
    (frame,) = read_dump(tmp_path / "forces.dump")
    forces = np.stack([frame["fx"], frame["fy"], frame["fz"]], 1)
    assert np.abs(forces - ref.forces).max() <= tol * np.abs(ref.forces).max()


def test_ase_calculator(exported, heldout):
    from ase import Atoms

    from hipcg.calculator import KCAL_PER_MOL, HipcgCalculator

    assert abs(KCAL_PER_MOL - 0.0433641) < 1e-6
    atoms = Atoms("Ar" * heldout.n_beads, positions=heldout.positions[2], cell=heldout.boxes[2], pbc=True)
    atoms.calc = HipcgCalculator(exported["float64"])
    module, meta = load_model(exported["float64"])
    ref = evaluate(module, periodic_graph(atoms.positions, atoms.cell.array, heldout.bead_types, meta.cutoff))
    assert abs(atoms.get_potential_energy() - ref.energy * KCAL_PER_MOL) < 1e-12 * abs(ref.energy)
    np.testing.assert_allclose(atoms.get_forces(), ref.forces * KCAL_PER_MOL, rtol=0, atol=1e-12)
    # forces = -dE/dx by finite differences (eV, Å)
    h, i = 1e-4, 7
    e = []
    for sign in (1, -1):
        a = atoms.copy()
        a.calc = atoms.calc
        a.positions[i, 1] += sign * h
        e.append(a.get_potential_energy())
    assert abs(-(e[0] - e[1]) / (2 * h) - atoms.get_forces()[i, 1]) < 1e-6
    # stress = dE/d(strain) / V (ASE sign), by finite differences of a homogeneous strain
    stress = atoms.get_stress(voigt=False)
    eps = 1e-5
    e = []
    for sign in (1, -1):
        a = atoms.copy()
        a.calc = atoms.calc
        strain = np.eye(3)
        strain[0, 1] = strain[1, 0] = sign * eps / 2
        a.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        e.append(a.get_potential_energy())
    assert abs((e[0] - e[1]) / (2 * eps) / atoms.get_volume() - stress[0, 1]) < 1e-6 * np.abs(stress).max()
    with pytest.raises(ValueError, match="not in the model's types"):
        Atoms("Ne2", positions=[[0, 0, 0], [3, 0, 0]], cell=[20] * 3, pbc=True, calculator=atoms.calc).get_potential_energy()


def test_cg_md_rdf_matches_lj_cut(exported, base, tmp_path):
    """The oracle end to end: CG MD in LAMMPS with the trained model reproduces lj/cut's RDF."""
    from hipcg.analysis import RDF_ERROR_TOLERANCE, rdf, rdf_error, rdf_range
    from hipcg.simulate import SimulationConfig, StartStructure, run_simulation

    ref = load_dataset(lj_fluid.lj_dataset(base, frames=100))
    config = SimulationConfig(model=str(exported["float32"]), temperature=lj_fluid.TEMPERATURE,
                              thermostat="nose-hoover", steps=3000, equilibration=0.2, dump_every=25,
                              thermo_every=500, timestep=2.0, seed=99)
    result = run_simulation(config, StartStructure.from_dataset(ref, 0), tmp_path / "cg")
    traj = result.trajectory
    keep = slice(int(0.2 * len(traj.positions)), None)
    r_max = rdf_range(ref.boxes, lj_fluid.CUTOFF)
    g_ref = rdf(ref.positions, ref.boxes, ref.bead_types, 0, 0, r_max)
    g_cg = rdf(traj.positions[keep], traj.boxes[keep], traj.bead_types, 0, 0, r_max)
    error = rdf_error(g_cg, g_ref)
    print(f"RDF error CG vs lj/cut: {error:.4f} (tolerance {RDF_ERROR_TOLERANCE}), "
          f"{result.steps_per_s:.0f} steps/s")
    assert error < RDF_ERROR_TOLERANCE
