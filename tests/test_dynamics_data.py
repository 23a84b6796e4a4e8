"""hipcg.dynamics data side: chain system files, METIS beads, real LAMMPS chain runs (resume,
reuse, refusal), bead mapping, bead trajectory files and bead dumps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from hipcg.dynamics.beads import (BeadTrajectory, bead_type_ids, centres_of_mass,
                                  load_bead_trajectory, map_chain, save_bead_trajectory,
                                  write_bead_dump)
from hipcg.dynamics.chains import (ChainRun, ChainRunConfig, ChainRunError, load_chain_system,
                                   open_chain_run, run_chains)
from hipcg.dynamics.partition import PartitionError, bead_bonds, partition_chain
from hipcg.errors import ConfigError, DataError, RunError
from hipcg.lammps.dump import read_dump

REPO = Path(__file__).resolve().parent.parent
POLYMER = REPO / "datasets" / "polymer" / "system.yaml"

MVV2E = 48.88821291 ** 2      # LAMMPS real: kcal/mol per g/mol (Å/fs)^2
KB = 0.0019872067             # kcal/(mol K)

SHORT = {"train": {"c12-a": "AAABBBAAABBB", "c12-b": "ABABABABABAB"},
         "test": {"c12-c": "AABBBBBBBBAA"}}


def linear(n):
    return np.c_[np.arange(n - 1), np.arange(1, n)]


def system_file(tmp_path, sequences=SHORT, length=12, name="short.yaml", **changes) -> Path:
    raw = yaml.safe_load(POLYMER.read_text())
    raw.update(chain_length=length, sequences=sequences, name="short", **changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# --------------------------------------------------------------------------- partition


@pytest.mark.parametrize("n,per_bead", [(12, 3), (12, 4), (40, 4), (40, 5), (40, 8), (40, 10)])
def test_partition_of_a_chain_that_divides_evenly(n, per_bead):
    a = partition_chain(n, linear(n), per_bead)
    assert np.array_equal(a, np.repeat(np.arange(n // per_bead), per_bead))


def test_partition_of_linear_chains_is_contiguous_balanced_and_in_chain_order():
    for n in range(6, 61):
        for per_bead in (2, 3, 4, 5, 6):
            a = partition_chain(n, linear(n), per_bead)
            k = int(np.floor(n / per_bead + 0.5))
            assert a.max() + 1 == k
            # chain order, contiguous beads: labels start at 0 and step up by 0 or 1
            assert a[0] == 0 and set(np.diff(a)) <= {0, 1}, (n, per_bead, a)
            sizes = np.bincount(a)
            assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 2, (n, per_bead, sizes)


def test_partition_falls_back_when_kway_leaves_a_part_empty():
    """METIS k-way gives an empty part for 40 monomers in 20 beads: recursive bisection does."""
    a = partition_chain(40, linear(40), 2)
    assert a.max() + 1 == 20 and np.bincount(a).min() >= 1 and set(np.diff(a)) <= {0, 1}


def test_partition_of_a_branched_chain_gives_connected_beads():
    # a comb: backbone 0..19, one 2-monomer side chain on every fourth backbone monomer
    bonds = [(i, i + 1) for i in range(19)]
    n = 20
    for j in range(0, 20, 4):
        bonds += [(j, n), (n, n + 1)]
        n += 2
    a = partition_chain(n, bonds, 5)
    assert a.max() + 1 == 6 and a[0] == 0
    first = [int(np.flatnonzero(a == b)[0]) for b in range(6)]
    assert first == sorted(first)                      # numbered in monomer-index order
    for b in range(6):                                  # each bead connected in the bond graph
        members = set(np.flatnonzero(a == b).tolist())
        seen, stack = {min(members)}, [min(members)]
        while stack:
            i = stack.pop()
            for p, q in bonds:
                for x, y in ((p, q), (q, p)):
                    if x == i and y in members and y not in seen:
                        seen.add(y)
                        stack.append(y)
        assert seen == members, (b, members)


def test_partition_refuses_bad_graphs():
    with pytest.raises(PartitionError, match="not connected"):
        partition_chain(6, [(0, 1), (1, 2), (3, 4), (4, 5)], 2)
    with pytest.raises(PartitionError, match="0..5"):
        partition_chain(6, [(0, 1), (1, 6)], 2)


def test_bead_bonds():
    a = partition_chain(40, linear(40), 4)
    assert np.array_equal(bead_bonds(a, linear(40)), linear(10))
    # duplicates and bonds inside a bead vanish; a ring closes the path; pairs come as i < j
    ring = np.r_[linear(12), [[11, 0]]]
    assert bead_bonds(np.repeat(np.arange(4), 3), ring).tolist() == [[0, 1], [0, 3], [1, 2], [2, 3]]
    assert bead_bonds(np.zeros(3, int), linear(3)).shape == (0, 2)


# --------------------------------------------------------------------------- system files


def test_polymer_system_file():
    s = load_chain_system("polymer")
    assert s.tau_fs == pytest.approx(3165.76, abs=0.01)          # 5 Å sqrt(100/0.5962) 48.888 fs
    assert s.timestep_fs == pytest.approx(31.6576, abs=1e-3)
    assert s.kT == pytest.approx(s.epsilon, rel=1e-3)            # T* = 1 at 300 K
    assert len(s.sequences["train"]) >= 12 and len(s.sequences["test"]) >= 6
    for role in ("train", "test"):
        fractions = [q.count("A") / len(q) for q in s.sequences[role].values()]
        assert min(fractions) <= 0.15 and max(fractions) >= 0.85
    assert s.box_length() > (40 - 1) * 1.5 * 5.0 + 2.5 * 5.0


def test_fingerprint_follows_physics(tmp_path):
    base = load_chain_system(system_file(tmp_path))
    more = dict(SHORT, train=dict(SHORT["train"], **{"c12-d": "BBBBBBBBBBBB"}))
    added = load_chain_system(system_file(tmp_path, sequences=more, name="b.yaml"))
    assert added.fingerprint("c12-a") == base.fingerprint("c12-a")   # runs stay valid
    assert added.fingerprint() != base.fingerprint()
    raw = yaml.safe_load(POLYMER.read_text())
    raw["pairs"]["A-A"]["epsilon"] = 0.8
    hotter = load_chain_system(system_file(tmp_path, name="c.yaml", pairs=raw["pairs"]))
    assert hotter.fingerprint("c12-a") != base.fingerprint("c12-a")


@pytest.mark.parametrize("sequences,match", [
    ({"train": {"bad": "AAABBBCAABBB"}}, r"sequences\.train\.bad.*'C'"),
    ({"train": {"x": "AAABBBAAABBB"}, "test": {"x": "BBBBBBBBBBBB"}},
     r"sequences\.test\.x.*unique"),
    ({"train": {"x": "AAABBBAAABBB"}, "test": {"y": "AAABBBAAABBB"}},
     r"sequences\.test\.y.*sequences\.train\.x.*disjoint"),
    ({"train": {"x": "AAAABBBAABBB"}, "test": {"y": "BBBAABBBAAAA"}},     # the same, reversed
     r"sequences\.test\.y.*sequences\.train\.x.*reversed"),
    ({"train": {"x": "AAAB"}}, r"sequences\.train\.x.*4 monomers, chain_length is 12"),
    ({"validate": {"x": "AAABBBAAABBB"}}, r"sequences\.validate.*allowed groups"),
    ({"train": {"a b": "AAABBBAAABBB"}}, r"sequences\.train\.a b.*file name"),
])
def test_bad_sequences_name_file_and_key(tmp_path, sequences, match):
    path = system_file(tmp_path, sequences=sequences, name="bad.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*" + match):
        load_chain_system(path)


@pytest.mark.parametrize("old, new, message", [
    ("    rand-f40:", "    rand-f25:", r"bad\.yaml.*'rand-f25' given twice"),   # duplicate name in a group
    ("units: real", "units: lj", r"bad\.yaml: units: allowed values are \['real'\]"),
    ("  K: 30.0", "  K: -30.0", r"bad\.yaml: bond\.K: must be > 0"),
    ("  B-B: {", "  B-C: {", r"bad\.yaml: pairs\.B-C"),
    ("damp: 1.0", "dmap: 1.0", r"bad\.yaml: dmap: unknown key"),
])
def test_other_system_file_errors_name_file_and_key(tmp_path, old, new, message):
    text = POLYMER.read_text()
    assert old in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new))
    with pytest.raises(ConfigError, match=message):
        load_chain_system(bad)


def test_an_unknown_chain_system_is_named():
    with pytest.raises(ConfigError, match="no chain system 'nosuch'"):
        load_chain_system("nosuch")


def test_run_config_checks():
    with pytest.raises(ConfigError, match="production_steps.*multiple of frame_every"):
        ChainRunConfig(system="polymer", production_steps=1050, frame_every=100)
    with pytest.raises(ConfigError, match="chains.frame_every: must be >= 1"):
        ChainRunConfig(system="polymer", frame_every=0)
    with pytest.raises(ConfigError, match="restart_every.*multiple"):
        ChainRunConfig(system="polymer", production_steps=1000, frame_every=100, restart_every=150)


# --------------------------------------------------------------------------- real LAMMPS runs

RUN = dict(equilibrate_steps=2_000, production_steps=40_000, frame_every=100, seed=7,
           restart_every=10_000, pushoff_steps=500, thermo_every=10_000)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Three 12-monomer chains, two at a time (the thread pool path)."""
    tmp = tmp_path_factory.mktemp("chains")
    path = system_file(tmp)
    cfg = ChainRunConfig(system=str(path), parallel=2, **RUN)
    runs = run_chains(cfg, tmp / "out", progress=False)
    return cfg, path, runs


