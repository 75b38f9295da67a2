"""An opened store: its images, layers and facts, looked up without the model."""

from __future__ import annotations

import numpy as np
import pytest

import pipeline
from pipeline.catalog import Store
from pipeline.errors import LayerError, QueryError
from pipeline.importing import import_matrix


@pytest.fixture
def store(tmp_path):
    m = np.arange(12, dtype=np.float32).reshape(4, 3)
    m[2] = np.nan  # an invalid row
    import_matrix(tmp_path / "s.zarr", m, "feat", ["b/x.jpg", "a/y.jpg", "a/z.jpg", "c/w.jpg"],
                  np.array([1, 0, 0, 2]), ["ant", "bee", "cat"], root=str(tmp_path / "data"))
    return pipeline.open_store(tmp_path / "s.zarr")


def test_images_by_row_and_by_path(store, tmp_path):
    assert isinstance(store, Store) and store.n == 4 and store.layers == ["feat"]
    assert store.paths([3, 0]) == ["c/w.jpg", "b/x.jpg"] and store.labels([0, 3]).tolist() == [1, 2]
    assert store.class_names == ["ant", "bee", "cat"] and store.valid.tolist() == [True, True, False, True]
    assert store.row_of("1") == 1 and store.row_of("./a/y.jpg") == 1
    assert store.row_of(3.0) == store.row_of(np.float32(3)) == 3  # as topk takes 3.0 for a channel
    with pytest.raises(QueryError, match="'3.5' is not an image"):
        store.row_of(3.5)
    assert store.row_of(str(tmp_path / "data" / "c" / "w.jpg")) == 3  # absolute, under the root
    for image, fragment in [("9", "row 9 is out of range; the store has rows 0-3"), ("a/none.jpg", "not an image")]:
        with pytest.raises(QueryError, match=fragment):
            store.row_of(image)
    facts = store.info()
    assert facts["images"] == 4 and facts["invalid"] == 1 and facts["layers"]["feat"]["channels"] == 3
    assert store["feat"] is store["feat"]  # one Layer per name: its caches serve later queries
    assert repr(store).endswith("4 images, layers feat>")


def test_an_unknown_layer_of_a_store_of_many_names_where_to_find_them(tmp_path):
    for i in range(21):
        import_matrix(tmp_path / "many.zarr", np.ones((2, 2), dtype=np.float32), f"feat_{i}", ["a", "b"])
    store = pipeline.open_store(tmp_path / "many.zarr")
    with pytest.raises(LayerError) as caught:
        store["feat_99"]
    assert str(caught.value) == (f"unknown layer 'feat_99'; did you mean feat_9, feat_19, feat_8? "
                                 f"`exemplars info --store {store.path}` lists all 21")




def test_a_store_is_a_mapping_of_its_layers(store):
    assert "feat" in store and "nope" not in store and 0 not in store
    assert list(store) == store.keys() == ["feat"] and len(store) == 1
    assert store.items() == [("feat", store["feat"])] and store.values() == [store["feat"]]
    assert store.get("feat") is store["feat"] and store.get("nope") is None and dict(store)["feat"]


def test_rows_are_checked_not_wrapped(store):
    for call in (lambda: store.paths([-1]), lambda: store.labels([4]), lambda: store["feat"].flat([4], 0)):
        with pytest.raises(QueryError, match="row (-1|4) is out of range; the store has rows 0-3"):
            call()  # -1 is no row, not the last
    with pytest.raises(QueryError, match="whole numbers"):
        store.paths([1.5])
    with pytest.raises(QueryError, match="row 9223372036854775808 is out of range"):
        store.paths(np.array([2**63], dtype=np.uint64))  # not wrapped to a negative row
    with pytest.raises(QueryError, match=r"a list of row numbers, not an array of shape \(2, 2\)"):
        store.paths([[1, 2], [3, 0]])
    assert store.paths(3) == store.paths([3]) == ["c/w.jpg"] and store.labels(np.int64(3)).tolist() == [2]
    assert store.paths([]) == []


def test_uncached_paths_keep_the_rows_order_and_minus_one_is_no_image(store, tmp_path):
    uncached = pipeline.open_store(tmp_path / "s.zarr", cache_paths=False)  # as the CLI opens it
    assert uncached.paths([3, 0, 1]) == ["c/w.jpg", "b/x.jpg", "a/y.jpg"] == store.paths([3, 0, 1])
    with pytest.raises(QueryError, match="row -1 is out of range"):
        store.row_of("-1")  # not the last image


