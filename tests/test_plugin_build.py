"""The plugin cache key: a rebuild whenever the sources, torch, LAMMPS or MPI change."""

from __future__ import annotations

import dataclasses
import shutil

from hipcg.lammps.plugin import PLUGIN_NAME, SOURCE_DIR, BuildInputs, build_plugin, plugin_path


def test_cache_key_follows_sources_torch_and_lammps(tmp_path):
    src = tmp_path / "lammps_plugin"
    shutil.copytree(SOURCE_DIR, src)
    inputs = dataclasses.replace(BuildInputs.detect(), source_dir=src)
    key = inputs.key()
    assert key == dataclasses.replace(inputs).key()  # deterministic
    (src / "src" / "pair_hipcg.cpp").write_text((src / "src" / "pair_hipcg.cpp").read_text() + "\n// edit\n")
    edited = inputs.key()
    assert edited != key
    for field, value in (("torch_version", "9.9.9"), ("torch_cuda", "13.0"),
                         ("lammps_version", "1 Jan 2030"), ("mpicxx", "/opt/other/mpicxx")):
        assert dataclasses.replace(inputs, **{field: value}).key() != edited, field


def test_build_plugin_reuses_an_up_to_date_build(plugin_path):
    before = plugin_path.stat().st_mtime_ns
    assert build_plugin() == plugin_path == plugin_path_for_current()
    assert plugin_path.stat().st_mtime_ns == before  # not rebuilt
    assert plugin_path.name == PLUGIN_NAME
    assert (plugin_path.parent / "build-info.json").exists()


def plugin_path_for_current():
    return plugin_path()
