"""The CG dataset: one ``.npz`` file per state point, written by ``hipcg map``.

Why npz and not HDF5: numpy is already a dependency and h5py is not; an ``.npz`` is a plain
zip of ``.npy`` files that any numpy (and many other tools) can read without our code, and
it can be written atomically (temp file + ``os.replace``).  What it lacks (appending to a
file, chunked partial reads) we get around by streaming frames into temporary raw files and
packing them into the zip at the end (:class:`DatasetWriter`), so memory stays bounded.

Arrays in the file (LAMMPS ``real`` units: Å, kcal/(mol Å), Å/fs, g/mol):

================  ========================  =============================================
positions         (n_frames, n_beads, 3)    bead centres, wrapped into the box
forces            (n_frames, n_beads, 3)    bead forces (sum over the bead's atoms)
velocities        (n_frames, n_beads, 3)    optional; momentum-weighted
boxes             (n_frames, 3, 3)          rows are the box vectors a, b, c
bead_types        (n_beads,) int            index into type_names
type_names        (n_types,) str
masses            (n_beads,)                sum of the bead's atom masses
molecule_ids      (n_beads,) int            which molecule each bead belongs to
metadata          () str                    JSON: units, state point, source, mapping hash
================  ========================  =============================================

Strings are stored as numpy unicode arrays so files load with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import UNITS
from .atomic import atomic_path, remove_stale_temps, temp_sibling
from .errors import DataError, OutputExistsError

FORMAT_VERSION = 1
_FRAME_ARRAYS = ("positions", "forces", "velocities")


class DatasetError(DataError):
    """A dataset file is missing, malformed, or in other units."""



def frame_subset(n_frames: int, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` frame indices spread evenly over ``n_frames`` (all when fewer)."""
    return np.unique(np.linspace(0, n_frames - 1, min(n_frames, max_frames)).round().astype(int))

@dataclass
class CGDataset:
    positions: np.ndarray
    forces: np.ndarray
    boxes: np.ndarray
    bead_types: np.ndarray
    type_names: list[str]
    masses: np.ndarray
    velocities: np.ndarray | None = None
    molecule_ids: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    # per-frame atomistic thermodynamics (hipcg.frame_thermo.KEYS: volume, pressure,
    # pressure_tensor, potential_energy, ...), or None when the source had none
    thermo: dict[str, np.ndarray] | None = None
    path: Path | None = None  # the file it was loaded from (for error messages; not stored)

    def __post_init__(self):
        self.positions = np.asarray(self.positions)
        self.forces = np.asarray(self.forces)
        self.boxes = np.asarray(self.boxes, dtype=np.float64)
        self.bead_types = np.asarray(self.bead_types, dtype=np.int64)
        self.type_names = [str(t) for t in self.type_names]
        self.masses = np.asarray(self.masses, dtype=np.float64)
        if self.molecule_ids is None:
            self.molecule_ids = np.arange(len(self.bead_types))
        self.molecule_ids = np.asarray(self.molecule_ids, dtype=np.int64)
        self.metadata = dict(self.metadata)
        self.metadata.setdefault("units", UNITS)
        f, b = self.positions.shape[:2] if self.positions.ndim == 3 else (-1, -1)
        checks = [
            ("positions", self.positions.shape, (f, b, 3)),
            ("forces", self.forces.shape, (f, b, 3)),
            ("boxes", self.boxes.shape, (f, 3, 3)),
            ("bead_types", self.bead_types.shape, (b,)),
            ("masses", self.masses.shape, (b,)),
            ("molecule_ids", self.molecule_ids.shape, (b,)),
        ]
        if self.velocities is not None:
            self.velocities = np.asarray(self.velocities)
            checks.append(("velocities", self.velocities.shape, (f, b, 3)))
        for key, value in (self.thermo or {}).items():
            self.thermo[key] = np.asarray(value, dtype=np.float64)
            checks.append((f"thermo {key}", self.thermo[key].shape[:1], (f,)))
        for name, shape, want in checks:
            if shape != want or f < 0:
                raise DatasetError(f"{name} has shape {shape}, expected {want} "
                                   "(n_frames, n_beads from positions)")
        if b and (self.bead_types.min() < 0 or self.bead_types.max() >= len(self.type_names)):
            raise DatasetError(f"bead_types must index type_names ({len(self.type_names)} types)")

    @property
    def n_frames(self) -> int:
        return self.positions.shape[0]

    @property
    def n_beads(self) -> int:
        return self.positions.shape[1]

    @property
    def units(self) -> str:
        return self.metadata["units"]

    def __len__(self) -> int:
        return self.n_frames

    def require_thermo(self, key: str, why: str) -> np.ndarray:
        """The per-frame ``thermo`` array ``key``, or a DatasetError naming the file and key."""
        if not self.thermo or key not in self.thermo:
            source = self.metadata.get("source")
            source = source.get("trajectory") if isinstance(source, dict) else source
            name = f"dataset {self.path}" if self.path else "dataset"
            reason = (self.metadata.get("thermo") or {}).get("reason", "")
            raise DatasetError(f"{name}{f' (from {source})' if source else ''}: no per-frame "
                               f"'{key}' (key thermo_{key}; {why} needs it)"
                               f"{'; ' + reason if reason else ''}")
        return self.thermo[key]

    def summary(self) -> str:
        counts = np.bincount(self.bead_types, minlength=len(self.type_names))
        types = ", ".join(f"{n}×{t}" for t, n in zip(self.type_names, counts))
        return (f"{self.n_frames} frames, {self.n_beads} beads ({types}), mean |F| "
                f"{np.linalg.norm(self.forces, axis=-1).mean():.3f} kcal/(mol Å)")


