"""Class selectivity against its chance level: a sparse channel's index is not its classes'."""

from __future__ import annotations

import numpy as np
from numpy.testing import assert_array_equal

import pipeline
from conftest import run_cli
from pipeline import stats
from pipeline.importing import import_matrix

N, CLASSES = 1000, 10


def _store(tmp_path):
    """Channel 0 is active on one image (of class 3), channel 1 is larger on class 3's 100 images
    than elsewhere, channel 2 is noise."""
    rng = np.random.default_rng(0)
    labels = np.arange(N) % CLASSES
    m = np.zeros((N, 3), dtype=np.float32)
    m[13, 0] = 0.5
    m[:, 1] = 1 + (labels == 3) + 0.2 * rng.random(N)
    m[:, 2] = rng.random(N)
    import_matrix(tmp_path / "s.zarr", m, "feat", [f"{i}.jpg" for i in range(N)], labels,
                  [f"c{k}" for k in range(CLASSES)], shard_rows=256)
    return pipeline.open_store(tmp_path / "s.zarr")["feat"]


def test_a_channel_active_on_one_image_is_selective_only_by_chance(tmp_path):
    sel = _store(tmp_path).selectivity()
    assert sel["index"][0] == 1.0 and sel["index"][0] > sel["index"][1]  # the index alone prefers it
    assert sel["shuffled"][0] == 1.0 and sel["excess"][0] == 0.0  # so does chance: one image is in some class
    assert 0.3 < sel["index"][1] and sel["shuffled"][1] < 0.05 and sel["most"] == 1
    assert abs(sel["excess"][2]) < 0.05
    # class 3's channels: the one selective for it first, not the one that fired once there
    assert sel["channels_per_class"][3][0] == 1 and sel["class_index"][3, 0] == 1.0 > sel["class_index"][3, 1]


def test_stats_names_the_selective_channel_and_writes_the_chance_level(tmp_path):
    _store(tmp_path)
    proc = run_cli("stats", "--store", str(tmp_path / "s.zarr"), "--layer", "feat", "-o", str(tmp_path / "o"))
    assert proc.returncode == 0
    assert "most class-selective channel (its index less the index with the labels shuffled): 1 " in proc.stdout
    rows = (tmp_path / "o" / "selectivity_channels.csv").read_text().splitlines()
    assert rows[0].startswith("channel,selectivity,shuffled,class1") and rows[1].startswith("0,1.0,1.0,c3")


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
