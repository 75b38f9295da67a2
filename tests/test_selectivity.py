"""Class selectivity against its chance level: a sparse channel's index is not its classes'."""

from __future__ import annotations

import numpy as np
from numpy.testing import assert_allclose, assert_array_equal

import pipeline
from conftest import run_cli
from pipeline import stats
from pipeline.importing import import_matrix

N, CLASSES = 1000, 10


def _store(tmp_path, m=None):
    """Channel 0 fires on one image (of class 3), channel 1 on class 3's 100 images and nowhere else,
    channel 2 is noise, channel 3 is signed noise."""
    rng = np.random.default_rng(0)
    labels = np.arange(N) % CLASSES
    if m is None:
        m = np.zeros((N, 4), dtype=np.float32)
        m[13, 0] = 0.5
        m[labels == 3, 1] = 1 + rng.random(N // CLASSES)
        m[:, 2] = rng.random(N)
        m[:, 3] = rng.normal(size=N)
    import_matrix(tmp_path / "s.zarr", m, "feat", [f"{i}.jpg" for i in range(N)], labels,
                  [f"c{k}" for k in range(CLASSES)], shard_rows=256)
    return pipeline.open_store(tmp_path / "s.zarr")["feat"], m, labels


def test_a_channel_active_on_one_image_is_selective_only_by_chance(tmp_path):
    layer, _, _ = _store(tmp_path)
    sel = layer.selectivity()
    assert sel["index"][0] == sel["index"][1] == 1.0  # the index cannot tell the two apart
    assert sel["share"][0] == sel["shuffled"][0] == 1.0 and sel["excess"][0] == 0.0  # one image is in some class
    assert sel["share"][1] == 1.0 and sel["shuffled"][1] < 0.3 and sel["most"] == 1  # 100 images are not in one
    assert abs(sel["excess"][2]) < 0.05
    assert np.isnan([sel[k][3] for k in ("index", "share", "shuffled", "excess")]).all()  # signed: undefined
    assert sel["channels_per_class"][3].tolist()[:3] == [1, 0, 2] and sel["class_share"][3, 0] == 1.0
    assert sel["class_excess"][3, 0] == 0.0 and sel["channels_per_class"][3][-1] == 3  # NaN ranks last


def test_shares_equal_numpy_with_the_same_shuffle(tmp_path):
    layer, m, labels = _store(tmp_path)
    sel = layer.selectivity()

    def shares(lab):
        means = np.stack([m[lab == k, :3].astype(np.float64).mean(0) for k in range(CLASSES)])
        return means / means.sum(0)

    real, chance = shares(labels), shares(stats.shuffled_labels(labels, layer.usable))
    assert_allclose(sel["class_share"][:, :3], real, rtol=1e-6)
    assert_allclose(sel["share"][:3], real.max(0), rtol=1e-6)
    assert_allclose(sel["shuffled"][:3], chance.max(0), rtol=1e-6)
    assert_allclose(sel["class_excess"][:, :3], real - chance.max(0), rtol=1e-6, atol=1e-9)


def test_stats_names_the_selective_channel_and_writes_the_chance_level(tmp_path):
    _store(tmp_path)
    proc = run_cli("stats", "--store", str(tmp_path / "s.zarr"), "--layer", "feat", "-o", str(tmp_path / "o"))
    assert proc.returncode == 0
    assert ("top class share furthest above chance: channel 1 (its top class, c3, holds 1.000 of the sum of its "
            "class means, "
            in proc.stdout)
    rows = (tmp_path / "o" / "selectivity_channels.csv").read_text().splitlines()
    assert rows[0].startswith("channel,selectivity,share,shuffled,class1") and rows[1].startswith("0,1.0,1.0,1.0,c3")
    assert rows[4].startswith("3,,,,")  # the signed channel has none
    classes = (tmp_path / "o" / "selectivity_classes.csv").read_text().splitlines()
    assert classes[0].startswith("class,channel1,channel2") and "excess1" in classes[0]
    assert classes[4].startswith("c3,1,0,2,3,")


def test_no_channel_beyond_chance_names_none(tmp_path):
    m = np.zeros((N, 5), dtype=np.float32)
    # The same on every image: the real and shuffled labels' sums, added in other orders, left
    # these two 2e-10 above their shuffled shares (40 classes, shards of 333 rows) while a shard's
    # class sums were float32; in float64 they may still differ by round-off, which must name none.
    m[:, 1], m[:, 2] = 2.3, 3.7
    m[[13, 500, 977], 3] = [0.2, 0.9, 0.4]  # three images, in three classes
    m[13, 4] = 0.5
    import_matrix(tmp_path / "s.zarr", m, "feat", [f"{i}.jpg" for i in range(N)], np.arange(N) % 40,
                  [f"c{k}" for k in range(40)], shard_rows=333)
    sel = pipeline.open_store(tmp_path / "s.zarr")["feat"].selectivity()
    assert sel["excess"][1:3].min() >= 0 and np.abs(sel["excess"]).max() < 1e-9  # round-off, no more
    assert sel["most"] is None
    proc = run_cli("stats", "--store", str(tmp_path / "s.zarr"), "--layer", "feat", "-o", str(tmp_path / "o"))
    assert "top class share: no channel's is above its value with the labels shuffled" in proc.stdout


def test_shuffled_labels_keep_each_class_size_and_touch_only_usable_labelled_rows():
    labels = np.repeat(np.arange(4), 25)
    labels[[5, 50]] = -1
    usable = np.ones(100, dtype=bool)
    usable[[7, 60, 99]] = False
    out = stats.shuffled_labels(labels, usable)
    moved = usable & (labels >= 0)
    assert_array_equal(out[~moved], labels[~moved])
    assert_array_equal(np.bincount(out[moved]), np.bincount(labels[moved]))
    assert (out[moved] != labels[moved]).mean() > 0.5  # shuffled, not kept
    assert_array_equal(out, stats.shuffled_labels(labels, usable))  # seeded
    assert not np.array_equal(out, stats.shuffled_labels(labels, usable, seed=1))


def test_gallery_pages_give_the_share_or_say_why_there_is_none(tmp_path):
    _store(tmp_path)
    proc = run_cli("gallery", "--store", tmp_path / "s.zarr", "--layer", "feat", "--no-crops", "-o", tmp_path / "g",
                   "-k", "2", check=False)
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "g" / "channels" / "0001.html").read_text()
    assert "top class share 1.000 (" in page and "with the labels shuffled), selectivity index 1.000; top classes: c3" in page
    signed = (tmp_path / "g" / "channels" / "0003.html").read_text()
    assert "No class selectivity: the channel has negative values, and it assumes activations &ge; 0." in signed