# --------------------------------------------------------------------------- writing


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; not overwriting it (use --overwrite / overwrite=True)")
    if path.suffix != ".npz":
        raise DatasetError(f"{path}: dataset files end in .npz")
    path.parent.mkdir(parents=True, exist_ok=True)


def _small_arrays(bead_types, type_names, masses, molecule_ids, metadata) -> dict[str, np.ndarray]:
    meta = {"units": UNITS, "format_version": FORMAT_VERSION, **metadata}
    return {"bead_types": np.asarray(bead_types, dtype=np.int64),
            "type_names": np.asarray(list(type_names), dtype=str),
            "masses": np.asarray(masses, dtype=np.float64),
            "molecule_ids": np.asarray(molecule_ids, dtype=np.int64),
            "metadata": np.asarray(json.dumps(meta, sort_keys=True, default=_json_default))}


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"metadata value {value!r} is not JSON-serialisable")


def save_dataset(path: str | os.PathLike, ds: CGDataset, overwrite: bool = False) -> Path:
    """Write ``ds`` to ``path`` (.npz) atomically; refuse to replace a file unless ``overwrite``."""
    path = Path(path)
    _check_target(path, overwrite)
    arrays = {"positions": ds.positions, "forces": ds.forces, "boxes": ds.boxes}
    if ds.velocities is not None:
        arrays["velocities"] = ds.velocities
    arrays.update({f"thermo_{k}": v for k, v in (ds.thermo or {}).items()})
    arrays.update(_small_arrays(ds.bead_types, ds.type_names, ds.masses, ds.molecule_ids,
                                ds.metadata))
    check_finite(arrays, path)
    remove_stale_temps(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def check_finite(arrays: dict[str, np.ndarray], path: Path, first_frame: int = 0) -> None:
    """Refuse NaN/Inf in per-frame arrays, naming the file, array, frame and bead."""
    names = ["positions", "forces", "boxes", "velocities"] + sorted(k for k in arrays if k.startswith("thermo_"))
    for name in names:
        value = arrays.get(name)
        if value is None or np.isfinite(value).all():
            continue
        where = np.argwhere(~np.isfinite(value))[0]
        bead = f", bead {where[1]}" if name in _FRAME_ARRAYS and len(where) > 1 else ""
        raise DatasetError(f"{path}: frame {first_frame + where[0]}{bead}: {name} is not finite "
                           f"({value[tuple(where)]}); hipcg refuses NaN/Inf data")


class DatasetWriter:
    """Write a dataset frame by frame with memory independent of the number of frames.

    Frames go to raw temporary files next to the target; :meth:`close` packs them, with
    ``.npy`` headers, into the ``.npz`` (uncompressed zip) and moves it into place atomically.
    On error (or :meth:`abort`) the temporary files are removed and the target is untouched.

    >>> with DatasetWriter(path, n_beads, bead_types, type_names, masses) as w:
    ...     w.append(positions, forces, box, velocities)
    """

    def __init__(self, path: str | os.PathLike, bead_types, type_names, masses,
                 molecule_ids=None, velocities: bool = True, metadata: dict | None = None,
                 overwrite: bool = False, dtype=np.float64):
        self.path = Path(path)
        _check_target(self.path, overwrite)
        self.overwrite = overwrite
        self.n_beads = len(bead_types)
        if molecule_ids is None:
            molecule_ids = np.arange(self.n_beads)
        self.metadata = dict(metadata or {})
        self._small = (bead_types, type_names, masses, molecule_ids)
        self.dtype = np.dtype(dtype)
        self.n_frames = 0
        remove_stale_temps(self.path)  # a killed earlier writer of this target left its frames
        self._tmpdir = temp_sibling(self.path)
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._tmpdir.mkdir()
        names = ["positions", "forces", "boxes"] + (["velocities"] if velocities else [])
        self._files = {name: open(self._tmpdir / f"{name}.raw", "wb") for name in names}
        self._thermo: dict[str, np.ndarray] = {}  # per-frame arrays given by set_thermo
        self.closed = False

    def append(self, positions, forces, box, velocities=None) -> None:
        b = self.n_beads
        for name, value, shape in (("positions", positions, (b, 3)), ("forces", forces, (b, 3)),
                                   ("boxes", box, (3, 3)), ("velocities", velocities, (b, 3))):
            if name not in self._files:
                continue
            if value is None:
                raise DatasetError(f"{self.path}: frame {self.n_frames}: {name} missing")
            value = np.ascontiguousarray(value, dtype=self.dtype if name != "boxes" else np.float64)
            if value.shape != shape:
                raise DatasetError(f"{self.path}: frame {self.n_frames}: {name} has shape "
                                   f"{value.shape}, expected {shape}")
            check_finite({name: value[None]}, self.path, self.n_frames)
            self._files[name].write(memoryview(value).cast("B"))  # no copy
        self.n_frames += 1

    def set_thermo(self, arrays: dict[str, np.ndarray] | None, info: dict) -> None:
        """Per-frame thermodynamics of the frames appended (one value per frame) and what the
        metadata says of them (source and units, or why there are none)."""
        self.metadata["thermo"] = info
        self._thermo = {}
        for key, value in (arrays or {}).items():
            value = np.asarray(value, dtype=np.float64)
            if len(value) != self.n_frames:
                raise DatasetError(f"{self.path}: thermo {key}: {len(value)} values for "
                                   f"{self.n_frames} frames")
            check_finite({f"thermo_{key}": value[:, None]}, self.path)
            self._thermo[key] = value

    def close(self) -> Path:
        """Pack the frames into the ``.npz`` and move it into place; returns the path."""
        if self.closed:
            return self.path
        try:
            for fh in self._files.values():
                fh.close()
            tmp = self._tmpdir / "dataset.npz"
            small = _small_arrays(*self._small, {**self.metadata, "n_frames": self.n_frames})
            small.update({f"thermo_{k}": v for k, v in self._thermo.items()})
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name in self._files:
                    per_frame = (3, 3) if name == "boxes" else (self.n_beads, 3)
                    dtype = np.float64 if name == "boxes" else self.dtype
                    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                              "fortran_order": False, "shape": (self.n_frames, *per_frame)}
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as out, \
                            open(self._tmpdir / f"{name}.raw", "rb") as raw:
                        np.lib.format.write_array_header_2_0(out, header)
                        shutil.copyfileobj(raw, out, 1 << 20)  # 1 MiB chunks: bounded memory
                for name, value in small.items():
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
                        np.lib.format.write_array(out, value, allow_pickle=False)
            if self.path.exists() and not self.overwrite:  # appeared while we were writing
                raise OutputExistsError(f"{self.path} exists; not overwriting it")
            os.replace(tmp, self.path)
        finally:
            self.closed = True
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        for fh in self._files.values():
            fh.close()
        self.closed = True
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


