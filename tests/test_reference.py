"""``hipcg reference`` on tiny boxes with the real LAMMPS: dumps, metadata, forces, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hipcg.lammps.dump import read_dump, truncate_dump
from hipcg.reference import ReferenceConfig, ReferenceError, make_plan, run_reference
from hipcg.systems import AVOGADRO, SystemFileError, load_system

REPO = Path(__file__).resolve().parent.parent

# Tiny and short: a few hundred steps per stage, short cutoff, loose PPPM.
TINY = dict(pressure=1.0, equilibrate_ps=0.3, production_ps=0.3, every_fs=20.0, cutoff=6.0,
            kspace_accuracy=1e-4, restart_every_ps=0.1, compress_ps=0.2, settle_ps=0.1,
            progress=False)


def tiny(system, out, molecules, **kw):
    params = dict(TINY)
    if system == "water":   # 2 fs steps: keep the step counts similar
        params.update(equilibrate_ps=0.6, production_ps=0.6, restart_every_ps=0.2,
                      compress_ps=0.4, settle_ps=0.2, every_fs=40.0)
    params.update(kw)
    return ReferenceConfig(system=system, temperatures=[300.0], out=out, molecules=molecules,
                           **params)


@pytest.fixture(scope="module", params=["methanol", "water"])
def finished(request, tmp_path_factory):
    name = request.param
    cfg = tiny(name, tmp_path_factory.mktemp(name), molecules=30 if name == "methanol" else 40)
    (res,) = run_reference(cfg)
    return cfg, res


def test_dump_has_forces_and_expected_frames(finished):
    cfg, res = finished
    system = load_system(cfg.system)
    plan = make_plan(cfg, system)
    frames = read_dump(res.directory / "production.dump")
    assert len(frames) == plan.frames == res.metadata["frames"]
    assert [f["timestep"] for f in frames] == list(range(0, plan.production + 1, plan.every))
    n_atoms = cfg.molecules * system.atoms_per_molecule
    for f in frames:
        for col in ("fx", "fy", "fz", "vx", "vy", "vz", "x", "y", "z", "mol"):
            assert col in f and len(f[col]) == n_atoms
        assert np.all(np.isfinite(f["fx"]))
    # one molecule id per molecule, atoms_per_molecule atoms each
    counts = np.bincount(frames[0]["mol"].astype(int))[1:]
    assert len(counts) == cfg.molecules and np.all(counts == system.atoms_per_molecule)


def test_total_force_vanishes(finished):
    """Newton's third law: per-frame net force is ~0 up to the PPPM error."""
    cfg, res = finished
    for f in read_dump(res.directory / "production.dump"):
        forces = np.c_[f["fx"], f["fy"], f["fz"]]
        rms = np.sqrt((forces ** 2).sum(axis=1).mean())
        net = np.abs(forces.sum(axis=0))
        # 30-40 molecules: net force below 1% of one atom's RMS force (PPPM 1e-4)
        assert np.all(net < 1e-2 * rms), (net, rms)


def test_metadata_matches_run(finished):
    cfg, res = finished
    system = load_system(cfg.system)
    m = json.loads((res.directory / "metadata.json").read_text())
    assert m == res.metadata
    assert m["units"] == "real"
    assert m["temperature"] == 300.0 and m["pressure"] == 1.0
    assert m["n_molecules"] == cfg.molecules
    assert m["n_atoms"] == cfg.molecules * system.atoms_per_molecule
    assert m["force_field"] == system.force_field["name"]
    assert "Jorgensen" in m["force_field_source"] or "Berendsen" in m["force_field_source"]
    assert m["lammps_version"].startswith("22 Jul 2025")
    assert m["seed"] == cfg.seed
    assert m["timestep_fs"] == system.timestep_fs
    # density recorded for the NVT box agrees with mass / volume of the dumped box
    frame = read_dump(res.directory / "production.dump")[-1]
    with open(res.directory / "production.dump") as fh:
        lines = fh.readlines()[5:8]
    lengths = [float(b.split()[1]) - float(b.split()[0]) for b in lines]
    volume = float(np.prod(lengths))
    assert volume == pytest.approx(m["volume_nvt"], rel=1e-6)
    density = cfg.molecules * system.molecule_mass / AVOGADRO / (volume * 1e-24)
    assert density == pytest.approx(m["density_nvt"], rel=1e-5)
    # a liquid, roughly: tiny, short runs only have to stay in a broad band
    assert 0.3 < m["density_npt_mean"] < 1.3
    assert 150 < m["temperature_nvt_mean"] < 450
    assert frame["timestep"] == round(cfg.production_ps * 1000 / system.timestep_fs)


def test_completed_state_point_is_skipped(finished):
    cfg, res = finished
    t0 = time.perf_counter()
    (again,) = run_reference(cfg)
    assert again.skipped and again.metadata == res.metadata
    assert time.perf_counter() - t0 < 5


def test_changed_settings_are_refused_without_force(finished):
    cfg, res = finished
    changed = tiny(cfg.system, cfg.out, molecules=cfg.molecules + 1)
    with pytest.raises(ReferenceError, match="different settings.*molecules"):
        run_reference(changed)


def test_directories_of_hipcg_0_1_are_still_recognised(finished, tmp_path):
    """Old runs recorded the system file's text; the same physics is still the same run."""
    import shutil

    cfg, res = finished
    old_dir = tmp_path / res.directory.name
    shutil.copytree(res.directory, old_dir)
    ident = json.loads((old_dir / "config.json").read_text())
    ident.pop("system")
    ident["system_file"] = "# old comment\n" + load_system(cfg.system).path.read_text()
    (old_dir / "config.json").write_text(json.dumps(ident))
    (again,) = run_reference(tiny(cfg.system, tmp_path, molecules=cfg.molecules))
    assert again.skipped
    ident["system_file"] = ident["system_file"].replace("timestep_fs: ", "timestep_fs: 0.1 #")
    (old_dir / "config.json").write_text(json.dumps(ident))
    with pytest.raises(ReferenceError, match="different settings.*system"):
        run_reference(tiny(cfg.system, tmp_path, molecules=cfg.molecules))


