"""A zarr.json that is not zarr metadata, and layer metadata at odds with the store: said in one sentence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

import pipeline
from conftest import SPOILED_JSON, spoil_json
from pipeline.damage import layer_fault
from pipeline.errors import DamagedStoreError
from pipeline.importing import import_matrix
from pipeline.metadata import children, node_fault

N, C, ROWS = 12, 6, 4


def _imported(tmp_path, layers=("mixed4a",)):
    store = tmp_path / "s.zarr"
    for layer in layers:
        import_matrix(store, np.arange(N * C, dtype=np.float32).reshape(N, C) + 1, layer,
                      [f"x{i}.jpg" for i in range(N)], shard_rows=ROWS)
    return store


def _edit(path, change) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("how", sorted(SPOILED_JSON))
@pytest.mark.parametrize("node", ["mixed4a", "mixed4a/mean", "mixed4a/done"])
def test_a_layer_zarr_json_that_is_not_metadata_is_one_error_naming_it(tmp_path, node, how):
    """zarr's listing of the root failed whole on one such file: every query was a traceback."""
    store = _imported(tmp_path, layers=("mixed4a", "other"))
    spoil_json(store, node, how)
    opened = pipeline.open_store(store)
    said = f"its {node}/zarr.json is not zarr metadata"
    with pytest.raises(DamagedStoreError, match=f"layer mixed4a of .* is damaged: {said} .*; import the layer again"):
        opened["mixed4a"].topk(0)
    assert said in opened.info()["layers"]["mixed4a"]["damaged"]
    assert len(opened["other"].topk(0).rows) == 10  # the other layer still answers
    assert said in layer_fault(zarr.open_group(str(store), mode="r"), "mixed4a")


@pytest.mark.parametrize("how", sorted(SPOILED_JSON))
@pytest.mark.parametrize("node", ["images", "images/path", "images/valid", "images/error"])
def test_an_images_zarr_json_that_is_not_metadata_is_one_error_naming_it(tmp_path, node, how):
    store = _imported(tmp_path)
    spoil_json(store, node, how)
    with pytest.raises(DamagedStoreError, match=f"store .* is damaged: its {node}/zarr.json is not zarr metadata "
                                                r".*; rebuild the store \(the same command with --overwrite\)"):
        pipeline.open_store(store)


def test_children_names_each_node_that_does_not_parse_and_keeps_the_others(tmp_path):
    store = _imported(tmp_path, layers=("a", "b"))
    spoil_json(store, "b", "empty")
    (store / "stray").mkdir()  # a user's folder: no node, no fault
    group = zarr.open_group(str(store), mode="r")
    nodes, faults = children(group)
    assert sorted(nodes) == ["a", "images"] and list(faults) == ["b"] and "JSONDecodeError" in faults["b"]
    assert node_fault(group, "b") == faults["b"] and node_fault(group, "a") is None and node_fault(group, "c") is None


@pytest.mark.parametrize("change, said", [
    (lambda m: m["attributes"].update(channels="abc"), "its attribute channels is 'abc', where a whole number"),
    (lambda m: m["attributes"].update(channels=True), "its attribute channels is True"),
    (lambda m: m["attributes"].update(channels=C + 1), r"its mixed4a/mean has shape \[12, 6\], where the layer's "
                                                        r"12 images x 7 channels make \[12, 7\]"),
    (lambda m: m["attributes"].update(spatial_shape="14x14"), "its attribute spatial_shape is '14x14'"),
    # a TypeError traceback from every command and from the rerun meant to repair it; "mean" was read
    # as the arrays m, e, a and n
    (lambda m: m["attributes"].update(stats=5), "its attribute stats is 5, where a list of mean, max, argmax"),
    (lambda m: m["attributes"].update(stats="mean"), "its attribute stats is 'mean'"),
    (lambda m: m["attributes"].update(stats=["mean", "median"]), "its attribute stats is"),
])
def test_hand_edited_layer_attributes_are_damage(tmp_path, change, said):
    store = _imported(tmp_path)
    _edit(store / "mixed4a" / "zarr.json", change)
    with pytest.raises(DamagedStoreError, match=f"layer mixed4a of .* is damaged: {said}.*; import the layer again"):
        pipeline.open_store(store)["mixed4a"]


@pytest.mark.parametrize("array, shape, said", [
    ("mean", [N, 2], r"its mixed4a/mean has shape \[12, 2\], where the layer's 12 images x 6 channels make \[12, 6\]"),
    ("mean", [N + 4, C], r"its mixed4a/mean has shape \[16, 6\]"),
    ("done", [2], r"its mixed4a/done has shape \[2\], where the layer's 3 shards make \[3\]"),
])
def test_an_array_whose_shape_is_not_the_layers_is_damage(tmp_path, array, shape, said):
    """A ``mean`` of fewer columns failed ``topk`` past them with zarr's BoundsCheckError, and ``similar``
    answered with the shorter vectors, silently."""
    store = _imported(tmp_path)
    _edit(store / "mixed4a" / array / "zarr.json", lambda meta: meta.update(shape=shape))
    with pytest.raises(DamagedStoreError, match=f"layer mixed4a of .* is damaged: {said}"):
        pipeline.open_store(store)["mixed4a"]


def test_a_layer_being_created_is_no_shape_fault(tmp_path):
    """Its attributes come last, in one write: before them, the layer is still being created."""
    store = _imported(tmp_path)
    _edit(store / "mixed4a" / "zarr.json", lambda meta: meta.update(attributes={}))
    assert layer_fault(zarr.open_group(str(store), mode="r"), "mixed4a") is None
