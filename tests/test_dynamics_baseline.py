"""hipcg.dynamics.baseline (issue 15's baseline): rerun forces against LAMMPS' own run 0 and
finite differences of its energy, per-bead sums, the Boltzmann-inverted bond table sampled by
LAMMPS, chains that do not see each other, and a tiny end-to-end run scored by evaluate_sequence
(real LAMMPS, real hippynn, the real plugin)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from hipcg.config import ConfigError
from hipcg.dynamics.baseline import (BaselineConfig, BondTable, bead_assignment, bead_forces,
                                     boltzmann_invert, bond_forces, composition_types, md_script,
                                     rerun_forces, run_baseline, write_chains_data)
from hipcg.dynamics.beads import map_chain
from hipcg.dynamics.chains import ChainRunConfig, load_chain_system, model_lines, run_chains
from hipcg.dynamics.evaluate import evaluate_sequence
from hipcg.dynamics.rollout import RolloutResult
from hipcg.lammps.dump import read_dump
from hipcg.lammps.runner import run_lammps
from hipcg.models.hipnn import HipnnConfig
from hipcg.train.config import OptimizerConfig

REPO = Path(__file__).resolve().parent.parent
POLYMER = REPO / "datasets" / "polymer" / "system.yaml"
SEQUENCES = {"train": {"c12-a": "AAABBBAAABBB", "c12-b": "ABABABABABAB"},
             "test": {"c12-c": "AABBBBBBBBAA"}}
RUN = dict(equilibrate_steps=2_000, production_steps=40_000, frame_every=100, seed=11,
           pushoff_steps=500, thermo_every=10_000)


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    """Three 12-monomer chains (401 frames, 400 tau each) and their system."""
    tmp = tmp_path_factory.mktemp("baseline_chains")
    raw = yaml.safe_load(POLYMER.read_text())
    raw.update(chain_length=12, sequences=SEQUENCES, name="short")
    path = tmp / "short.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    runs = run_chains(ChainRunConfig(system=str(path), **RUN), tmp / "runs", progress=False)
    return load_chain_system(path), runs


# --------------------------------------------------------------------------- (a) forces


def test_rerun_forces_equal_run0_forces_and_energy_derivatives(chains, tmp_path):
    system, runs = chains
    run = runs["c12-a"]
    mf = rerun_forces(run, system, every=50, workdir=tmp_path / "rerun")
    assert mf.steps.tolist() == list(range(0, 40_001, 5_000))          # every 50th frame
    frames = {int(f["timestep"]): f for f in read_dump(run.dump_path)}
    k = 5
    ref = frames[int(mf.steps[k])]
    x = np.c_[ref["xu"], ref["yu"], ref["zu"]]
    assert np.array_equal(mf.positions[k], x)                            # the unwrapped frame

    # the same frame set atom by atom (hipcg's own dump reader, not LAMMPS'), run 0, and
    # central differences of LAMMPS' potential energy for a few coordinates
    h = 1e-4
    probes = [(0, 0), (3, 1), (5, 2), (11, 0)]                           # (atom, direction)
    lines = model_lines(system, "chain.data")
    lines += [f"set atom {i + 1} x {p[0]:.17g} y {p[1]:.17g} z {p[2]:.17g}" for i, p in enumerate(x)]
    lines += ["thermo_style custom step pe", "thermo_modify format float %.17g",
              "dump f all custom 1 run0.dump id fx fy fz", "dump_modify f sort id format float %.17g",
              "run 0", 'print "PE0 $(pe:%.17g)"', "undump f"]
    for i, d in probes:
        move = ["0", "0", "0"]
        lines.append(f"group g{i} id {i + 1}")
        for sign in (1, -1):
            move[d] = f"{sign * h:g}"
            lines += [f"displace_atoms g{i} move {' '.join(move)} units box", "run 0",
                      f'print "PE {i} {d} {sign} $(pe:%.17g)"']
            move[d] = f"{-sign * h:g}"
            lines += [f"displace_atoms g{i} move {' '.join(move)} units box"]
    (tmp_path / "run0").mkdir()
    (tmp_path / "run0" / "chain.data").write_bytes((run.directory / "chain.data").read_bytes())
    out = run_lammps("\n".join(lines) + "\n", tmp_path / "run0").output
    f0 = read_dump(tmp_path / "run0" / "run0.dump")[0]
    forces = np.c_[f0["fx"], f0["fy"], f0["fz"]]
    scale = np.abs(forces).max()
    assert np.abs(mf.forces[k] - forces).max() <= 1e-9 * scale
    pe0 = float(next(line.split()[1] for line in out.splitlines() if line.startswith("PE0 ")))
    assert mf.potential_energy[k] == pytest.approx(pe0, rel=1e-10, abs=1e-10)
    pe = {}
    for line in out.splitlines():
        if line.startswith("PE ") and len(line.split()) == 5:
            _, i, d, sign, e = line.split()
            pe[(int(i), int(d), int(sign))] = float(e)
    for i, d in probes:
        fd = -(pe[(i, d, 1)] - pe[(i, d, -1)]) / (2 * h)
        assert fd == pytest.approx(mf.forces[k][i, d], abs=1e-4 * scale), (i, d)


# --------------------------------------------------------------------------- (b) per bead


def test_bead_forces_are_the_sums_over_each_beads_monomers(chains, tmp_path):
    system, runs = chains
    run = runs["c12-b"]
    mf = rerun_forces(run, system, every=100, workdir=tmp_path / "rerun")
    assign = bead_assignment(12, 3)
    assert np.array_equal(assign, map_chain(run, system, 3).bead_of_monomer)
    fb = bead_forces(mf.forces, assign)
    by_hand = np.zeros((len(mf.steps), 4, 3))
    for frame in range(len(mf.steps)):
        for monomer in range(12):
            by_hand[frame, assign[monomer]] += mf.forces[frame, monomer]
    assert np.allclose(fb, by_hand, rtol=0, atol=1e-12)
    # internal forces only: the chain's total force vanishes
    assert np.abs(fb.sum(axis=1)).max() < 1e-8 * np.abs(fb).max()
    # an uneven partition too (13 monomers in 4 beads)
    odd = bead_assignment(13, 3.25)
    f = np.random.default_rng(1).normal(size=(3, 13, 3))
    assert np.allclose(bead_forces(f, odd), [[f[k, odd == b].sum(0) for b in range(4)] for k in range(3)])
    assert composition_types("AABBBBBBBBAA", assign) == ["A2B1", "A0B3", "A0B3", "A2B1"]


# --------------------------------------------------------------------------- (c) bond table


def test_boltzmann_inverted_bond_table_reproduces_its_distribution_in_lammps(chains, tmp_path):
    """A two-peaked bond-length sample -> table -> a Langevin dimer in LAMMPS: the dimer's bond
    lengths follow the sample's distribution (r^2 Jacobian, kcal/mol, Å, signs of the force)."""
    system, _ = chains
    rng = np.random.default_rng(5)
    sample = np.concatenate([rng.normal(8.0, 0.9, 60_000), rng.normal(10.5, 1.3, 40_000)])
    table = boltzmann_invert(sample, system.kT, bandwidth=0.15)
    # the table's own Boltzmann distribution is the (smoothed) sample's
    hist, edges = np.histogram(sample, bins=60, range=(4, 16), density=True)
    centres = 0.5 * (edges[1:] + edges[:-1])
    implied = np.interp(centres, table.r, table.distribution())
    assert 0.5 * np.abs(hist - implied).sum() * (edges[1] - edges[0]) < 0.03
    # the minimum of U sits at the mode of P(r) / r^2, and F = -dU/dr
    smooth = np.interp(table.r, centres, hist) / table.r ** 2
    inside = (table.r > 6) & (table.r < 13)
    assert table.r[np.argmin(table.energy)] == pytest.approx(table.r[inside][np.argmax(smooth[inside])], abs=0.3)
    mid = len(table.r) // 2
    du = (table.energy[mid + 1] - table.energy[mid - 1]) / (table.r[mid + 1] - table.r[mid - 1])
    assert table.force[mid] == pytest.approx(-du, rel=1e-2, abs=1e-3)
    assert table.r[0] < sample.min() and table.r[-1] > sample.max()      # walls beyond the data

    work = tmp_path / "dimer"
    work.mkdir()
    table.write(work / "bond.table")
    x = np.array([[[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]]])
    write_chains_data(work / "chains.data", x, np.zeros_like(x), np.array([1, 1]), [400.0], ["X"],
                      np.array([[0, 1]]), 200.0)
    dt, steps = 0.05 * system.tau_fs, 200_000
    script = "\n".join([
        "units real", "atom_style bond", "boundary p p p", "atom_modify map array",
        "read_data chains.data", "pair_style zero 5.0", "pair_coeff * *",
        *table.lammps_lines("bond.table"), f"comm_modify cutoff {table.r[-1] + 2:.6g}",
        f"timestep {dt}",
        "fix integrate all nve", f"fix thermostat all langevin 300 300 {system.damp_fs} 99",
        "compute r all bond/local dist", "compute rmax all reduce max c_r inputs local", "variable d equal c_rmax",
        'fix out all print 20 "${d}" file r.txt screen no', "thermo 100000",
        f"run {steps}"]) + "\n"
    run_lammps(script, work)
    r = np.loadtxt(work / "r.txt")[500:]                 # the first 10 tau: leaving the start
    assert r.mean() == pytest.approx(sample.mean(), abs=0.15)
    assert r.std() == pytest.approx(sample.std(), rel=0.06)
    got = np.histogram(r, bins=24, range=(4, 16), density=True)[0]
    want = np.histogram(sample, bins=24, range=(4, 16), density=True)[0]
    assert 0.5 * np.abs(got - want).sum() * 0.5 < 0.08


