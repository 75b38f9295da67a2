"""Passes over a whole layer, a shard of rows at a time, in threads (numpy only, no torch).

Offers:
    WORKERS                                        threads for every pass over the store
    column_major(arr) -> the zarr array, reading blocks in column-major order where zarr can
    shard_map(layer, work, progress=None, held=None) -> iterator of (lo, hi, work(lo, hi, block))
        on every shard holding a usable row, in row order (``held``: a shard already read)
    read_shard(arr, lo, hi) -> rows lo:hi as numpy (one whole shard)
    projection(layer, vector, progress=None) -> (N,) float64   spatial means @ vector
        (``progress`` counts columns when few channels have a weight, shards otherwise)
    cosine(layer, target, progress=None) -> (N,) float64       cosine of each row's means with target
    cosine_to_row(layer, row, progress=None) -> (target, (N,) float64 or None)
        cosine with one image's means, its shard read once (None: the image's means are all 0)
    fingerprint_channels(channels) -> list of slices   which runs of channels ``fingerprints`` reads
    fingerprints(layer) -> (N, F) float32          a few runs of channels' means, to tell images apart

A shard of rows (65536 x 508 float32, 133 MB) is what zarr decodes in one read;
the float64 products are taken ``ROWS`` rows at a time, so no temporary is
larger than 17 MB (4096 x 508 x 8 bytes); each row's value agrees with one float64 product over the
whole matrix to round-off (tested to 1e-12). Rows that are not usable (invalid, or in an unfinished shard) may
hold anything in the results: rankings never read them.
"""

from __future__ import annotations

import itertools

import numpy as np

from .ranking import finite_or_zero
from .store import every_shard, shard_bounds

# Two threads: one shard is reduced while the next is read. Reading itself gains little from more
# (zarr runs its chunks through one event loop), and each thread holds a shard in memory.
WORKERS = 2
ROWS = 4096
FINGERPRINT_RUNS = 8  # runs of adjacent channels read as one slice: 3-4x faster than as many scattered columns
FINGERPRINT_RUN = 8


def shard_map(layer, work, progress=None, held=None):
    """``(lo, hi, work(lo, hi, block))`` for the shards with a usable row, ``WORKERS`` at a time.

    ``held``: a list ``[(lo, hi, block)]`` of a shard already read; it is used instead of reading
    that shard again, first, and emptied once used, so its block is freed during the pass.
    """
    from concurrent.futures import ThreadPoolExecutor

    store, arr, usable = layer.store, column_major(layer.array("mean")), layer.usable
    bounds = [(lo, hi) for lo, hi in every_shard(store.n, store.shard_rows) if usable[lo:hi].any()]
    total = len(bounds)
    if held:
        bounds = [b for b in bounds if b[0] != held[0][0]]

    def one(lohi):
        lo, hi = lohi
        return lo, hi, work(lo, hi, read_shard(arr, lo, hi))

    def first():
        lo, hi, block = held.pop()
        yield lo, hi, work(lo, hi, block)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = pool.map(one, bounds)  # submitted now: the next shards are read while the held one is worked on
        results = itertools.chain(first(), results) if held else results
        yield from progress(results, total) if progress else results


def read_shard(arr, lo: int, hi: int) -> np.ndarray:
    """Rows ``lo:hi`` of ``arr`` (one whole shard) as a numpy array."""
    return np.asarray(arr[lo:hi])


def column_major(arr):
    """``arr`` reading into column-major blocks, where zarr can (``with_config`` came in zarr 3.1.6).

    Each inner chunk is one column, so its copy into such a block is contiguous: 0.27 against
    0.39 s a shard of 65536 x 508 (an ``out=`` buffer in that order does not help: zarr
    decodes in the array's configured order). The values are the same either way.
    """
    with_config = getattr(arr, "with_config", None)
    return with_config({"order": "F"}) if with_config else arr


