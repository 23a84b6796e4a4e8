"""Where training runs: the torch device and hippynn's message-passing kernels."""

from __future__ import annotations

import warnings

import torch

from ..config import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested but CUDA is not available")
    return device


def select_kernels(choice: str, device: torch.device) -> str:
    """Pick hippynn's envsum/sensesum/featsum implementation.

    On CPU the eager ``_pytorch_raw`` kernels: hippynn's default there is a ``torch.compile``d
    kernel that costs ~30 s on the first call and recompiles for every new pair count (every
    batch).  On CUDA triton/numba/cupy when installed (fastest), else the eager kernels.
    """
    from hippynn import custom_kernels

    if choice == "auto":
        choice = "_pytorch_raw"
        if device.type == "cuda":
            custom_kernels.populate_custom_kernel_availability()
            for impl in ("triton", "numba", "cupy"):
                if impl in custom_kernels.CUSTOM_KERNELS_AVAILABLE:
                    choice = impl
                    break
    with warnings.catch_warnings():  # "_pytorch_raw" is not on hippynn's list of names: fine
        warnings.simplefilter("ignore", UserWarning)
        return custom_kernels.set_custom_kernels(choice)