def test_chain_run_frames_bonds_and_temperature(finished):
    cfg, path, runs = finished
    system = load_chain_system(path)
    assert list(runs) == ["c12-a", "c12-b", "c12-c"]
    assert [r.role for r in runs.values()] == ["train", "train", "test"]
    temps = []
    for run in runs.values():
        frames = read_dump(run.dump_path)
        assert [f["timestep"] for f in frames] == list(range(0, 40_001, 100))
        x = np.array([np.c_[f["xu"], f["yu"], f["zu"]] for f in frames])
        assert np.array_equal(frames[0]["type"], [1 if c == "A" else 2 for c in run.sequence])
        bonds = np.linalg.norm(np.diff(x, axis=1), axis=2) / system.sigma
        assert bonds.max() < 1.5 and bonds.min() > 0.7          # FENE never near breaking
        v = np.array([np.c_[f["vx"], f["vy"], f["vz"]] for f in frames])
        ke = 0.5 * MVV2E * 100.0 * (v ** 2).sum(axis=(1, 2))     # kcal/mol per frame
        temps.append((2 * ke / (3 * 12 * KB)).mean())            # Langevin: 3N degrees of freedom
        # the record: fingerprint, timing and the numbers derived from them
        rec = json.loads((run.directory / "run.json").read_text())
        assert rec["units"] == "real" and rec["frames"] == 401
        assert rec["system_fingerprint"] == system.fingerprint(run.name)
        t = rec["production_timing"]
        assert t["steps"] == 40_000 and t["loop_seconds"] > 0
        assert t["steps_per_second"] == pytest.approx(40_000 / t["loop_seconds"])
        assert t["lammps_timesteps_per_second"] == pytest.approx(t["steps_per_second"], rel=0.01)
        assert run.md_fs_per_wall_second == pytest.approx(t["steps_per_second"] * system.timestep_fs)
        assert rec["diagnostics"]["max_bond_sigma"] == pytest.approx(bonds.max(), rel=1e-6)
    # 401 frames over 400 tau each (velocities decorrelate within ~1 tau): the mean of each
    # chain is within a few % of 300 K; 10 % cannot be met by a wrong mass, unit or kB
    for t in temps:
        assert t == pytest.approx(300.0, rel=0.10), temps


