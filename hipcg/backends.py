"""A model file evaluated on pair graphs by the backend ``pair_style hipcg`` would use.

``backend`` as in the plugin: ``native`` (the C++ evaluator, :mod:`hipcg.native`), ``torch``
(the TorchScript module and autograd, :func:`hipcg.graph.evaluate`) or ``auto``: native on the
CPU for a HIP-NN model, torch otherwise, and torch with a warning when the native evaluator
cannot take a HIP-NN model (not built, or a part it does not know).  Asked-for native that
cannot run is an error naming the reason.
"""

from __future__ import annotations

import os
import warnings

from .errors import ModelFileError
from .graph import EnergyForces, PairGraph, evaluate
from .modelfile import apply_temperature, load_model

BACKENDS = ("auto", "native", "torch")


class ModelEvaluator:
    """Energy, forces and virial of one model file on pair graphs (no volume term: that is
    :func:`hipcg.graph.with_volume_term`'s, for callers that have a periodic box).

    ``temperature`` (K): required for a temperature-aware model, refused for any other;
    ``threads``: the native evaluator's OpenMP threads (default: torch's intra-op threads).
    """

    def __init__(self, path: str | os.PathLike, backend: str = "auto", device: str = "cpu",
                 temperature: float | None = None, threads: int | None = None):
        if backend not in BACKENDS:
            raise ModelFileError(f"backend {backend!r}: allowed values are {', '.join(BACKENDS)}")
        self.path = str(path)
        self.module, self.metadata = load_model(path, map_location=device)
        apply_temperature(self.module, self.metadata, temperature, self.path)
        self.device = device
        self.native = None
        is_hipnn = self.metadata.model.startswith("hipnn:")
        if backend == "native" and (device != "cpu" or not is_hipnn):
            raise ModelFileError(f"{self.path}: backend native runs HIP-NN models on the CPU only "
                                 f"(model {self.metadata.model!r}, device {device})")
        if backend != "torch" and device == "cpu" and is_hipnn:
            self.native = self._open_native(temperature, threads, explicit=backend == "native")
        self.backend = "native" if self.native is not None else "torch"

    def _open_native(self, temperature, threads, explicit: bool):
        import torch

        from .native import NativeModel, NativeUnavailable

        try:
            return NativeModel(self.path, self.metadata, temperature,
                               threads or torch.get_num_threads(), build=explicit)
        except NativeUnavailable as err:
            if explicit:
                raise
            warnings.warn(f"{err}; evaluating with the torch backend", RuntimeWarning, stacklevel=3)
            return None

    def set_temperature(self, temperature: float | None) -> None:
        """A temperature-aware model's T (K); None for any other model (checked as at load)."""
        apply_temperature(self.module, self.metadata, temperature, self.path)
        if self.native is not None and temperature is not None:
            self.native.set_temperature(temperature)

    def evaluate(self, graph: PairGraph) -> EnergyForces:
        if self.native is not None:
            return self.native.evaluate(graph)
        return evaluate(self.module, graph, dtype=self.metadata.torch_dtype, device=self.device)
