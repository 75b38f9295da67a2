"""A layer's arrays read whole into memory, for commands that read every channel (the gallery).

Offers:
    hold(layer, names=STATS, budget=None, progress=False) -> context manager giving the names held:
        inside it ``layer.stored(name)`` is a ``Held`` array for each of them
    Held(source, values)   reads as the zarr array it stands for, from ``values`` in memory
    budget() -> int        bytes that may be held: half of what this process may still take

Why: a gallery reads each channel's column, then its top images' argmax, max and mean,
each read an index and a chunk from every shard it touches (each inner chunk is one
column): 13,534 reads of the store for a gallery of mixed4a's 508 channels, each a
request on S3. Read whole, an array is one request a shard, and every later read is a
numpy copy. Arrays that do not fit the budget are read from the store as before.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .errors import DamagedStoreError
from .store import STATS, n_shards, shard_bounds

UNKNOWN_BUDGET = 1 << 30  # where the free memory cannot be read (not Linux)


def budget() -> int:
    from .hardware import available_memory

    free = available_memory()
    return UNKNOWN_BUDGET if free is None else free // 2


class Held:
    """An array of a layer read whole: its reads (``[...]``, ``get_orthogonal_selection``,
    ``get_coordinate_selection``) give what the store's array gives, as new numpy arrays;
    anything else (shape, shards, metadata) is the store array's."""

    def __init__(self, source, values: np.ndarray, order: str = "C"):
        values.flags.writeable = False
        self._source, self.values, self._order = source, values, order

    def __getattr__(self, name):
        return getattr(self._source, name)

    def with_config(self, config):
        """Reads in the memory order of ``config`` (as zarr's): sums over a block follow it, to the last bit."""
        return Held(self._source, self.values, config.get("order", self._order))

    def _give(self, values) -> np.ndarray:
        return np.array(values, order=self._order)

    def __getitem__(self, selection):
        return self._give(self.values[selection])

    def get_orthogonal_selection(self, selection):
        parts = selection if isinstance(selection, tuple) else (selection,)
        if any(part is Ellipsis for part in parts):
            at = next(i for i, part in enumerate(parts) if part is Ellipsis)
            parts = parts[:at] + (slice(None),) * (self.values.ndim - len(parts) + 1) + parts[at + 1:]
        out = self.values
        # An axis at a time, the last first: a few columns of the column-major matrix, then their rows.
        # Indexing, not np.take, which copies a column-major matrix whole first (18 ms a call at 50,000 x 508).
        for axis in reversed(range(len(parts))):
            part = parts[axis]
            if not isinstance(part, (int, np.integer, slice)):
                part = np.asarray(part)
                part = np.flatnonzero(part) if part.dtype == bool else part
            out = out[(slice(None),) * axis + (part,)]  # an int drops the axis; those before keep their numbers
        return self._give(out)

    def get_coordinate_selection(self, selection):
        parts = selection if isinstance(selection, tuple) else (selection,)
        return self._give(self.values[tuple(np.asarray(part) for part in parts)])


def _read_whole(layer, array, progress: bool) -> np.ndarray:
    """Every shard of ``array`` in turn (one request each on an object store), into one
    column-major matrix: a column is then contiguous, as each query takes it."""
    from .progress import bar
    from .scans import column_major

    store, source = layer.store, column_major(array)
    out = np.empty(array.shape, dtype=array.dtype, order="F")
    shards = [shard_bounds(s, store.shard_rows, store.n) for s in range(n_shards(store.n, store.shard_rows))]
    for lo, hi in bar(shards, desc=f"reading {array.basename}", unit="shard", leave=False, delay=0.5,
                      disable=not progress):
        out[lo:hi] = source[lo:hi]
    return out


@contextlib.contextmanager
def hold(layer, names=STATS, budget_bytes: int | None = None, progress: bool = False):
    """Within it, each of ``names`` stored in ``layer`` is read from memory, read whole once where
    it fits what is left of ``budget_bytes`` (``budget()`` if None), in the order given."""
    layer.usable  # noqa: B018 (first: a shard finished after it is not ranked, so what is read next covers every ranked row)
    left = budget() if budget_bytes is None else budget_bytes
    held = {}
    for name in names:
        if name not in layer.available:
            continue
        array = layer.stored(name)
        size = int(np.prod(array.shape)) * array.dtype.itemsize
        if size > left:
            continue
        try:
            held[name] = Held(array, _read_whole(layer, array, progress))
        except DamagedStoreError:
            continue  # read as before: a query that touches the damage says where it is
        left -= size
    layer.hold_arrays(held)
    try:
        yield sorted(held)
    finally:
        layer.hold_arrays({})
