"""Atom -> bead mapping: numbers against hand computation, PBC, triclinic, errors, LAMMPS run."""

from __future__ import annotations

import numpy as np
import pytest

import MDAnalysis as mda
from MDAnalysis.coordinates.memory import MemoryReader
from MDAnalysis.lib.mdamath import triclinic_box

from hipcg.mapping import CGMap, MappingError, load_mapping, map_trajectory, parse_mapping

# Methanol as in datasets/methanol/system.yaml (residue MOH).
MEOH_NAMES = ["C", "O", "HO", "H1", "H2", "H3"]
MEOH_MASSES = np.array([12.011, 15.9994, 1.008, 1.008, 1.008, 1.008])
MEOH_XYZ = np.array([[0.0, 0.0, 0.0], [1.41, 0.0, 0.0], [1.7099, 0.8962, 0.0],
                     [-0.3638, 0.5137, 0.8898], [-0.3638, -1.0275, 0.0],
                     [-0.3638, 0.5137, -0.8898]])
MEOH_CHARGES = [0.145, -0.683, 0.418, 0.040, 0.040, 0.040]


def make_universe(names, resnames, atoms_per_res, masses, positions, forces, box,
                  velocities=None):
    """In-memory Universe with forces: ``positions``/``forces`` are (n_frames, n_atoms, 3);
    ``box`` is [a, b, c, alpha, beta, gamma] or a (3, 3) matrix (rows = vectors)."""
    n_res = len(resnames)
    resindex = np.repeat(np.arange(n_res), atoms_per_res)
    u = mda.Universe.empty(len(resindex), n_residues=n_res, atom_resindex=resindex,
                           trajectory=True)
    u.add_TopologyAttr("names", names)
    u.add_TopologyAttr("resnames", resnames)
    u.add_TopologyAttr("resids", np.arange(1, n_res + 1))
    u.add_TopologyAttr("masses", masses)
    positions = np.asarray(positions, dtype=np.float32)
    box = np.asarray(box, dtype=np.float64)
    dims = triclinic_box(*box) if box.shape == (3, 3) else box
    kw = {"forces": np.asarray(forces, dtype=np.float32)}
    if velocities is not None:
        kw["velocities"] = np.asarray(velocities, dtype=np.float32)
    u.load_new(positions, format=MemoryReader, dimensions=np.tile(dims, (len(positions), 1)), **kw)
    return u


def methanols(n_mol, positions, forces, box, velocities=None):
    return make_universe(MEOH_NAMES * n_mol, ["MOH"] * n_mol, 6, np.tile(MEOH_MASSES, n_mol),
                         positions, forces, box, velocities)


ONE_BEAD = parse_mapping({"molecules": {"MOH": "MeOH"}})


def test_com_force_velocity_against_hand_computation():
    x = MEOH_XYZ + [5.0, 6.0, 7.0]
    f = np.array([[1.0, 2.0, 3.0], [-4.0, 0.5, 0.25], [0.1, 0.2, 0.3],
                  [2.0, -1.0, 0.0], [0.0, 0.0, -1.0], [-0.5, 0.5, 0.5]])
    v = np.array([[0.01, 0.0, 0.0], [0.0, 0.02, 0.0], [0.0, 0.0, 0.03],
                  [0.1, 0.0, 0.0], [0.0, -0.1, 0.0], [0.0, 0.0, 0.2]])
    u = methanols(1, [x], [f], [20, 20, 20, 90, 90, 90], [v])
    (fr,) = list(map_trajectory(u, ONE_BEAD))
    m = MEOH_MASSES
    M = 12.011 + 15.9994 + 4 * 1.008
    com = sum(m[i] * x[i] for i in range(6)) / M
    np.testing.assert_allclose(fr.positions[0], com, atol=1e-5)  # float32 input positions
    np.testing.assert_allclose(fr.forces[0], [-1.4, 2.2, 3.05], atol=1e-6)
    np.testing.assert_allclose(fr.velocities[0], sum(m[i] * v[i] for i in range(6)) / M, atol=1e-8)
    cg = CGMap.build(u, ONE_BEAD)
    assert cg.masses[0] == pytest.approx(M) and cg.type_names == ["MeOH"]