def test_a_root_that_is_no_folder_name_is_one_sentence(store):
    from pipeline.errors import InputError

    with pytest.raises(InputError, match="root must be the images' folder, a str or a path, not int 3"):
        pipeline.open_store(store.path, root=3)  # os.fspath's raw TypeError


def test_a_layer_added_after_opening_is_found(store, tmp_path):
    assert "feat2" not in store and store.get("feat2") is None
    m = np.ones((4, 2), dtype=np.float32)
    import_matrix(tmp_path / "s.zarr", m, "feat2", ["b/x.jpg", "a/y.jpg", "a/z.jpg", "c/w.jpg"],
                  np.array([1, 0, 0, 2]), ["ant", "bee", "cat"], root=str(tmp_path / "data"))
    # the open store said "unknown layer 'feat2'; known layers: feat" of a layer it holds
    assert "feat2" in store and store["feat2"].channels == 2 and list(store) == ["feat", "feat2"]
    with pytest.raises(LayerError, match="unknown layer 'nope'; known layers: feat, feat2"):
        store["nope"]
    assert ["feat"] not in store and np.array(["feat", "x"]) not in store


def test_statistics_are_read_only(store):
    layer = store["feat"]
    table = layer.stats()
    with pytest.raises(ValueError, match="read-only"):
        table["mean"] -= 1  # it changed every later stats(), histogram and gallery page of the layer
    assert layer.stats()["mean"].tolist() == pytest.approx([4.0, 5.0, 6.0])
    with pytest.raises(ValueError, match="read-only"):
        layer.histograms()[0][0, 0] = 7


def test_help_says_what_each_documented_call_does(store):
    from pipeline.results import Results

    layer = store["feat"]  # the README: help() on the store, a layer, a method or Results says it
    calls = {store: ["paths", "labels", "row_of", "info", "keys", "values", "items", "get"],
             layer: ["topk", "samples", "direction", "similar", "projection", "column", "stats", "histograms",
                     "histogram_figure", "correlation_figure", "correlations", "selectivity", "no_selectivity",
                     "pca", "grid", "notes", "note"],
             Results: ["to_list", "to_dict", "title", "note", "measure"]}
    assert [(type(o).__name__, n) for o, names in calls.items() for n in names if not getattr(o, n).__doc__] == []


def test_a_layer_added_after_opening_is_found_on_an_object_store(s3_server, monkeypatch, tmp_path):
    from conftest import run_cli

    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    url, paths = "s3://exemplars-test/s.zarr", ["b/x.jpg", "a/y.jpg", "a/z.jpg", "c/w.jpg"]
    import_matrix(url, np.ones((4, 3), dtype=np.float32), "feat", paths, root="/data")
    store = pipeline.open_store(url)
    assert "feat2" not in store
    (tmp_path / "paths.txt").write_text("\n".join(paths))
    np.save(tmp_path / "m.npy", np.ones((4, 2), dtype=np.float32))
    run_cli("import", tmp_path / "m.npy", "--store", url, "--layer", "feat2", "--paths", tmp_path / "paths.txt",
            "--root", "/data", env=s3_server)  # another process: a command beside a notebook
    assert "feat2" in store and store["feat2"].channels == 2


def test_recorded_sizes_and_times_follow_the_rows_and_the_root_they_are_read_from(tmp_path):
    from pipeline.store import create_store

    images = {"path": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], "label": [0, 0, 0, 0], "classes": ["x"],
              "size": [10, 0, 30, 0], "mtime_ns": [111, 0, 333, 444]}  # b: nothing recorded; d: an empty file
    create_store(tmp_path / "s.zarr", {"model": {}, "dataset": {"root": str(tmp_path / "data")}}, images,
                 shard_rows=2, overwrite=False)
    for cache in (True, False):
        as_recorded = pipeline.open_store(tmp_path / "s.zarr", cache_paths=cache)
        assert as_recorded.recorded([2, 0, 1, 3]) == [(30, 333), (10, 111), None, (0, 444)]
        assert as_recorded.recorded([]) == []
        same = pipeline.open_store(tmp_path / "s.zarr", cache_paths=cache, root=str(tmp_path / "data") + "/")
        assert same.recorded([0]) == [(10, 111)]  # the recorded root, spelled another way: times still compared
        moved = pipeline.open_store(tmp_path / "s.zarr", cache_paths=cache, root=tmp_path / "copy")
        assert moved.recorded([0, 1, 3]) == [(10, None), None, (0, None)]  # a copy: sizes alone
    with pytest.raises(QueryError, match="row 4 is out of range"):
        as_recorded.recorded([4])


