"""Reads of a stored array that name the damage they meet (no torch). Offers:

    Checked(arr, where, fix, unit)      a zarr array whose failing reads raise ``DamagedStoreError``
                                        naming the shard (phase two reads through it); a selection
                                        zarr refuses stays the caller's IndexError
"""

from __future__ import annotations

import numpy as np

from .damage import DECODE_ERRORS, out_of_bounds, span
from .errors import DamagedStoreError, first_line


def _rows_of(selection, n: int) -> np.ndarray:
    """The row numbers a selection's first axis touches."""
    first = selection[0] if isinstance(selection, tuple) else selection
    if first is Ellipsis:
        return np.arange(n)
    if isinstance(first, slice):
        return np.arange(*first.indices(n))
    return np.atleast_1d(np.asarray(first)).astype(np.int64) % max(n, 1)


def _refused(how, arr, selection) -> bool:
    """Whether ``selection`` itself is refused, by an array of ``arr``'s shape and type that holds
    nothing (read without decoding anything). zarr refuses an empty list or a mask of the wrong
    length with a plain IndexError, which ``out_of_bounds`` cannot tell from a codec's: each shard
    re-read with the same columns failed alike, and an intact store was called damaged."""
    import zarr

    try:
        twin = zarr.create_array(zarr.storage.MemoryStore(), shape=arr.shape, chunks=arr.shape or (1,),
                                 dtype=arr.dtype, fill_value=arr.fill_value)
    except Exception:  # noqa: BLE001 (a type no twin takes: its failure is looked for in the shards, as before)
        return False
    try:
        how(twin, selection)
    except DECODE_ERRORS:
        return True
    return False


class Checked:
    """A zarr array whose reads, where a codec fails, raise ``DamagedStoreError`` naming the
    damaged shard (found by reading the touched shards one at a time); a failure no single shard
    reproduces is no damage, and keeps its own traceback. Everything else is the array's."""

    def __init__(self, arr, where: str, fix: str, unit: str = "row"):
        self._arr, self._where, self._fix, self._unit = arr, where, fix, unit  # ``unit``: what an index counts

    def __getattr__(self, name):
        return getattr(self._arr, name)

    def with_config(self, config):
        return Checked(self._arr.with_config(config), self._where, self._fix, self._unit)

    def __getitem__(self, selection):
        return self._read(lambda arr, s: arr[s], selection)

    def get_orthogonal_selection(self, selection):
        return self._read(lambda arr, s: arr.get_orthogonal_selection(s), selection)

    def get_coordinate_selection(self, selection):
        return self._read(lambda arr, s: arr.get_coordinate_selection(s), selection)

    def _read(self, how, selection):
        try:
            return how(self._arr, selection)
        except DECODE_ERRORS as exc:
            if out_of_bounds(exc) or _refused(how, self._arr, selection):
                raise
            located = self._locate(selection)
            if located is None:
                raise
            raise located from exc

    def _locate(self, selection) -> DamagedStoreError | None:
        arr = self._arr
        height = (arr.shards or arr.chunks)[0]
        word = "shard" if arr.shards else "chunk"
        columns = selection[1] if isinstance(selection, tuple) and len(selection) > 1 else slice(None)
        columns = [columns] if isinstance(columns, (int, np.integer)) else columns
        for block in np.unique(_rows_of(selection, arr.shape[0]) // height).tolist():
            lo, hi = block * height, min(arr.shape[0], (block + 1) * height)
            try:
                np.asarray(arr.get_orthogonal_selection((slice(lo, hi), columns) if arr.ndim > 1 else slice(lo, hi)))
            except DECODE_ERRORS as exc:
                return DamagedStoreError(f"{self._where} is damaged in {word} {block} ({span(lo, hi, self._unit)}: "
                                         f"{first_line(exc)}); {self._fix}")
        return None
