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
