"""The on-disk format: validation, compatibility checks, and xarray/dask interop."""

from __future__ import annotations

import re

import numpy as np
import pytest
import zarr

import pipeline
from pipeline.errors import StoreError, StoreMismatchError
from pipeline.store import (add_layer, check_compatible, create_store, import_matrix, n_shards, open_group,
                            shard_bounds, writer_lock)


def test_shard_arithmetic():
    assert n_shards(10, 4) == 3 and n_shards(8, 4) == 2
    assert shard_bounds(2, 4, 10) == (8, 10)


def test_open_refuses_non_stores_and_newer_versions(tmp_path):
    with pytest.raises(StoreError, match="no store"):
        open_group(tmp_path / "absent")
    zarr.create_group(str(tmp_path / "other"))
    with pytest.raises(StoreError, match="not an exemplars store"):
        open_group(tmp_path / "other")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError):
        open_group(tmp_path / "file")


def test_compatibility_names_the_field(small_store):
    group = open_group(small_store)
    check_compatible(group, {"shard_rows": 8})
    with pytest.raises(StoreMismatchError, match="shard_rows=8.*shard_rows=16"):
        check_compatible(group, {"shard_rows": 16})


def test_import_matrix_layout(tmp_path):
    m = np.arange(30, dtype=np.float32).reshape(10, 3)
    m[4] = np.nan
    group = import_matrix(tmp_path / "s.zarr", m, "feat", [f"{i}.jpg" for i in range(10)], shard_rows=4)
    assert group["images/valid"][:].tolist() == [True] * 4 + [False] + [True] * 5
    assert group["feat/done"][:].all() and group["feat"].attrs["complete"]
    np.testing.assert_array_equal(group["feat/mean"][:][~np.isnan(m).any(1)], m[~np.isnan(m).any(1)])
    with pytest.raises(StoreMismatchError, match="10 rows but 3 paths"):
        import_matrix(tmp_path / "t.zarr", m, "feat", ["a", "b", "c"])


def test_xarray_and_dask_open_a_layer(small_store):
    """The documented example: a layer is a plain labelled dataset for xarray and dask."""
    import xarray as xr

    ds = xr.open_zarr(str(small_store), group="mixed4a", consolidated=False)
    assert ds["mean"].dims == ("image", "channel") and ds["mean"].shape == (24, 508)
    per_channel = ds["mean"].mean("image").compute()  # a dask reduction
    raw = zarr.open_group(str(small_store), mode="r")["mixed4a/mean"][:]
    np.testing.assert_allclose(per_channel.values, raw.mean(axis=0), rtol=1e-5)
    images = xr.open_zarr(str(small_store), group="images", consolidated=False)
    assert images["valid"].dims == ("image",) and bool(images["valid"].all())


def test_damaged_or_foreign_metadata_and_urls_are_one_sentence(tmp_path):
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError, match="not an exemplars store"):
        open_group(bad)
    with pytest.raises(StoreError, match="fsspec"):
        open_group("nosuchprotocol://bucket/x.zarr")


def test_a_mismatch_names_the_setting_inside_a_dict(small_store):
    group = open_group(small_store)
    preprocessing = dict(group.attrs["preprocessing"], decoder="fast")
    with pytest.raises(StoreMismatchError, match=r"preprocessing.decoder='pil', this run has preprocessing.decoder='fast'"):
        check_compatible(group, {"preprocessing": preprocessing})


def test_a_second_import_never_mixes_with_the_first(tmp_path):
    store, m = tmp_path / "s.zarr", np.ones((6, 2), dtype=np.float32)
    import_matrix(store, m, "feat", [f"a/{i}.jpg" for i in range(6)])
    with pytest.raises(StoreMismatchError, match="dataset_fingerprint"):  # other images
        import_matrix(store, m[:3] * 2, "feat", [f"b/{i}.jpg" for i in range(3)])
    with pytest.raises(StoreMismatchError, match="already has layer feat"):  # same images, same layer
        import_matrix(store, m * 2, "feat", [f"a/{i}.jpg" for i in range(6)])
    assert open_group(store)["feat/mean"][:].tolist() == m.tolist()  # untouched
    fresh = import_matrix(store, m * 2, "feat", [f"b/{i}.jpg" for i in range(6)], overwrite=True)
    assert fresh["feat/mean"][:].tolist() == (m * 2).tolist()
    assert fresh["images/path"][:].tolist() == [f"b/{i}.jpg" for i in range(6)]


@pytest.mark.parametrize("name", ["images", "", "a/b"])
def test_import_refuses_layer_names_the_format_reserves(tmp_path, name):
    with pytest.raises(StoreError, match="cannot name a layer"):
        import_matrix(tmp_path / "s.zarr", np.ones((2, 2), dtype=np.float32), name, ["x", "y"])


