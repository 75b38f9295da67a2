"""A layer's arrays read whole into memory, for commands that read every channel (the gallery).

Offers:
    hold(layer, names=("mean", "argmax", "max"), budget=None, progress=False) -> context manager giving the names held:
        inside it ``layer.stored(name)`` is a ``Held`` array for each of them
    Held(source, values)   reads as the zarr array it stands for (through zarr's own indexers), from
                           ``values`` in memory
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
from .store import every_shard

UNKNOWN_BUDGET = 1 << 30  # where the free memory cannot be read (not Linux)


def budget() -> int:
    from .hardware import available_memory

    free = available_memory()
    return UNKNOWN_BUDGET if free is None else free // 2


class Held:
    """An array of a layer read whole: its reads give what the store's array gives, as new numpy
    arrays; anything else (shape, shards, metadata) is the store array's.

    A read is zarr's own: its indexers (``zarr.core.indexing``) take the selection, so every form
    zarr takes is taken alike (negative and numpy integers, lists, masks, steps, ``Ellipsis``),
    every form it refuses is refused with its error (``BoundsCheckError``, ``NegativeStepError``),
    and the result has its shape, type (a numpy scalar for one element of ``[...]``) and memory
    order; only the blocks come from ``values`` instead of the store's shards."""

    def __init__(self, source, values: np.ndarray):
        values.flags.writeable = False
        self._source, self.values = source, values

    def __getattr__(self, name):
        return getattr(self._source, name)

    def __repr__(self) -> str:
        return f"<held {self._source!r}>"

    def with_config(self, config):
        """Reads in the memory order of ``config``, as zarr's (sums over a block follow it, to the
        last bit); the config itself (``.order``, ``.config``) is the store array's so configured."""
        return Held(self._source.with_config(config), self.values)

    @property
    def vindex(self):
        from zarr.core.indexing import VIndex

        return VIndex(self)

    @property
    def oindex(self):
        from zarr.core.indexing import OIndex

        return OIndex(self)

    def __getitem__(self, selection):
        from zarr.core.indexing import is_pure_fancy_indexing, is_pure_orthogonal_indexing, pop_fields

        fields, pure = pop_fields(selection)
        if fields:  # a structured dtype's fields ([] where none are named): none of a layer's arrays has them
            return self._source[selection]
        if is_pure_fancy_indexing(pure, self.ndim):
            return self.vindex[selection]
        if is_pure_orthogonal_indexing(pure, self.ndim):
            return self.get_orthogonal_selection(pure)
        return self.get_basic_selection(pure)

    # A read that names ``out``, ``fields`` or ``prototype`` is the store array's own (``_given``)
    def get_basic_selection(self, selection=Ellipsis, **options):
        if _given(options):
            return self._source.get_basic_selection(selection, **options)
        return self._read(self._indexer("BasicIndexer", selection))

    def get_orthogonal_selection(self, selection, **options):
        if _given(options):
            return self._source.get_orthogonal_selection(selection, **options)
        return self._read(self._indexer("OrthogonalIndexer", selection))

    def get_mask_selection(self, mask, **options):
        if _given(options):
            return self._source.get_mask_selection(mask, **options)
        return self._read(self._indexer("MaskIndexer", mask))

    def get_coordinate_selection(self, selection, **options):
        if _given(options):
            return self._source.get_coordinate_selection(selection, **options)
        indexer = self._indexer("CoordinateIndexer", selection)
        out = self._read(indexer)
        return np.array(out).reshape(indexer.sel_shape) if hasattr(out, "shape") else out  # as zarr restores it

    def _indexer(self, name: str, selection):
        """zarr's indexer ``name`` (of ``zarr.core.indexing``) for ``selection`` on this array's grid."""
        import zarr.core.indexing

        return getattr(zarr.core.indexing, name)(selection, self.shape, self.metadata.chunk_grid)

    def _read(self, indexer):
        """zarr's ``_get_selection``, each block a slice of ``values``: an output in the array's
        configured order, each block's part of the selection copied in; one element of a basic
        selection as a numpy scalar."""
        from zarr.core.indexing import BasicIndexer, get_chunk_shape

        metadata = self._source.metadata
        order = metadata.order if metadata.zarr_format == 2 else self._source.config.order
        out = np.empty(indexer.shape, dtype=self.values.dtype, order=order)
        if out.size:
            block_shape = get_chunk_shape(metadata.chunk_grid)
            for coords, block_selection, out_selection, _ in indexer:
                block = self.values[tuple(slice(c * s, (c + 1) * s) for c, s in zip(coords, block_shape))]
                part = block[block_selection]
                out[out_selection] = part.squeeze(axis=indexer.drop_axes) if indexer.drop_axes else part
        if isinstance(indexer, BasicIndexer) and indexer.shape == ():
            return out[()]
        return out