def test_geometry_weights_give_the_centroid():
    mapping = parse_mapping({"molecules": [{"resname": "MOH", "type": "M", "weights": "geometry"}]})
    x = MEOH_XYZ + 3.0
    u = methanols(1, [x], [np.zeros((6, 3))], [20, 20, 20, 90, 90, 90])
    (fr,) = list(map_trajectory(u, mapping))
    np.testing.assert_allclose(fr.positions[0], x.mean(axis=0), atol=1e-5)


def wrap(x, box):
    frac = x @ np.linalg.inv(box)
    return (frac - np.floor(frac)) @ box


@pytest.mark.parametrize("box", [
    np.diag([12.0, 13.0, 14.0]),
    np.array([[12.0, 0.0, 0.0], [4.0, 11.0, 0.0], [-3.0, 2.5, 10.0]]),  # triclinic
], ids=["orthorhombic", "triclinic"])
def test_molecule_split_across_the_boundary(box):
    """Atoms wrapped into the cell on opposite sides map to the whole molecule's COM."""
    rng = np.random.default_rng(1)
    whole = []
    # Molecules centred on the cell corner, the middle of a (tilted) face and inside: the
    # first two straddle boundaries in one, two or three directions.
    for centre in [np.zeros(3), 0.5 * (box[0] + box[1]), 0.5 * box.sum(axis=0)]:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        whole.append((MEOH_XYZ - MEOH_XYZ.mean(axis=0)) @ q.T + centre)
    whole = np.concatenate(whole)
    wrapped = wrap(whole, box)
    assert np.abs(wrapped - whole).max() > 1.0  # the test really splits molecules
    u = methanols(3, [wrapped], [np.ones((18, 3))], box)
    (fr,) = list(map_trajectory(u, ONE_BEAD))
    coms = (whole.reshape(3, 6, 3) * MEOH_MASSES[:, None]).sum(axis=1) / MEOH_MASSES.sum()
    np.testing.assert_allclose(fr.positions, wrap(coms, box), atol=1e-4)
    np.testing.assert_allclose(fr.box, box, atol=1e-4)
    frac = fr.positions @ np.linalg.inv(box)
    assert (frac >= 0).all() and (frac < 1).all()


HEXANE_NAMES = ["C1", "C2", "C3", "C4", "C5", "C6"] + [f"H{i}" for i in range(1, 15)]
HEXANE_MASSES = np.array([12.011] * 6 + [1.008] * 14)
# H1-H3 on C1, H4-H5 on C2, H6-H7 on C3, H8-H9 on C4, H10-H11 on C5, H12-H14 on C6
HEXANE_MAP = {"resname": "HEX", "beads": [
    {"name": "A", "type": "C3a", "atoms": ["C1", "C2", "C3", "H1", "H2", "H3", "H4", "H5", "H6", "H7"]},
    {"name": "B", "type": "C3b", "atoms": "C4 C5 C6 H8 H9 H10 H11 H12 H13 H14",
     "weights": "geometry"}]}


def hexane_methanol_universe(n_hex=4, n_meoh=5, n_frames=3, seed=2):
    rng = np.random.default_rng(seed)
    names = HEXANE_NAMES * n_hex + MEOH_NAMES * n_meoh
    resnames = ["HEX"] * n_hex + ["MOH"] * n_meoh
    sizes = [20] * n_hex + [6] * n_meoh
    masses = np.concatenate([np.tile(HEXANE_MASSES, n_hex), np.tile(MEOH_MASSES, n_meoh)])
    n = len(names)
    box = np.array([[20.0, 0, 0], [3.0, 19.0, 0], [1.0, -2.0, 18.0]])
    centres = rng.uniform(0, 1, (len(resnames), 3)) @ box
    pos = np.repeat(centres, sizes, axis=0)[None] + rng.normal(0, 1.2, (n_frames, n, 3))
    pos = np.stack([wrap(p, box) for p in pos])
    forces = rng.normal(0, 50, (n_frames, n, 3))
    u = make_universe(names, resnames, sizes, masses, pos, forces, box)
    return u, parse_mapping({"molecules": [HEXANE_MAP, {"resname": "MOH", "type": "MeOH"}]})


