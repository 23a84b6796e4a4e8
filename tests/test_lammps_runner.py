"""hipcg.lammps.runner: output streamed to a callback, errors and time-outs as LammpsError."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hipcg.lammps.runner import LammpsError, run_lammps

LJ = """units lj
lattice fcc 0.8442
region box block 0 4 0 4 0 4
create_box 1 box
create_atoms 1 box
mass 1 1.0
velocity all create 1.0 87287
pair_style lj/cut 2.5
pair_coeff 1 1 1.0 1.0
fix 1 all nve
thermo {every}
run {steps}
"""


def test_lines_reach_the_callback_and_thermo_is_read(tmp_path):
    lines = []
    res = run_lammps(LJ.format(every=10, steps=50), tmp_path, on_line=lines.append)
    assert any(line.startswith("LAMMPS (") for line in lines)
    assert not any(line.endswith("\n") for line in lines)
    assert res.thermo[-1]["Step"] == [0, 10, 20, 30, 40, 50]
    assert res.log_file == tmp_path / "log.lammps"


def test_error_names_the_log(tmp_path):
    with pytest.raises(LammpsError) as err:
        run_lammps("units lj\nno_such_command 1\n", tmp_path, log_name="log.x.lammps")
    assert "Unknown command" in err.value.message
    assert err.value.log_file == tmp_path / "log.x.lammps"


def _running_in(workdir: Path) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "cwd") == str(workdir):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_timeout_stops_the_whole_run(tmp_path):
    """``lmp`` is a wrapper around the real binary: both must stop."""
    with pytest.raises(LammpsError, match="timed out after 2"):
        run_lammps(LJ.format(every=1000, steps=10**9), tmp_path, timeout=2)
    assert _running_in(tmp_path) == []