def test_selectivity_takes_a_whole_number_of_top_classes(tmp_path):
    from pipeline.errors import QueryError
    import pytest

    m = np.random.default_rng(0).random((40, 5), dtype=np.float32)
    import_matrix(tmp_path / "s.zarr", m, "feat", [f"{i}.jpg" for i in range(40)], np.arange(40) % 4)
    layer = pipeline.open_store(tmp_path / "s.zarr")["feat"]
    assert layer.selectivity(top=2)["top_classes"].shape == (5, 2)
    assert layer.selectivity(top=np.int64(9))["top_classes"].shape == (5, 4)  # all there are
    # -1 was numpy's "all but the last class", 0 empty lists, 1.5 a raw TypeError from numpy
    for top, said in ((-1, "at least 1"), (0, "at least 1"), (1.5, "a whole number"), (None, "a whole number")):
        with pytest.raises(QueryError, match=f"top must be {said}"):
            layer.selectivity(top=top)


def test_a_share_above_chance_by_round_off_names_no_channel():
    from types import SimpleNamespace

    from pipeline.selectivity import selectivity

    # Two classes of 10 images; the real sums differ from the shuffled ones in the 9th digit, as float64
    # sums added in other orders do: no channel is selective for that.
    moments = SimpleNamespace(class_counts=np.array([10, 10]), class_sums=np.array([[10.0, 3.0], [10.0 + 1e-8, 3.0]]),
                              chance_sums=np.array([[10.0, 3.0], [10.0, 3.0]]), signed=np.zeros(2, dtype=bool))
    sel = selectivity(moments, ["a", "b"])
    assert 0 < sel["excess"][0] < 1e-9 and sel["most"] is None
    moments.class_sums[1, 1] = 6.0  # a real difference names its channel
    assert selectivity(moments, ["a", "b"])["most"] == 1


def test_top_classes_are_class_numbers_where_a_class_has_no_image(tmp_path):
    rng = np.random.default_rng(2)
    labels = np.repeat([1, 3, 4], 10)  # classes 0 and 2 have no image
    m = rng.random((30, 3)).astype(np.float32)
    m[labels == 4, 0] += 5  # channel 0: class 4 first
    m[labels == 3, 1] += 5  # channel 1: class 3 first
    import_matrix(tmp_path / "s.zarr", m, "feat", [f"{i}.jpg" for i in range(30)], labels, list("abcde"))
    sel = pipeline.open_store(tmp_path / "s.zarr")["feat"].selectivity()
    means = {k: m[labels == k].astype(np.float64).mean(0) for k in (1, 3, 4)}
    for c in range(3):
        expected = sorted(means, key=lambda k: -means[k][c])
        assert sel["top_classes"][c].tolist() == expected
    assert sel["classes"].tolist() == [1, 3, 4] and sel["class_names"] == ["b", "d", "e"]
    out = tmp_path / "o"
    run_cli("stats", "--store", tmp_path / "s.zarr", "--layer", "feat", "-o", out)
    rows = (out / "selectivity_channels.csv").read_text().splitlines()
    assert rows[1].split(",")[-3:] == ["e", "d", "b"] and rows[2].split(",")[-3:][0] == "d"