def test_multibead_hexane_and_total_force_conserved():
    u, mapping = hexane_methanol_universe()
    cg = CGMap.build(u, mapping)
    assert cg.type_names == ["C3a", "C3b", "MeOH"]
    assert cg.bead_types.tolist() == [0, 1] * 4 + [2] * 5
    assert cg.molecule_ids.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 8]
    np.testing.assert_allclose(cg.masses[:2], [3 * 12.011 + 7 * 1.008, 3 * 12.011 + 7 * 1.008])
    frames = list(map_trajectory(u, cg))
    assert len(frames) == 3
    for fr, ts in zip(frames, u.trajectory):
        atom_total = ts.forces.astype(np.float64).sum(axis=0)
        scale = np.abs(ts.forces).astype(np.float64).sum()
        assert np.abs(fr.forces.sum(axis=0) - atom_total).max() <= 1e-10 * scale
        # bead B of the first hexane: centroid of its (whole) atoms
        idx = [HEXANE_NAMES.index(a) for a in HEXANE_MAP["beads"][1]["atoms"].split()]
        x = ts.positions[idx].astype(np.float64)
        ref = ts.positions[0].astype(np.float64)
        box = ts.triclinic_dimensions.astype(np.float64)
        d = x - ref
        frac = d @ np.linalg.inv(box)
        d = (frac - np.rint(frac)) @ box
        np.testing.assert_allclose(fr.positions[1], wrap(ref + d.mean(axis=0), box), atol=1e-4)


def test_stride_and_frame_numbers():
    u, mapping = hexane_methanol_universe(n_frames=7)
    frames = list(map_trajectory(u, mapping, start=1, step=3))
    assert [f.frame for f in frames] == [1, 4]


# --------------------------------------------------------------------------- bad input


def test_atom_left_out_of_every_bead_is_listed():
    mapping = parse_mapping({"molecules": [{"resname": "MOH", "beads": [
        {"name": "A", "type": "A", "atoms": ["C", "O", "HO"]}]}]}, source="m.yaml")
    u = methanols(1, [MEOH_XYZ], [np.zeros((6, 3))], [20, 20, 20, 90, 90, 90])
    with pytest.raises(MappingError, match=r"m.yaml: molecule 'MOH'.*3 atom\(s\) in no bead: H1, H2, H3"):
        CGMap.build(u, mapping)


def test_atom_in_two_beads_is_listed():
    with pytest.raises(MappingError, match=r"m.yaml: molecule 'MOH'.*in two beads: O \(A, B\)"):
        parse_mapping({"molecules": [{"resname": "MOH", "beads": [
            {"name": "A", "type": "A", "atoms": ["C", "O"]},
            {"name": "B", "type": "B", "atoms": ["O", "HO", "H1", "H2", "H3"]}]}]}, source="m.yaml")


def test_atom_name_missing_from_topology():
    mapping = parse_mapping({"molecules": [{"resname": "MOH", "beads": [
        {"name": "A", "type": "A", "atoms": ["C", "O", "HO", "H1", "H2", "H4"]}]}]})
    u = methanols(1, [MEOH_XYZ], [np.zeros((6, 3))], [20, 20, 20, 90, 90, 90])
    with pytest.raises(MappingError, match=r"atom name\(s\) not in the topology: H4"):
        CGMap.build(u, mapping)


def test_molecule_type_without_mapping():
    u, _ = hexane_methanol_universe()
    with pytest.raises(MappingError, match=r"80 atom\(s\) belong to no molecule type.*HEX resid 1"):
        CGMap.build(u, ONE_BEAD)