def test_bond_forces_follow_the_table():
    r = np.linspace(1.0, 20.0, 400)
    table = BondTable(r, 0.5 * (r - 8.0) ** 2, -(r - 8.0), 0.6, (2.0, 19.0))
    x = np.array([[[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [10.0, 7.0, 0.0]]])
    f = bond_forces(x, np.array([[0, 1], [1, 2]]), table)
    assert np.allclose(f[0], [[2.0, 0, 0], [-2.0, -1.0, 0], [0, 1.0, 0]])


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("change, message", [
    ({"starts": 0}, r"baseline\.starts: must be >= 1"),
    ({"run_tau": 3.01}, r"baseline\.run_tau: 3\.01 tau is not a whole number of timesteps"),
    ({"run_tau": 10.0, "dump_every_tau": 4.0}, r"baseline\.run_tau: 10\.0 is not a multiple of dump_every_tau"),
    ({"train_dtype": "float16"}, r"baseline\.train_dtype: allowed values"),
])
def test_bad_config_names_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        BaselineConfig(**change)


# --------------------------------------------------------------------------- (d) end to end

TINY = dict(monomers_per_bead=3, force_every=2, train_frames=100, run_tau=60.0,
            dump_every_tau=4.0, starts=2,
            model=HipnnConfig(network="HipnnQuad", n_features=4, n_sensitivities=4,
                              dist_soft_min=3.0, dist_soft_max=14.0, cutoff=18.0,
                              n_interaction_layers=1, n_atom_layers=1),
            optimizer=OptimizerConfig(batch_size=32, max_epochs=2))


@pytest.fixture(scope="module")
def tiny(chains, tmp_path_factory, plugin_path):
    system, runs = chains
    out = tmp_path_factory.mktemp("baseline")
    tests = [map_chain(runs["c12-c"], system, 3)]
    cfg = BaselineConfig(**TINY)
    results = run_baseline([runs["c12-a"], runs["c12-b"]], tests, system, cfg, out, progress=False)
    return system, runs, tests, cfg, out, results


def test_tiny_baseline_is_scored_like_a_learned_rollout(tiny):
    system, _, tests, cfg, out, results = tiny
    res = results["c12-c"]
    assert isinstance(res, RolloutResult)
    assert res.positions.shape == (2, 16, 4, 3)                      # 60 tau / 4 tau + 1 frames
    assert np.allclose(np.diff(res.time_fs), 4.0 * system.tau_fs)
    assert res.learned_step_fs == pytest.approx(4.0 * system.tau_fs)
    assert res.blowups == [None, None] and not np.any(res.collisions)
    assert 0 < res.wall_seconds < 60 and res.threads == 1
    ref = tests[0]
    starts = np.linspace(0, ref.n_frames - 1, 4)[1:-1].astype(int)
    assert np.allclose(res.positions[:, 0], ref.positions[starts], atol=1e-6)  # from reference frames
    row = evaluate_sequence(res, ref)
    assert math.isfinite(row["rg_rollout"]) and row["rg_rollout"] > 0
    assert math.isfinite(row["speedup"]) and row["rollouts"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["type_names"] == ["A0B3", "A1B2", "A2B1", "A3B0"]
    assert set(summary["timings"]) >= {"rerun_seconds", "bond_seconds", "dataset_seconds",
                                       "train_seconds", "export_seconds", "md"}
    script = (out / "md" / "c12-c" / "in.md.lammps").read_text()
    assert "special_bonds lj/coul 1.0 1.0 1.0" in script and "exclude molecule/inter all" in script
    assert f"langevin 300.0 300.0 {system.damp_fs:.10g}" in script


def test_a_second_call_reuses_every_part_and_a_changed_run_redoes_only_the_md(tiny):
    system, runs, tests, cfg, out, results = tiny
    stamp = {p: p.stat().st_mtime_ns for p in [out / "model.pt", out / "bond" / "bond.table",
                                               out / "datasets" / "c12-a.npz", out / "md" / "c12-c.npz"]}
    again = run_baseline([runs["c12-a"], runs["c12-b"]], tests, system, cfg, out, progress=False)
    assert np.array_equal(again["c12-c"].positions, results["c12-c"].positions)
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items())
    longer = BaselineConfig(**dict(TINY, run_tau=80.0))
    third = run_baseline([runs["c12-a"], runs["c12-b"]], tests, system, longer, out, progress=False)
    assert third["c12-c"].positions.shape[1] == 21
    changed = [p for p, t in stamp.items() if p.stat().st_mtime_ns != t]
    assert changed == [out / "md" / "c12-c.npz"]


def test_chains_in_one_box_do_not_feel_each_other(tiny, plugin_path, tmp_path):
    """``neigh_modify exclude molecule/inter``: two copies of a chain on top of each other get
    the forces of one chain alone, through the plugin's full neighbour list."""
    system, _, tests, cfg, out, _ = tiny
    ref = tests[0]
    table = BondTable.load(out / "bond" / "bond.json")
    names = json.loads((out / "summary.json").read_text())["type_names"]
    types = np.array([names.index(t) + 1 for t in composition_types(ref.sequence, ref.bead_of_monomer)])
    forces = {}
    for copies in (1, 2):
        work = tmp_path / f"c{copies}"
        work.mkdir()
        x = np.repeat(ref.positions[200][None], copies, axis=0)
        x[1:] += 1.5                                              # overlapping, not identical
        write_chains_data(work / "chains.data", x, np.zeros_like(x), types, [300.0] * len(names),
                          names, np.asarray(ref.bead_bonds), 400.0)
        table.write(work / "bond.table")
        script = md_script(system, BaselineConfig(**dict(TINY, run_tau=4.0)), plugin_path,
                           (out / "model.pt").resolve(), table, "bond.table", names, 18.0, 5)
        script = script.replace("fix thermostat", "# fix thermostat").replace(
            "id mol type xu yu zu", "id mol type xu yu zu fx fy fz").replace("run 80", "run 0")
        run_lammps(script, work)
        f = read_dump(work / "beads.dump")[0]
        forces[copies] = np.c_[f["fx"], f["fy"], f["fz"]].reshape(copies, 4, 3)
    assert np.abs(forces[1][0]).max() > 1e-3
    assert np.allclose(forces[2][0], forces[1][0], rtol=0, atol=1e-10)
    assert np.allclose(forces[2][1], forces[1][0], rtol=0, atol=1e-10)
