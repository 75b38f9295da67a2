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


def test_a_store_changed_during_the_optimisation_keeps_its_own_pictures(store_copy, monkeypatch):
    import zarr

    import pipeline.featureviz as fv

    def remade(*args):  # what an --overwrite with another seed, finishing first, leaves
        root = zarr.open_group(str(store_copy), mode="r+")
        root.attrs["model"] = dict(root.attrs["model"], weights={"kind": "random", "seed": 1})
        return np.full((32, 32, 3), 5, dtype=np.uint8)

    monkeypatch.setattr(fv, "_optimise", remade)
    why = []
    assert (featureviz(store_copy, "mixed4a", 3, size=32, steps=2, not_cached=why) == 5).all()
    assert why == ["the store was remade with other weights during the optimisation"]
    assert cached(pipeline.open_store(store_copy)["mixed4a"], 3) is None

    def other_settings(*args):  # a run of other settings cached its picture meanwhile
        assert featureviz(store_copy, "mixed4a", 1, size=16, steps=1, redo=True).shape == (16, 16, 3)
        return np.full((32, 32, 3), 6, dtype=np.uint8)

    # (channel 2 is the outer run's; channel 1 the other run's, made while channel 2 optimises)
    monkeypatch.setattr(fv, "_optimise", lambda *a: other_settings() if a[2] == 2 else np.full((16, 16, 3), 4, np.uint8))
    why = []
    assert (featureviz(store_copy, "mixed4a", 2, size=32, steps=2, not_cached=why) == 6).all()
    assert why and why[0].startswith("another run cached pictures made with {'size': 16")
    layer = pipeline.open_store(store_copy)["mixed4a"]
    assert (cached(layer, 1) == 4).all() and cached(layer, 2) is None  # the other run's picture stays


def test_a_writer_arriving_during_the_optimisation_costs_only_the_caching(store_copy, monkeypatch):
    import threading

    import pipeline.featureviz as fv
    from pipeline.writers import writer_lock

    held, release = threading.Event(), threading.Event()

    def writer():
        with writer_lock(store_copy):
            held.set()
            release.wait(30)

    def optimise(*args):
        threading.Thread(target=writer, daemon=True).start()
        held.wait(30)
        return np.full((32, 32, 3), 8, dtype=np.uint8)

    monkeypatch.setattr(fv, "_optimise", optimise)
    why = []
    try:
        assert (featureviz(store_copy, "mixed4a", 3, size=32, steps=2, not_cached=why) == 8).all()
    finally:
        release.set()
    assert why and "is being written by" in why[0]


def test_a_read_only_store_still_gives_its_picture(store_copy, monkeypatch):
    import pipeline.featureviz as fv
    from pipeline.errors import StoreError

    def read_only(path):
        raise StoreError(f"store {path} cannot be written here (Read-only file system); a writer takes its lock")

    monkeypatch.setattr(fv, "writer_lock", read_only)
    monkeypatch.setattr(fv, "_optimise", lambda *a: np.full((32, 32, 3), 3, dtype=np.uint8))
    why = []
    assert (featureviz(store_copy, "mixed4a", 3, size=32, steps=2, not_cached=why) == 3).all()
    assert why == [f"store {store_copy} cannot be written here (Read-only file system)"]


def test_other_steps_or_seed_are_refused_and_redo_replaces_the_cached_picture(store_copy, monkeypatch):
    import pipeline.featureviz as fv

    monkeypatch.setattr(fv, "_optimise", lambda *a: np.full((32, 32, 3), 1, dtype=np.uint8))
    assert (featureviz(store_copy, "mixed4a", 5, size=32, steps=2, seed=0) == 1).all()
    for other in ({"steps": 3}, {"seed": 1}):  # the cached picture is not theirs
        with pytest.raises(QueryError, match="pass --redo"):
            featureviz(store_copy, "mixed4a", 5, **{"size": 32, "steps": 2, "seed": 0, **other})
    monkeypatch.setattr(fv, "_optimise", lambda store, layer, channel, size, *a: np.full((size, size, 3), 2, np.uint8))
    assert (featureviz(store_copy, "mixed4a", 5, size=32, steps=2, seed=0, redo=True) == 2).all()
    assert (cached(pipeline.open_store(store_copy)["mixed4a"], 5) == 2).all()
    assert featureviz(store_copy, "mixed4a", 5, size=16, steps=2, seed=0, redo=True).shape == (16, 16, 3)


def test_the_seed_seeds_the_optimisation(store_copy):
    import pipeline.featureviz as fv

    store = pipeline.open_store(store_copy)
    pictures = []
    for seed in (0, 0, 1):
        np.random.random(3)  # numpy's global generator elsewhere: lucent's jitter draws from it
        before = np.random.get_state()[1].copy()
        pictures.append(fv._optimise(store, "mixed4a", 5, 16, 4, seed))
        assert (np.random.get_state()[1] == before).all()  # and the caller's draws go on undisturbed
    np.testing.assert_array_equal(pictures[0], pictures[1])
    assert not np.array_equal(pictures[0], pictures[2])