def test_nan_force_names_the_frame_and_atom():
    f = np.zeros((3, 12, 3))
    f[2, 7, 1] = np.nan
    u = methanols(2, [MEOH_XYZ.tolist() * 2] * 3, f, [20, 20, 20, 90, 90, 90])
    stream = map_trajectory(u, ONE_BEAD, source="traj.dump")
    next(stream), next(stream)
    with pytest.raises(MappingError, match=r"traj.dump: frame 2: non-finite forces on 1 atom"):
        next(stream)


def test_trajectory_without_forces():
    u = methanols(1, [MEOH_XYZ], [np.zeros((6, 3))], [20, 20, 20, 90, 90, 90])
    u.load_new(MEOH_XYZ[None].astype(np.float32), format=MemoryReader,
               dimensions=[[20, 20, 20, 90, 90, 90]])
    with pytest.raises(MappingError, match="frame 0: no forces"):
        list(map_trajectory(u, ONE_BEAD))


@pytest.mark.parametrize("data,message", [
    ({"molecule": {}}, "top-level 'molecules'"),
    ({"molecules": [{"resname": "A", "select": "all"}]}, "exactly one of"),
    ({"molecules": [{"resname": "A", "weights": "charge"}]}, "weights must be one of"),
    ({"molecules": [{"resname": "A", "beads": [{"name": "x", "type": "t"}]}]}, r"missing key\(s\) \['atoms'\]"),
    ({"molecules": [{"resname": "A", "colour": 1}]}, "unknown key"),
])
def test_malformed_mapping_files(data, message):
    with pytest.raises(MappingError, match=message):
        parse_mapping(data, source="bad.yaml")


