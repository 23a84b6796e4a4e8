"""Resuming a LAMMPS stage from its newest restart file: the one mechanism of every resumable run
(the atomistic reference, the polymer chains of hipcg.dynamics).

A stage writes ``<stage>.<step>.restart`` files as it runs; a killed stage is continued from the
newest one.  A restart file cut short by the kill is unreadable: it is set aside
(``.unreadable``) and the next older one tried.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from .runner import LammpsError


def restart_files(workdir: Path, stage: str) -> list[tuple[int, Path]]:
    """(step, path) of ``<stage>.<step>.restart`` files in ``workdir``, oldest first."""
    found = []
    for p in Path(workdir).glob(f"{stage}.*.restart"):
        m = re.fullmatch(rf"{re.escape(stage)}\.(\d+)\.restart", p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def resume_or_run(stage: str, workdir: Path, fresh_script: Callable[[], str],
                  resume_script: Callable[[int, str], str], run: Callable[[str], str],
                  restart_when_all_unreadable: bool = False) -> str:
    """Run ``stage`` from its newest readable restart file, or from the start when there is none.

    ``resume_script(step, file_name)`` and ``fresh_script()`` make the input; ``run(script)``
    runs it and returns LAMMPS' output.  When the last restart file left is unreadable too,
    the error is raised, or with ``restart_when_all_unreadable`` that file is set aside as well
    and the stage starts again from the beginning.
    """
    while True:
        restarts = restart_files(workdir, stage)
        if not restarts:
            return run(fresh_script())
        step, path = restarts[-1]
        try:
            return run(resume_script(step, path.name))
        except LammpsError as err:
            if "restart" not in err.message.lower() or (len(restarts) < 2 and not restart_when_all_unreadable):
                raise
            path.rename(path.with_name(path.name + ".unreadable"))
