"""The trajectory reader on files written by LAMMPS itself, MDAnalysis (TRR) and ASE (extxyz)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hipcg.lammps.dump import read_dump
from hipcg.lammps.runner import run_lammps
from hipcg.systems import load_system
from hipcg.trajectory import KJ_PER_KCAL, TrajectoryError, open_trajectory

N_MOL = 20


@pytest.fixture(scope="module")
def lammps_files(tmp_path_factory):
    """Methanol box run by LAMMPS: data file, orthorhombic and triclinic dumps with forces,
    and a dump without forces; plus a data file of a smaller system."""
    d = tmp_path_factory.mktemp("lmp")
    s = load_system("methanol")
    (d / "molecule.txt").write_text(s.molecule_file())
    L = s.box_length(N_MOL, 0.5)
    small = s.box_length(N_MOL - 2, 0.5)
    script = "\n".join(
        ["units real", "atom_style full", "boundary p p p",
         f"region box block 0 {L} 0 {L} 0 {L}", f"create_box 4 box {s.create_box_args()}"]
        + s.force_field_commands(6.0, 1e-4)
        + ["molecule mol molecule.txt",
           f"create_atoms 0 random {N_MOL} 4242 NULL mol mol 99 overlap 2.0 maxtry 500",
           "minimize 1e-3 1e-5 200 2000", "reset_timestep 0",
           "velocity all create 300 7 mom yes rot yes", "fix md all nvt temp 300 300 100",
           "timestep 1.0", "write_data system.data nocoeff",
           "dump f all custom 10 forces.dump id mol type x y z vx vy vz fx fy fz",
           "dump_modify f sort id format float %.10g",
           "dump n all custom 10 noforce.dump id mol type x y z",
           "run 30", "undump f", "undump n",
           "change_box all triclinic", "change_box all xy final 2.5 xz final -1.0 yz final 0.5 remap",
           "kspace_style pppm 1e-4",
           "dump t all custom 10 tri.dump id mol type x y z fx fy fz",
           "dump_modify t sort id format float %.10g",
           "run 10", "undump t"])
    # the smaller system: its data file cannot pair with the 20-molecule dumps
    script += "\n" + "\n".join([
        "clear", "units real", "atom_style full", "boundary p p p",
        f"region box block 0 {small} 0 {small} 0 {small}",
        f"create_box 4 box {s.create_box_args()}"] + s.force_field_commands(6.0, 1e-4) + [
        "molecule mol molecule.txt",
        f"create_atoms 0 random {N_MOL - 2} 4242 NULL mol mol 99 overlap 2.0 maxtry 500",
        "write_data small.data nocoeff"]) + "\n"
    run_lammps(script, d)
    return d


def test_lammps_data_and_dump(lammps_files):
    d = lammps_files
    traj = open_trajectory(d / "system.data", d / "forces.dump")
    ref = read_dump(d / "forces.dump")
    frames = list(traj.frames())
    assert len(traj) == len(frames) == len(ref) == 4
    s = load_system("methanol")
    for fr, rf in zip(frames, ref):
        assert fr.step == rf["timestep"]
        assert fr.n_atoms == N_MOL * 6
        # real units: forces kcal/(mol Å) and velocities Å/fs as LAMMPS wrote them (float32)
        np.testing.assert_allclose(fr.forces, np.c_[rf["fx"], rf["fy"], rf["fz"]], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(fr.velocities, np.c_[rf["vx"], rf["vy"], rf["vz"]], rtol=1e-5, atol=1e-8)
        assert fr.box.shape == (3, 3) and np.allclose(fr.box, np.diag(np.diag(fr.box)))
    fr = frames[0]
    masses = [s.atom_types[a.type]["mass"] for a in s.atoms] * N_MOL
    np.testing.assert_allclose(fr.masses, masses, rtol=1e-6)
    assert list(fr.resids[:7]) == [1] * 6 + [2]
    assert list(fr.types[:6]) == ["1", "2", "3", "4", "4", "4"]
    assert fr.time is None            # a bare dump has steps, not times
    # the Universe is usable directly (the mapping builds on it)
    assert len(traj.universe.residues) == N_MOL and len(traj.universe.bonds) == 5 * N_MOL


def test_metadata_supplies_names_and_times(lammps_files, tmp_path):
    d = tmp_path
    for name in ("system.data", "forces.dump"):
        shutil.copy(lammps_files / name, d / name)
    s = load_system("methanol")
    (d / "metadata.json").write_text(json.dumps({"system": s.summary(), "timestep_fs": 1.0}))
    fr = next(open_trajectory(d / "system.data", d / "forces.dump").frames(start=1))
    assert list(fr.names[:6]) == ["C", "O", "HO", "H1", "H2", "H3"]
    assert fr.resnames[0] == "MOH" and fr.time == 10.0


def test_triclinic_box(lammps_files):
    d = lammps_files
    frames = list(open_trajectory(d / "system.data", d / "tri.dump").frames())
    ref = read_dump(d / "tri.dump")
    assert len(frames) == 2
    box = frames[-1].box
    assert box[1, 0] == pytest.approx(2.5, abs=1e-4)     # xy
    assert box[2, 0] == pytest.approx(-1.0, abs=1e-4)    # xz
    assert box[2, 1] == pytest.approx(0.5, abs=1e-4)     # yz
    assert np.allclose(box[0, 1:], 0) and box[1, 2] == 0
    np.testing.assert_allclose(frames[-1].forces, np.c_[ref[-1]["fx"], ref[-1]["fy"], ref[-1]["fz"]],
                               rtol=1e-5, atol=1e-4)
    assert frames[-1].dimensions[3:].tolist() != [90.0, 90.0, 90.0]


def test_gromacs_gro_trr_units(lammps_files, tmp_path):
    """A TRR written by MDAnalysis (nm, kJ/mol/nm on disk) reads back in real units."""
    import MDAnalysis as mda
    from MDAnalysis.coordinates.memory import MemoryReader

    src = list(open_trajectory(lammps_files / "system.data", lammps_files / "forces.dump").frames())
    n = src[0].n_atoms
    u = mda.Universe.empty(n, n_residues=N_MOL, atom_resindex=np.repeat(np.arange(N_MOL), 6),
                           trajectory=False)
    names = ["C", "O", "HO", "H1", "H2", "H3"] * N_MOL
    u.add_TopologyAttr("names", names)
    u.add_TopologyAttr("resnames", ["MOH"] * N_MOL)
    u.add_TopologyAttr("resids", np.arange(1, N_MOL + 1))
    # MDAnalysis' own units in memory: Å, Å/ps, kJ/(mol Å)
    u.load_new(np.array([f.positions for f in src], dtype=np.float32), format=MemoryReader,
               forces=np.array([f.forces * KJ_PER_KCAL for f in src], dtype=np.float32),
               velocities=np.array([f.velocities * 1000.0 for f in src], dtype=np.float32),
               dimensions=np.array([f.dimensions for f in src], dtype=np.float32))
    u.atoms.write(tmp_path / "conf.gro")
    with mda.Writer(str(tmp_path / "traj.trr"), n) as w:
        for _ in u.trajectory:
            w.write(u.atoms)
    frames = list(open_trajectory(tmp_path / "conf.gro", tmp_path / "traj.trr").frames())
    assert len(frames) == len(src)
    for a, b in zip(frames, src):
        np.testing.assert_allclose(a.forces, b.forces, rtol=1e-4, atol=2e-3)       # kcal/(mol Å)
        np.testing.assert_allclose(a.velocities, b.velocities, rtol=1e-4, atol=1e-7)  # Å/fs
        np.testing.assert_allclose(a.positions, b.positions, atol=2e-3)           # Å (gro/trr precision)
        np.testing.assert_allclose(a.dimensions[:3], b.dimensions[:3], rtol=1e-5)
    assert list(frames[0].names[:3]) == ["C", "O", "HO"] and frames[0].resids[6] == 2
    assert frames[0].masses[0] == pytest.approx(12.011, abs=0.01)   # guessed from names


def test_extxyz_units(lammps_files, tmp_path):
    import ase
    import ase.io
    import ase.units
    from ase.calculators.singlepoint import SinglePointCalculator

    src = list(open_trajectory(lammps_files / "system.data", lammps_files / "forces.dump").frames())
    ev_per_kcal_mol = ase.units.kcal / ase.units.mol
    images = []
    for f in src:
        atoms = ase.Atoms(symbols=["C", "O", "H", "H", "H", "H"] * N_MOL, positions=f.positions,
                          cell=f.box, pbc=True)
        atoms.set_velocities(f.velocities / ase.units.fs)
        atoms.arrays["mol-id"] = f.resids
        atoms.calc = SinglePointCalculator(atoms, forces=f.forces * ev_per_kcal_mol)
        images.append(atoms)
    ase.io.write(tmp_path / "t.extxyz", images, format="extxyz")
    traj = open_trajectory(tmp_path / "t.extxyz")
    frames = list(traj.frames())
    assert len(frames) == 4
    for a, b in zip(frames, src):
        np.testing.assert_allclose(a.forces, b.forces, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(a.velocities, b.velocities, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(a.box, b.box, atol=1e-4)
    assert frames[0].resids[6] == 2 and frames[0].names[0] == "C"
    assert frames[0].masses[0] == pytest.approx(12.011, abs=0.01)

    # mapping an opened trajectory uses its units (eV/Å here), not the in-memory reader's
    from hipcg.data import load_dataset
    from hipcg.mapping import parse_mapping, write_dataset

    write_dataset(traj, parse_mapping({"molecules": {"MOL": "MeOH"}}), tmp_path / "cg.npz")
    ds = load_dataset(tmp_path / "cg.npz")
    bead_forces = np.array([f.forces.reshape(N_MOL, 6, 3).sum(axis=1) for f in src])
    np.testing.assert_allclose(ds.forces, bead_forces, rtol=1e-4, atol=1e-3)  # kcal/(mol Å)


def test_missing_forces_is_an_error(lammps_files, tmp_path):
    d = lammps_files
    with pytest.raises(TrajectoryError, match=r"noforce\.dump.*no forces"):
        open_trajectory(d / "system.data", d / "noforce.dump")
    import ase
    import ase.io
    ase.io.write(tmp_path / "nf.extxyz", ase.Atoms("H2O", positions=np.eye(3)), format="extxyz")
    with pytest.raises(TrajectoryError, match=r"nf\.extxyz: frame 0: no forces"):
        open_trajectory(tmp_path / "nf.extxyz")


def test_nonfinite_forces_name_file_frame_atom(lammps_files, tmp_path):
    text = (lammps_files / "forces.dump").read_text().splitlines(keepends=True)
    # frame 2, atom id 5: last column (fz) becomes nan
    starts = [k for k, line in enumerate(text) if line.startswith("ITEM: TIMESTEP")]
    k = starts[2] + 9 + 4
    cols = text[k].split()
    assert cols[0] == "5"
    cols[-1] = "nan"
    text[k] = " ".join(cols) + "\n"
    bad = tmp_path / "bad.dump"
    bad.write_text("".join(text))
    traj = open_trajectory(lammps_files / "system.data", bad)
    with pytest.raises(TrajectoryError, match=r"bad\.dump: frame 2: non-finite forces on 1 atom.*index 4"):
        list(traj.frames())


def test_atom_count_mismatch_is_an_error(lammps_files):
    d = lammps_files
    with pytest.raises(TrajectoryError, match=r"forces\.dump.*small\.data|small\.data.*forces\.dump"):
        open_trajectory(d / "small.data", d / "forces.dump")


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "a.foo").write_text("")
    with pytest.raises(TrajectoryError, match="cannot tell the format"):
        open_trajectory(tmp_path / "a.foo", tmp_path / "a.foo")
    with pytest.raises(TrajectoryError, match="no such file"):
        open_trajectory(tmp_path / "missing.data", tmp_path / "x.dump")
