"""Shared fixtures: the real plugin build, real LAMMPS, real MPI."""

from __future__ import annotations

import os

os.environ.setdefault("HIPPYNN_USE_CUSTOM_KERNELS", "_pytorch_raw")
os.environ.setdefault("HIPPYNN_WARN_LOW_DISTANCES", "False")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def plugin_path():
    """Path of an up-to-date hipcgplugin.so (built once if missing or stale)."""
    from hipcg.lammps.plugin import build_plugin

    return build_plugin()