def test_finished_runs_are_reused_and_other_settings_refused(finished, tmp_path, capsys):
    cfg, path, runs = finished
    out = runs["c12-a"].directory.parent
    again = run_chains(cfg, out, progress=True)
    assert all(r.reused for r in again.values())
    assert "short: 3 chain(s) in" in capsys.readouterr().out    # the one-line summary
    assert again["c12-b"].record == runs["c12-b"].record
    changed = ChainRunConfig(system=str(path), **dict(RUN, frame_every=200))
    with pytest.raises(ChainRunError, match=r"c12-a holds a run with different settings \(frame_every\)"):
        run_chains(changed, out, sequences=["c12-a"], progress=False)
    # overwrite replaces it (in a copy, to leave the shared fixture alone)
    copy = tmp_path / "copy"
    shutil.copytree(runs["c12-a"].directory, copy / "c12-a")
    done = run_chains(changed, copy, sequences=["c12-a"], progress=False, overwrite=True)
    assert not done["c12-a"].reused and done["c12-a"].record["frames"] == 201
    assert len(read_dump(done["c12-a"].dump_path)) == 201


def test_foreign_folder_is_not_overwritten(finished, tmp_path):
    cfg, path, runs = finished
    (tmp_path / "c12-a").mkdir()
    (tmp_path / "c12-a" / "precious.txt").write_text("mine")
    with pytest.raises(ChainRunError, match="not written by hipcg"):
        run_chains(cfg, tmp_path, sequences=["c12-a"], progress=False)
    assert (tmp_path / "c12-a" / "precious.txt").read_text() == "mine"