def test_the_not_cached_hint_is_a_command_the_store_accepts(store_copy, monkeypatch):
    import shlex

    import pipeline.featureviz as fv

    monkeypatch.setattr(fv, "_optimise", lambda store, layer, channel, size, *a: np.full((size, size, 3), 5, np.uint8))
    featureviz(store_copy, "mixed4a", 1, size=16, steps=3, seed=2)
    layer = pipeline.open_store(store_copy)["mixed4a"]
    hint = fv.command(layer, 4)
    assert hint.endswith("-c 4 --size 16 --steps 3 --seed 2")
    assert featureviz(store_copy, "mixed4a", **_options(shlex.split(hint))).shape == (16, 16, 3)  # not refused
    with pytest.raises(QueryError, match=r"made with --size 16 --steps 3 --seed 2; ask for the same settings"):
        featureviz(store_copy, "mixed4a", 4, size=16, steps=4)
    said = " ".join(layer.grid([7], k=2, featureviz=True).axes[0].texts[0].get_text().split())
    assert said.replace(" ", "").endswith("-c7--size16--steps3--seed2")


def _options(argv: list[str]) -> dict:
    """The keyword arguments an ``exemplars featureviz`` command line stands for."""
    names = {"-c": "channel", "--size": "size", "--steps": "steps", "--seed": "seed"}
    return {names[flag]: int(value) for flag, value in zip(argv, argv[1:]) if flag in names}


@pytest.mark.parametrize("damaged", ["featureviz/c/3/0/0/0", "featureviz_done/c/3"])
def test_a_damaged_cached_picture_is_said_and_made_again(store_copy, monkeypatch, capsys, damaged):
    import pipeline.featureviz as fv

    monkeypatch.setattr(fv, "_optimise", lambda *a: np.full((32, 32, 3), 9, dtype=np.uint8))
    featureviz(store_copy, "mixed4a", 3, size=32, steps=2)
    (store_copy / "mixed4a" / damaged).write_bytes(b"not zstd")
    assert cached(pipeline.open_store(store_copy)["mixed4a"], 3) is None
    said = capsys.readouterr().err
    assert "feature visualisation of mixed4a channel 3" in said and "is damaged" in said and "--redo" in said
    monkeypatch.setattr(fv, "_optimise", lambda *a: np.full((32, 32, 3), 4, dtype=np.uint8))
    assert (featureviz(store_copy, "mixed4a", 3, size=32, steps=2) == 4).all()  # no --redo needed
    assert (cached(pipeline.open_store(store_copy)["mixed4a"], 3) == 4).all()


def test_a_channel_past_the_cache_is_the_callers_mistake_not_damage(tmp_path, capsys):
    """zarr's bounds error on the cache is raised as it is: no "damaged" warning, no None to optimise again."""
    import zarr
    from zarr.errors import BoundsCheckError

    from pipeline.importing import import_matrix

    store = tmp_path / "s.zarr"
    import_matrix(store, np.ones((4, 2), dtype=np.float32), "feat", [f"x{i}.jpg" for i in range(4)])
    sub = zarr.open_group(str(store), mode="r+")["feat"]
    sub.create_array("featureviz", shape=(2, 4, 4, 3), dtype="uint8", chunks=(1, 4, 4, 3))
    sub.create_array("featureviz_done", shape=(2,), dtype=bool, chunks=(2,), fill_value=False)
    sub["featureviz"][1] = 7
    sub["featureviz_done"][1] = True
    layer = pipeline.open_store(store)["feat"]
    assert cached(layer, 0) is None and (cached(layer, 1) == 7).all()
    with pytest.raises(BoundsCheckError):
        cached(layer, 5)
    assert "damaged" not in capsys.readouterr().err


@pytest.mark.parametrize("size, steps", [(100_000, 1), (8, 1), (64, 0)])
def test_a_size_or_steps_out_of_range_is_refused_before_the_model_is_loaded(store_copy, size, steps):
    """--size 100000 asked numpy for 37 GiB and died in a traceback."""
    with pytest.raises(QueryError, match=f"not --size {size} --steps {steps}"):
        featureviz(store_copy, "mixed4a", 1, size=size, steps=steps)
    proc = run_cli("featureviz", "--store", store_copy, "-c", "1", "--size", "100000", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_a_size_that_is_no_whole_number_is_refused_in_one_sentence(store_copy):
    """16.5 failed in lucent ("n should be an integer"), "64" with a raw TypeError."""
    with pytest.raises(QueryError, match="size must be a whole number, not 16.5"):
        featureviz(store_copy, "mixed4a", 1, size=16.5, steps=1)
