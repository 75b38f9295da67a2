"""Whole shards: the batches that fill them, and the buffer that writes each once.

Offers:
    ShardBatches                       batch sampler whose batches never straddle a shard
    rows_in(shards, shard_rows, n)     how many images some shards hold
    mark_non_finite(stacked, ok, errors)  rows with NaN or inf statistics made invalid, in place
    ShardBuffer                        one shard's rows for every layer, filled batch by batch
    ShardWriter                        batch results in, whole shards out (written once, then marked done)

numpy and the store only: the loop that feeds them is in ``extract.py``.
"""

from __future__ import annotations

import numpy as np

from . import store as st


NON_FINITE = "non-finite activations (NaN or inf; in fp16 a value above 65504 overflows)"


def mark_non_finite(stacked, ok, errors) -> None:
    """Rows whose mean or max is NaN or inf become invalid, in place: no ranking can place them."""
    bad = np.flatnonzero(ok & ~np.isfinite(stacked[:, :2]).all(axis=(1, 2)))
    for i in bad:
        ok[i], errors[i] = False, NON_FINITE


def rows_in(shards, shard_rows: int, n: int) -> int:
    """How many images the given shards hold (the last shard may be short)."""
    return sum(stop - start for start, stop in (st.shard_bounds(s, shard_rows, n) for s in shards))


class ShardBatches:
    """Batch sampler over the rows of the pending shards, shard by shard."""

    def __init__(self, shards, shard_rows: int, n: int, batch_size: int):
        self.shards, self.rows, self.n, self.batch = list(shards), shard_rows, n, batch_size

    def __iter__(self):
        for shard in self.shards:
            start, stop = st.shard_bounds(shard, self.rows, self.n)
            for lo in range(start, stop, self.batch):
                yield list(range(lo, min(lo + self.batch, stop)))

    def __len__(self) -> int:
        total = 0
        for shard in self.shards:
            start, stop = st.shard_bounds(shard, self.rows, self.n)
            total += -(-(stop - start) // self.batch)
        return total

    def rows_total(self) -> int:
        return rows_in(self.shards, self.rows, self.n)


class ShardBuffer:
    """The rows of one shard for every layer, filled batch by batch."""

    def __init__(self, shard, start, stop, shapes):
        self.shard, self.start, self.stop = shard, start, stop
        rows = stop - start
        self.filled = 0
        self.stats = {layer: np.empty((rows, 3, shape[0]), dtype=np.float32)
                      for layer, shape in shapes.items()}
        self.valid = np.zeros(rows, dtype=bool)
        self.errors = [""] * rows

    def add(self, rows, results: dict, ok, errors):
        lo, hi = rows[0] - self.start, rows[-1] - self.start + 1
        for layer, block in results.items():
            self.stats[layer][lo:hi] = block
        self.valid[lo:hi] = ok
        self.errors[lo:hi] = errors
        self.filled += hi - lo

    def blocks(self):
        out = {}
        bad = ~self.valid
        for layer, stats in self.stats.items():
            mean, peak = stats[:, 0].copy(), stats[:, 1].copy()
            argmax = stats[:, 2].astype(np.int32)
            mean[bad], peak[bad], argmax[bad] = np.nan, np.nan, -1
            out[layer] = (mean, peak, argmax)
        return out


class ShardWriter:
    """Batch results in, whole shards out: each written once, then marked done."""

    def __init__(self, group, layers, shapes, n_images: int):
        self.group, self.layers, self.shapes, self.n = group, layers, shapes, n_images
        self.rows = group.attrs["shard_rows"]
        self.split = np.cumsum([shapes[layer][0] for layer in layers])[:-1]
        self.buffer = None

    def add(self, rows, stacked, ok, errors) -> None:
        """``stacked`` is (B, 3, C summed over layers): mean, max and argmax per channel."""
        if self.buffer is None:
            shard = rows[0] // self.rows
            self.buffer = ShardBuffer(shard, *st.shard_bounds(shard, self.rows, self.n), self.shapes)
        buffer = self.buffer
        buffer.add(rows, dict(zip(self.layers, np.split(stacked, self.split, axis=2))), ok, errors)
        if buffer.filled == buffer.stop - buffer.start:
            st.write_shard(self.group, self.layers, buffer.shard, buffer.blocks(), buffer.valid, buffer.errors)
            self.buffer = None
