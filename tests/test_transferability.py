"""Noise floor, null model and transferability score: exact numbers on constructed RDFs, and
the figures the evaluation of a real (LJ) CG run carries."""

from __future__ import annotations

import numpy as np
import pytest

from hipcg.analysis import RDF
from hipcg.transferability import add_scores, inside_noise, max_error, nearest_trained, score


def rdfs(g, n_bins: int = 50, pair: str = "A-A") -> dict:
    r = (np.arange(n_bins) + 0.5) * 0.1
    return {pair: RDF(r, np.full(n_bins, g, dtype=float) if np.isscalar(g) else np.asarray(g), "A", "A")}


def row(name, temperature, trained, ref_g, halves_g, cg_g, n_bins=50):
    return {"name": name, "temperature": temperature, "pressure": 1.0, "trained": trained,
            "reference": {"m": {"rdfs": rdfs(ref_g, n_bins),
                                "rdf_halves": (rdfs(halves_g[0], n_bins), rdfs(halves_g[1], n_bins))}},
            "models": {"m": {"nvt": {"blew_up": None, "rdfs": rdfs(cg_g, n_bins)}}}}


def test_scores_on_constructed_rdfs():
    # reference of the held-out state: g = 1.0; its halves differ by 0.02 (the floor);
    # the trained state's reference: g = 1.10 (null error 0.10); the CG model: g = 1.04 (0.04)
    trained = row("T300", 300.0, True, 1.10, (1.09, 1.11), 1.10)
    held = row("T350", 350.0, False, 1.00, (0.99, 1.01), 1.04, n_bins=60)  # longer range: common bins used
    far = row("T450", 450.0, False, 1.00, (0.99, 1.01), 1.04)
    add_scores([trained, held, far])
    m = held["models"]["m"]
    assert m["null_from"] == "T300"
    assert m["rdf_noise_floor"] == pytest.approx(0.02) and m["rdf_null"] == pytest.approx(0.10)
    assert m["rdf_error_common"] == pytest.approx(0.04)
    assert m["transferability_score"] == pytest.approx((0.10 - 0.04) / (0.10 - 0.02))
    assert m["separation"] == pytest.approx(5.0)
    t = trained["models"]["m"]
    assert t["transferability_score"] is None and t["rdf_null"] is None
    assert t["rdf_noise_floor"] == pytest.approx(0.02)


def test_score_limits_and_noise():
    assert score(0.02, 0.10, 0.02) == pytest.approx(1.0)  # as good as the reference itself
    assert score(0.10, 0.10, 0.02) == pytest.approx(0.0)  # no better than the null model
    assert score(0.18, 0.10, 0.02) == pytest.approx(-1.0)
    assert score(0.05, 0.02, 0.03) is None  # the states do not separate: nothing to score
    assert inside_noise(0.035, 0.040, 0.01) and not inside_noise(0.02, 0.040, 0.01)


def test_nearest_trained_prefers_temperature_then_pressure():
    rows = [{"name": "a", "temperature": 300.0, "pressure": 1.0, "trained": True},
            {"name": "b", "temperature": 300.0, "pressure": 1000.0, "trained": True},
            {"name": "c", "temperature": 400.0, "pressure": 1.0, "trained": True},
            {"name": "x", "temperature": 320.0, "pressure": 900.0, "trained": False}]
    assert nearest_trained(rows[3], rows)["name"] == "b"
    assert max_error(rdfs(1.0), rdfs(1.3)) == pytest.approx(0.3)
