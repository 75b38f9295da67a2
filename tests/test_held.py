"""pipeline.held: a layer's arrays read whole into memory answer every read as the store does."""

import shutil

import numpy as np
import pytest
import zarr

import pipeline
from pipeline import held
from pipeline.errors import DamagedStoreError

from conftest import damage_store

SELECTIONS = [
    (slice(None), 3), (slice(None), -1), (slice(2, 9), slice(None)), (slice(None), slice(5, 21)),
    (4, slice(None)), (7, 100), slice(8, 16), slice(None), (slice(None, None, 3), slice(1, 40, 7))]
ORTHOGONAL = [
    ([0, 5, 17, 23], [3]), (np.array([23, 0, 9]), [7, 7, 2]), ([2], 11), (5, [1, 500]),
    (np.arange(24) % 3 == 0, slice(10, 14)), (slice(None), [-1, 0]), ([1, 2], Ellipsis),
    (Ellipsis, [4]), [3, 4], np.array([6])]
COORDINATES = [([0, 5, 23], [3, 3, 507]), (np.array([1, 1]), np.array([0, -1]))]


@pytest.fixture(scope="module")
def layer(small_store):
    return pipeline.open_store(small_store)["mixed4a"]


@pytest.mark.parametrize("name", ["mean", "max", "argmax"])
def test_every_kind_of_read_gives_what_the_store_gives(small_store, layer, name):
    source = zarr.open_group(str(small_store), mode="r")[f"mixed4a/{name}"]
    with layer.hold([name], budget=1 << 30) as names:
        assert names == [name]
        array = layer.stored(name)
        assert isinstance(array, held.Held)
        for selection in SELECTIONS:
            expected, got = source[selection], array[selection]
            np.testing.assert_array_equal(got, expected, err_msg=str(selection))
            assert np.shape(got) == np.shape(expected) and np.asarray(got).dtype == expected.dtype
            assert got.flags.c_contiguous and array.with_config({"order": "F"})[selection].flags.f_contiguous
        for selection in ORTHOGONAL:
            expected, got = source.get_orthogonal_selection(selection), array.get_orthogonal_selection(selection)
            np.testing.assert_array_equal(got, expected, err_msg=str(selection))
            assert got.shape == expected.shape, selection
        for selection in COORDINATES:
            np.testing.assert_array_equal(array.get_coordinate_selection(selection),
                                          source.get_coordinate_selection(selection))
        assert array.shape == source.shape and array.dtype == source.dtype and array.shards == source.shards


def test_a_read_is_a_copy_that_cannot_change_what_is_held(layer):
    with layer.hold(["mean"], budget=1 << 30):
        array = layer.stored("mean")
        first = array[:, 2]
        first[:] = 12345.0
        rows = array.get_orthogonal_selection(([0, 1], [2]))
        rows[:] = -1.0
        assert not np.isin(array[:, 2], [12345.0, -1.0]).any()
        with pytest.raises(ValueError):
            array.values[0, 0] = 1.0


def _answers(layer):
    return [(layer.topk(c, k=5).rows.tolist(), layer.topk(c, k=3, bottom=True).rows.tolist(),
             layer.samples(c, per_band=2).rows.tolist(), layer.crop_peaks(layer.topk(c, k=5).rows, c),
             layer.topk(c, k=4, by="max").activations.tolist(), layer.topk(c, k=3, diverse=True).rows.tolist())
            for c in range(0, layer.channels, 37)]


def test_queries_inside_give_what_they_give_outside(small_store):
    outside = pipeline.open_store(small_store)["mixed4a"]  # a layer each: a layer keeps its last column and tables
    layer = pipeline.open_store(small_store)["mixed4a"]
    with layer.hold(budget=1 << 30) as names:
        assert names == ["argmax", "max", "mean"]
        assert _answers(layer) == _answers(outside)
        for by in ("mean", "max"):
            inside, expected = layer.table(by), outside.table(by)
            assert inside.keys() == expected.keys()
            for name, value in expected.items():
                np.testing.assert_array_equal(inside[name], value, err_msg=name)
        np.testing.assert_array_equal(layer.correlations(), outside.correlations())
        np.testing.assert_array_equal(layer.similar(3).rows, outside.similar(3).rows)
    assert not isinstance(layer.stored("mean"), held.Held)  # from the store again after it


