"""The on-disk format: validation, compatibility checks, and xarray/dask interop."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

import pipeline
from pipeline.errors import StoreError, StoreMismatchError
from pipeline.store import add_layer, check_compatible, create_store, n_shards, open_group, shard_bounds


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
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not an exemplars store"):
        open_group(tmp_path / "empty")
    (tmp_path / "empty" / ".writer.lock").write_text("")  # --overwrite has removed all but the lock
    with pytest.raises(StoreError, match="holds no store yet, only a writer's lock: a run is making it"):
        open_group(tmp_path / "empty")


@pytest.mark.parametrize("key, value, said", [("format_version", "2", "'2'"), ("n_images", None, "missing"),
                                              ("shard_rows", 0, "0")])
def test_damaged_attributes_are_one_sentence(tmp_path, key, value, said):
    from pipeline.importing import import_matrix

    import_matrix(tmp_path / "s.zarr", np.ones((3, 2), dtype=np.float32), "feat", ["a", "b", "c"])
    attrs = zarr.open_group(str(tmp_path / "s.zarr"), mode="r+").attrs
    if value is None:
        attrs.__delitem__(key)
    else:
        attrs[key] = value
    with pytest.raises(StoreError, match=f"damaged exemplars store: its attribute {key} is {said}, where a whole number "
                                         f"of at least {int(key == 'shard_rows')} belongs"):
        pipeline.open_store(tmp_path / "s.zarr")


def test_compatibility_names_the_field(small_store):
    group = open_group(small_store)
    check_compatible(group, {"shard_rows": 8})
    with pytest.raises(StoreMismatchError, match="shard_rows=8.*shard_rows=16"):
        check_compatible(group, {"shard_rows": 16})


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
    for url in ("zip://x.zarr", f"zip::file://{tmp_path}/none.zip"):  # protocols that need more than a path
        with pytest.raises(StoreError, match="not a URL that fsspec can open"):
            open_group(url)


def test_a_mismatch_names_the_setting_inside_a_dict(small_store):
    group = open_group(small_store)
    preprocessing = dict(group.attrs["preprocessing"], decoder="fast")
    with pytest.raises(StoreMismatchError, match=r"preprocessing.decoder='pil', this run has preprocessing.decoder='fast'"):
        check_compatible(group, {"preprocessing": preprocessing})


def test_a_store_from_before_decoder_and_precision_were_recorded_resumes(small_store, image_folder, tmp_path):
    """Stores written before 2026-11-26 14:19 hold neither setting: they were PIL and fp32, and were
    refused ("made with preprocessing.decoder=None"), leaving --overwrite as the only way on."""
    import shutil

    import pipeline
    from pipeline.extract import extract

    old = tmp_path / "old.zarr"
    shutil.copytree(small_store, old)
    group = zarr.open_group(str(old), mode="r+")
    attrs = group.attrs.asdict()
    attrs["preprocessing"].pop("decoder")
    attrs["model"].pop("precision")
    group.attrs.put(attrs)
    group = open_group(old)
    check_compatible(group, {"preprocessing": open_group(small_store).attrs["preprocessing"],
                             "model": open_group(small_store).attrs["model"]})
    with pytest.raises(StoreMismatchError, match="preprocessing.decoder='pil', this run has preprocessing.decoder='fast'"):
        check_compatible(group, {"preprocessing": dict(open_group(small_store).attrs["preprocessing"], decoder="fast")})
    summary = extract(image_folder, old, ["mixed4a"], weights="random", workers=0, progress=False)
    assert summary.computed == 0  # finished: nothing to do, rather than a refusal
    facts = pipeline.open_store(old).info()
    assert facts["precision"] == "fp32" and facts["preprocessing"]["decoder"] == "pil"


def test_an_imported_store_says_nothing_of_a_precision():
    from pipeline.settings import stored_setting

    assert "precision" not in stored_setting({"model": {"name": "x", "weights": {"kind": "imported"}}}, "model")
    assert stored_setting({"preprocessing": None}, "preprocessing") is None


def test_nothing_at_a_url_is_said_as_a_missing_folder_is(tmp_path):
    with pytest.raises(StoreError, match=r"^no store at memory://absent.zarr; run `exemplars activations` first$"):
        open_group("memory://absent.zarr")
    zarr.open_group("memory://other.zarr", mode="w").create_array("x", shape=(1,), dtype="i1")
    import fsspec

    fsspec.filesystem("memory").rm("/other.zarr/zarr.json")
    with pytest.raises(StoreError, match="^memory://other.zarr is not an exemplars store"):  # something else is there
        open_group("memory://other.zarr")
    with pytest.raises(StoreError, match="^no store at"):
        open_group(tmp_path / "absent.zarr")


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


def test_a_layer_whose_attributes_were_cut_short_is_remade(tmp_path, monkeypatch):
    """The attributes are one write (zarr's attrs.update writes once per key)."""
    store = tmp_path / "s.zarr"
    images = {"path": ["a.jpg", "b.jpg"], "label": [0, 0], "classes": ["c"], "size": [1, 1], "mtime_ns": [0, 0]}
    group = create_store(store, {"model": {}}, images, shard_rows=2, overwrite=False)
    writes = []
    real = zarr.Group.update_attributes
    monkeypatch.setattr(zarr.Group, "update_attributes", lambda self, d: writes.append(dict(d)) or real(self, d))
    add_layer(group, "conv", 3, (2, 2), {"model": "m"})
    assert len(writes) == 1 and {"channels", "spatial_shape", "complete", "shards_done", "model"} <= set(writes[0])
    sub = open_group(store, mode="r+")["conv"]
    sub.attrs.put({"model": "m", "channels": 3})  # an older version killed between two keys
    with pytest.raises(StoreError, match="is still being created"):
        pipeline.open_store(store)["conv"]
    sub = add_layer(open_group(store, mode="r+"), "conv", 3, (2, 2), {"model": "m"})
    assert list(pipeline.open_store(store)["conv"].spatial_shape) == [2, 2]


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


def test_a_row_one_layer_found_invalid_stays_invalid_when_another_is_added(tmp_path):
    images = {"path": ["a.jpg", "b.jpg"], "label": [0, 0], "classes": ["c"], "size": [1, 1], "mtime_ns": [0, 0]}
    group = create_store(tmp_path / "s.zarr", {"model": {}}, images, shard_rows=2, overwrite=False)
    for name in ("A", "B"):
        add_layer(group, name, 1, (1, 1), {})
    blocks = (np.ones((2, 1), np.float32), np.ones((2, 1), np.float32), np.zeros((2, 1), np.int32))
    from pipeline.store import write_shard

    write_shard(group, ["A"], 0, {"A": blocks}, [True, False], ["", "non-finite activations"])
    write_shard(group, ["B"], 0, {"B": blocks}, [True, True], ["", ""])  # a later run adds layer B
    assert group["images/valid"][:].tolist() == [True, False]
    assert group["images/error"][:].tolist() == ["", "non-finite activations"]


def test_file_urls_name_folders_of_this_machine():
    from pipeline.places import location

    assert location("file:///data/my%20store.zarr") == "/data/my store.zarr"
    assert location("file://localhost/data/s.zarr") == "/data/s.zarr"
    assert location("local:///data/s.zarr") == "/data/s.zarr"  # fsspec's other name: a path, so it takes the lock
    assert location("local://rel/s.zarr") == "rel/s.zarr"  # relative, as fsspec reads it
    assert location("local://~/s.zarr") == os.path.expanduser("~/s.zarr")
    with pytest.raises(StoreError, match="name is empty"):
        location("local://")
    assert location("~/s.zarr") == os.path.expanduser("~/s.zarr") and location("s3://b/~x") == "s3://b/~x"
    with pytest.raises(StoreError, match="names another host"):
        location("file://server/data/s.zarr")
    with pytest.raises(StoreError, match="names no folder"):
        location("file://")


def test_a_mismatch_names_the_store_as_given(tmp_path):
    images = {"path": ["a.jpg"], "label": [0], "classes": ["c"], "size": [1], "mtime_ns": [0]}
    create_store(tmp_path / "s.zarr", {"model": {}}, images, shard_rows=2, overwrite=False)
    with pytest.raises(StoreMismatchError, match=f"store {tmp_path / 's.zarr'} was made with shard_rows=2"):
        create_store(tmp_path / "s.zarr", {"model": {}}, images, shard_rows=4, overwrite=False)


def test_an_object_store_is_named_as_a_user_writes_it_and_its_failures_are_one_sentence(monkeypatch):
    from pipeline import store as st

    assert st.store_name(zarr.open_group("memory://named.zarr", mode="w")) == "memory:///named.zarr"

    def no_bucket(*args, **kwargs):
        raise FileNotFoundError("The specified bucket does not exist")

    monkeypatch.setattr(zarr, "create_group", no_bucket)
    with pytest.raises(StoreError, match="^cannot open memory://nobucket/x.zarr: FileNotFoundError: The specified bucket"):
        st.create_store("memory://nobucket/x.zarr", {}, {"path": [], "label": [], "classes": [], "size": [],
                                                         "mtime_ns": []}, 8, False)


def _tiny_store(tmp_path, meta=None, n=2, shard_rows=2):
    images = {"path": [f"{i}.jpg" for i in range(n)], "label": [0] * n, "classes": ["c"], "size": [1] * n,
              "mtime_ns": [0] * n}
    return create_store(tmp_path / "s.zarr", meta or {"model": {}}, images, shard_rows=shard_rows, overwrite=False)


def _blocks(rows: int) -> tuple:
    """A shard's mean, max and argmax for a one-channel layer of 1 x 1 maps."""
    return np.ones((rows, 1), np.float32), np.ones((rows, 1), np.float32), np.zeros((rows, 1), np.int32)


def test_a_weights_file_counts_by_its_sha256_not_where_it_lies(tmp_path):
    weights = {"kind": "file", "name": "w.pth", "sha256": "a" * 64, "path": "/old/w.pth"}
    group = _tiny_store(tmp_path, {"model": {"name": "inceptionv1", "weights": weights, "precision": "fp32"}})
    moved = dict(weights, path="/new/w.pth")
    check_compatible(group, {"model": {"name": "inceptionv1", "weights": moved, "precision": "fp32"}})
    changed = dict(weights, sha256="b" * 64)
    with pytest.raises(StoreMismatchError, match="model.weights.sha256="):
        check_compatible(group, {"model": {"name": "inceptionv1", "weights": changed, "precision": "fp32"}})


def test_the_dataset_fingerprint_covers_each_path_size_mtime_and_their_order():
    from pipeline.store import dataset_fingerprint

    base = dataset_fingerprint(["a.jpg", "b.jpg"], [10, 20], [100, 200])
    assert base == dataset_fingerprint(["a.jpg", "b.jpg"], np.array([10, 20]), np.array([100, 200]))
    for other in ((["a.jpg", "c.jpg"], [10, 20], [100, 200]), (["a.jpg", "b.jpg"], [10, 21], [100, 200]),
                  (["a.jpg", "b.jpg"], [10, 20], [100, 201]), (["b.jpg", "a.jpg"], [20, 10], [200, 100])):
        assert dataset_fingerprint(*other) != base, other


def test_completeness_counts_the_done_shards(tmp_path):
    from pipeline.store import refresh_completeness, write_shard

    group = _tiny_store(tmp_path, n=3)  # shards of 2 rows: 2 and 1
    add_layer(group, "conv", 1, (1, 1), {})
    write_shard(group, ["conv"], 1, {"conv": _blocks(1)}, [True], [""])
    assert {k: refresh_completeness(group, "conv")[k] for k in ("complete", "shards_done")} == \
        {"complete": False, "shards_done": 1}
    write_shard(group, ["conv"], 0, {"conv": _blocks(2)}, [True, True], ["", ""])
    assert {k: refresh_completeness(group, "conv")[k] for k in ("complete", "shards_done")} == \
        {"complete": True, "shards_done": 2}


def test_a_shard_whose_data_write_fails_is_not_marked_done(tmp_path, monkeypatch):
    """The markers come after every statistic: a write cut short leaves the shard to recompute."""
    from pipeline.store import done_shards, write_shard

    group = _tiny_store(tmp_path)
    add_layer(group, "conv", 1, (1, 1), {})
    real = zarr.Array.__setitem__

    def failing(self, key, value):
        if self.path.endswith("argmax"):  # the last statistic written
            raise OSError(28, "No space left on device")
        return real(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", failing)
    with pytest.raises(OSError):
        write_shard(group, ["conv"], 0, {"conv": _blocks(2)}, [True, True], ["", ""])
    assert not done_shards(group, "conv").any()


def test_a_store_being_rebuilt_is_no_store_but_still_ours(tmp_path):
    from pipeline.places import is_store, mark_rebuilding, ours

    _tiny_store(tmp_path, n=1)
    mark_rebuilding(tmp_path / "s.zarr", True)  # an --overwrite began removing it
    assert not is_store(tmp_path / "s.zarr") and ours(tmp_path / "s.zarr")
    mark_rebuilding(tmp_path / "s.zarr", False)
    assert is_store(tmp_path / "s.zarr") and not is_store(tmp_path)


def test_a_damaged_done_marker_of_another_layer_is_read_as_not_done_not_a_traceback(tmp_path):
    """Writing a shard reads the other layers' done markers (validity is AND-ed with theirs): one that
    did not decode stopped a run for another layer with a zstd traceback, half-way through its shards."""
    from pipeline.importing import import_matrix
    from pipeline.store import finished_elsewhere

    store, paths = tmp_path / "s.zarr", [f"x{i}.jpg" for i in range(8)]
    import_matrix(store, np.ones((8, 2), np.float32), "a", paths, shard_rows=4)
    (store / "a" / "done" / "c" / "1").write_bytes(b"not zstd")
    group = open_group(store, mode="r+")
    assert finished_elsewhere(group, ["b"], 0) == ["a"] and finished_elsewhere(group, ["b"], 1) == []
    import_matrix(store, np.ones((8, 2), np.float32), "b", paths, shard_rows=4)
    assert open_group(store)["b"].attrs["complete"] is True


def test_a_store_opened_by_a_relative_path_survives_a_change_of_directory(tmp_path, monkeypatch):
    from pipeline.importing import import_matrix

    m = np.arange(12, dtype=np.float32).reshape(4, 3)
    (tmp_path / "work").mkdir()
    import_matrix(tmp_path / "work" / "s.zarr", m, "feat", ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    monkeypatch.chdir(tmp_path / "work")
    layer = pipeline.open_store("s.zarr")["feat"]
    first = layer.topk(0, k=2).rows.tolist()
    monkeypatch.chdir(tmp_path)  # a notebook's os.chdir: zarr read "s.zarr" from here, a raw KeyError
    assert layer.topk(1, k=2).rows.tolist() == first == [3, 2]
    assert layer.similar(0, k=1).rows.tolist() and str(layer.store.path) == "s.zarr"  # still named as given


def test_a_newer_format_version_or_another_format_is_refused(tmp_path):
    from pipeline.importing import import_matrix

    import_matrix(tmp_path / "s.zarr", np.ones((3, 2), dtype=np.float32), "feat", ["a", "b", "c"])
    attrs = zarr.open_group(str(tmp_path / "s.zarr"), mode="r+").attrs
    attrs["format_version"] = 2
    with pytest.raises(StoreError, match="has format version 2, newer than this tool's 1; upgrade exemplars"):
        open_group(tmp_path / "s.zarr")
    attrs["format_version"] = 1
    attrs["format"] = "another-tools-activations"
    with pytest.raises(StoreError, match="is a zarr group but not an exemplars store"):
        open_group(tmp_path / "s.zarr")


def test_a_true_or_false_attribute_is_no_whole_number(tmp_path):
    from pipeline.importing import import_matrix

    import_matrix(tmp_path / "s.zarr", np.ones((3, 2), dtype=np.float32), "feat", ["a", "b", "c"])
    zarr.open_group(str(tmp_path / "s.zarr"), mode="r+").attrs["shard_rows"] = True
    with pytest.raises(StoreError, match="its attribute shard_rows is True"):
        open_group(tmp_path / "s.zarr")


def test_a_store_is_not_made_in_a_folder_holding_other_files(tmp_path):
    """The writer's lock refuses such a folder first; an object store has no lock, and this is its check."""
    (tmp_path / "s.zarr").mkdir()
    (tmp_path / "s.zarr" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="exists and is not an exemplars store"):
        _tiny_store(tmp_path)
    assert sorted(p.name for p in (tmp_path / "s.zarr").iterdir()) == ["notes.txt"]


def test_adding_a_whole_layer_again_keeps_what_it_holds(tmp_path):
    """A resumed run adds its layers again: a whole one is returned as it is, its shards kept."""
    from pipeline.store import done_shards, write_shard

    group = _tiny_store(tmp_path, n=4)
    add_layer(group, "conv", 1, (1, 1), {"model": "m"})
    write_shard(group, ["conv"], 0, {"conv": _blocks(2)}, [True, True], ["", ""])
    sub = add_layer(open_group(tmp_path / "s.zarr", mode="r+"), "conv", 1, (1, 1), {"model": "m"})
    assert done_shards(group, "conv").tolist() == [True, False]
    assert sub["mean"][:2].tolist() == [[1.0], [1.0]]


def test_a_new_layer_is_neither_complete_nor_begun(tmp_path):
    """An import or run killed before its first ``refresh_completeness`` must not read as finished."""
    sub = add_layer(_tiny_store(tmp_path, n=4), "conv", 1, (1, 1), {"model": "m"})
    assert sub.attrs["complete"] is False and sub.attrs["shards_done"] == 0


def test_a_logits_layer_of_one_by_one_maps_has_its_argmax_files(tmp_path):
    """A 1 x 1 map's argmax is always 0: were that the fill value, zarr would write no argmax file for
    a valid shard, and the listing check would call it lost."""
    from pipeline.damage import damaged_shards
    from pipeline.store import refresh_completeness, write_shard

    group = _tiny_store(tmp_path, n=4)
    add_layer(group, "logits", 1, (1, 1), {"model": "m"})
    for shard in (0, 1):
        write_shard(group, ["logits"], shard, {"logits": _blocks(2)}, [True, True], ["", ""])
    refresh_completeness(group, "logits")
    assert damaged_shards(open_group(tmp_path / "s.zarr"), "logits", full=True) == {}
    assert pipeline.open_store(tmp_path / "s.zarr")["logits"].topk(0, k=4).rows.size == 4


@pytest.mark.parametrize("text", ["{bad", "", "null", "[1]", '"x"'])
def test_a_root_zarr_json_that_is_no_metadata_object_is_no_store(tmp_path, text):
    """``null`` was zarr's AttributeError (it calls the document's .pop), a traceback."""
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    group.attrs["x"] = 1
    (tmp_path / "s.zarr" / "zarr.json").write_text(text)
    with pytest.raises(StoreError, match=r"s.zarr is not an exemplars store \("):
        open_group(tmp_path / "s.zarr")


def test_images_whole_names_an_images_zarr_json_that_does_not_parse(tmp_path):
    from pipeline.errors import DamagedStoreError
    from pipeline.importing import import_matrix
    from pipeline.store import images_whole

    import_matrix(tmp_path / "s.zarr", np.ones((2, 2), dtype=np.float32), "feat", ["a", "b"])
    assert images_whole(open_group(tmp_path / "s.zarr"))
    (tmp_path / "s.zarr" / "images" / "label" / "zarr.json").write_text("")
    with pytest.raises(DamagedStoreError, match="its images/label/zarr.json is not zarr metadata"):
        images_whole(open_group(tmp_path / "s.zarr"))
    (tmp_path / "s.zarr" / "images" / "label" / "zarr.json").unlink()  # lost: a store still being made, as before
    assert not images_whole(open_group(tmp_path / "s.zarr"))
