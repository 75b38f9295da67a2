"""A store damaged after it was written: found, refused in one sentence naming the shard, never read as data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr

import pipeline
from conftest import damage_store
from pipeline.damage import damaged_shards, layer_fault
from pipeline.errors import DamagedStoreError
from pipeline.importing import import_matrix

N, C, ROWS = 12, 6, 4


def _imported(tmp_path, nan_shard: int | None = None):
    """An imported store of 3 shards of 4 rows; ``nan_shard``: a shard of invalid (all-NaN) rows."""
    matrix = np.arange(N * C, dtype=np.float32).reshape(N, C) + 1
    if nan_shard is not None:
        matrix[nan_shard * ROWS:(nan_shard + 1) * ROWS] = np.nan
    store = tmp_path / "s.zarr"
    import_matrix(store, matrix, "mixed4a", [f"x{i}.jpg" for i in range(N)], shard_rows=ROWS)
    return store, matrix


def test_new_layers_checksum_every_inner_chunk(tmp_path):
    store, _ = _imported(tmp_path)
    codecs = zarr.open_group(str(store), mode="r")["mixed4a/mean"].metadata.to_dict()["codecs"]
    inner = codecs[0]["configuration"]["codecs"]
    assert {"name": "zstd", "configuration": {"level": 0, "checksum": True}} in inner


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_a_damaged_shard_is_one_error_naming_it(tmp_path, how):
    store, matrix = _imported(tmp_path)
    damage_store(store, how)
    layer = pipeline.open_store(store)["mixed4a"]
    with pytest.raises(DamagedStoreError, match=r"mixed4a/mean of .* is damaged in shard 1 \(rows 4-7: .*\); "
                                                r"import the layer again"):
        layer.topk(2)
    with pytest.raises(DamagedStoreError, match="shard 1"):
        layer.projection({0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 1.0})  # every column, a shard at a time
    assert list(damaged_shards(layer.store.group, "mixed4a", full=True)) == [1]


def test_the_cheap_check_finds_a_cut_short_shard_and_the_full_one_flipped_bytes(tmp_path):
    store, _ = _imported(tmp_path)
    group = zarr.open_group(str(store), mode="r")
    assert damaged_shards(group, "mixed4a", full=True) == {}
    damage_store(store, "flipped", shard=2)
    assert damaged_shards(group, "mixed4a") == {}  # its index is whole: only decoding finds it
    assert "checksum" in damaged_shards(group, "mixed4a", full=True)[2]
    damage_store(store, "truncated", shard=0)
    assert "truncated" in damaged_shards(group, "mixed4a")[0]


def test_a_done_shard_without_its_file_is_refused_not_read_as_nan(tmp_path):
    store, _ = _imported(tmp_path)
    damage_store(store, "deleted")
    layer = pipeline.open_store(store)["mixed4a"]
    with pytest.raises(DamagedStoreError, match="mixed4a/mean shard 1 \\(rows 4-7\\) is missing its file, though marked done"):
        layer.topk(0, k=20)
    assert "missing its file" in pipeline.open_store(store).info()["layers"]["mixed4a"]["damaged"]


def test_a_shard_of_invalid_rows_has_no_file_and_is_no_damage(tmp_path):
    store, matrix = _imported(tmp_path, nan_shard=1)
    assert not (store / "mixed4a" / "mean" / "c" / "1" / "0").exists()  # all fill values: zarr writes none
    top = pipeline.open_store(store)["mixed4a"].topk(0, k=N)
    assert len(top.rows) == N - ROWS
    assert damaged_shards(zarr.open_group(str(store), mode="r"), "mixed4a", full=True) == {}


@pytest.mark.parametrize("how, said", [("layer_json", "its mixed4a/zarr.json is missing"),
                                       ("array_json", "its mixed4a/mean/zarr.json is missing")])
def test_a_lost_zarr_json_is_one_error(tmp_path, how, said):
    store, _ = _imported(tmp_path)
    damage_store(store, how)
    opened = pipeline.open_store(store)
    with pytest.raises(DamagedStoreError, match=f"layer mixed4a of .* is damaged: {said}"):
        opened["mixed4a"]
    assert said in opened.info()["layers"]["mixed4a"]["damaged"]
    assert said.removeprefix("its ") in layer_fault(zarr.open_group(str(store), mode="r"), "mixed4a")


def test_a_done_marker_that_does_not_decode_names_its_shard(tmp_path):
    store, _ = _imported(tmp_path)
    damage_store(store, "done")
    with pytest.raises(DamagedStoreError, match=r"mixed4a/done of .* is damaged in chunk 1 \(shard 1: "):
        pipeline.open_store(store)["mixed4a"].topk(0)
    found = damaged_shards(zarr.open_group(str(store), mode="r"), "mixed4a")
    assert list(found) == [1] and "mixed4a/done chunk 1 does not decode" in found[1]


def test_damaged_image_arrays_are_one_error(tmp_path):
    store, _ = _imported(tmp_path)
    shutil.copy(store / "zarr.json", store / "images" / "label" / "c" / "0")  # not zstd at all
    with pytest.raises(DamagedStoreError, match=r"images/label of .* is damaged in chunk 0 .*--overwrite"):
        pipeline.open_store(store)["mixed4a"].topk(0)


def test_a_lost_valid_chunk_is_refused_not_read_as_invalid_rows(tmp_path):
    """zarr reads a lost ``images/valid`` chunk as its fill value, False: the shard's images vanished
    from every answer, with no word said."""
    store, _ = _imported(tmp_path)
    (store / "images" / "valid" / "c" / "1").unlink()
    with pytest.raises(DamagedStoreError, match="images/valid chunk 1 \\(rows 4-7\\) is missing its file, though marked done"):
        pipeline.open_store(store)["mixed4a"].topk(0)
    assert "images/valid chunk 1" in damaged_shards(zarr.open_group(str(store), mode="r"), "mixed4a")[1]


@pytest.mark.parametrize("invalid_rows", [[4, 5, 6, 7], [5]])
def test_a_lost_error_chunk_costs_only_the_reasons(tmp_path, invalid_rows):
    """Its rows stay invalid, as they read; and imports before 2026-11-27 wrote no ``error`` chunk at all
    (such a store was refused as damaged by the first version of the check)."""
    matrix = np.arange(N * C, dtype=np.float32).reshape(N, C) + 1
    matrix[invalid_rows] = np.nan
    store = tmp_path / "s.zarr"
    import_matrix(store, matrix, "mixed4a", [f"x{i}.jpg" for i in range(N)], shard_rows=ROWS)
    shutil.rmtree(store / "images" / "error" / "c")
    assert damaged_shards(zarr.open_group(str(store), mode="r"), "mixed4a", full=True) == {}
    assert len(pipeline.open_store(store)["mixed4a"].topk(0, k=N).rows) == N - len(invalid_rows)


def test_a_lost_valid_chunk_and_error_chunk_beside_a_file_of_means_are_found(tmp_path):
    store, _ = _imported(tmp_path)
    (store / "images" / "valid" / "c" / "2").unlink()  # every row valid: no error chunk to lose with it
    with pytest.raises(DamagedStoreError, match="images/valid chunk 2 \\(rows 8-11\\) is missing its file"):
        pipeline.open_store(store)["mixed4a"].topk(0)


@pytest.mark.parametrize("invalid_rows", [[], [5], [4, 5, 6, 7], [0, 5, 11]])
def test_chunks_zarr_leaves_unwritten_are_no_damage(tmp_path, invalid_rows):
    """No ``error`` chunk where every row is valid, no ``valid`` chunk where none is: both are fill values."""
    matrix = np.arange(N * C, dtype=np.float32).reshape(N, C) + 1
    matrix[invalid_rows] = np.nan
    store = tmp_path / "s.zarr"
    import_matrix(store, matrix, "mixed4a", [f"x{i}.jpg" for i in range(N)], shard_rows=ROWS)
    assert damaged_shards(zarr.open_group(str(store), mode="r"), "mixed4a", full=True) == {}
    assert len(pipeline.open_store(store)["mixed4a"].topk(0, k=N).rows) == N - len(invalid_rows)


@pytest.mark.parametrize("how", ["inf_column", "second_layer"])
def test_a_shard_of_invalid_rows_with_finite_values_is_no_damage(tmp_path, how):
    """A shard whose rows are all invalid has no ``valid`` chunk, yet a file of means where its rows keep
    finite values: an imported row with one value past float32's range, or a row invalid through
    another layer (a probe imported beside a shard of undecodable images). It was called a lost chunk."""
    store, matrix = tmp_path / "s.zarr", np.arange(N * C, dtype=np.float32).reshape(N, C) + 1
    paths = [f"x{i}.jpg" for i in range(N)]
    if how == "inf_column":
        matrix[2 * ROWS:, 0] = np.inf  # the last shard: every row invalid, its other columns finite
        import_matrix(store, matrix, "mixed4a", paths, shard_rows=ROWS)
    else:
        nan = matrix.copy()
        nan[2 * ROWS:] = np.nan
        import_matrix(store, nan, "first", paths, shard_rows=ROWS)
        import_matrix(store, matrix, "mixed4a", paths, shard_rows=ROWS)
    assert not (store / "images" / "valid" / "c" / "2").exists() and (store / "mixed4a" / "mean" / "c" / "2" / "0").exists()
    assert damaged_shards(zarr.open_group(str(store), mode="r"), "mixed4a", full=True) == {}
    assert len(pipeline.open_store(store)["mixed4a"].topk(1, k=N).rows) == 2 * ROWS


def test_a_lost_valid_chunk_beside_its_error_chunk_is_found(tmp_path):
    """A shard with valid and invalid rows has both chunks: its ``valid`` chunk lost leaves the error
    chunk, whose valid rows say "" (no reason)."""
    matrix = np.arange(N * C, dtype=np.float32).reshape(N, C) + 1
    matrix[5, 2] = np.nan
    store = tmp_path / "s.zarr"
    import_matrix(store, matrix, "mixed4a", [f"x{i}.jpg" for i in range(N)], shard_rows=ROWS)
    (store / "images" / "valid" / "c" / "1").unlink()
    with pytest.raises(DamagedStoreError, match="images/valid chunk 1 \\(rows 4-7\\) is missing its file, though marked done"):
        pipeline.open_store(store)["mixed4a"].topk(0)
    assert list(damaged_shards(zarr.open_group(str(store), mode="r"), "mixed4a")) == [1]


def test_the_listing_check_opens_each_array_once_not_once_a_shard(tmp_path, monkeypatch):
    """Each open of a zarr array is a metadata read (a request on an object store): the check of the
    ``images/`` chunks opened four arrays for every done shard of every query."""
    from zarr.storage import LocalStore

    reads = {}
    for rows in (ROWS, 1):
        store = tmp_path / f"s{rows}.zarr"
        matrix = np.arange(N * C, dtype=np.float32).reshape(N, C) + 1
        import_matrix(store, matrix, "mixed4a", [f"x{i}.jpg" for i in range(N)], shard_rows=rows)
        layer = pipeline.open_store(store)["mixed4a"]
        layer.done, layer.store.valid  # read before counting
        count, get = [0], LocalStore.get

        async def counting(self, *args, **kwargs):
            count[0] += 1
            return await get(self, *args, **kwargs)

        monkeypatch.setattr(LocalStore, "get", counting)
        layer.usable
        monkeypatch.setattr(LocalStore, "get", get)
        reads[rows] = count[0]
    assert reads[1] == reads[ROWS]  # 12 shards read as many files as 3


def test_out_of_bounds_is_zarrs_complaint_alone():
    """A codec's IndexError (an index past its buffer) is damage; only zarr's bounds check is the caller's."""
    from zarr.errors import BoundsCheckError

    from pipeline.damage import out_of_bounds

    assert out_of_bounds(BoundsCheckError("index out of bounds"))
    assert not out_of_bounds(IndexError("index 9 is out of bounds for axis 0 with size 4"))
    assert not out_of_bounds(ValueError("zarr"))