def test_only_what_fits_the_budget_is_held_in_the_order_given(layer):
    size = layer.store.n * layer.channels * 4  # each of the three arrays is 4 bytes a value
    with layer.hold(["argmax", "mean", "max"], budget=2 * size + 1) as names:
        assert names == ["argmax", "mean"]
        assert not isinstance(layer.stored("max"), held.Held)
    with layer.hold(budget=size - 1) as names:
        assert names == []
        assert not isinstance(layer.stored("mean"), held.Held)


def test_the_default_budget_is_half_the_free_memory(monkeypatch):
    monkeypatch.setattr("pipeline.hardware.available_memory", lambda: 10_000)
    assert held.budget() == 5_000
    monkeypatch.setattr("pipeline.hardware.available_memory", lambda: None)
    assert held.budget() == held.UNKNOWN_BUDGET


def test_the_rows_ranked_are_known_before_the_arrays_are_read(small_store, monkeypatch):
    """A shard finished between the read of the arrays and that of the done markers would be ranked
    with the fill value (NaN) of its rows: the markers are read first."""
    layer = pipeline.open_store(small_store)["mixed4a"]
    order, read = [], held._read_whole
    monkeypatch.setattr(held, "_read_whole", lambda lay, arr, progress: (
        order.append("usable" in lay.__dict__), read(lay, arr, progress))[1])
    with layer.hold(["mean"], budget=1 << 30):
        pass
    assert order == [True]


