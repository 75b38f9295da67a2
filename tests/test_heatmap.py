"""Heatmaps rerun the store's own weights on the shown images; a gone image has no map."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

import pipeline
from pipeline.errors import WeightsError
from pipeline.heatmap import channel_maps, model_for, weights_spec


def test_random_weights_come_back_with_their_own_seed():
    assert weights_spec(SimpleNamespace(weights={"kind": "random", "seed": 3})) == ("random", 3)
    first = model_for(SimpleNamespace(weights={"kind": "random", "seed": 0}))
    other = model_for(SimpleNamespace(weights={"kind": "random", "seed": 1}))
    assert first is not other  # one cached model per seed, not one for every random store
    a, b = (next(m.parameters()).detach() for m in (first, other))
    assert not np.array_equal(a.numpy(), b.numpy())


def test_a_weights_file_changed_since_the_store_is_refused(weights_file):
    store = SimpleNamespace(weights={"kind": "file", "path": str(weights_file), "sha256": "0" * 64})
    with pytest.raises(WeightsError, match="changed since the store was made"):
        model_for(store)


def test_an_image_gone_since_the_store_has_no_map(small_store, image_folder, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    layer = pipeline.open_store(small_store, root=data)["mixed4a"]
    top = layer.topk(4, k=3)
    (data / top.paths[1]).unlink()
    maps = channel_maps(layer, top.rows, 4)
    assert np.isnan(maps[1]).all() and np.isfinite(maps[[0, 2]]).all()


def test_the_logits_have_one_by_one_maps_and_draw(image_folder, tmp_path):
    """The logits come out of a matmul as (k,): a heatmap row crashed unpacking their shape."""
    from pipeline.extract import extract

    store = tmp_path / "logits.zarr"
    extract(image_folder, store, ["softmax2_pre_activation_matmul"], weights="random", batch_size=4,
            shard_rows=8, progress=False)
    layer = pipeline.open_store(store)["softmax2_pre_activation_matmul"]
    top = layer.topk(3, k=2)
    maps = channel_maps(layer, top.rows, 3)
    assert maps.shape == (2, 1, 1)
    np.testing.assert_allclose(maps[:, 0, 0], top.activations, rtol=1e-5, atol=1e-6)
    assert layer.grid([3], k=2, heatmap=True).axes