def test_a_root_given_from_home_is_expanded(store, tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    opened = pipeline.open_store(store.path, root="~/pictures")
    assert opened.root == os.path.join(str(tmp_path / "home"), "pictures")


def test_the_last_row_is_the_end_and_a_given_root_comes_first(store, tmp_path):
    assert store.row_of("3") == 3
    with pytest.raises(QueryError, match="row 4 is out of range; the store has rows 0-3"):
        store.row_of("4")  # one past the last row
    assert store.root == str(tmp_path / "data")
    elsewhere = pipeline.open_store(store.path, root=tmp_path / "copy")
    assert elsewhere.root == str(tmp_path / "copy")
    assert elsewhere.row_of(str(tmp_path / "copy" / "a" / "z.jpg")) == 2  # absolute, under the root given


def test_the_validity_shared_by_every_layer_cannot_be_changed_by_a_caller(store):
    with pytest.raises(ValueError, match="read-only"):
        store.valid[2] = True  # the invalid row would be ranked by every later query
    assert store["feat"].usable.tolist() == [True, True, False, True]


def test_get_finds_a_layer_added_after_opening(store, tmp_path):
    assert store.get("late") is None
    import_matrix(tmp_path / "s.zarr", np.ones((4, 2), dtype=np.float32), "late",
                  ["b/x.jpg", "a/y.jpg", "a/z.jpg", "c/w.jpg"])
    assert store.get("late") is store["late"] and store.get("late").channels == 2


def test_a_layer_that_lost_its_metadata_is_said_damaged_not_unknown(tmp_path):
    from pipeline.errors import DamagedStoreError

    for layer in ("A", "B"):
        import_matrix(tmp_path / "s.zarr", np.ones((2, 2), dtype=np.float32), layer, ["a", "b"])
    (tmp_path / "s.zarr" / "B" / "zarr.json").unlink()
    store = pipeline.open_store(tmp_path / "s.zarr")
    assert store.layers == ["A"] and store.damaged_layers == ["B"]
    with pytest.raises(DamagedStoreError, match="layer B of .* is damaged: its B/zarr.json is missing"):
        store["B"]
    assert "B/zarr.json is missing" in store.info()["layers"]["B"]["damaged"]


def test_info_counts_invalid_rows_only_once_every_layer_is_complete(tmp_path):
    from pipeline.store import open_group

    paths = [f"{i}.jpg" for i in range(8)]
    m = np.ones((8, 2), dtype=np.float32)
    m[[0, 2, 3, 5, 6, 7]] = np.nan
    import_matrix(tmp_path / "s.zarr", m, "A", paths, shard_rows=4)
    facts = pipeline.open_store(tmp_path / "s.zarr").info()
    assert facts["invalid"] == 6 and [e["row"] for e in facts["invalid_examples"]] == [0, 2, 3, 5, 6]  # the first five
    assert facts["invalid_examples"][1] == {"row": 2, "path": "2.jpg", "error": "non-finite values in an imported matrix"}
    assert facts["layers"]["A"]["imported"] is True and facts["layers"]["A"]["images_covered"] == 2
    import_matrix(tmp_path / "s.zarr", np.ones((8, 2), dtype=np.float32), "B", paths)
    group = open_group(tmp_path / "s.zarr", mode="r+")
    group["B"].attrs["complete"] = False  # B cut short after its first shard
    group["B/done"][1] = False
    facts = pipeline.open_store(tmp_path / "s.zarr").info()
    assert facts["layers"]["B"]["shards_done"] == 1 and facts["layers"]["B"]["shards"] == 2
    assert facts["layers"]["B"]["images_covered"] == 1  # rows 0-3 done, of which 0, 2, 3 are invalid
    assert facts["invalid"] is None and facts["invalid_examples"] == []  # unknown until complete