def test_hidden_folders_holding_node_contents_are_no_lost_layer(tmp_path):
    """A file system's snapshot folder (NetApp's ``.snapshot``) holds copies of the store's nodes."""
    from pipeline.damage import stray_folders

    store, _ = _imported(tmp_path)
    shutil.copytree(store / "mixed4a", store / ".snapshot" / "mixed4a")
    shutil.copytree(store / "mixed4a" / "mean", store / "mixed4a" / ".snapshot")
    group = zarr.open_group(str(store), mode="r")
    assert stray_folders(group) == [] and stray_folders(group, "mixed4a") == []
    assert layer_fault(group, "mixed4a") is None
    assert "damaged" not in pipeline.open_store(store).info()["layers"]["mixed4a"]


def test_a_shard_with_one_valid_row_must_keep_its_files(tmp_path):
    """Only a shard of invalid rows has no file: one valid row (the first) and its file gone is damage."""
    matrix = np.arange(N * C, dtype=np.float32).reshape(N, C) + 1
    matrix[[5, 6, 7]] = np.nan  # shard 1: row 4 alone valid
    store = tmp_path / "s.zarr"
    import_matrix(store, matrix, "mixed4a", [f"x{i}.jpg" for i in range(N)], shard_rows=ROWS)
    group = zarr.open_group(str(store), mode="r")
    assert damaged_shards(group, "mixed4a", full=True) == {}
    damage_store(store, "deleted")
    assert "mixed4a/mean shard 1 (rows 4-7) is missing its file" in damaged_shards(group, "mixed4a")[1]
    with pytest.raises(DamagedStoreError, match="mixed4a/mean shard 1 \\(rows 4-7\\) is missing its file"):
        pipeline.open_store(store)["mixed4a"].topk(0)