def test_mapping_files_in_datasets_and_hash(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "datasets" / "mappings"
    meoh = load_mapping(root / "methanol.yaml")
    assert meoh.type_names == ["MeOH"] and meoh.molecules[0].resname == "MOH"
    assert load_mapping(root / "water.yaml").type_names == ["W"]
    # The hash sees content, not layout.
    (tmp_path / "long.yaml").write_text("molecules:\n  - resname: MOH\n    type: MeOH\n")
    assert load_mapping(tmp_path / "long.yaml").hash() == meoh.hash()
    assert parse_mapping({"molecules": {"MOH": "X"}}).hash() != meoh.hash()
    with pytest.raises(MappingError, match="not found"):
        load_mapping(tmp_path / "nope.yaml")


def test_units_converted_from_a_trr(tmp_path):
    """TRR stores nm and kJ/(mol nm); the mapped output is in real units either way."""
    rng = np.random.default_rng(3)
    x = np.concatenate([MEOH_XYZ + 2, MEOH_XYZ + 8])
    f_real = rng.normal(0, 10, (12, 3))
    v_real = rng.normal(0, 0.01, (12, 3))  # Å/fs
    # MDAnalysis writers expect its base units (kJ/(mol Å), Å/ps) in memory.
    u = methanols(2, [x], [f_real * 4.184], [20, 20, 20, 90, 90, 90], [v_real * 1000])
    u.atoms.write(tmp_path / "t.trr", frames="all")
    expect = list(map_trajectory(methanols(2, [x], [f_real], [20] * 3 + [90] * 3, [v_real]),
                                 ONE_BEAD))[0]
    u2 = methanols(2, [x], [f_real], [20, 20, 20, 90, 90, 90])
    u2.load_new(str(tmp_path / "t.trr"))
    (got,) = list(map_trajectory(u2, ONE_BEAD))
    np.testing.assert_allclose(got.forces, expect.forces, rtol=1e-5)
    np.testing.assert_allclose(got.velocities, expect.velocities, rtol=1e-5)
    np.testing.assert_allclose(got.positions, expect.positions, atol=1e-4)


# --------------------------------------------------------------------------- a real LAMMPS run


def write_methanol_data(path, n_side=3, spacing=4.1, seed=0):
    """LAMMPS data file (atom_style full) of n_side^3 OPLS-AA methanols on a lattice whose
    first site is at the cell corner, so some molecules start split across the boundary."""
    rng = np.random.default_rng(seed)
    n_mol = n_side ** 3
    L = n_side * spacing
    atoms, bonds, angles = [], [], []
    for m in range(n_mol):
        centre = np.array(np.unravel_index(m, (n_side,) * 3)) * spacing
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        xyz = (MEOH_XYZ - MEOH_XYZ[:2].mean(axis=0)) @ q.T + centre
        image = np.floor(xyz / L).astype(int)  # image flags keep the molecule whole for LAMMPS
        xyz -= L * image
        base = 6 * m
        for k, (t, qch) in enumerate(zip([1, 2, 3, 4, 4, 4], MEOH_CHARGES)):
            atoms.append(f"{base + k + 1} {m + 1} {t} {qch} {xyz[k, 0]:.8f} {xyz[k, 1]:.8f} "
                         f"{xyz[k, 2]:.8f} {image[k, 0]} {image[k, 1]} {image[k, 2]}")
        c, o, ho, h1, h2, h3 = (base + k + 1 for k in range(6))
        bonds += [(1, c, o), (2, o, ho), (3, c, h1), (3, c, h2), (3, c, h3)]
        angles += [(1, h1, c, h2), (1, h1, c, h3), (1, h2, c, h3),
                   (2, h1, c, o), (2, h2, c, o), (2, h3, c, o), (3, c, o, ho)]
    lines = ["methanol test box (hipcg tests)", "",
             f"{len(atoms)} atoms", f"{len(bonds)} bonds", f"{len(angles)} angles", "",
             "4 atom types", "3 bond types", "3 angle types", "",
             f"0 {L} xlo xhi", f"0 {L} ylo yhi", f"0 {L} zlo zhi", "",
             "Masses", "", "1 12.011", "2 15.9994", "3 1.008", "4 1.008", "",
             "Atoms # full", "", *atoms, "", "Bonds", "",
             *(f"{i + 1} {t} {a} {b}" for i, (t, a, b) in enumerate(bonds)), "", "Angles", "",
             *(f"{i + 1} {t} {a} {b} {c}" for i, (t, a, b, c) in enumerate(angles)), ""]
    path.write_text("\n".join(lines))
    return n_mol, L


METHANOL_IN = """
units real
atom_style full
boundary p p p
read_data methanol.data
pair_style lj/cut/coul/cut 6.0
pair_modify mix geometric
pair_coeff 1 1 0.066 3.50
pair_coeff 2 2 0.170 3.12
pair_coeff 3 3 0.0 0.0
pair_coeff 4 4 0.030 2.50
bond_style harmonic
bond_coeff 1 320.0 1.410
bond_coeff 2 553.0 0.945
bond_coeff 3 340.0 1.090
angle_style harmonic
angle_coeff 1 33.0 107.8
angle_coeff 2 35.0 109.5
angle_coeff 3 55.0 108.5
special_bonds lj/coul 0.0 0.0 0.5
neighbor 2.0 bin
minimize 1e-4 1e-6 200 2000
reset_timestep 0
velocity all create 300.0 4928459 mom yes rot yes
fix nve all nve
timestep 0.5
dump d all custom 20 traj.dump id mol type x y z ix iy iz vx vy vz fx fy fz
dump_modify d sort id format float %.12g
run 100
"""


@pytest.fixture(scope="module")
def methanol_run(tmp_path_factory):
    from hipcg.lammps.runner import run_lammps

    work = tmp_path_factory.mktemp("methanol")
    n_mol, L = write_methanol_data(work / "methanol.data")
    run_lammps(METHANOL_IN, work)
    return work, n_mol


def lammps_universe(work, names=True):
    u = mda.Universe(str(work / "methanol.data"), str(work / "traj.dump"), format="LAMMPSDUMP",
                     topology_format="DATA", atom_style="id resid type charge x y z")
    if names:  # what a template-aware reader adds (issue 3): names and residue names
        u.add_TopologyAttr("names", MEOH_NAMES * len(u.residues))
        u.add_TopologyAttr("resnames", ["MOH"] * len(u.residues))
    return u


def test_lammps_methanol_run(methanol_run):
    from hipcg.lammps.dump import read_dump

    work, n_mol = methanol_run
    u = lammps_universe(work)
    dump = read_dump(work / "traj.dump")
    assert len(u.trajectory) == len(dump) == 6
    frames = list(map_trajectory(u, load_mapping_text("molecules: {MOH: MeOH}")))
    split = 0
    for fr, ref in zip(frames, dump):
        ts = u.trajectory[fr.frame]
        fref = np.stack([ref["fx"], ref["fy"], ref["fz"]], axis=1)
        np.testing.assert_allclose(ts.forces, fref, rtol=1e-6, atol=1e-6)  # MDAnalysis reads fx fy fz
        box = ts.triclinic_dimensions.astype(np.float64)
        image = np.stack([ref["ix"], ref["iy"], ref["iz"]], axis=1)
        x = np.stack([ref["x"], ref["y"], ref["z"]], axis=1)
        unwrapped = (x + image @ box).reshape(n_mol, 6, 3)  # independent: LAMMPS image flags
        split += int((np.ptp(image.reshape(n_mol, 6, 3), axis=1) > 0).any(axis=1).sum())
        com = (unwrapped * MEOH_MASSES[:, None]).sum(axis=1) / MEOH_MASSES.sum()
        np.testing.assert_allclose(fr.positions, wrap(com, box), atol=1e-5)
        # MDAnalysis holds float32; the bead sums are float64 sums of exactly those numbers.
        f32 = ts.forces.astype(np.float64)
        np.testing.assert_allclose(fr.forces, f32.reshape(n_mol, 6, 3).sum(axis=1), atol=1e-10)
        np.testing.assert_allclose(fr.forces, fref.reshape(n_mol, 6, 3).sum(axis=1), atol=1e-4)
        # Total force conserved by the mapping (≈ 0 here: LAMMPS obeys Newton's third law).
        assert np.abs(fr.forces.sum(axis=0) - f32.sum(axis=0)).max() < 1e-10 * np.abs(f32).sum()
        v = ts.velocities.astype(np.float64).reshape(n_mol, 6, 3)
        np.testing.assert_allclose(
            fr.velocities, (v * MEOH_MASSES[:, None]).sum(axis=1) / MEOH_MASSES.sum(), atol=1e-12)
    assert split > 0  # molecules really crossed the boundary


def load_mapping_text(text):
    import yaml

    return parse_mapping(yaml.safe_load(text), source="<test>")


def test_lammps_topology_without_names_uses_atom_names(methanol_run):
    work, n_mol = methanol_run
    u = lammps_universe(work, names=False)
    explicit = load_mapping_text("""
molecules:
  - select: all
    name: methanol
    atom_names: [C, O, HO, H1, H2, H3]
    beads:
      - {name: CH3, type: ME, atoms: [C, H1, H2, H3]}
      - {name: OH, type: OH, atoms: [O, HO]}
""")
    frames = list(map_trajectory(u, explicit, stop=2))
    assert frames[0].positions.shape == (2 * n_mol, 3)
    with pytest.raises(MappingError, match="no atom names.*atom_names"):
        CGMap.build(u, load_mapping_text(
            "molecules: [{select: all, beads: [{name: A, type: A, atoms: [C, O, HO, H1, H2, H3]}]}]"))
    with pytest.raises(MappingError, match="no residue names; choose molecules with 'select:'"):
        CGMap.build(u, load_mapping_text("molecules: {MOH: MeOH}"))


def test_cli_map(methanol_run, tmp_path, capsys):
    from pathlib import Path

    from hipcg.cli import main
    from hipcg.data import load_dataset

    work, n_mol = methanol_run
    mapping = tmp_path / "m.yaml"
    mapping.write_text("molecules:\n  - select: all\n    name: MOH\n    type: MeOH\n")
    out = tmp_path / "meoh.npz"
    argv = ["map", "--mapping", str(mapping), "--topology", str(work / "methanol.data"),
            "--trajectory", str(work / "traj.dump"), "--format", "LAMMPSDUMP",
            "--atom-style", "id resid type charge x y z", "--out", str(out),
            "--temperature", "300", "--stride", "2", "--quiet"]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"3 frames, {n_mol} beads, mean |F|" in line and line.endswith(" s")
    ds = load_dataset(out)
    assert ds.positions.shape == (3, n_mol, 3) and ds.velocities is not None
    assert ds.type_names == ["MeOH"] and ds.masses[0] == pytest.approx(MEOH_MASSES.sum())
    meta = ds.metadata
    assert meta["units"] == "real" and meta["source"]["stride"] == 2
    assert meta["source"]["trajectory"] == str(work / "traj.dump")
    assert meta["mapping"]["hash"] == load_mapping(mapping).hash()
    assert meta["state_point"]["temperature"] == 300.0
    assert 0.3 < meta["state_point"]["density"] < 1.5
    mtime = out.stat().st_mtime_ns
    assert main(argv) == 2  # an existing output is not overwritten ...
    assert "exists" in capsys.readouterr().err and out.stat().st_mtime_ns == mtime
    assert main(argv + ["--force"]) == 0  # ... unless asked
    assert not [p for p in Path(tmp_path).iterdir() if p.name.startswith(".")]  # no temp left
    bad = tmp_path / "bad.yaml"
    bad.write_text("molecules: [{select: all, beads: [{name: A, type: A, atoms: [C, X]}]}]\n")
    assert main(argv[:2] + [str(bad)] + argv[3:] + ["--out", str(tmp_path / "b.npz")]) == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_cli_map_converts_a_metal_dump(methanol_run, tmp_path):
    """`hipcg map --dump-units metal` gives the same dataset as the real-units dump it came from."""
    from ase import units

    from hipcg.cli import main
    from hipcg.data import load_dataset

    work, _ = methanol_run
    # the same frames as a `units metal` run would write them: eV/Å forces, Å/ps velocities
    to_ev = units.kcal / units.mol / units.eV
    lines, cols = [], None
    for line in (work / "traj.dump").read_text().splitlines():
        if line.startswith("ITEM: ATOMS"):
            cols = line.split()[2:]
        elif line.startswith("ITEM:"):
            cols = None
        elif cols and len(line.split()) == len(cols):
            values = line.split()
            for k, name in enumerate(cols):
                if name in ("fx", "fy", "fz"):
                    values[k] = repr(float(values[k]) * to_ev)
                elif name in ("vx", "vy", "vz"):
                    values[k] = repr(float(values[k]) * 1000.0)
            line = " ".join(values)
        lines.append(line)
    (tmp_path / "metal.dump").write_text("\n".join(lines) + "\n")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("molecules:\n  - select: all\n    name: MOH\n    type: MeOH\n")
    common = ["map", "--mapping", str(mapping), "--topology", str(work / "methanol.data"),
              "--atom-style", "id resid type charge x y z", "--quiet"]
    assert main(common + ["--trajectory", str(work / "traj.dump"), "--out", str(tmp_path / "r.npz")]) == 0
    assert main(common + ["--trajectory", str(tmp_path / "metal.dump"), "--dump-units", "metal",
                          "--out", str(tmp_path / "m.npz")]) == 0
    real, metal = load_dataset(tmp_path / "r.npz"), load_dataset(tmp_path / "m.npz")
    assert np.abs(real.forces).mean() > 1.0
    # MDAnalysis' dump reader holds float32: agreement to its precision (a unit slip is 23x)
    np.testing.assert_allclose(metal.forces, real.forces, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(metal.velocities, real.velocities, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(metal.positions, real.positions)