def test_killed_run_resumes_from_its_last_restart(finished, tmp_path):
    """A run killed at step 32,050 of production: run.json missing, restart files up to step
    30,000 (we drop that one too, as if it were cut off), the dump ending inside a frame."""
    cfg, path, runs = finished
    src = runs["c12-a"].directory
    work = tmp_path / "c12-a"
    shutil.copytree(src, work)
    (work / "run.json").unlink()
    for step in (30_000, 40_000):
        (work / f"production.{step}.restart").unlink()
    text = (work / "production.dump").read_text()
    cut = text.index("ITEM: TIMESTEP\n32100\n")
    (work / "production.dump").write_text(text[:cut + 60])         # a partial frame at the end
    original = read_dump(src / "production.dump")

    resumed = run_chains(cfg, tmp_path, sequences=["c12-a"], progress=False)["c12-a"]
    assert not resumed.reused
    frames = read_dump(work / "production.dump")
    steps = [f["timestep"] for f in frames]
    assert steps == list(range(0, 40_001, 100))                       # no gap, no duplicate
    assert resumed.record["frames"] == len(frames) == 401
    # frames before the restart step are the original ones; production ran twice
    for a, b in zip(original[:200], frames[:200]):
        assert np.array_equal(a["xu"], b["xu"])
    assert (work / "log.production.2.lammps").exists()
    assert "production.20000.restart" in (work / "in.production.lammps").read_text()
    assert resumed.record["production_timing"]["steps"] == 20_000     # timed: the last invocation


def test_a_failing_run_raises_run_error_and_stops_the_others(tmp_path):
    """A 0.5 tau timestep breaks FENE bonds: LAMMPS' error comes back as a RunError."""
    path = system_file(tmp_path, timestep=0.5)
    cfg = ChainRunConfig(system=str(path), parallel=2, **dict(RUN, pushoff_steps=10))
    with pytest.raises(RunError, match="LAMMPS failed in .*c12-.*FENE"):
        run_chains(cfg, tmp_path / "out", progress=False)
    assert not list((tmp_path / "out").glob("*/run.json"))


# --------------------------------------------------------------------------- beads


