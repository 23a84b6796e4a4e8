"""pair_style hipcg with the Lennard-Jones model file against LAMMPS's own lj/cut."""

from __future__ import annotations

import numpy as np
import pytest

from hipcg.lammps.dump import read_dump
from hipcg.lammps.runner import run_lammps
from hipcg.models.lj import export_lennard_jones
from hipcg.lammps.selfcheck import LJSystem, check_plugin


@pytest.mark.parametrize("nprocs", [1, 2])
def test_lj_model_equals_lj_cut_over_nve_run(plugin_path, tmp_path, nprocs):
    system = LJSystem(cells=4, steps=120, dump_every=40)  # 256 atoms
    passed, cmp = check_plugin(workdir=tmp_path, system=system, nprocs=nprocs, plugin=plugin_path)
    assert cmp.steps == 120
    assert cmp.energy < 1e-10 and cmp.forces < 1e-10 and cmp.pressure < 1e-10
    assert cmp.per_atom_energy < 1e-10
    assert passed
    # the comparison is not vacuous: the system moved and has forces and pressure
    frames = read_dump(tmp_path / "hipcg" / "forces.dump")
    assert len(frames) == 4
    assert np.abs(frames[-1]["fx"]).max() > 0.1
    assert not np.allclose(frames[0]["fx"], frames[-1]["fx"])


def test_check_detects_a_wrong_model(plugin_path, tmp_path):
    """The oracle comparison can fail: a model 1% off in epsilon is caught."""
    from hipcg.lammps import selfcheck

    system = LJSystem(cells=3, steps=5, dump_every=5)
    model = export_lennard_jones(tmp_path / "bad.pt", ["Ar"], [[selfcheck.EPSILON * 1.01]],
                                 [[selfcheck.SIGMA]], selfcheck.CUTOFF)
    ref = run_lammps(selfcheck.lj_script(system, selfcheck.lj_cut_pair_lines()), tmp_path / "ref")
    test = run_lammps(selfcheck.lj_script(system, selfcheck.hipcg_pair_lines(plugin_path, model, "Ar")),
                      tmp_path / "test")
    cmp = selfcheck.compare_runs(tmp_path / "test", tmp_path / "ref", test.thermo[-1], ref.thermo[-1])
    assert cmp.energy == pytest.approx(0.01, rel=0.05)
    assert cmp.worst > 1e-3


def test_two_types_mapped_by_name(plugin_path, tmp_path):
    """LAMMPS types map to model types by name, in any order; mixed pairs use their own eps/sigma."""
    eps = np.array([[0.238, 0.15], [0.15, 0.10]])
    sig = np.array([[3.405, 3.2], [3.2, 3.0]])
    # model type order (B, A) is the reverse of the LAMMPS type order (1=A, 2=B)
    model = export_lennard_jones(tmp_path / "lj2.pt", ["B", "A"], eps[::-1, ::-1], sig[::-1, ::-1], 8.0)
    common = """units real
atom_style atomic
lattice fcc 5.6
region box block 0 4 0 4 0 4
create_box 2 box
create_atoms 1 box
set type 1 type/fraction 2 0.4 2971
mass * 39.948
velocity all create 100 1234 loop geom
displace_atoms all random 0.2 0.2 0.2 77 units box
{pair}
thermo_style custom step pe press
thermo_modify format float %.17g
dump d all custom 10 f.dump id fx fy fz
dump_modify d sort id format float %.17g
fix nve all nve
timestep 2
run 20
"""
    ref_pair = (f"pair_style lj/cut 8.0\npair_coeff 1 1 {eps[0,0]} {sig[0,0]}\n"
                f"pair_coeff 1 2 {eps[0,1]} {sig[0,1]}\npair_coeff 2 2 {eps[1,1]} {sig[1,1]}")
    test_pair = f"plugin load {plugin_path}\npair_style hipcg\npair_coeff * * {model} A B"
    ref = run_lammps(common.format(pair=ref_pair), tmp_path / "ref").thermo[-1]
    test = run_lammps(common.format(pair=test_pair), tmp_path / "test").thermo[-1]
    np.testing.assert_allclose(test["PotEng"], ref["PotEng"], rtol=1e-10)
    np.testing.assert_allclose(test["Press"], ref["Press"], rtol=1e-10, atol=1e-9)
    for a, b in zip(read_dump(tmp_path / "test" / "f.dump"), read_dump(tmp_path / "ref" / "f.dump")):
        np.testing.assert_allclose(a["fx"], b["fx"], rtol=1e-10, atol=1e-11)


def test_plugin_auto_loads_from_lammps_plugin_path(plugin_path, tmp_path):
    """LAMMPS_PLUGIN_PATH instead of `plugin load`: same result as lj/cut."""
    from hipcg.lammps import selfcheck

    system = LJSystem(cells=3, steps=10, dump_every=10)
    model = export_lennard_jones(tmp_path / "lj.pt", ["Ar"], [[selfcheck.EPSILON]], [[selfcheck.SIGMA]],
                                 selfcheck.CUTOFF)
    pair = f"pair_style hipcg\npair_coeff * * {model} Ar"
    ours = run_lammps(selfcheck.lj_script(system, pair), tmp_path / "auto",
                      env={"LAMMPS_PLUGIN_PATH": str(plugin_path.parent)})
    assert f"Loaded 1 plugins from {plugin_path.parent}" in ours.output
    ref = run_lammps(selfcheck.lj_script(system, selfcheck.lj_cut_pair_lines()), tmp_path / "ref")
    np.testing.assert_allclose(ours.thermo[-1]["PotEng"], ref.thermo[-1]["PotEng"], rtol=1e-10)


def test_check_plugin_command_pass_and_fail(plugin_path, tmp_path):
    """`hipcg check-plugin` prints the differences and PASS (exit 0) or FAIL (exit 1)."""
    import subprocess
    import sys

    base = [sys.executable, "-m", "hipcg.cli", "check-plugin", "--cells", "3", "--steps", "10"]
    ok = subprocess.run(base, capture_output=True, text=True)
    assert ok.returncode == 0 and "PASS" in ok.stdout and "forces" in ok.stdout
    # a tolerance below rounding error cannot be met: the self-check must say FAIL
    strict = subprocess.run(base + ["--tolerance", "1e-30"], capture_output=True, text=True)
    assert strict.returncode == 1 and "FAIL" in strict.stdout