def _given(options: dict) -> bool:
    """Whether a read names ``out``, ``fields`` or ``prototype``: those go to the store array (zarr's
    ``vindex`` and ``oindex`` pass ``fields=[]`` where none are named)."""
    return any(not (value is None or (isinstance(value, list) and not value)) for value in options.values())


def _reads_alike(held: Held) -> bool:
    """Whether ``held`` reads a few elements as its values hold them. zarr's indexers are not its
    public API (pyproject allows any zarr 3): where a later zarr changed them, the arrays are read
    from the store as before, slower but right, rather than a gallery failing half-way."""
    values, nan = held.values, held.values.dtype.kind == "f"
    try:
        return (np.array_equal(held[:1, 0], values[:1, 0], equal_nan=nan)
                and np.array_equal(held.get_orthogonal_selection(([0], [0])), values[:1, :1], equal_nan=nan)
                and np.array_equal(held.get_coordinate_selection(([0], [0])), values[:1, 0], equal_nan=nan))
    except Exception:  # noqa: BLE001 (any failure of zarr's internals means: do not hold)
        return False


def _read_whole(layer, array, progress: bool) -> np.ndarray:
    """Every shard of ``array`` in turn (one request each on an object store), into one
    column-major matrix: a column is then contiguous, as each query takes it."""
    from .progress import bar
    from .scans import column_major

    store, source = layer.store, column_major(array)
    out = np.empty(array.shape, dtype=array.dtype, order="F")
    for lo, hi in bar(every_shard(store.n, store.shard_rows), desc=f"reading {array.basename}", unit="shard", leave=False, delay=0.5,
                      disable=not progress):
        out[lo:hi] = source[lo:hi]
    return out


@contextlib.contextmanager
def hold(layer, names=("mean", "argmax", "max"), budget_bytes: int | None = None, progress: bool = False):
    """Within it, each of ``names`` stored in ``layer`` is read from memory, read whole once where
    it fits what is left of ``budget_bytes`` (``budget()`` if None), in the order given. Within
    another hold, what that one holds is used as it is (not read, nor counted, again), and is
    held again after this one."""
    names = list(names)
    layer.usable  # noqa: B018 (first: a shard finished after it is not ranked, so what is read next covers every ranked row)
    before = layer.held_arrays()
    left = budget() if budget_bytes is None else budget_bytes
    held = dict(before)
    for name in names:
        if name not in layer.available or name in held:
            continue
        array = layer.stored(name)
        size = int(np.prod(array.shape)) * array.dtype.itemsize
        if size > left:
            continue
        try:
            candidate = Held(array, _read_whole(layer, array, progress))
        except DamagedStoreError:
            continue  # read as before: a query that touches the damage says where it is
        if not _reads_alike(candidate):
            continue
        held[name] = candidate
        left -= size
    layer.hold_arrays(held)
    try:
        yield sorted(name for name in held if name in names)
    finally:
        layer.hold_arrays(before)
