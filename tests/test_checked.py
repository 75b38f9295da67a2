"""Reads through ``Checked``: damage met is one error naming the shard; the caller's own mistakes stay theirs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import pipeline
from conftest import damage_store
from pipeline.checked import Checked
from pipeline.errors import DamagedStoreError
from pipeline.importing import import_matrix

C, ROWS = 6, 4


def _imported(tmp_path, n: int = 12):
    """An imported store of shards of 4 rows."""
    store = tmp_path / "s.zarr"
    import_matrix(store, np.arange(n * C, dtype=np.float32).reshape(n, C) + 1, "mixed4a",
                  [f"x{i}.jpg" for i in range(n)], shard_rows=ROWS)
    return store


def test_a_selection_out_of_bounds_is_the_callers_mistake_not_damage(tmp_path):
    from zarr.errors import BoundsCheckError

    store = _imported(tmp_path)
    mean = pipeline.open_store(store)["mixed4a"].array("mean")
    for columns in (99, [1, 99]):
        with pytest.raises(BoundsCheckError):
            mean[:, columns]


def test_every_kind_of_read_names_the_damaged_shard(tmp_path):
    """Negative rows, ``...``, orthogonal and coordinate selections: the shard named is the one read,
    its rows those the store has (10 rows: the last shard is 8-9)."""
    store = _imported(tmp_path, n=10)
    damage_store(store, "flipped", shard=2)
    mean = pipeline.open_store(store)["mixed4a"].array("mean")
    said = r"mixed4a/mean of .* is damaged in shard 2 \(rows 8-9: "
    for read in (lambda: mean[-1], lambda: mean[...], lambda: mean.get_orthogonal_selection(([9], [0])),
                 lambda: mean.get_coordinate_selection(([1, 9], [0, 0]))):
        with pytest.raises(DamagedStoreError, match=said):
            read()


def test_a_failure_no_shard_reproduces_keeps_its_own_error():
    class Flaky:
        """Fails a whole read, but no shard's read alone."""
        shape, ndim, shards, chunks = (8,), 1, None, (4,)

        def __getitem__(self, selection):
            raise ValueError("a passing hiccup")

        def get_orthogonal_selection(self, selection):
            return np.zeros(4)

    with pytest.raises(ValueError, match="a passing hiccup"):
        Checked(Flaky(), "x", "fix")[:]


@pytest.mark.parametrize("selection", [(slice(None), []), (np.ones(25, bool), 0), (np.array(3), 508)])
def test_a_selection_zarr_refuses_is_the_callers_mistake_not_damage(small_store, tmp_path, selection):
    """zarr refuses these with plain IndexErrors; each shard read again with the same columns failed
    alike, and an intact store was called damaged in shard 0 (a repair for a typo)."""
    intact = pipeline.open_store(small_store)["mixed4a"].stored("mean")
    with pytest.raises(IndexError) as refused:
        intact.get_orthogonal_selection(selection)
    assert not isinstance(refused.value, DamagedStoreError)
    store = tmp_path / "s.zarr"
    shutil.copytree(small_store, store)
    damage_store(store, "flipped")
    damaged = pipeline.open_store(store)["mixed4a"].stored("mean")
    with pytest.raises(DamagedStoreError, match="shard 1"):
        damaged.get_orthogonal_selection((slice(None), [3]))  # what the same store says of a read it can make
