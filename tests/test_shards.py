"""Whole shards: batches that never straddle one, and each written once, when full."""

from __future__ import annotations

import numpy as np
import zarr

from pipeline import store as st
from pipeline.shards import NON_FINITE, ShardBatches, ShardWriter, mark_non_finite, rows_in


def test_shard_batches_never_straddle_shards():
    batches = list(ShardBatches([0, 2], shard_rows=5, n=12, batch_size=3))
    assert batches == [[0, 1, 2], [3, 4], [10, 11]]
    assert len(ShardBatches([0, 2], 5, 12, 3)) == 3
    assert rows_in([0, 2], 5, 12) == ShardBatches([0, 2], 5, 12, 3).rows_total() == 7


def test_a_shard_is_written_when_full_and_then_marked_done(tmp_path):
    images = {"path": [f"{i}.jpg" for i in range(6)], "label": [0] * 6, "classes": ["a"], "size": [1] * 6,
              "mtime_ns": [0] * 6}
    group = st.create_store(tmp_path / "s.zarr", {"model": {}}, images, shard_rows=4, overwrite=False)
    st.add_layer(group, "conv", 2, (1, 1), {})
    writer = ShardWriter(group, ["conv"], {"conv": (2, 1, 1)}, 6)
    stats = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)  # (rows, mean/max/argmax, channels)
    writer.add([0, 1], stats[:2], np.array([True, False]), ["", "broken"])
    assert not st.done_shards(group, "conv").any()  # half a shard: nothing written yet
    writer.add([2, 3], stats[2:], np.array([True, True]), ["", ""])
    assert st.done_shards(group, "conv").tolist() == [True, False]
    mean = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")["conv/mean"][:4]
    np.testing.assert_array_equal(mean[[0, 2, 3]], stats[[0, 2, 3], 0])
    assert np.isnan(mean[1]).all()  # the row that failed to decode


def test_rows_with_non_finite_statistics_become_invalid():
    stats = np.ones((3, 3, 2), dtype=np.float32)
    stats[1, 1, 0] = np.inf  # an fp16 overflow in one channel's max
    stats[2, 0, 1] = np.nan  # a row that already failed to decode keeps its own error
    ok, errors = np.array([True, True, False]), ["", "", "broken"]
    mark_non_finite(stats, ok, errors)
    assert ok.tolist() == [True, False, False]
    assert errors == ["", NON_FINITE, "broken"]
