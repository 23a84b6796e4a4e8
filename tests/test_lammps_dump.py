"""hipcg.lammps.dump: frames cut off by a stopped run and dumps appended to twice are errors
that name the file, line and timestep; ``allow_truncated`` drops only a partial last frame."""

from __future__ import annotations

import numpy as np
import pytest

from hipcg.errors import DataError
from hipcg.lammps.dump import read_dump, stack_positions, truncate_dump

FRAME = ("ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n3\nITEM: BOX BOUNDS pp pp pp\n"
         "0 10\n0 11\n0 12\nITEM: ATOMS id type x y z\n"
         "2 1 2.0 2.5 3.0\n1 1 1.0 1.5 {step}.0\n3 1 3.0 3.5 4.0\n")


def dump(tmp_path, steps, tail=""):
    path = tmp_path / "traj.dump"
    path.write_text("".join(FRAME.format(step=s) for s in steps) + tail)
    return path


def test_whole_frames_sorted_by_id(tmp_path):
    frames = read_dump(dump(tmp_path, [0, 10]))
    assert [f["timestep"] for f in frames] == [0, 10]
    assert frames[1]["id"].tolist() == [1, 2, 3] and frames[1]["z"][0] == 10.0
    steps, boxes, positions = stack_positions(frames)
    assert steps.tolist() == [0, 10] and positions.shape == (2, 3, 3)
    assert np.allclose(boxes[0], np.diag([10, 11, 12]))


@pytest.mark.parametrize("cut", [
    FRAME.format(step=20)[:-20],              # inside an atom line
    FRAME.format(step=20).rsplit("3 1", 1)[0],  # after whole atom lines, one missing
    "ITEM: TIMESTEP\n20\nITEM: NUMBER OF ATOMS\n3\nITEM: BOX",  # inside the header
    "ITEM: TIMES",                            # inside the first line
])
def test_frame_cut_mid_way(tmp_path, cut):
    path = dump(tmp_path, [0, 10], tail=cut)
    with pytest.raises(DataError, match=rf"{path}: line 25: .*cut off"):
        read_dump(path)
    kept = read_dump(path, allow_truncated=True)
    assert [f["timestep"] for f in kept] == [0, 10]  # only the partial frame is dropped


def test_cut_frame_names_its_timestep(tmp_path):
    path = dump(tmp_path, [0], tail=FRAME.format(step=10)[:-20])
    with pytest.raises(DataError, match=r"frame at timestep 10 is cut off \(2 of its 3 atom lines"):
        read_dump(path)


def test_dump_written_twice(tmp_path):
    """Two runs appending to the same dump: the second one's first timestep repeats."""
    path = dump(tmp_path, [0, 10, 20, 0, 10, 20])
    for allow in (False, True):
        with pytest.raises(DataError, match=rf"{path}: line 38: timestep 0 after timestep 20"):
            read_dump(path, allow_truncated=allow)
    with pytest.raises(DataError, match="timestep 0 after timestep 20"):
        truncate_dump(path, 10**9)
    assert truncate_dump(path, 15) == 2  # frames before the repeat are fine to keep
    with pytest.raises(DataError, match="timestep 10 after timestep 10"):
        read_dump(dump(tmp_path, [0, 10, 10]))


def test_short_frame_in_the_middle(tmp_path):
    short = FRAME.format(step=10).replace("3 1 3.0 3.5 4.0\n", "")
    path = tmp_path / "traj.dump"
    path.write_text(FRAME.format(step=0) + short + FRAME.format(step=20))
    with pytest.raises(DataError, match=rf"{path}: line 24: the frame at timestep 10 has 2 of its 3"):
        read_dump(path, allow_truncated=True)


def test_truncate_keeps_whole_frames_only(tmp_path):
    path = dump(tmp_path, [0, 10, 20], tail=FRAME.format(step=30)[:-5])
    assert truncate_dump(path, 10**9) == 3
    assert [f["timestep"] for f in read_dump(path)] == [0, 10, 20]
    assert truncate_dump(path, 20) == 2
    assert path.read_text() == FRAME.format(step=0) + FRAME.format(step=10)
    assert truncate_dump(tmp_path / "missing.dump", 10) == 0
