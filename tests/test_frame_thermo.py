"""Per-frame thermodynamics reach the CG dataset: pressure (and its tensor), volume and
energies of every mapped frame, in real units, matched to the frames by step and checked
against the frames' own boxes; a dataset without them says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hipcg.data import DatasetError, load_dataset
from hipcg.frame_thermo import read_lammps_log, read_reference_samples
from hipcg.mapping import MappingError, load_mapping, write_dataset
from hipcg.reference import ReferenceConfig, run_reference
from hipcg.trajectory import open_trajectory

REPO = Path(__file__).resolve().parent.parent
MAPPING = REPO / "datasets" / "mappings" / "methanol.yaml"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("thermo")
    cfg = ReferenceConfig(system="methanol", temperatures=[300.0], out=out, molecules=24,
                          equilibrate_ps=0.3, production_ps=0.3, every_fs=20.0, cutoff=6.0,
                          kspace_accuracy=1e-4, restart_every_ps=0.1, compress_ps=0.2,
                          settle_ps=0.1, progress=False)
    (result,) = run_reference(cfg)
    return result.directory


def test_reference_frames_carry_pressure_tensor_and_energies(reference, tmp_path):
    traj = open_trajectory(reference / "system.data", reference / "production.dump")
    assert traj.thermo is not None and traj.thermo.source.name == "nvt_samples.dat"
    write_dataset(traj, load_mapping(MAPPING), tmp_path / "cg.npz")
    ds = load_dataset(tmp_path / "cg.npz")
    assert sorted(ds.thermo) == ["kinetic_energy", "nonbonded_energy", "potential_energy", "pressure",
                                 "pressure_tensor", "temperature", "volume"]
    assert ds.thermo["pressure_tensor"].shape == (ds.n_frames, 3, 3)
    np.testing.assert_allclose(ds.thermo["volume"], np.abs(np.linalg.det(ds.boxes)), rtol=1e-7)
    # LAMMPS press is the trace of the pressure tensor / 3 (to the %.8g the file is written with)
    trace = np.trace(ds.thermo["pressure_tensor"], axis1=1, axis2=2) / 3
    np.testing.assert_allclose(trace, ds.thermo["pressure"], atol=1e-4 * np.abs(ds.thermo["pressure"]).max())
    np.testing.assert_allclose(ds.thermo["pressure_tensor"], np.swapaxes(ds.thermo["pressure_tensor"], 1, 2))
    # kinetic energy (kcal/mol) = dof/2 kB T, dof = 3N - 3 (this methanol model has no SHAKE):
    # a check that energies arrive in kcal/mol and the temperature in K
    n_dof = 3 * 24 * 6 - 3
    assert np.all(ds.thermo["potential_energy"] < 0)
    kt = 0.0019872043 * ds.thermo["temperature"]
    np.testing.assert_allclose(ds.thermo["kinetic_energy"], 0.5 * n_dof * kt, rtol=2e-5)
    # the bonded energy (pe - non-bonded) of flexible methanol: harmonic bonds and angles hold
    # kT/2 each on average (5 + 7 per molecule, equipartition), the torsion a little more;
    # after 0.3 ps they have not quite warmed up from the built geometry
    bonded = ds.thermo["potential_energy"] - ds.thermo["nonbonded_energy"]
    equipartition = 24 * 12 * 0.5 * float(np.mean(kt))
    assert 0.5 < np.mean(bonded) / equipartition < 1.5  # 1.10 in the default 100 ps runs; this one is short
    meta = ds.metadata["thermo"]
    assert meta["units"]["nonbonded_energy"] == "kcal/mol"
    assert meta["available"] and meta["units"]["pressure"] == "atm"
    assert meta["units"]["potential_energy"] == "kcal/mol"
    # the NPT phase prints energies too: the thermal expansion from volume-enthalpy fluctuations
    import json

    alpha = json.loads((reference / "metadata.json").read_text())["thermal_expansion_npt"]
    assert alpha is not None and np.isfinite(alpha)
    # the same values as the run's own samples at those steps
    samples = read_reference_samples(reference / "nvt_samples.dat")
    steps = np.arange(ds.n_frames) * 20
    rows = samples.rows(list(steps), list(range(ds.n_frames)))
    np.testing.assert_array_equal(rows["pressure"], ds.thermo["pressure"])


def test_a_log_without_every_dumped_step_is_refused(reference, tmp_path):
    """The log writes thermo every 100 steps, the dump every 20: frames would go unmatched."""
    log = next(reference.glob("log.nvt*.lammps"))
    thermo = read_lammps_log(log)
    assert "press" in thermo.columns
    traj = open_trajectory(reference / "system.data", reference / "production.dump", thermo=log)
    with pytest.raises(DataErrorLike, match=r"log.nvt.*: no entry at step 20 \(trajectory frame 1\)"):
        write_dataset(traj, load_mapping(MAPPING), tmp_path / "cg.npz")
    assert not (tmp_path / "cg.npz").exists()


def test_a_thermo_file_of_another_run_is_refused(reference, tmp_path):
    samples = (reference / "nvt_samples.dat").read_text().splitlines()
    other = tmp_path / "other_samples.dat"
    # same steps, another volume: the file belongs to a different run
    other.write_text("\n".join([samples[0]] + [" ".join([line.split()[0], "12345.0", *line.split()[2:]])
                                               for line in samples[1:]]) + "\n")
    traj = open_trajectory(reference / "system.data", reference / "production.dump", thermo=other)
    with pytest.raises(MappingError, match=r"other_samples.dat: volume 12345 .* differs from the "
                                           r"trajectory's box"):
        write_dataset(traj, load_mapping(MAPPING), tmp_path / "cg.npz")


def test_a_dataset_without_thermo_says_which_features_are_off(reference, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("system.data", "production.dump"):
        (plain / name).write_bytes((reference / name).read_bytes())
    traj = open_trajectory(plain / "system.data", plain / "production.dump")
    assert traj.thermo is None
    summary = write_dataset(traj, load_mapping(_named_mapping(tmp_path)), tmp_path / "cg.npz")
    assert not summary["thermo"]["available"]
    ds = load_dataset(tmp_path / "cg.npz")
    assert ds.thermo is None
    with pytest.raises(DatasetError, match=r"cg\.npz.*no per-frame 'pressure' \(key thermo_pressure; pressure "
                                           r"matching needs it\).*"
                                           r"pressure and energy matching are off"):
        ds.require_thermo("pressure", "pressure matching")


def _named_mapping(tmp_path: Path) -> Path:
    """Without the run's metadata.json the dump has no residue names: map by molecule id."""
    path = tmp_path / "by_molecule.yaml"
    path.write_text("molecules:\n  - {select: all, type: MeOH}\n")
    return path


