"""The store as phase one opens it: pending shards, repair of damage, and the finished-already check (no torch)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from conftest import damage_store
from pipeline import store as st
from pipeline.errors import DamagedStoreError, StoreMismatchError
from pipeline.images import ImageList
from pipeline.importing import import_matrix
from pipeline.opening import (_image_chunks_repairable, finished_already, image_arrays, pending_shards, repair,
                              root_meta)

N, C, ROWS = 12, 3, 4
WEIGHTS = {"kind": "random", "name": "random", "seed": 0}


def _images(root="/data") -> ImageList:
    return ImageList(root=root, layout="imagefolder", paths=[f"c{i % 2}/x{i}.jpg" for i in range(N)],
                     labels=np.arange(N, dtype=np.int64) % 2, classes=["c0", "c1"],
                     sizes=np.arange(N, dtype=np.int64) + 100, mtimes=np.arange(N, dtype=np.int64) * 10 ** 9)


def _layer_meta():
    return {"model": "lucent.modelzoo.inceptionv1", "weights": WEIGHTS, "input_size": 224}


def _store(tmp_path, layers=("mixed4a",), done=None, images=None):
    """A phase-one store of ``N`` rows in shards of ``ROWS``, every row valid; ``done``: the shards
    written (all by default), the same for every layer."""
    images = images or _images()
    path = tmp_path / "s.zarr"
    group = st.create_store(path, root_meta(images, WEIGHTS), image_arrays(images), ROWS, False)
    for layer in layers:
        st.add_layer(group, layer, C, (2, 2), _layer_meta())
    for shard in (range(st.n_shards(N, ROWS)) if done is None else done):
        start, stop = st.shard_bounds(shard, ROWS, N)
        block = np.arange(start * C, stop * C, dtype=np.float32).reshape(-1, C) + 1
        blocks = {layer: (block, block + 1, np.zeros_like(block, dtype=np.int32)) for layer in layers}
        st.write_shard(group, list(layers), shard, blocks, np.ones(stop - start, dtype=bool), [""] * (stop - start))
    for layer in layers:
        st.refresh_completeness(group, layer)
    return path, images


def _group(path, mode="r+"):
    return zarr.open_group(str(path), mode=mode)


def test_root_meta_records_the_runs_precision_and_decoder():
    meta = root_meta(_images(), WEIGHTS, precision="bf16", decoder="fast")
    assert meta["model"]["precision"] == "bf16" and meta["preprocessing"]["decoder"] == "fast"
    assert meta["dataset"] == {"root": "/data", "layout": "imagefolder", "n_images": N}
    assert meta["dataset_fingerprint"] == st.dataset_fingerprint(_images().paths, _images().sizes, _images().mtimes)


def test_image_arrays_keep_sizes_and_times_in_their_places():
    arrays = image_arrays(_images())
    assert list(arrays["size"]) == list(_images().sizes) and list(arrays["mtime_ns"]) == list(_images().mtimes)


def test_a_shard_is_pending_until_every_asked_for_layer_has_it(tmp_path):
    path, _ = _store(tmp_path, layers=("mixed3a", "mixed4a"), done=[0, 2])
    group = _group(path)
    group["mixed3a"]["done"][1] = True
    assert pending_shards(group, ["mixed3a"]) == []
    assert pending_shards(group, ["mixed4a"]) == [1]
    assert pending_shards(group, ["mixed3a", "mixed4a"]) == [1]
    group["mixed4a"]["done"][0] = False
    assert pending_shards(group, ["mixed3a", "mixed4a"]) == [0, 1]


def test_repair_unmarks_and_removes_a_damaged_shard_and_says_so(tmp_path, capsys):
    path, _ = _store(tmp_path)
    damage_store(path, "truncated", shard=1)
    group = _group(path)
    repair(group, "mixed4a")
    assert "1 done shard of mixed4a damaged" in capsys.readouterr().err
    assert group["mixed4a"]["done"][:].tolist() == [True, False, True]
    assert not (path / "mixed4a" / "mean" / "c" / "1" / "0").exists()  # zarr would read the damaged file back
    assert not (path / "mixed4a" / "max" / "c" / "1" / "0").exists()
    attrs = _group(path, "r")["mixed4a"].attrs
    assert attrs["complete"] is False and attrs["shards_done"] == 2
    assert pending_shards(group, ["mixed4a"]) == [1]


def test_repair_decodes_every_chunk_only_with_verify(tmp_path):
    path, _ = _store(tmp_path)
    damage_store(path, "flipped", shard=2)
    repair(_group(path), "mixed4a")
    assert _group(path)["mixed4a"]["done"][:].all()  # the cheap check cannot see flipped bytes
    repair(_group(path), "mixed4a", verify=True)
    assert _group(path)["mixed4a"]["done"][:].tolist() == [True, True, False]


@pytest.mark.parametrize("how", ["layer_json", "array_json"])
def test_repair_removes_a_layer_whose_zarr_json_is_lost(tmp_path, capsys, how):
    path, _ = _store(tmp_path, layers=("mixed3a", "mixed4a"))
    damage_store(path, how)
    repair(_group(path), "mixed4a")
    assert "layer mixed4a of" in capsys.readouterr().err
    assert not (path / "mixed4a").exists() and (path / "mixed3a" / "mean" / "c" / "0" / "0").exists()
    assert st.add_layer(_group(path), "mixed4a", C, (2, 2), _layer_meta())["done"][:].tolist() == [False] * 3


def test_repair_leaves_a_whole_layer_alone(tmp_path, capsys):
    path, _ = _store(tmp_path)
    before = sorted(p.relative_to(path) for p in path.rglob("*"))
    repair(_group(path), "mixed4a", verify=True)
    repair(_group(path), "mixed3a")  # not in the store yet: nothing to do
    assert capsys.readouterr().err == "" and sorted(p.relative_to(path) for p in path.rglob("*")) == before


def test_a_lost_valid_chunk_needs_every_layer_done_there(tmp_path):
    path, _ = _store(tmp_path, layers=("mixed3a", "mixed4a"))
    (path / "images" / "valid" / "c" / "1").unlink()
    group = _group(path)
    with pytest.raises(DamagedStoreError, match=r"images/valid chunk 1 \(rows 4-7\) is missing its file; rerun with every layer "
                                                r"done there \(--layer mixed3a --layer mixed4a\)"):
        _image_chunks_repairable(group, ["mixed4a"])
    _image_chunks_repairable(group, ["mixed3a", "mixed4a"])  # both recomputed: allowed


def test_a_lost_valid_chunk_beside_an_imported_layer_is_refused(tmp_path):
    path, images = _store(tmp_path)
    import_matrix(path, np.ones((N, 2), dtype=np.float32), "probe", images.paths)
    (path / "images" / "valid" / "c" / "1").unlink()
    with pytest.raises(DamagedStoreError, match="layer probe, done there, was imported"):
        _image_chunks_repairable(_group(path), ["mixed4a", "probe"])


def test_a_finished_store_is_found_finished(tmp_path):
    path, images = _store(tmp_path)
    meta = root_meta(images, WEIGHTS)
    assert finished_already(path, meta, images, ["mixed4a"], None) is not None
    assert finished_already(path, meta, images, ["mixed4a"], ROWS) is not None
    assert finished_already(path, meta, images, ["mixed3a"], None) is None  # a layer it lacks
    assert finished_already(tmp_path / "absent.zarr", meta, images, ["mixed4a"], None) is None


def test_a_finished_store_asked_for_other_shards_is_refused(tmp_path):
    path, images = _store(tmp_path)
    with pytest.raises(StoreMismatchError, match="shard_rows=4.*shard_rows=5"):
        finished_already(path, root_meta(images, WEIGHTS), images, ["mixed4a"], 5)


def test_a_layer_marked_complete_with_a_shard_not_done_is_not_finished(tmp_path):
    """A repair killed between unmarking a shard and refreshing the attributes leaves ``complete`` True."""
    path, images = _store(tmp_path)
    _group(path)["mixed4a"]["done"][1] = False
    assert _group(path, "r")["mixed4a"].attrs["complete"] is True
    assert finished_already(path, root_meta(images, WEIGHTS), images, ["mixed4a"], None) is None


def test_a_finished_layer_not_yet_marked_complete_is_not_finished(tmp_path):
    path, images = _store(tmp_path)
    _group(path)["mixed4a"].update_attributes({"complete": False})
    assert finished_already(path, root_meta(images, WEIGHTS), images, ["mixed4a"], None) is None


@pytest.mark.parametrize("how", ["truncated", "deleted", "done", "layer_json", "array_json"])
def test_a_damaged_store_is_not_finished(tmp_path, how):
    path, images = _store(tmp_path)
    damage_store(path, how)
    assert finished_already(path, root_meta(images, WEIGHTS), images, ["mixed4a"], None) is None


def test_the_same_files_found_elsewhere_are_not_finished_until_the_root_moves(tmp_path):
    path, images = _store(tmp_path)
    moved = _images(root="/elsewhere")
    assert finished_already(path, root_meta(moved, WEIGHTS), moved, ["mixed4a"], None) is None


def test_a_half_made_store_is_left_to_the_locked_path(tmp_path):
    path, images = _store(tmp_path)
    (path / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {"format": '
                                    '"exemplars-activations"}}')  # its whole-number attributes not yet there
    assert finished_already(path, root_meta(images, WEIGHTS), images, ["mixed4a"], None) is None


def test_repair_leaves_a_layer_cut_short_in_its_creation_to_add_layer(tmp_path, capsys):
    """A run killed while making a layer's arrays (no ``done`` yet): no damage to check, remade whole."""
    path, _ = _store(tmp_path)
    group = _group(path)
    half = group.create_group("mixed3a")
    half.create_array("mean", shape=(N, C), dtype="float32", chunks=(ROWS, 1))
    repair(group, "mixed3a", verify=True)
    assert capsys.readouterr().err == ""
    sub = st.add_layer(group, "mixed3a", C, (2, 2), _layer_meta())
    assert st.layer_whole(sub) and pending_shards(group, ["mixed3a"]) == [0, 1, 2]