def test_foreign_directory_is_not_overwritten(tmp_path):
    cfg = tiny("methanol", tmp_path, molecules=30)
    target = tmp_path / "methanol_T300_P1"
    target.mkdir()
    (target / "precious.txt").write_text("user data")
    with pytest.raises(ReferenceError, match="--force"):
        run_reference(cfg)
    assert (target / "precious.txt").read_text() == "user data"


def test_bad_system_files_name_file_and_key(tmp_path):
    good = (REPO / "datasets" / "methanol" / "system.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.replace("HC-CT-OH-HO:", "HC-CT-OH-XX:"))
    with pytest.raises(SystemFileError, match=r"bad\.yaml.*dihedral_types.*HC-CT-OH-HO"):
        load_system(bad)
    bad.write_text(good.replace("charge:  0.145", "charge:  0.245"))
    with pytest.raises(SystemFileError, match=r"bad\.yaml.*charges sum"):
        load_system(bad)
    with pytest.raises(SystemFileError, match="no system 'nosuch'"):
        load_system("nosuch")


def test_metadata_records_the_system_fingerprint(finished):
    cfg, res = finished
    assert res.metadata["system"]["fingerprint"] == load_system(cfg.system).fingerprint()


def test_system_fingerprint_follows_physics_not_comments(tmp_path):
    """Editing sources or validation targets keeps reference data; a changed parameter does not."""
    good = (REPO / "datasets" / "methanol" / "system.yaml").read_text()
    base = load_system("methanol").fingerprint()
    edited = tmp_path / "edited.yaml"
    edited.write_text(good.replace("value: 0.777", "value: 0.780")
                      .replace("source: Jorgensen 1996}", "source: Jorgensen et al. JACS 1996}")
                      .replace("# Liquid methanol", "# Edited comment: liquid methanol"))
    assert edited.read_text() != good and load_system(edited).fingerprint() == base
    for old, new in (("pair: [0.170, 3.12]", "pair: [0.171, 3.12]"),     # an epsilon
                     ("[320.0, 1.410]", "[320.0, 1.420]"),                # a bond length
                     ("timestep_fs: 1.0", "timestep_fs: 0.5")):
        assert old in good
        edited.write_text(good.replace(old, new))
        assert load_system(edited).fingerprint() != base, old


def test_truncate_dump_drops_partial_frames(tmp_path):
    frame = "ITEM: TIMESTEP\n{}\nITEM: NUMBER OF ATOMS\n2\nITEM: BOX BOUNDS pp pp pp\n0 1\n0 1\n0 1\n" \
            "ITEM: ATOMS id x\n1 0.1\n2 0.2\n"
    dump = tmp_path / "d.dump"
    dump.write_text(frame.format(0) + frame.format(10) + frame.format(20)[:-6])
    assert truncate_dump(dump, 10**9) == 2
    assert truncate_dump(dump, 10) == 1
    assert dump.read_text() == frame.format(0)


def test_resume_after_kill_gives_same_frames(tmp_path):
    """Kill the CLI (and its LAMMPS) during production, rerun, compare with an unbroken run."""
    common = ["--system", "methanol", "-T", "300", "--molecules", "30", "--equilibrate-ps", "0.2",
              "--production-ps", "3", "--every-fs", "20", "--cutoff", "6",
              "--kspace-accuracy", "1e-4", "--restart-every-ps", "0.2", "--compress-ps", "0.2",
              "--settle-ps", "0.1", "--no-progress"]
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "hipcg.cli", "reference", *common, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sp = out / "methanol_T300_P1"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if list(sp.glob("nvt.*.restart")):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "run ended before it could be killed: " + proc.stderr.read().decode()
        os.killpg(proc.pid, signal.SIGKILL)   # the whole session: python and lmp
    finally:
        proc.wait()
    assert not (sp / "metadata.json").exists()
    partial = len(read_dump(sp / "production.dump")) if (sp / "production.dump").exists() else 0
    assert partial < 151

    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    frames = read_dump(sp / "production.dump")
    assert [f["timestep"] for f in frames] == list(range(0, 3001, 20))
    meta = json.loads((sp / "metadata.json").read_text())
    assert meta["frames"] == len(frames) == 151
    # the log shows that production restarted from a restart file, not from scratch
    assert len(list(sp.glob("log.nvt.*.lammps"))) == 2
    assert "methanol: 1 state point(s)" in done.stdout


@pytest.mark.parametrize("nprocs,threads", [(2, 1), (1, 2)])
def test_mpi_and_openmp_runs(tmp_path, nprocs, threads):
    cfg = tiny("water", tmp_path, molecules=40, nprocs=nprocs, threads=threads,
               equilibrate_ps=0.2, production_ps=0.2, compress_ps=0.2, settle_ps=0.0,
               restart_every_ps=0.2)
    (res,) = run_reference(cfg)
    assert res.metadata["nprocs"] == nprocs and res.metadata["threads"] == threads
    frames = read_dump(res.directory / "production.dump")
    assert len(frames) == res.metadata["frames"] == 6
    f = frames[-1]
    forces = np.c_[f["fx"], f["fy"], f["fz"]]
    assert np.all(np.abs(forces.sum(axis=0)) < 1e-2 * np.sqrt((forces ** 2).sum(axis=1).mean()))