def test_centres_of_mass_by_hand():
    x = np.array([[[0., 0, 0], [1, 0, 0], [2, 0, 0], [3, 1, 0], [4, 1, 0]]])
    v = np.array([[[1., 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [-1, 0, 0]]])
    masses = np.array([1., 1, 2, 3, 1])
    pos, vel, m = centres_of_mass(x, v, masses, np.array([0, 0, 0, 1, 1]))
    assert m.tolist() == [4.0, 4.0]
    assert pos[0].tolist() == [[(0 + 1 + 4) / 4, 0, 0], [(9 + 4) / 4, 1, 0]]
    assert vel[0].tolist() == [[1 / 4, 1 / 4, 2 / 4], [(3 - 1) / 4, 3 / 4, 3 / 4]]


def test_map_chain_against_a_hand_written_dump(tmp_path):
    """6 monomers, 3 per bead: bead positions are the plain means (equal masses)."""
    path = system_file(tmp_path, sequences={"train": {"six": "AABBBA"}}, length=6)
    system = load_chain_system(path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 3)) * 3 + 50
    v = rng.normal(size=(3, 6, 3)) * 0.01
    lines = []
    for k in range(3):
        lines += ["ITEM: TIMESTEP", str(200 * k), "ITEM: NUMBER OF ATOMS", "6",
                  "ITEM: BOX BOUNDS pp pp pp", "-155 155", "-155 155", "-155 155",
                  "ITEM: ATOMS id mol type xu yu zu vx vy vz"]
        order = [3, 0, 5, 1, 4, 2]                                # rows need not be sorted
        lines += [f"{i + 1} 1 {1 if 'AABBBA'[i] == 'A' else 2} " + " ".join(f"{c:.12g}" for c in
                  (*x[k, i], *v[k, i])) for i in order]
    run_dir = tmp_path / "six"
    run_dir.mkdir()
    (run_dir / "production.dump").write_text("\n".join(lines) + "\n")
    record = {"timestep_fs": system.timestep_fs, "system_fingerprint": system.fingerprint("six"),
              "production_timing": {"md_fs_per_wall_second": 1.5e7}}
    run = ChainRun("six", "train", "AABBBA", run_dir, record)
    traj = map_chain(run, system, 3)
    assert traj.bead_of_monomer.tolist() == [0, 0, 0, 1, 1, 1]
    assert traj.bead_bonds.tolist() == [[0, 1]]
    assert traj.monomer_types.tolist() == [0, 0, 1, 1, 1, 0]
    assert traj.bead_masses.tolist() == [300.0, 300.0]
    assert np.allclose(traj.positions[:, 0], x[:, :3].mean(axis=1), atol=1e-9)
    assert np.allclose(traj.positions[:, 1], x[:, 3:].mean(axis=1), atol=1e-9)
    assert np.allclose(traj.velocities[:, 1], v[:, 3:].mean(axis=1), atol=1e-12)
    assert np.allclose(traj.time_fs, [0, 200 * system.timestep_fs, 400 * system.timestep_fs])
    assert traj.frame_interval_fs == pytest.approx(200 * system.timestep_fs)
    assert traj.md_fs_per_wall_second == 1.5e7
    assert traj.bead_types.tolist() == [1, 2]                  # AAB: mostly A; BBA: mostly B
    # a run of other physics is refused
    record["system_fingerprint"] = "0123456789abcdef"
    with pytest.raises(DataError, match="other physics"):
        map_chain(run, system, 3)


def test_bead_type_rule():
    # A = 0, B = 1; beads of 4: AAAB -> 1, AABB (a tie) -> 2, ABBB -> 2
    assert bead_type_ids([0, 0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 1], np.repeat(np.arange(3), 4)).tolist() == [1, 2, 2]


@pytest.fixture(scope="module")
def mapped(finished):
    cfg, path, runs = finished
    return map_chain(runs["c12-c"], load_chain_system(path), 4)


