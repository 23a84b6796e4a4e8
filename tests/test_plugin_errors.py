"""Bad input to pair_style hipcg ends in a LAMMPS ERROR with a clear message, never a crash."""

from __future__ import annotations

import pytest
import torch

from bead_systems import bead_script, jittered_lattice
from hipcg.lammps.runner import LammpsError, run_lammps
from hipcg.models.lj import export_lennard_jones


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    box = jittered_lattice(3, 3.5, seed=1)
    data = box.write(root / "beads.data")
    lj = export_lennard_jones(root / "lj.pt", ["A", "B"], [[0.2, 0.2], [0.2, 0.2]], [[3.0, 3.0], [3.0, 3.0]], 6.0)
    truncated = root / "truncated.pt"
    raw = lj.read_bytes()
    truncated.write_bytes(raw[: len(raw) // 2])
    text = root / "notes.pt"
    text.write_text("this is not a model\n")
    plain = root / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 1)), str(plain))
    return {"root": root, "data": data, "lj": lj, "truncated": truncated, "text": text, "plain": plain}


def lammps_error(files, tmp_path, **kwargs) -> str:
    from hipcg.lammps.plugin import build_plugin

    kwargs.setdefault("model", files["lj"])
    script = bead_script(build_plugin(), data=files["data"], **kwargs)
    with pytest.raises(LammpsError) as err:
        run_lammps(script, tmp_path, timeout=120)
    assert "Segmentation" not in err.value.output and "signal" not in err.value.output.lower()
    return err.value.message


def test_type_name_not_in_model(files, tmp_path):
    msg = lammps_error(files, tmp_path, type_names="A Water")
    assert "type name 'Water' (LAMMPS type 2) is not in model" in msg and "A B" in msg


def test_wrong_number_of_type_names(files, tmp_path):
    msg = lammps_error(files, tmp_path, type_names="A")
    assert "expected 2 type names, got 1" in msg


def test_missing_model_file(files, tmp_path):
    msg = lammps_error(files, tmp_path, model=files["root"] / "nowhere.pt")
    assert "cannot open model file" in msg and "nowhere.pt" in msg


def test_truncated_model_file(files, tmp_path):
    msg = lammps_error(files, tmp_path, model=files["truncated"])
    assert "truncated.pt' is not a readable TorchScript model file" in msg


def test_non_torchscript_file(files, tmp_path):
    msg = lammps_error(files, tmp_path, model=files["text"])
    assert "notes.pt' is not a readable TorchScript model file" in msg


def test_torchscript_without_hipcg_metadata(files, tmp_path):
    msg = lammps_error(files, tmp_path, model=files["plain"])
    assert "not a hipcg model" in msg and "hipcg_metadata.json" in msg


def test_units_differ_from_model(files, tmp_path):
    msg = lammps_error(files, tmp_path, units="metal")
    assert "is in units 'real' but this LAMMPS run uses units 'metal'" in msg


def test_newton_pair_off(files, tmp_path):
    msg = lammps_error(files, tmp_path, newton="off")
    assert "requires newton pair on" in msg


def test_ghost_cutoff_too_short_for_layers(files, tmp_path):
    from bead_systems import small_hipnn

    model, _, _ = small_hipnn(tmp_path, n_layers=2)
    msg = lammps_error(files, tmp_path, model=model)  # no comm_modify cutoff
    assert "has 2 interaction layers" in msg and "comm_modify cutoff 11" in msg


def test_unknown_pair_style_keyword(files, tmp_path):
    msg = lammps_error(files, tmp_path, style_args="precision double")
    assert "unknown keyword 'precision'" in msg


def test_cuda_requested_without_gpu(files, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    msg = lammps_error(files, tmp_path, style_args="device cuda")
    assert "no CUDA device is usable" in msg


def test_plugin_errors_are_reported_on_two_ranks(files, tmp_path):
    from hipcg.lammps.plugin import build_plugin

    script = bead_script(build_plugin(), model=files["lj"], data=files["data"], type_names="A Water")
    with pytest.raises(LammpsError) as err:
        run_lammps(script, tmp_path, nprocs=2, timeout=120)
    assert "type name 'Water'" in err.value.message
