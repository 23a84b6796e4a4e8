"""CG dataset files: round trip, streaming writer, units check, no silent overwrite."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from hipcg.data import CGDataset, DatasetError, DatasetWriter, load_dataset, save_dataset


def make_dataset(n_frames=4, n_beads=5, velocities=True, seed=0):
    rng = np.random.default_rng(seed)
    return CGDataset(
        positions=rng.uniform(0, 10, (n_frames, n_beads, 3)),
        forces=rng.normal(0, 5, (n_frames, n_beads, 3)),
        velocities=rng.normal(0, 0.01, (n_frames, n_beads, 3)) if velocities else None,
        boxes=np.tile(np.diag([10.0, 11.0, 12.0]), (n_frames, 1, 1)),
        bead_types=np.array([0, 1, 0, 1, 1])[:n_beads],
        type_names=["A", "B"],
        masses=np.full(n_beads, 32.042),
        metadata={"state_point": {"temperature": 300.0, "pressure": 1.0, "density": 0.79},
                  "mapping": {"hash": "abc"}},
    )


def assert_same(a: CGDataset, b: CGDataset):
    for name in ("positions", "forces", "boxes", "bead_types", "masses", "molecule_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    if a.velocities is None:
        assert b.velocities is None
    else:
        np.testing.assert_array_equal(a.velocities, b.velocities)
    assert a.type_names == b.type_names


@pytest.mark.parametrize("velocities", [True, False])
def test_save_load_round_trip(tmp_path, velocities):
    ds = make_dataset(velocities=velocities)
    path = save_dataset(tmp_path / "d.npz", ds)
    back = load_dataset(path)
    assert_same(ds, back)
    assert back.metadata["units"] == "real" and back.units == "real"
    assert back.metadata["state_point"]["temperature"] == 300.0
    assert back.n_frames == 4 and back.n_beads == 5 and len(back) == 4
    assert "4 frames, 5 beads (2×A, 3×B)" in back.summary()
    # Plain numpy reads it without pickles.
    with np.load(path, allow_pickle=False) as z:
        assert z["positions"].shape == (4, 5, 3)
        assert json.loads(str(z["metadata"][()]))["mapping"]["hash"] == "abc"


def test_no_overwrite_without_permission(tmp_path):
    path = save_dataset(tmp_path / "d.npz", make_dataset(seed=1))
    with pytest.raises(FileExistsError, match="d.npz exists"):
        save_dataset(path, make_dataset(seed=2))
    with pytest.raises(FileExistsError, match="d.npz exists"):
        DatasetWriter(path, [0], ["A"], [1.0])
    assert_same(load_dataset(path), make_dataset(seed=1))
    save_dataset(path, make_dataset(seed=2), overwrite=True)
    assert_same(load_dataset(path), make_dataset(seed=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]  # no temp files left


def test_streaming_writer_matches_save(tmp_path):
    ds = make_dataset(n_frames=7)
    with DatasetWriter(tmp_path / "s.npz", ds.bead_types, ds.type_names, ds.masses,
                       velocities=True, metadata=ds.metadata) as w:
        for i in range(ds.n_frames):
            w.append(ds.positions[i], ds.forces[i], ds.boxes[i], ds.velocities[i])
    back = load_dataset(tmp_path / "s.npz")
    assert_same(ds, back)
    assert back.metadata["n_frames"] == 7
    with zipfile.ZipFile(tmp_path / "s.npz") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]


def test_streaming_writer_float32_and_abort(tmp_path):
    ds = make_dataset(velocities=False)
    with DatasetWriter(tmp_path / "f.npz", ds.bead_types, ds.type_names, ds.masses,
                       velocities=False, dtype=np.float32) as w:
        for i in range(ds.n_frames):
            w.append(ds.positions[i], ds.forces[i], ds.boxes[i])
    back = load_dataset(tmp_path / "f.npz")
    assert back.positions.dtype == np.float32 and back.boxes.dtype == np.float64
    np.testing.assert_allclose(back.forces, ds.forces, rtol=1e-6)
    with pytest.raises(RuntimeError, match="boom"):
        with DatasetWriter(tmp_path / "g.npz", ds.bead_types, ds.type_names, ds.masses,
                           velocities=False) as w:
            w.append(ds.positions[0], ds.forces[0], ds.boxes[0])
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz"]  # nothing half-written
    with DatasetWriter(tmp_path / "h.npz", ds.bead_types, ds.type_names, ds.masses,
                       velocities=False) as w:
        with pytest.raises(DatasetError, match=r"frame 0: forces has shape \(4, 3\)"):
            w.append(ds.positions[0], ds.forces[0][:4], ds.boxes[0])


def test_units_checked_on_load(tmp_path):
    ds = make_dataset()
    ds.metadata["units"] = "metal"
    save_dataset(tmp_path / "m.npz", ds)
    with pytest.raises(DatasetError, match="m.npz: units are 'metal'; hipcg works in 'real'"):
        load_dataset(tmp_path / "m.npz")


def test_bad_files(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset"):
        load_dataset(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DatasetError, match="junk.npz: cannot read"):
        load_dataset(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", positions=np.zeros((1, 1, 3)))
    with pytest.raises(DatasetError, match=r"not a hipcg dataset: missing \['forces'"):
        load_dataset(tmp_path / "other.npz")
    with pytest.raises(DatasetError, match="dataset files end in .npz"):
        save_dataset(tmp_path / "x.h5", make_dataset())


def test_shape_validation():
    ds = make_dataset()
    with pytest.raises(DatasetError, match=r"forces has shape \(4, 5, 2\)"):
        CGDataset(positions=ds.positions, forces=ds.forces[..., :2], boxes=ds.boxes,
                  bead_types=ds.bead_types, type_names=ds.type_names, masses=ds.masses)
    with pytest.raises(DatasetError, match="bead_types must index type_names"):
        CGDataset(positions=ds.positions, forces=ds.forces, boxes=ds.boxes,
                  bead_types=ds.bead_types + 1, type_names=ds.type_names, masses=ds.masses)