def test_a_damaged_array_is_not_held_and_its_query_says_where(small_store, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(small_store, store)
    damage_store(store, "flipped")
    layer = pipeline.open_store(store)["mixed4a"]
    with layer.hold(budget=1 << 30) as names:
        assert names == ["argmax", "max"]
        with pytest.raises(DamagedStoreError, match="shard 1"):
            layer.topk(0)


def test_an_array_the_layer_lacks_is_skipped(tmp_path):
    from pipeline.importing import import_matrix

    matrix = np.random.default_rng(0).random((30, 6)).astype(np.float32)
    import_matrix(tmp_path / "i.zarr", matrix, "sae", [f"c/{i}.jpg" for i in range(30)], np.zeros(30, int), ["c"])
    layer = pipeline.open_store(tmp_path / "i.zarr")["sae"]
    with layer.hold(budget=1 << 30) as names:
        assert names == ["mean"]
        assert layer.topk(2, k=3).rows.tolist() == np.argsort(-matrix[:, 2], kind="stable")[:3].tolist()


# Forms the pipeline never uses but ``layer.array(by)`` takes from a user: zarr's answer (its type, a numpy
# scalar for one element of ``[...]``, its memory order) or its error, not numpy's.
EVERY_FORM = [(5, 3), (np.int64(5), 3), (np.int64(5), np.int64(9)), (-1, -1), (np.array(3), 0), (slice(None), slice(None, None, -2)),
              (24, 0), (0, 508), (-25, 0), (slice(None), [508]), (np.arange(24) % 2 == 0, [3, 1]), (Ellipsis, [3, 1]),
              ([True, False], 0), (slice(30, 40), 0), (slice(5, 2), slice(None)), ([5, 5, 1], [-1, 0]), np.array([[1, 2]])]


def _outcome(read):
    try:
        got = read()
    except Exception as exc:  # noqa: BLE001 (the error is the answer compared)
        return type(exc)
    arr = np.asarray(got)
    return type(got), arr.shape, arr.dtype, arr.flags.c_contiguous, arr.flags.f_contiguous, arr.tobytes()


@pytest.mark.parametrize("order", ["C", "F"])
def test_every_form_zarr_takes_or_refuses_is_taken_or_refused_alike(small_store, layer, order):
    source = zarr.open_group(str(small_store), mode="r")["mixed4a/mean"].with_config({"order": order})
    with layer.hold(["mean"], budget=1 << 30):
        array = layer.stored("mean").with_config({"order": order})
        assert array.order == order
        for selection in EVERY_FORM:
            assert _outcome(lambda: array[selection]) == _outcome(lambda: source[selection]), selection
            for read in ("get_orthogonal_selection", "get_coordinate_selection"):
                assert (_outcome(lambda: getattr(array, read)(selection))
                        == _outcome(lambda: getattr(source, read)(selection))), (read, selection)
            assert _outcome(lambda: array.oindex[selection]) == _outcome(lambda: source.oindex[selection]), selection
            assert _outcome(lambda: array.vindex[selection]) == _outcome(lambda: source.vindex[selection]), selection


def test_a_hold_within_another_reads_nothing_again_and_leaves_the_outer_ones_arrays(small_store, monkeypatch):
    """A gallery built in a user's ``with layer.hold():`` held a second copy of each array, and
    left the user's loop reading the store after it."""
    layer = pipeline.open_store(small_store)["mixed4a"]
    with layer.hold(budget=1 << 30) as outer:
        arrays = {name: layer.stored(name) for name in outer}
        monkeypatch.setattr(held, "_read_whole", lambda *args: pytest.fail("read again"))
        with layer.hold(["mean", "max"], budget=0) as inner:
            assert inner == ["max", "mean"] and layer.stored("mean") is arrays["mean"]
        assert {name: layer.stored(name) for name in outer} == arrays
    assert not isinstance(layer.stored("mean"), held.Held)


def test_where_zarrs_indexers_fail_nothing_is_held_and_queries_read_the_store(small_store, monkeypatch):
    """Held reads through zarr's indexers, which are not zarr's public API: a zarr that changed them
    must leave the gallery slower, not broken."""
    expected = pipeline.open_store(small_store)["mixed4a"].topk(5).rows.tolist()

    def changed(self, indexer):
        raise TypeError("an indexer of a later zarr, taken another way")

    monkeypatch.setattr(held.Held, "_read", changed)
    layer = pipeline.open_store(small_store)["mixed4a"]
    with layer.hold(budget=1 << 30) as names:
        assert names == []
        assert layer.topk(5).rows.tolist() == expected


def test_a_budget_is_bytes_to_the_byte_and_0_holds_nothing(layer, monkeypatch):
    """An array of exactly the budget's size is held; ``budget=0`` (a caller's way to read from the
    store as before) held every array that fit half the free memory."""
    size = layer.store.n * layer.channels * 4
    with layer.hold(["mean", "max"], budget=size) as names:
        assert names == ["mean"]
    monkeypatch.setattr(held, "budget", lambda: 1 << 30)
    with layer.hold(budget=0) as names:
        assert names == []
        assert not isinstance(layer.stored("mean"), held.Held)


def test_a_damaged_array_leaves_its_share_of_the_budget_to_the_others(small_store, tmp_path):
    """The damaged mean is read from the store as before; what it would have taken still holds
    max and argmax (each then read once, not a request a shard a channel)."""
    store = tmp_path / "s.zarr"
    shutil.copytree(small_store, store)
    damage_store(store, "flipped")
    layer = pipeline.open_store(store)["mixed4a"]
    size = layer.store.n * layer.channels * 4
    with layer.hold(budget=2 * size) as names:
        assert names == ["argmax", "max"]


def test_a_held_array_is_column_major(layer):
    """A channel's column is then one contiguous copy: row-major, each of the gallery's column
    reads gathers a strided column (8 times slower at 50,000 x 508)."""
    with layer.hold(["mean"], budget=1 << 30):
        assert layer.stored("mean").values.flags.f_contiguous