# --------------------------------------------------------------------------- reading


def load_dataset(path: str | os.PathLike) -> CGDataset:
    """Read a dataset written by :func:`save_dataset` / :class:`DatasetWriter`."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset file")
    if path.is_dir() or not zipfile.is_zipfile(path):
        raise DatasetError(f"{path}: cannot read dataset: not a hipcg dataset (not an .npz archive; "
                           "datasets are written by hipcg map)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("positions", "forces", "boxes", "bead_types", "type_names",
                                   "masses", "metadata") if k not in z.files]
            if missing:
                raise DatasetError(f"{path}: not a hipcg dataset: missing {missing}")
            meta = json.loads(str(z["metadata"][()]))
            units = meta.get("units")
            if units != UNITS:
                raise DatasetError(f"{path}: units are {units!r}; hipcg works in {UNITS!r}")
            arrays = {k: z[k] for k in z.files if k not in ("metadata", "type_names")
                      and not k.startswith("thermo_")}
            thermo = {k[len("thermo_"):]: z[k] for k in z.files if k.startswith("thermo_")} or None
            type_names = [str(t) for t in z["type_names"]]
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        if isinstance(err, DatasetError):
            raise
        raise DatasetError(f"{path}: cannot read dataset: {err}") from None
    check_finite({**arrays, **{f"thermo_{k}": v for k, v in (thermo or {}).items()}}, path)
    return CGDataset(type_names=type_names, metadata=meta, thermo=thermo, path=path, **arrays)