def test_map_chain_of_a_real_run(finished, mapped):
    cfg, path, runs = finished
    assert (mapped.n_beads, mapped.n_monomers, mapped.n_frames) == (3, 12, 401)
    assert mapped.role == "test" and mapped.sequence == "AABBBBBBBBAA"
    assert mapped.bead_types.tolist() == [2, 2, 2]             # AABB, BBBB, BBAA
    assert mapped.frame_interval_fs == pytest.approx(100 * load_chain_system(path).timestep_fs)
    assert mapped.md_fs_per_wall_second == runs["c12-c"].md_fs_per_wall_second
    frame = read_dump(runs["c12-c"].dump_path)[-1]
    assert np.allclose(mapped.positions[-1, 0], [frame[c][:4].mean() for c in ("xu", "yu", "zu")])


def test_save_load_round_trip_and_bad_files(mapped, tmp_path):
    path = save_bead_trajectory(tmp_path / "c.npz", mapped)
    back = load_bead_trajectory(path)
    for key in ("monomer_types", "monomer_bonds", "bead_of_monomer", "bead_masses",
                "bead_bonds", "time_fs", "positions", "velocities"):
        assert np.array_equal(getattr(back, key), getattr(mapped, key)), key
        assert getattr(back, key).dtype == getattr(mapped, key).dtype, key
    assert (back.name, back.role, back.sequence, back.units) == (mapped.name, "test", mapped.sequence, "real")
    assert back.md_fs_per_wall_second == mapped.md_fs_per_wall_second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]     # no temporary left

    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["metadata"]))
    bad = tmp_path / "metal.npz"
    np.savez(bad, **dict(arrays, metadata=np.array(json.dumps(dict(meta, units="metal")))))
    with pytest.raises(DataError, match=r"metal\.npz: metadata\.units: 'metal'"):
        load_bead_trajectory(bad)
    np.savez(bad, **dict(arrays, velocities=arrays["velocities"][:-1]))
    with pytest.raises(DataError, match=r"metal\.npz: velocities: shape"):
        load_bead_trajectory(bad)
    np.savez(bad, **{k: a for k, a in arrays.items() if k != "bead_bonds"})
    with pytest.raises(DataError, match=r"metal\.npz: bead_bonds: missing"):
        load_bead_trajectory(bad)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataError, match=r"text\.npz: not a bead trajectory"):
        load_bead_trajectory(tmp_path / "text.npz")


def test_uneven_frames_are_reported(mapped):
    t = BeadTrajectory(**{**mapped.__dict__, "time_fs": mapped.time_fs.copy()})
    t.time_fs[5] += 1.0
    with pytest.raises(DataError, match="not evenly spaced"):
        t.frame_interval_fs


def test_bead_dump_reads_back(mapped, tmp_path):
    steps = np.arange(mapped.n_frames) * 100
    path = write_bead_dump(tmp_path / "beads.dump", steps, mapped.positions, mapped.bead_types)
    frames = read_dump(path)
    assert [f["timestep"] for f in frames] == steps.tolist()
    for k in (0, 200, 400):
        xyz = np.c_[frames[k]["xu"], frames[k]["yu"], frames[k]["zu"]]
        assert np.allclose(xyz, mapped.positions[k], rtol=1e-9, atol=1e-7)
        assert frames[k]["type"].tolist() == mapped.bead_types.tolist()
        assert frames[k]["mol"].tolist() == [1, 1, 1]
        box_lo = np.diag(frames[k]["box"])
        assert np.all(box_lo > np.ptp(xyz, axis=0))               # the box encloses the chain
    # times in fs become whole-fs timesteps
    frames = read_dump(write_bead_dump(tmp_path / "fs.dump", mapped.time_fs[:3], mapped.positions[:3],
                                       mapped.bead_types))
    assert [f["timestep"] for f in frames] == np.rint(mapped.time_fs[:3]).astype(int).tolist()
    with pytest.raises(ValueError, match="increase strictly"):
        write_bead_dump(tmp_path / "x.dump", [0, 0], mapped.positions[:2], mapped.bead_types)


def test_open_chain_run(finished):
    cfg, path, runs = finished
    run = open_chain_run(runs["c12-b"].directory)
    assert run.record == runs["c12-b"].record and run.sequence == "ABABABABABAB"
    with pytest.raises(DataError, match="no finished chain run"):
        open_chain_run(runs["c12-b"].directory.parent)
