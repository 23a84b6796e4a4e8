"""hipcg simulate: inputs a person can read, NVT/NPT runs, and the blow-up detector."""

import numpy as np
import pytest

from hipcg.models.lj import export_lennard_jones
from hipcg.simulate import (BlowUpError, SimulationConfig, fresh_box, read_trajectory,
                            run_simulation, write_inputs)

from lj_reference import CUTOFF, EPSILON, MASS, SIGMA


@pytest.fixture(scope="module")
def lj_model(tmp_path_factory, plugin_path):
    return export_lennard_jones(tmp_path_factory.mktemp("model") / "lj.pt", ["Ar"], [[EPSILON]],
                                [[SIGMA]], CUTOFF)


def config(model, **kw):
    base = dict(model=str(model), temperature=100.0, steps=200, timestep=5.0, dump_every=20,
                thermo_every=20, minimize_steps=50)
    return SimulationConfig(**{**base, **kw})


def test_inputs_are_readable_and_not_overwritten(lj_model, tmp_path):
    start = fresh_box(108, ["Ar"], [MASS], 1.35, seed=3)
    path = write_inputs(config(lj_model, ensemble="npt", thermostat="nose-hoover"), start, tmp_path / "run")
    text = path.read_text()
    for line in ("units real", "plugin load", "pair_style hipcg", f"pair_coeff * * {lj_model} Ar",
                 "fix integrate all npt temp 100.0 100.0 100.0 iso 1.0 1.0 1000.0", "timestep 5.0",
                 "fix halt_close all halt", "dump traj all custom 20 traj.lammpstrj id type xu yu zu"):
        assert line in text
    assert (tmp_path / "run" / "data.lammps").read_text().count("\n") > 108
    with pytest.raises(FileExistsError):
        write_inputs(config(lj_model), start, tmp_path / "run")


@pytest.mark.parametrize("ensemble,thermostat", [("nvt", "langevin"), ("npt", "nose-hoover")])
def test_short_runs_complete(lj_model, tmp_path, ensemble, thermostat):
    start = fresh_box(108, ["Ar"], [MASS], 1.35, seed=3)
    res = run_simulation(config(lj_model, ensemble=ensemble, thermostat=thermostat), start, tmp_path)
    tr = res.trajectory
    assert tr.positions.shape == (11, 108, 3) and np.all(np.isfinite(tr.positions))
    assert 60 < tr.thermo["Temp"][-1] < 160
    vols = np.linalg.det(tr.boxes)
    assert (np.ptp(vols) > 1.0) == (ensemble == "npt")
    assert read_trajectory(tmp_path).positions.shape == tr.positions.shape


def test_blowup_detector_stops_a_run_started_with_overlapping_beads(lj_model, tmp_path):
    start = fresh_box(108, ["Ar"], [MASS], 1.35, seed=3)
    start.positions[5] = start.positions[17] + [0.4, 0.0, 0.0]
    with pytest.raises(BlowUpError) as err:
        run_simulation(config(lj_model), start, tmp_path)
    assert err.value.step == 0 and "0.400 Å apart" in err.value.reason
    assert '"blew_up"' in (tmp_path / "simulation.json").read_text()


def test_blowup_detector_fires_inside_lammps(lj_model, tmp_path):
    # a perfect lattice passes the start check; thermal motion then brings beads inside the floor
    start = fresh_box(216, ["Ar"], [MASS], 1.4, seed=1)
    n = 6
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    start.positions = (grid + 0.5) * start.box[0, 0] / n
    with pytest.raises(BlowUpError) as err:
        run_simulation(config(lj_model, min_distance=3.3, check_every=5, minimize_steps=0, steps=400,
                              temperature=120.0), start, tmp_path / "close")
    assert 0 < err.value.step < 400 and "closer than the distance floor" in err.value.reason
    # far too long a timestep: the temperature runs away (or goes NaN) within a few steps
    with pytest.raises(BlowUpError) as err:
        run_simulation(config(lj_model, timestep=100.0, minimize_steps=0), fresh_box(108, ["Ar"], [MASS], 1.6),
                       tmp_path / "hot")
    assert err.value.step < 200 and ("temperature" in err.value.reason or "LAMMPS" in err.value.reason)


def test_a_failed_run_can_be_retried_a_finished_one_is_kept(lj_model, tmp_path):
    """A run that blew up (or that LAMMPS stopped) leaves only hipcg's own files: the retry
    replaces them without --overwrite.  A finished run, or a folder with other files, is kept."""
    start = fresh_box(108, ["Ar"], [MASS], 1.35, seed=3)
    bad = fresh_box(108, ["Ar"], [MASS], 1.35, seed=3)
    bad.positions[5] = bad.positions[17] + [0.4, 0.0, 0.0]
    with pytest.raises(BlowUpError):
        run_simulation(config(lj_model), bad, tmp_path / "run")
    res = run_simulation(config(lj_model), start, tmp_path / "run")  # the retry: no flag needed
    assert res.trajectory.positions.shape == (11, 108, 3)
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_simulation(config(lj_model), start, tmp_path / "run")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("user file")
    (tmp_path / "mine" / "log.lammps").write_text("")
    with pytest.raises(FileExistsError):
        write_inputs(config(lj_model), start, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "user file"
