"""Feature visualisation: optimised with the store's weights once, then served from the store."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import pipeline
from conftest import run_cli
from pipeline.errors import QueryError
from pipeline.featureviz import cached, featureviz


@pytest.fixture
def store_copy(small_store, tmp_path):
    target = tmp_path / "s.zarr"
    shutil.copytree(small_store, target)
    return target


def test_featureviz_is_cached_and_raises_the_channel(store_copy, monkeypatch):
    import pipeline.featureviz as fv

    picture = featureviz(store_copy, "mixed4a", 5, size=48, steps=8)
    assert picture.shape == (48, 48, 3) and picture.dtype == np.uint8 and picture.std() > 0
    layer = pipeline.open_store(store_copy)["mixed4a"]
    np.testing.assert_array_equal(cached(layer, 5), picture)
    assert cached(layer, 6) is None
    monkeypatch.setattr(fv, "_optimise", lambda *a: pytest.fail("the cache was not used"))
    np.testing.assert_array_equal(featureviz(store_copy, "mixed4a", 5, size=48, steps=8), picture)
    with pytest.raises(QueryError, match="same settings, or pass --redo"):
        featureviz(store_copy, "mixed4a", 6, size=64, steps=8)
    monkeypatch.setattr(fv, "_optimise", lambda *a: np.full((64, 64, 3), 7, dtype=np.uint8))
    assert featureviz(store_copy, "mixed4a", 6, size=64, steps=8, redo=True).shape == (64, 64, 3)
    layer = pipeline.open_store(store_copy)["mixed4a"]
    assert layer.attrs["featureviz"]["size"] == 64 and cached(layer, 5) is None  # the old settings' are gone
    assert (cached(layer, 6) == 7).all()


def test_a_first_run_cut_short_between_its_arrays_is_redone(store_copy, monkeypatch):
    import zarr

    import pipeline.featureviz as fv

    group = zarr.open_group(str(store_copy), mode="r+")["mixed4a"]
    group.create_array("featureviz", shape=(508, 16, 16, 3), dtype="uint8", chunks=(1, 16, 16, 3))
    monkeypatch.setattr(fv, "_optimise", lambda *a: np.full((32, 32, 3), 9, dtype=np.uint8))
    assert (featureviz(store_copy, "mixed4a", 3, size=32, steps=2) == 9).all()
    assert (cached(pipeline.open_store(store_copy)["mixed4a"], 3) == 9).all()


def test_a_store_being_written_is_refused_before_the_optimisation(store_copy, monkeypatch):
    import pipeline.featureviz as fv
    from pipeline.errors import StoreLockedError
    from pipeline.writers import writer_lock

    monkeypatch.setattr(fv, "_optimise", lambda *a: pytest.fail("optimised for a store it cannot write"))
    with writer_lock(store_copy):
        with pytest.raises(StoreLockedError):
            featureviz(store_copy, "mixed4a", 7, size=32, steps=2)


def test_a_random_weights_picture_says_so():
    from pipeline.featureviz import marked

    picture = np.zeros((32, 32, 3), dtype=np.uint8)
    assert marked(picture, "").size == (32, 32)
    image = marked(picture, "RANDOM WEIGHTS: these activations come from an untrained network")
    strip = np.asarray(image)[32:].astype(int)
    assert image.width >= 32 and image.height > 32 and (strip[..., 0] - strip[..., 1] > 100).any()  # red text
    left = (image.width - 32) // 2  # centred over its caption
    np.testing.assert_array_equal(np.asarray(image)[:32, left:left + 32], picture)
    titled = marked(picture, "RANDOM WEIGHTS: ...", "mixed4a channel 97")
    assert titled.height > image.height  # a title line, black, above the warning
    assert (np.asarray(titled)[32:44].max(axis=-1) < 80).any()


def test_optimisation_raises_the_channel_above_its_grey_start(store_copy):
    import torch

    from pipeline.heatmap import model_for
    from pipeline.model import cut

    channel = int(np.argmax(pipeline.open_store(store_copy)["mixed4a"].stats()["mean"]))  # a live channel
    picture = featureviz(store_copy, "mixed4a", channel, size=96, steps=16)
    store = pipeline.open_store(store_copy)
    net = cut(model_for(store), ["mixed4a"])
    # lucent starts from a near-grey image (an FFT parameterisation with tiny noise).
    grey = np.full(picture.shape, 128, dtype=np.uint8)
    with torch.inference_mode():
        batch = torch.tensor(np.stack([picture, grey])).permute(0, 3, 1, 2).float() / 255 * 255 - 117
        act = net(batch)["mixed4a"][:, channel].mean(dim=(1, 2))
    assert act[0] > act[1]


def test_cli_grid_and_gallery_show_it(store_copy, tmp_path):
    run_cli("featureviz", "--store", store_copy, "--channel", "2", "--size", "32", "--steps", "4",
            "-o", tmp_path / "viz.png")
    assert (tmp_path / "viz.png").stat().st_size > 100
    figure = pipeline.open_store(store_copy)["mixed4a"].grid([2, 3], k=2, featureviz=True)
    titles = [ax.get_title() for ax in figure.axes]
    assert sum("feature viz" in t for t in titles) == 2
    run_cli("gallery", "--store", store_copy, "-o", tmp_path / "site", "-k", "2")
    assert (tmp_path / "site" / "img" / "viz_2.png").exists()
    assert 'src="../img/viz_2.png"' in (tmp_path / "site" / "channels" / "0002.html").read_text()