def test_a_lost_valid_chunk_beside_an_undecodable_error_chunk_is_found(tmp_path):
    """The ``error`` chunk decides whether a lost ``valid`` chunk is a loss; where it does not decode
    either, the shard is damaged (its rows would read as invalid, silently)."""
    matrix = np.arange(N * C, dtype=np.float32).reshape(N, C) + 1
    matrix[5, 2] = np.nan  # shard 1 has both chunks
    store = tmp_path / "s.zarr"
    import_matrix(store, matrix, "mixed4a", [f"x{i}.jpg" for i in range(N)], shard_rows=ROWS)
    (store / "images" / "valid" / "c" / "1").unlink()
    (store / "images" / "error" / "c" / "1").write_bytes(b"not zstd")
    found = damaged_shards(zarr.open_group(str(store), mode="r"), "mixed4a")
    assert list(found) == [1] and "images/error chunk 1 (rows 4-7) does not decode" in found[1]


def _shard_file(store, shard=1):
    return store / "mixed4a" / "mean" / "c" / str(shard) / "0"


def test_the_cheap_check_reads_the_index_checksum(tmp_path):
    """An index whose crc32c no longer matches (its last bytes overwritten) is found without --verify."""
    store, _ = _imported(tmp_path)
    raw = bytearray(_shard_file(store).read_bytes())
    raw[-1] ^= 0xFF
    _shard_file(store).write_bytes(bytes(raw))
    found = damaged_shards(zarr.open_group(str(store), mode="r"), "mixed4a")
    assert list(found) == [1] and "fails its checksum" in found[1]