DataErrorLike = (DatasetError, MappingError, ValueError)


def test_gromacs_energy_file_in_real_units():
    """A GROMACS .edr (pyedr's own test file): bar -> atm, kJ/mol -> kcal/mol, nm^3 -> Å^3,
    ps -> fs, matched by time."""
    import warnings

    import pyedr

    from hipcg.frame_thermo import read_thermo

    edr = Path(pyedr.__file__).parent / "tests" / "data" / "blocks.edr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyedr notes the file format version
        raw = pyedr.edr_to_dict(str(edr))
        thermo = read_thermo(edr)
    assert thermo.by == "time"
    np.testing.assert_allclose(thermo.clock, raw["Time"] * 1000.0)
    np.testing.assert_allclose(thermo.columns["press"], raw["Pressure"] / 1.01325)
    np.testing.assert_allclose(thermo.columns["pe"], raw["Potential"] / 4.184)
    np.testing.assert_allclose(thermo.columns["vol"], raw["Volume"] * 1000.0)
    rows = thermo.rows(list(thermo.clock[:3]), [0, 1, 2])
    assert rows["pressure_tensor"].shape == (3, 3, 3)
    np.testing.assert_allclose(rows["pressure_tensor"][:, 0, 0], raw["Pres-XX"][:3] / 1.01325)
