"""The volume term of a CG model: the pressure that force matching cannot see.

Force matching fixes a CG model's forces at the volumes it was trained on; it says nothing
about how the potential of mean force changes with volume, so a force-matched model's pressure
is off by hundreds to thousands of atm and ``fix npt`` turns the liquid into a gas.  The cure
(Das & Andersen, J. Chem. Phys. 132, 164106, 2010; Dunn & Noid, J. Chem. Phys. 143, 243148,
2015) is a term that depends on the volume alone, fitted to the atomistic pressure::

    U_V(V) = N u(v),        v = V / N   (Å^3 per bead)
    P_V(v) = -dU_V/dV = p0 - K (v - v0) / v0                      (atm)
    u(v)   = -ATM [p0 (v - v0) - K (v - v0)^2 / (2 v0)]            (kcal/mol per bead)

``p0`` is the term's pressure at the reference volume per bead ``v0``, ``K`` the bulk modulus
it adds there (``-v dP_V/dv`` at v0).  Its virial, split evenly over the beads, is
``v P_V ATM`` on each diagonal component per bead, which is how ``pair_style hipcg`` and
``pair_style hipcg/volume`` apply it (docs/model-file-contract.md, "volume_term").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ModelFileError


def _real_units() -> tuple[float, float]:
    from ase import units

    kcal_mol = units.kcal / units.mol
    return 101325.0 * units.Pascal / kcal_mol, units.kB / kcal_mol


#: 1 atm in kcal/(mol Å^3) (LAMMPS real: force->nktv2p is its inverse), and Boltzmann's
#: constant in kcal/(mol K), both from ASE's units
ATM, KB = _real_units()

FORM = "linear-pressure"


@dataclass(frozen=True)
class VolumeTerm:
    p0: float  # atm: P_V at v0
    bulk: float  # atm: K, the bulk modulus the term adds at v0
    v0: float  # Å^3 per bead

    def __post_init__(self):
        for name in ("p0", "bulk", "v0"):
            if not math.isfinite(getattr(self, name)):
                raise ModelFileError(f"volume_term.{name}: must be finite, got {getattr(self, name)}")
        if not self.v0 > 0:
            raise ModelFileError(f"volume_term.v0: must be > 0 (Å^3 per bead), got {self.v0}")

    def pressure(self, n_beads, volume):
        """P_V in atm for ``n_beads`` beads in ``volume`` Å^3 (arrays broadcast)."""
        v = np.asarray(volume, dtype=np.float64) / n_beads
        return self.p0 - self.bulk * (v - self.v0) / self.v0

    def energy(self, n_beads, volume):
        """U_V in kcal/mol."""
        dv = np.asarray(volume, dtype=np.float64) / n_beads - self.v0
        return -n_beads * ATM * (self.p0 * dv - self.bulk * dv * dv / (2.0 * self.v0))

    def virial(self, n_beads, volume) -> np.ndarray:
        """The term's 3x3 virial in kcal/mol (isotropic: trace / (3 V) = P_V in kcal/(mol Å^3))."""
        return np.eye(3) * float(volume) * ATM * float(self.pressure(n_beads, volume))

    def to_dict(self) -> dict:
        return {"form": FORM, "p0": float(self.p0), "bulk": float(self.bulk), "v0": float(self.v0),
                "units": {"p0": "atm", "bulk": "atm", "v0": "Angstrom^3 per bead"}}

    @classmethod
    def from_dict(cls, data: dict, source: str = "model") -> "VolumeTerm":
        if not isinstance(data, dict) or data.get("form") != FORM:
            raise ModelFileError(f"{source}: volume_term must be a record with form {FORM!r}, "
                                 f"got {data!r}")
        try:
            return cls(float(data["p0"]), float(data["bulk"]), float(data["v0"]))
        except KeyError as err:
            raise ModelFileError(f"{source}: volume_term lacks {err}") from None


def target_pressure(pressure_atm, volume, n_beads: int, temperature: float) -> np.ndarray:
    """What a CG model's configurational pressure (virial + volume term) must equal per frame:
    the atomistic pressure less the CG beads' ideal-gas part N k T / V (atm)."""
    return np.asarray(pressure_atm, dtype=np.float64) - n_beads * KB * temperature / (
        np.asarray(volume, dtype=np.float64) * ATM)


def virial_pressure(virial_trace, volume) -> np.ndarray:
    """The configurational pressure (atm) of a virial trace (kcal/mol) in ``volume`` Å^3."""
    return np.asarray(virial_trace, dtype=np.float64) / (3.0 * np.asarray(volume) * ATM)