def test_the_cheap_check_finds_chunk_bytes_lost_before_a_whole_index(tmp_path):
    """A file whose index is whole but whose last chunk lost a few bytes (fewer than the index's size)."""
    store, _ = _imported(tmp_path)
    raw = _shard_file(store).read_bytes()
    index_bytes = C * 16 + 4
    _shard_file(store).write_bytes(raw[:-index_bytes - 3] + raw[-index_bytes:])
    found = damaged_shards(zarr.open_group(str(store), mode="r"), "mixed4a")
    assert list(found) == [1] and "past the end of the file" in found[1]


def test_a_column_of_fill_values_in_a_shard_is_no_damage(tmp_path):
    """zarr writes no inner chunk for a column all NaN (its index says so with 2**64 - 1): a shard of
    invalid rows whose other columns are finite is whole."""
    matrix = np.arange(N * C, dtype=np.float32).reshape(N, C) + 1
    matrix[2 * ROWS:, 0] = np.nan
    store = tmp_path / "s.zarr"
    import_matrix(store, matrix, "mixed4a", [f"x{i}.jpg" for i in range(N)], shard_rows=ROWS)
    assert damaged_shards(zarr.open_group(str(store), mode="r"), "mixed4a", full=True) == {}
    assert len(pipeline.open_store(store)["mixed4a"].topk(1, k=N).rows) == 2 * ROWS
