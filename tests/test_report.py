"""A short one-bead methanol CG evaluation end to end: baseline fit, runs, report.

Issue 5's trained HIP-NN-TS model is not used here (too slow for a unit test and not available
to this test): the "CG model" is the Lennard-Jones model file with methanol-like parameters,
run through pair_style hipcg, and the "mapped atomistic" data are lj/cut runs of the same
liquid at 280 K (trained) and 320 K (held out).  The point is the machinery, not the physics.
"""

import json

import pytest

from hipcg.baseline import dataset_frames, fit_pair_forces, write_table
from hipcg.data import load_dataset
from hipcg.evaluate import EvaluationSettings, evaluate
from hipcg.models.lj import export_lennard_jones
from hipcg.report import SECTIONS, write_report
from hipcg.statepoint import StatePoint

from lj_reference import METHANOL, lj_dataset

M = METHANOL


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, plugin_path):
    root = tmp_path_factory.mktemp("methanol")
    kw = dict(cells=3, steps=1000, every=50, timestep=4.0, lattice=M["lattice"], epsilon=M["epsilon"],
              sigma=M["sigma"], cutoff=M["cutoff"], mass=M["mass"], type_name=M["type_name"], pressure=1.0)
    train = lj_dataset(root / "T280", 280.0, **kw)
    test = lj_dataset(root / "T320", 320.0, **kw)
    model = export_lennard_jones(root / "meoh.pt", [M["type_name"]], [[M["epsilon"]]], [[M["sigma"]]],
                                 M["cutoff"])
    table = fit_pair_forces(dataset_frames(load_dataset(train)), [M["type_name"]], M["cutoff"])
    baseline = write_table(table, root / "baseline.json")
    settings = EvaluationSettings(steps=400, npt_steps=200, timestep=4.0, dump_every=25,
                                  thermo_every=25, max_static_frames=5)
    result = evaluate({"hipcg": model, "baseline": baseline},
                      [StatePoint("T280", role="train", dataset=train), StatePoint("T320", role="test", dataset=test)],
                      settings, root / "eval", progress=False)
    return root, result


def test_short_methanol_runs_do_not_blow_up(evaluation):
    _, result = evaluation
    for sp in result["state_points"]:
        for name, m in sp["models"].items():
            assert m["nvt"]["blew_up"] is None and m["npt"]["blew_up"] is None, (sp["name"], name)
            assert m["nvt"]["rdf_error"] < 0.1
            assert 0.5 < m["npt"]["density"] < 1.2
            assert m["nvt"]["diffusion"] > 0
        # the exact model's forces are the data's
        assert sp["models"]["hipcg"]["static"]["force_rmse"] < 1e-6


def test_report_contains_every_section(evaluation):
    root, _ = evaluation
    paths = write_report(root / "eval" / "evaluation.json", root / "report")
    md = paths["report.md"].read_text()
    for section in SECTIONS:
        assert f"## {section}" in md
    for sp in ("T280", "T320"):
        assert f"rdf_{sp}.png" in paths and paths[f"rdf_{sp}.png"].stat().st_size > 1000
    html = paths["report.html"].read_text()
    # two RDFs, errors, thermo (density, pressure) and, where a held-out point has a score (its
    # null model differs from the reference by more than the floor), the score against T
    data = json.loads(paths["report.json"].read_text())
    scored = any(r["transferability_score"] is not None for r in data["rows"])
    assert html.count("data:image/png;base64,") == 4 + scored and "<table>" in html
    assert "thermo_vs_temperature.png" in paths
    assert ("score_vs_temperature.png" in paths) == scored
    assert len(data["rows"]) == 4
    assert {r["model"] for r in data["rows"]} == {"hipcg", "baseline"}
    assert {r["model"]: r["model_kind"] for r in data["rows"]} == {"hipcg": "lennard-jones",
                                                                   "baseline": "pairwise"}
    assert {r["trained"] for r in data["rows"]} == {True, False}
    with pytest.raises(FileExistsError):
        write_report(root / "eval" / "evaluation.json", root / "report")


def test_held_out_points_carry_floor_null_and_score(evaluation, tmp_path):
    """Every held-out row has the reference's noise floor, the null model (the trained state's
    atomistic RDF) and the score on the same bins; trained rows have the floor only."""
    root, result = evaluation
    paths = write_report(root / "eval" / "evaluation.json", tmp_path / "report")
    data = json.loads(paths["report.json"].read_text())
    for r in data["rows"]:
        assert r["rdf_noise_floor"] is not None and 0 < r["rdf_noise_floor"] < 0.1
        if r["trained"]:
            assert r["rdf_null"] is None and r["transferability_score"] is None
        else:
            assert r["null_from"] == "T280" and r["rdf_null"] > 0
            assert r["separation"] == pytest.approx(r["rdf_null"] / r["rdf_noise_floor"])
            if r["rdf_null"] > r["rdf_noise_floor"]:
                expected = (r["rdf_null"] - r["rdf_error_common"]) / (r["rdf_null"] - r["rdf_noise_floor"])
                assert r["transferability_score"] == pytest.approx(expected)
    md = paths["report.md"].read_text()
    assert "## Transferability" in md and "mean score" in md


def test_temperature_plots_join_only_state_points_of_one_pressure():
    """A line from 300 K / 1 atm to 450 K / 1000 atm would suggest a path never run."""
    from hipcg.report import _isobars

    rows = [{"state_point": n, "temperature": t, "pressure_ref": p}
            for n, t, p in [("a", 450.0, 1.0), ("b", 300.0, 1000.0), ("c", 300.0, 1.0), ("d", 350.0, 1.0)]]
    groups = _isobars(rows)
    assert [[r["state_point"] for r in g] for g in groups] == [["c", "d", "a"], ["b"]]


def test_score_plot_shows_the_held_out_points_only(tmp_path):
    from hipcg.report import plot_score_vs_temperature

    rows = [{"state_point": n, "temperature": t, "pressure_ref": p, "model": m, "trained": tr,
             "transferability_score": s}
            for n, t, p, tr in [("T300", 300.0, 1.0, True), ("T450", 450.0, 1000.0, False)]
            for m, s in [("a", None if tr else 0.6), ("b", None if tr else -0.2)]]
    path = plot_score_vs_temperature(rows, tmp_path)
    assert path.name == "score_vs_temperature.png" and path.stat().st_size > 1000
    assert plot_score_vs_temperature([{**r, "transferability_score": None} for r in rows], tmp_path) is None