def test_a_file_is_not_a_store_to_write(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        import_matrix(tmp_path / "file", np.ones((2, 2), dtype=np.float32), "feat", ["x", "y"])


def test_an_object_store_client_failure_is_one_sentence(tmp_path, monkeypatch):
    class NoCredentialsError(Exception):  # botocore's, as s3fs raises it without credentials
        pass

    def refuse(*args, **kwargs):
        raise NoCredentialsError("Unable to locate credentials")

    monkeypatch.setattr(zarr, "open_group", refuse)
    with pytest.raises(StoreError, match="cannot open memory://x.zarr: NoCredentialsError: Unable to locate"):
        open_group("memory://x.zarr")
    (tmp_path / "local").mkdir()
    with pytest.raises(NoCredentialsError):  # a local folder's unexpected failure stays a bug to see
        open_group(tmp_path / "local")


@pytest.mark.parametrize("matrix, labels, fragment", [
    (np.array([["a", "b"], ["c", "d"]]), None, "real numbers, not <U1"),
    (np.ones(2, dtype=np.float32), None, "2-dimensional array, not shape (2,)"),
    (np.ones((2, 0), dtype=np.float32), None, "no channels"),
    (np.ones((2, 2), dtype=np.complex64), None, "real numbers"),
    (np.ones((2, 2), dtype=np.float32), np.array([0.5, 1.0]), "whole numbers"),
    (np.ones((2, 2), dtype=np.float32), np.array([0, 2**31]), "whole numbers"),
])
def test_import_refuses_what_it_cannot_store_before_writing(tmp_path, matrix, labels, fragment):
    with pytest.raises(StoreMismatchError, match=re.escape(fragment)):
        import_matrix(tmp_path / "s.zarr", matrix, "feat", ["x", "y"][: len(matrix)], labels)
    assert not (tmp_path / "s.zarr").exists()  # refused before anything was made


def test_layers_import_one_after_another_and_non_finite_rows_are_invalid(tmp_path):
    store = tmp_path / "s.zarr"
    a = np.arange(8, dtype=np.float32).reshape(4, 2)
    peaks = a + 1
    peaks[1, 0] = np.inf  # a finite mean with an infinite max: no ranking by max could place it
    import_matrix(store, a, "A", ["./x/0.jpg", "x//1.jpg", "x/2.jpg", "x/3.jpg"], max_matrix=peaks)
    b = a * 2
    b[3, 1] = np.nan
    import_matrix(store, b, "B", ["x/0.jpg", "x/1.jpg", "x/2.jpg", "x/3.jpg"])  # the same images, normalised
    s = pipeline.open_store(store)
    assert s.layers == ["A", "B"] and s.valid.tolist() == [True, False, True, False]
    assert s.row_of("./x/0.jpg") == 0 and s.all_paths[1] == "x/1.jpg"
    assert s["A"].topk(0, k=4, by="max").rows.tolist() == [2, 0]
    assert s["B"].topk(1, k=4, bottom=True).rows.tolist() == [0, 2]


def test_a_layer_cut_short_in_its_creation_is_refused_by_readers_and_remade(tmp_path):
    store = tmp_path / "s.zarr"
    images = {"path": ["a.jpg", "b.jpg"], "label": [0, 0], "classes": ["c"], "size": [1, 1], "mtime_ns": [0, 0]}
    group = create_store(store, {"model": {}}, images, shard_rows=2, overwrite=False)
    assert pipeline.open_store(store).info()["invalid"] is None  # no layer yet: not "every image"
    group.create_group("conv")  # killed after the group, before its arrays and attributes
    with pytest.raises(StoreError, match="layer conv of .* is still being created"):
        pipeline.open_store(store)["conv"]
    facts = pipeline.open_store(store).info()
    assert facts["invalid"] is None and facts["layers"] == {"conv": {"being_created": True}}
    sub = add_layer(open_group(store, mode="r+"), "conv", 3, (1, 1), {})
    assert sub.attrs["channels"] == 3 and "done" in sub
    assert pipeline.open_store(store)["conv"].channels == 3


def test_a_store_killed_while_making_its_image_arrays_is_completed(tmp_path):
    store = tmp_path / "s.zarr"
    images = {"path": ["a.jpg", "b.jpg"], "label": [0, 0], "classes": ["c"], "size": [1, 1], "mtime_ns": [0, 0]}
    group = create_store(store, {"model": {}}, images, shard_rows=2, overwrite=False)
    del group["images/valid"], group["images/error"]  # as if killed before the last two
    with pytest.raises(StoreError, match="is still being created"):
        pipeline.open_store(store)
    group = create_store(store, {"model": {}}, images, shard_rows=2, overwrite=False)
    assert "valid" in group["images"] and group["images/path"][:].tolist() == ["a.jpg", "b.jpg"]
    assert pipeline.open_store(store).n == 2


def test_the_lock_is_not_left_in_a_folder_that_is_no_store(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="not an exemplars store"):
        with writer_lock(folder):
            pass
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_a_forked_child_does_not_keep_the_lock_after_its_parent_dies(tmp_path):
    import subprocess
    import sys
    import time

    store = tmp_path / "s.zarr"
    # The parent takes the lock, forks a child that lives on (as DataLoader workers do), and dies.
    code = f"""
import os, time
from pipeline.store import writer_lock
with writer_lock({str(store)!r}):
    if os.fork() == 0:
        time.sleep(6)
        os._exit(0)
    os._exit(0)
"""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with writer_lock(store):  # free at once, while the orphan still lives
        assert time.monotonic() - started < 5
