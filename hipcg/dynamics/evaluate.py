"""Rollouts against the reference MD of the same held-out sequences (definitions: metrics.py).

Per sequence: mean Rg of the rollout and of the reference (bead level, both), the relaxation
time of Rg^2 both ways, the overlap of the bead-bead distance distributions, collisions,
blow-ups, and simulated time per wall second of the rollout against the reference MD's.
Overall: r^2 of Rg and of each relaxation time over the sequences.
"""

from __future__ import annotations

import numpy as np

from . import metrics


def distance_bins(reference_positions: np.ndarray, n_bins: int = 60) -> np.ndarray:
    i, j = np.triu_indices(reference_positions.shape[1], k=1)
    d = np.linalg.norm(reference_positions[:, j] - reference_positions[:, i], axis=-1)
    return np.linspace(0.0, 1.5 * float(np.percentile(d, 99.9)), n_bins + 1)


def evaluate_sequence(result, reference) -> dict:
    """One held-out sequence: ``result`` a :class:`~hipcg.dynamics.rollout.RolloutResult`,
    ``reference`` its :class:`~hipcg.dynamics.beads.BeadTrajectory`."""
    masses = reference.bead_masses
    ref_rg = metrics.radius_of_gyration(reference.positions, masses)
    ref_dt = reference.frame_interval_fs
    ref_tau = metrics.relaxation_times(ref_rg, ref_dt)
    series = []
    for b in range(result.positions.shape[0]):
        x = result.positions[b]
        ok = np.isfinite(x).all(axis=(1, 2))
        x = x[: np.argmin(ok) if not ok.all() else len(ok)]
        series.append(metrics.radius_of_gyration(x, masses))
    usable = [s for s in series if len(s) > 10]
    roll_rg = np.concatenate(usable) if usable else np.array([])
    length = min((len(s) for s in usable), default=0)
    roll_tau = (metrics.relaxation_times(np.array([s[:length] for s in usable]), result.learned_step_fs)
                if length > 10 else {"tau_integral": float("nan"), "tau_exp": float("nan"), "acf": np.array([])})
    bins = distance_bins(reference.positions)
    ref_hist = metrics.pair_distance_histogram(reference.positions, bins)
    roll_pos = np.concatenate([result.positions[b][np.isfinite(result.positions[b]).all(axis=(1, 2))]
                               for b in range(result.positions.shape[0])])
    roll_hist = metrics.pair_distance_histogram(roll_pos, bins) if len(roll_pos) else np.zeros_like(ref_hist)
    # the reference's own noise: its first half against its second half
    half = len(ref_rg) // 2
    halves_tau = [metrics.relaxation_times(part, ref_dt)["tau_integral"]
                  for part in (ref_rg[:half], ref_rg[half:])]
    return {
        "name": result.name, "sequence": reference.sequence,
        "fraction_A": float(np.mean(np.asarray(reference.monomer_types) == 0)),
        "rg_rollout": float(np.mean(roll_rg)) if len(roll_rg) else float("nan"),
        "rg_reference": float(np.mean(ref_rg)),
        "rg_reference_halves": [float(np.mean(ref_rg[:half])), float(np.mean(ref_rg[half:]))],
        "rg_std_rollout": float(np.std(roll_rg)) if len(roll_rg) else float("nan"),
        "rg_std_reference": float(np.std(ref_rg)),
        "tau_rollout": roll_tau["tau_integral"], "tau_reference": ref_tau["tau_integral"],
        "tau_reference_halves": halves_tau,
        "tau_exp_rollout": roll_tau["tau_exp"], "tau_exp_reference": ref_tau["tau_exp"],
        "acf_rollout": np.asarray(roll_tau["acf"]).tolist(), "acf_reference": ref_tau["acf"].tolist(),
        "acf_dt_rollout_fs": result.learned_step_fs, "acf_dt_reference_fs": ref_dt,
        "distance_overlap": metrics.histogram_overlap(ref_hist, roll_hist, bins),
        "distance_bins": bins.tolist(), "distance_hist_rollout": roll_hist.tolist(),
        "distance_hist_reference": ref_hist.tolist(),
        "collisions": np.asarray(result.collisions).tolist(),
        "bond_caps": (np.zeros(result.positions.shape[0], int) if result.bond_caps is None
                      else np.asarray(result.bond_caps)).tolist(),
        "blowups": result.blowups,
        "rollout_fs_per_wall_second": result.fs_per_wall_second,
        "reference_fs_per_wall_second": float(reference.md_fs_per_wall_second),
        "speedup": result.fs_per_wall_second / float(reference.md_fs_per_wall_second),
        "rollout_steps": int(result.positions.shape[1] - 1), "rollouts": int(result.positions.shape[0]),
    }


def summarise(rows: list[dict]) -> dict:
    """r^2 of Rg and relaxation times over held-out sequences, and the totals.

    The reference's own noise floor is the r^2 of its first half against its second half
    (``*_r2_reference_halves``): a model cannot be judged closer to the reference than that."""
    get = lambda key: np.array([r[key] for r in rows], dtype=float)  # noqa: E731
    halves = lambda key: np.array([r[key] for r in rows], dtype=float).T  # noqa: E731
    return {
        "rg_r2_reference_halves": metrics.r_squared(*halves("rg_reference_halves")),
        "tau_r2_reference_halves": metrics.r_squared(*halves("tau_reference_halves")),
        "rg_r2": metrics.r_squared(get("rg_rollout"), get("rg_reference")),
        "rg_pearson_r2": metrics.pearson_r2(get("rg_rollout"), get("rg_reference")),
        "tau_r2": metrics.r_squared(get("tau_rollout"), get("tau_reference")),
        "tau_pearson_r2": metrics.pearson_r2(get("tau_rollout"), get("tau_reference")),
        "tau_exp_r2": metrics.r_squared(get("tau_exp_rollout"), get("tau_exp_reference")),
        "collisions": int(sum(sum(r["collisions"]) for r in rows)),
        "blowups": int(sum(b is not None for r in rows for b in r["blowups"])),
        "bond_caps": int(sum(sum(r["bond_caps"]) for r in rows)),
        "rollout_steps": int(sum(r["rollout_steps"] * r["rollouts"] for r in rows)),
        "speedup": float(np.median(get("speedup"))),  # median over sequences
        "n_sequences": len(rows),
    }
