"""The native HIP-NN evaluator of ``pair_style hipcg backend native``, called from Python.

``libhipcgnative.so`` is built beside the plugin from the same C++ sources
(``lammps_plugin/src/hipnn_capi.h``), so what the ASE calculator and ``hipcg evaluate`` report
is what LAMMPS runs, to round-off.  ctypes rather than a compiled Python extension: the library
needs no Python headers, and the plugin's build (CMake against the installed torch) makes both.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np

from .errors import ModelFileError, RunError
from .graph import EnergyForces, PairGraph, from_pair_gradient
from .modelfile import ModelMetadata

ABI_VERSION = 1  # hipnn_capi.cpp's ABI_VERSION
_OK, _UNSUPPORTED = 0, 1
_ERR_LEN = 2048


class NativeUnavailable(RunError):
    """The native evaluator cannot run this model (or is not built); the message says why."""


class NativeUnsupported(NativeUnavailable):
    """The model has a part the native evaluator does not know (a LAMMPS run falls back to
    torch with a warning, as does ``backend="auto"`` here)."""


def library_path(build: bool) -> Path:
    """The current sources' ``libhipcgnative.so``; ``build``: compile it (and the plugin) if missing."""
    from .lammps.plugin import build_plugin, native_library_path

    if os.environ.get("HIPCG_NATIVE_LIBRARY"):  # a library built elsewhere (tests, clusters)
        return Path(os.environ["HIPCG_NATIVE_LIBRARY"])
    path = native_library_path()
    if not path.exists() and build:
        build_plugin()
    return path


@functools.lru_cache(maxsize=None)
def _load(path: str) -> ctypes.CDLL:
    import torch  # noqa: F401  libtorch must be in the process before the library that needs it

    lib = ctypes.CDLL(path)
    i64p = ctypes.POINTER(ctypes.c_int64)
    f64p = ctypes.POINTER(ctypes.c_double)
    lib.hipcg_native_abi_version.restype = ctypes.c_int
    lib.hipcg_native_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_double,
                                      ctypes.c_int, ctypes.c_double, ctypes.POINTER(ctypes.c_void_p),
                                      ctypes.c_char_p, ctypes.c_int]
    lib.hipcg_native_set_temperature.argtypes = [ctypes.c_void_p, ctypes.c_double, ctypes.c_char_p,
                                                 ctypes.c_int]
    lib.hipcg_native_evaluate.argtypes = [ctypes.c_void_p, ctypes.c_int, i64p, ctypes.c_int64, i64p,
                                          i64p, f64p, ctypes.c_int, ctypes.c_int, f64p, f64p,
                                          ctypes.c_char_p, ctypes.c_int]
    lib.hipcg_native_close.argtypes = [ctypes.c_void_p]
    lib.hipcg_native_close.restype = None
    version = lib.hipcg_native_abi_version()
    if version != ABI_VERSION:
        raise NativeUnavailable(f"{path} has native ABI version {version}, this hipcg needs "
                                f"{ABI_VERSION}: rebuild it (hipcg build-plugin --rebuild)")
    return lib


def _pointer(array: np.ndarray, ctype):
    return array.ctypes.data_as(ctypes.POINTER(ctype))


class NativeModel:
    """One model file in the native evaluator: energies, forces and virial on pair graphs.

    ``temperature`` (K) for a temperature-aware model, None otherwise (the caller checks which,
    as :func:`hipcg.modelfile.apply_temperature` does); ``threads``: OpenMP threads per call.
    """

    def __init__(self, path: str | os.PathLike, metadata: ModelMetadata,
                 temperature: float | None = None, threads: int = 1, build: bool = True):
        self.path = Path(path)
        self.metadata = metadata
        self.threads = max(1, int(threads))
        library = library_path(build)
        if not library.exists():
            raise NativeUnavailable(f"the native evaluator is not built ({library} is missing; "
                                    "`hipcg build-plugin` builds it)")
        self._lib = _load(str(library))
        self._n_types = len(metadata.type_names)
        handle = ctypes.c_void_p()
        err = ctypes.create_string_buffer(_ERR_LEN)
        status = self._lib.hipcg_native_open(
            str(self.path).encode(), metadata.model.encode(), self._n_types, float(metadata.cutoff),
            int(metadata.dtype == "float32"), float(temperature or 0.0), ctypes.byref(handle), err,
            _ERR_LEN)
        self._raise(status, err, "cannot be evaluated natively")
        self._handle = handle
        self.temperature = temperature

    def _raise(self, status: int, err, what: str) -> None:
        if status == _OK:
            return
        cls = NativeUnsupported if status == _UNSUPPORTED else NativeUnavailable
        raise cls(f"{self.path}: {what}: {err.value.decode(errors='replace')}")

    def set_temperature(self, temperature: float) -> None:
        if temperature == self.temperature:
            return
        err = ctypes.create_string_buffer(_ERR_LEN)
        self._raise(self._lib.hipcg_native_set_temperature(self._handle, float(temperature), err,
                                                           _ERR_LEN), err, f"temperature {temperature} K")
        self.temperature = temperature

    def evaluate(self, graph: PairGraph) -> EnergyForces:
        """All nodes seeded (a periodic frame's beads are all local), as :func:`hipcg.graph.evaluate`."""
        n, p = graph.n_nodes, graph.n_pairs
        species = np.ascontiguousarray(graph.species, dtype=np.int64)
        first = np.ascontiguousarray(graph.pair_first, dtype=np.int64)
        second = np.ascontiguousarray(graph.pair_second, dtype=np.int64)
        vec = np.ascontiguousarray(graph.pair_vec, dtype=np.float64).reshape(p, 3)
        # the C++ side trusts its indices (the plugin builds them itself): check them here
        if n and (species.min() < 0 or species.max() >= self._n_types):
            raise ModelFileError(f"{self.path}: species outside 0..{self._n_types - 1}")
        if p and (min(first.min(), second.min()) < 0 or max(first.max(), second.max()) >= n):
            raise ModelFileError(f"{self.path}: pair indices outside 0..{n - 1}")
        node_energy = np.zeros(n, dtype=np.float64)
        grad = np.zeros((p, 3), dtype=np.float64)
        err = ctypes.create_string_buffer(_ERR_LEN)
        status = self._lib.hipcg_native_evaluate(
            self._handle, n, _pointer(species, ctypes.c_int64), p, _pointer(first, ctypes.c_int64),
            _pointer(second, ctypes.c_int64), _pointer(vec, ctypes.c_double), n, self.threads,
            _pointer(node_energy, ctypes.c_double), _pointer(grad, ctypes.c_double), err, _ERR_LEN)
        self._raise(status, err, "native evaluation failed")
        return from_pair_gradient(graph, node_energy, grad)

    def close(self) -> None:
        if getattr(self, "_handle", None):
            self._lib.hipcg_native_close(self._handle)
            self._handle = None

    def __del__(self):
        self.close()