def _by_rows(block: np.ndarray, product) -> np.ndarray:
    """``product(rows as float64)`` for every ``ROWS`` rows of ``block``, concatenated.

    Only rows that are not usable hold NaN or inf; their results are never read.
    """
    out = np.empty(len(block))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for i in range(0, len(block), ROWS):
            out[i:i + ROWS] = product(block[i:i + ROWS].astype(np.float64))
    return out


def _dot(rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Each row @ ``vector``, computed the same way for every row: two copies of one image get the same
    value, so their tie goes to the lower row (BLAS on a column-major block gave them different round-off;
    einsum sums each row's products in channel order, as fast here: 42 against 40 ms a shard)."""
    return np.einsum("ij,j->i", rows, vector)


def _per_row(layer, product, progress, held=None) -> np.ndarray:
    """``product`` of every row of spatial means, one value a row, over the shards with a usable row."""
    out = np.full(layer.store.n, np.nan)  # NaN for the rows of shards with no usable row, which are not read
    for lo, hi, values in shard_map(layer, lambda lo, hi, block: _by_rows(block, product), progress, held):
        out[lo:hi] = values
    return out


def projection(layer, vector: np.ndarray, progress=None) -> np.ndarray:
    """Spatial means @ ``vector`` for every image, reading only the columns with a weight."""
    used = np.flatnonzero(vector)
    # A column costs about 1/C of a shard's reading (25 ms at 1.28M images against 7 s for all
    # shards), so up to a quarter of the channels are read one by one.
    if used.size <= layer.channels // 4:
        arr, out = layer.array("mean"), np.zeros(layer.store.n, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            for c in progress(used, used.size) if progress else used:
                out += arr[:, int(c)].astype(np.float64) * vector[c]
        return out
    return _per_row(layer, lambda x: _dot(x, vector), progress)


def cosine(layer, target: np.ndarray, progress=None, held=None) -> np.ndarray:
    """Cosine between every image's spatial means and ``target`` (0 for an all-zero row)."""
    unit = target / np.linalg.norm(target)

    def rows_cosine(x):
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        return _dot(x, unit) / np.where(norms > 0, norms, 1.0)

    return _per_row(layer, rows_cosine, progress, held)


def cosine_to_row(layer, row: int, progress=None) -> tuple[np.ndarray, np.ndarray | None]:
    """(the row's spatial means, NaN and inf as 0; every row's cosine with them, or None if they are all 0).

    The row's shard is read whole (a single row costs as much: each inner chunk is a column)
    and then used by the pass, not read twice: at 50,000 images, one shard, that read was
    about half of the query.
    """
    store, arr = layer.store, column_major(layer.array("mean"))
    lo, hi = shard_bounds(row // store.shard_rows, store.shard_rows, store.n)
    held = [(lo, hi, read_shard(arr, lo, hi))]
    target = finite_or_zero(held[0][2][row - lo].astype(np.float64))
    if not target.any():
        return target, None
    return target, cosine(layer, target, progress, held)


def fingerprint_channels(channels: int) -> list[slice]:
    """``FINGERPRINT_RUNS`` runs of adjacent channels spread over the layer (all of a small one)."""
    if channels <= FINGERPRINT_RUNS * FINGERPRINT_RUN:
        return [slice(0, channels)]
    starts = np.linspace(0, channels - FINGERPRINT_RUN, FINGERPRINT_RUNS).astype(int)
    return [slice(int(s), int(s) + FINGERPRINT_RUN) for s in starts]


def fingerprints(layer) -> np.ndarray:
    """The means of the channels ``fingerprint_channels`` picks, for every image: (N, F) float32."""
    from concurrent.futures import ThreadPoolExecutor

    arr, runs = layer.array("mean"), fingerprint_channels(layer.channels)
    starts = np.cumsum([0] + [run.stop - run.start for run in runs])
    out = np.empty((layer.store.n, starts[-1]), dtype=np.float32)  # filled in place: one copy in memory

    def read(i):
        out[:, starts[i]:starts[i + 1]] = arr[:, runs[i]]

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(read, range(len(runs))))
    return out