@dataclass
class VolumeFit:
    term: VolumeTerm
    frames: int
    rmse: float  # atm: per-frame residual after the fit (mostly the atomistic pressure's noise)
    p0_stderr: float  # atm
    bulk_fitted: bool  # False: every frame has the same volume, K is not identifiable (0)

    def to_dict(self) -> dict:
        return {**self.term.to_dict(), "frames": self.frames, "rmse_atm": self.rmse,
                "p0_stderr_atm": self.p0_stderr, "bulk_fitted": self.bulk_fitted}


def fit_volume_term(residual_atm, volume_per_bead, v0: float | None = None,
                    weights=None) -> VolumeFit:
    """Least squares for (p0, K) from per-frame pressure residuals (target minus the model's
    virial pressure) at the frames' volumes per bead.

    With one volume only (a single NVT state point) K does not enter the residuals; it is set
    to 0 and left to the self-consistent NPT step (:mod:`hipcg.refine`).
    ``weights``: per-frame weights (e.g. to balance state points), default equal.
    """
    r = np.asarray(residual_atm, dtype=np.float64)
    v = np.asarray(volume_per_bead, dtype=np.float64)
    w = np.ones_like(r) if weights is None else np.asarray(weights, dtype=np.float64)
    if r.shape != v.shape or r.ndim != 1 or len(r) == 0:
        raise ValueError(f"residuals {r.shape} and volumes {v.shape} must be equal, 1-d, non-empty")
    v0 = float(np.average(v, weights=w)) if v0 is None else float(v0)
    x = -(v - v0) / v0
    bulk_fitted = float(np.sqrt(np.average(x * x, weights=w))) > 1e-4  # > 0.01 % volume spread
    if bulk_fitted:
        design = np.stack([np.ones_like(x), x], axis=1) * np.sqrt(w)[:, None]
        (p0, bulk), *_ = np.linalg.lstsq(design, r * np.sqrt(w), rcond=None)
    else:
        p0, bulk = float(np.average(r, weights=w)), 0.0
    resid = r - (p0 + bulk * x)
    rmse = float(np.sqrt(np.average(resid * resid, weights=w)))
    # frames are correlated: this is the i.i.d. error, a lower bound
    stderr = rmse / math.sqrt(len(r))
    return VolumeFit(VolumeTerm(float(p0), float(bulk), v0), len(r), rmse, stderr, bulk_fitted)


def state_temperature(ds) -> float:
    """The temperature (K) a dataset was sampled at: its state point's, else the mean of its
    per-frame temperatures; a DataError naming the file when it has neither."""
    from .errors import DataError

    t = (ds.metadata.get("state_point") or {}).get("temperature")
    if t:
        return float(t)
    if ds.thermo and "temperature" in ds.thermo:
        return float(np.mean(ds.thermo["temperature"]))
    raise DataError(f"{ds.metadata.get('path', 'dataset')}: no temperature (metadata "
                    "state_point.temperature or thermo_temperature): pressure matching needs it")


def pressure_targets(ds, frames=None, why: str = "pressure matching") -> tuple[np.ndarray, np.ndarray]:
    """(target configurational pressure in atm, volume per bead in Å^3) of a dataset's frames
    (:func:`target_pressure`); a DataError naming the file and the key ``thermo_pressure`` when
    the dataset carries no per-frame atomistic pressure."""
    idx = np.arange(ds.n_frames) if frames is None else np.asarray(frames, dtype=int)
    pressure = ds.require_thermo("pressure", why)[idx]
    volume = np.abs(np.linalg.det(np.asarray(ds.boxes, dtype=np.float64)[idx]))
    return target_pressure(pressure, volume, ds.n_beads, state_temperature(ds)), volume / ds.n_beads


def fit_to_datasets(virial_trace, datasets, frames: list, v0: float | None = None) -> VolumeFit:
    """Pressure matching of a model whose forces are fitted: the volume term that brings its
    pressure onto the atomistic one over the given frames of every (training) dataset.

    ``virial_trace(ds, k)``: the model's W = sum_i x_i . F_i (kcal/mol) on frame k of ``ds``;
    ``frames[n]``: the frame indices of ``datasets[n]``.  Every dataset weighs the same
    (state points balanced, as in training).
    """
    residual, per_bead, weights = [], [], []
    for ds, idx in zip(datasets, frames):
        idx = list(idx)
        target, v = pressure_targets(ds, idx)
        w = np.array([virial_trace(ds, k) for k in idx], dtype=np.float64)
        residual.append(target - virial_pressure(w, v * ds.n_beads))
        per_bead.append(v)
        weights.append(np.full(len(idx), 1.0 / max(len(idx), 1)))
    return fit_volume_term(np.concatenate(residual), np.concatenate(per_bead), v0,
                           np.concatenate(weights))
