"""What a learned polymer dynamics is judged by: radius of gyration, its relaxation, distances.

Definitions (docs/dynamics.md):

* ``Rg`` of a frame: the mass-weighted root-mean-square distance of the beads from their centre
  of mass.  Per sequence the rollout's time-mean Rg is compared with the reference MD's
  (mapped to the same beads).
* Relaxation time of ``Rg^2``: from its normalised autocorrelation C(t) (the mean over all
  series removed, the unbiased estimator of each lag, averaged over independent trajectories
  of the same chain when there are several), two ways, both reported: the integral of C(t) up to its first zero crossing
  (trapezoidal rule), and the time constant of a fit of exp(-t / tau) to C(t) over the lags
  before C first drops below ``fit_floor`` (least squares on C itself, scipy's curve_fit).
* ``r^2`` over held-out sequences: the coefficient of determination of the prediction against
  the reference, 1 - sum (pred - ref)^2 / sum (ref - mean ref)^2: it rewards agreement with the
  line y = x, not just correlation (the squared Pearson correlation is reported beside it).
"""

from __future__ import annotations

import numpy as np


def radius_of_gyration(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Rg (Å) of each frame of ``positions`` (F, n, 3), unwrapped; ``masses`` (n,)."""
    positions = np.asarray(positions, dtype=np.float64)
    w = np.asarray(masses, dtype=np.float64) / np.sum(masses)
    centre = np.einsum("n,fnc->fc", w, positions)
    sq = ((positions - centre[:, None, :]) ** 2).sum(-1)
    return np.sqrt(sq @ w)


def autocorrelation(series: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """Normalised autocorrelation C(lag) of one series (T,) or several independent ones (S, T)
    of one stationary process, each lag averaged over the pairs available (unbiased).

    The mean removed is that of all series together: removing each short series' own mean
    would bias C(t) low (and the relaxation time short) when a series spans few relaxation
    times, as rollouts from several starts each do."""
    x = np.atleast_2d(np.asarray(series, dtype=np.float64))
    x = x - x.mean()
    n = x.shape[1]
    max_lag = n - 1 if max_lag is None else min(max_lag, n - 1)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(x, size, axis=1)
    raw = np.fft.irfft(spectrum * np.conj(spectrum), size, axis=1)[:, :max_lag + 1]
    raw = raw.sum(axis=0) / (x.shape[0] * (n - np.arange(max_lag + 1)))
    return raw / raw[0] if raw[0] > 0 else np.full_like(raw, np.nan)


def integrated_time(acf: np.ndarray, dt: float) -> float:
    """Integral of C(t) from 0 to its first zero crossing (trapezoidal), in the units of dt."""
    acf = np.asarray(acf, dtype=np.float64)
    below = np.nonzero(acf <= 0)[0]
    end = below[0] if len(below) else len(acf)
    if end < 2:
        return float(0.5 * dt * acf[0]) if len(acf) else float("nan")
    head = acf[:end]
    tau = dt * (head.sum() - 0.5 * (head[0] + head[-1]))
    if len(below):  # the last interval down to the crossing, linearly interpolated
        a, b = acf[end - 1], acf[end]
        tau += 0.5 * a * dt * a / (a - b)
    return float(tau)


def exponential_time(acf: np.ndarray, dt: float, fit_floor: float = 0.1) -> float:
    """tau of a least-squares fit of exp(-t / tau) to C(t) for the lags before C < fit_floor."""
    from scipy.optimize import curve_fit

    acf = np.asarray(acf, dtype=np.float64)
    below = np.nonzero(acf < fit_floor)[0]
    end = below[0] if len(below) else len(acf)
    if end < 3:
        end = min(3, len(acf))
    t = dt * np.arange(end)
    guess = max(integrated_time(acf, dt), dt)
    try:
        (tau,), _ = curve_fit(lambda s, tau: np.exp(-s / tau), t, acf[:end], p0=[guess],
                              bounds=(1e-12 * dt, np.inf))
    except RuntimeError:
        return float("nan")
    return float(tau)


def relaxation_times(rg: np.ndarray, dt: float, max_lag_fraction: float = 0.5) -> dict:
    """Both relaxation times of Rg^2 (units of dt) from one or several Rg series (S, T)."""
    rg = np.atleast_2d(rg)
    acf = autocorrelation(rg ** 2, max_lag=int(rg.shape[1] * max_lag_fraction))
    return {"tau_integral": integrated_time(acf, dt), "tau_exp": exponential_time(acf, dt),
            "acf": acf}


def r_squared(predicted, reference) -> float:
    """Coefficient of determination of ``predicted`` against ``reference`` (the y = x line)."""
    p, r = np.asarray(predicted, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(r)
    p, r = p[ok], r[ok]
    ss_tot = ((r - r.mean()) ** 2).sum()
    if len(r) < 2 or ss_tot == 0:
        return float("nan")
    return float(1.0 - ((p - r) ** 2).sum() / ss_tot)


def pearson_r2(predicted, reference) -> float:
    p, r = np.asarray(predicted, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(r)
    if ok.sum() < 2:
        return float("nan")
    return float(np.corrcoef(p[ok], r[ok])[0, 1] ** 2)


def pair_distance_histogram(positions: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Normalised histogram (a density over ``bins``) of all bead-bead distances of all frames."""
    positions = np.asarray(positions, dtype=np.float64)
    i, j = np.triu_indices(positions.shape[1], k=1)
    d = np.linalg.norm(positions[:, j] - positions[:, i], axis=-1).ravel()
    hist, _ = np.histogram(d, bins=bins, density=True)
    return hist


def histogram_overlap(p: np.ndarray, q: np.ndarray, bins: np.ndarray) -> float:
    """Overlap integral of two densities on the same bins: 1 for identical, 0 for disjoint."""
    width = np.diff(bins)
    return float(np.minimum(p, q) @ width)
