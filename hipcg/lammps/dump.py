"""Read and truncate LAMMPS text dumps (``dump custom``): hipcg's one dump reader.

Written by hand because callers need arbitrary per-atom columns (``c_pe``, ``v_*``) that
trajectory readers such as MDAnalysis do not expose; it is used on dumps hipcg's runs write.
Two faults are found here instead of being passed on as data: a last frame cut off by a run
that was stopped, and timesteps that repeat or go backwards (a dump appended to twice).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from ..errors import DataError

HEADER_LINES = 9  # ITEM: TIMESTEP, step, ITEM: NUMBER OF ATOMS, n, ITEM: BOX BOUNDS, 3 bounds, ITEM: ATOMS


@dataclass
class _Block:
    """One frame's lines, as they stand in the file."""

    line: int  # 1-based line number of its 'ITEM: TIMESTEP'
    timestep: int | None
    lines: list[bytes]  # header first, then one line per atom
    end: int  # byte offset just after the frame
    cut: str | None = None  # why it is incomplete; only the last block can be


def _read_lines(f: BinaryIO, n: int) -> list[bytes]:
    """Up to ``n`` lines; fewer at the end of the file."""
    lines = []
    for _ in range(n):
        line = f.readline()
        if not line:
            break
        lines.append(line)
    return lines


def _int(path: Path, line_no: int, text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{path}: line {line_no}: expected a whole number, got {text!r}") from None


def _scan(path: Path) -> Iterator[_Block]:
    """The frames of a dump in file order; checks the layout and that timesteps increase."""
    with open(path, "rb") as f:
        line_no, previous = 0, None
        while header := _read_lines(f, HEADER_LINES):
            first = line_no + 1
            cut_header = len(header) < HEADER_LINES or not header[-1].endswith(b"\n")
            if cut_header and (header[0].startswith(b"ITEM: TIMESTEP") or not header[0].endswith(b"\n")):
                step = header[1] if len(header) > 1 and header[1].endswith(b"\n") else b""
                yield _Block(first, int(step) if step.strip().isdigit() else None, header, f.tell(),
                             "the file ends inside its header")
                return
            if not header[0].startswith(b"ITEM: TIMESTEP"):
                raise DataError(f"{path}: line {first}: expected 'ITEM: TIMESTEP', got {header[0]!r}")
            if not header[8].startswith(b"ITEM: ATOMS"):
                raise DataError(f"{path}: line {first + 8}: expected 'ITEM: ATOMS', got {header[8]!r}")
            timestep, n_atoms = _int(path, first + 1, header[1]), _int(path, first + 3, header[3])
            if previous is not None and timestep <= previous:
                raise DataError(f"{path}: line {first + 1}: timestep {timestep} after timestep "
                                f"{previous}: timesteps repeat or go back (a dump appended to twice?)")
            rows = _read_lines(f, n_atoms)
            line_no = first + HEADER_LINES - 1 + len(rows)
            starts = [k for k, row in enumerate(rows) if row.startswith(b"ITEM:")]
            if starts:
                raise DataError(f"{path}: line {first + HEADER_LINES + starts[0]}: the frame at "
                                f"timestep {timestep} has {starts[0]} of its {n_atoms} atom lines")
            block = _Block(first, timestep, header + rows, f.tell())
            if len(rows) < n_atoms or (rows and not rows[-1].endswith(b"\n")):
                block.cut = f"{len(rows)} of its {n_atoms} atom lines, the last one maybe partial"
                yield block
                return
            yield block
            previous = timestep


def dump_box(header: str, bounds: np.ndarray) -> np.ndarray:
    """3x3 cell (rows a, b, c) from a dump's ``ITEM: BOX BOUNDS`` header and its three lines.

    Triclinic dumps give the bounding box plus tilts (LAMMPS Howto triclinic)."""
    if "xy" in header.split():
        xy, xz, yz = bounds[:, 2]
        xlo = bounds[0, 0] - min(0.0, xy, xz, xy + xz)
        xhi = bounds[0, 1] - max(0.0, xy, xz, xy + xz)
        ylo = bounds[1, 0] - min(0.0, yz)
        yhi = bounds[1, 1] - max(0.0, yz)
        return np.array([[xhi - xlo, 0, 0], [xy, yhi - ylo, 0], [xz, yz, bounds[2, 1] - bounds[2, 0]]])
    return np.diag(bounds[:, 1] - bounds[:, 0])


def _frame(path: Path, block: _Block) -> dict:
    header = [line.decode() for line in block.lines[:HEADER_LINES]]
    columns = header[8].split()[2:]
    where = f"{path}: line {block.line}: frame at timestep {block.timestep}"
    body = block.lines[HEADER_LINES:]
    try:
        rows = np.loadtxt(body, ndmin=2) if body else np.zeros((0, len(columns)))
        bounds = np.array([[float(x) for x in header[5 + d].split()] for d in range(3)])
    except ValueError as err:
        raise DataError(f"{where}: {err}") from None
    if rows.shape[1] != len(columns):
        raise DataError(f"{where}: {rows.shape[1]} values per atom for columns {columns}")
    if "id" in columns:
        rows = rows[np.argsort(rows[:, columns.index("id")])]
    frame = {name: rows[:, c] for c, name in enumerate(columns)}
    frame["timestep"] = block.timestep
    frame["box"] = dump_box(header[4], bounds)
    return frame


def read_dump(path: str | os.PathLike, allow_truncated: bool = False) -> list[dict[str, np.ndarray]]:
    """Frames of a LAMMPS text dump as {column: array} plus 'timestep' and 'box' (3x3, rows
    a, b, c); rows sorted by id.

    Raises :class:`~hipcg.errors.DataError` (file, line, timestep) for a malformed dump, for
    timesteps that repeat or go back, and for a last frame that was cut off, unless
    ``allow_truncated``: then that partial frame (a run that was stopped) is dropped.
    """
    path = Path(path)
    frames = []
    for block in _scan(path):
        if block.cut is not None:
            if allow_truncated:
                break
            which = (f"the frame at timestep {block.timestep}" if block.timestep is not None
                     else "the last frame")
            raise DataError(f"{path}: line {block.line}: {which} is cut off ({block.cut}): "
                            f"the run that wrote it stopped early")
        frames.append(_frame(path, block))
    return frames


def truncate_dump(path: str | os.PathLike, before_step: int) -> int:
    """Cut a text dump back to the frames with timestep < ``before_step``; return their count.

    Also drops a trailing partial frame left by a killed run (a missing file has 0 frames).
    """
    path = Path(path)
    if not path.exists():
        return 0
    keep_bytes, frames = 0, 0
    with contextlib.closing(_scan(path)) as blocks:
        for block in blocks:
            if block.cut is not None or block.timestep >= before_step:
                break
            keep_bytes, frames = block.end, frames + 1
    with open(path, "r+b") as f:
        f.truncate(keep_bytes)
    return frames


def stack_positions(frames: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(timesteps (F,), boxes (F, 3, 3), positions (F, n, 3)) of :func:`read_dump` frames;
    positions are the unwrapped ``xu yu zu`` when the dump has them, else ``x y z``."""
    if not frames:
        return np.zeros(0, int), np.zeros((0, 3, 3)), np.zeros((0, 0, 3))
    xyz = ["xu", "yu", "zu"] if "xu" in frames[0] else ["x", "y", "z"]
    return (np.array([f["timestep"] for f in frames]), np.array([f["box"] for f in frames]),
            np.array([np.stack([f[c] for c in xyz], axis=1) for f in frames]))
