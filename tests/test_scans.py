"""Whole-layer passes against numpy over the whole matrix, on a store of several shards."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from numpy.testing import assert_allclose, assert_array_equal

import pipeline
from pipeline import ranking, scans
from pipeline.importing import import_matrix

N, C, SHARD = 230, 80, 64  # four shards, the last one short


@pytest.fixture
def layer(tmp_path, monkeypatch):
    monkeypatch.setattr(scans, "ROWS", 16)  # several row blocks a shard, as at ImageNet size
    rng = np.random.default_rng(3)
    m = np.maximum(rng.normal(size=(N, C)), 0).astype(np.float32)
    m[7] = np.nan  # an invalid row
    m[9] = 0.0  # a row with no activation
    import_matrix(tmp_path / "s.zarr", m, "feat", [f"{i}.jpg" for i in range(N)], shard_rows=SHARD)
    # Shard 1 as a killed run leaves it: rows unwritten, not marked done.
    done = zarr.open_group(tmp_path / "s.zarr", mode="r+")["feat/done"]
    done[1] = False
    lay = pipeline.open_store(tmp_path / "s.zarr")["feat"]
    usable = np.isfinite(m).all(axis=1)
    usable[SHARD:2 * SHARD] = False
    assert_array_equal(lay.usable, usable)
    return lay, m.astype(np.float64), usable


def test_shard_map_visits_the_shards_with_usable_rows_in_order(layer):
    lay, m, _ = layer
    seen = list(scans.shard_map(lay, lambda lo, hi, block: block.copy()))
    assert [(lo, hi) for lo, hi, _ in seen] == [(0, 64), (128, 192), (192, 230)]
    for lo, hi, block in seen:
        assert_array_equal(block, m[lo:hi].astype(np.float32))
    counted = []
    list(scans.shard_map(lay, lambda lo, hi, block: None, progress=lambda it, n: counted.append(n) or it))
    assert counted == [3]


@pytest.mark.parametrize("weights", ["dense", "sparse"])
def test_projection_equals_the_whole_product(layer, weights, monkeypatch):
    lay, m, usable = layer
    vector = np.random.default_rng(0).normal(size=C)
    if weights == "sparse":  # columns read one by one, never a whole shard
        vector[np.arange(C) % 9 != 0] = 0.0
        monkeypatch.setattr(scans, "shard_map", None)
    counted = []
    got = scans.projection(lay, vector, progress=lambda it, n: counted.append(n) or it)
    assert counted == [9 if weights == "sparse" else 3]  # columns, or shards with a usable row
    assert_allclose(got[usable], m[usable] @ vector, rtol=1e-12)
    if weights == "dense":  # the unfinished shard is not read: NaN, as the README says, not a 0 that looks real
        assert np.isnan(got[SHARD:2 * SHARD]).all()
    top = lay.direction(vector, k=20)
    assert_array_equal(top.rows, ranking.top_rows(np.where(usable, m @ vector, 0), usable, 20))


def test_cosine_equals_numpy_and_similar_ranks_by_it(layer):
    lay, m, usable = layer
    target = m[40]
    norms = np.linalg.norm(m, axis=1)
    want = m @ target / np.where(norms > 0, norms, 1.0) / np.linalg.norm(target)
    got = scans.cosine(lay, target)
    assert_allclose(got[usable], want[usable], rtol=1e-12)
    assert got[9] == 0.0  # an all-zero row is at cosine 0, not NaN
    keep = usable.copy()
    keep[40] = False
    assert_array_equal(lay.similar(40, k=15).rows, ranking.top_rows(np.where(keep, want, 0), keep, 15))


def test_copies_of_one_image_tie_and_go_to_the_lower_row(tmp_path, monkeypatch):
    """ImageNet holds duplicate files: copies must get one value, wherever they sit in a shard."""
    monkeypatch.setattr(scans, "ROWS", 16)
    rng = np.random.default_rng(0)
    m = rng.normal(size=(N, C)).astype(np.float32)
    copies = [5, 21, 37, 100, 229]  # one row block, others, another shard, the last (short) one
    m[copies] = m[5]
    import_matrix(tmp_path / "d.zarr", m, "feat", [f"{i}.jpg" for i in range(N)], shard_rows=SHARD)
    lay = pipeline.open_store(tmp_path / "d.zarr")["feat"]
    weights = rng.normal(size=C)
    for values, ranked in ((scans.projection(lay, weights), lay.direction(weights, k=N).rows),
                           (scans.cosine(lay, m[0].astype(np.float64)), lay.similar(0, k=N - 1).rows)):
        assert len(set(values[copies].tolist())) == 1
        place = [ranked.tolist().index(r) for r in copies]
        assert place == list(range(place[0], place[0] + len(copies)))  # together, lower rows first


@pytest.mark.parametrize("row", [40, 200])  # a middle shard, the last (short) one
def test_cosine_to_row_reads_each_shard_once(layer, row, monkeypatch):
    lay, m, usable = layer
    reads, read_shard = [], scans.read_shard
    monkeypatch.setattr(scans, "read_shard", lambda arr, lo, hi: reads.append(lo) or read_shard(arr, lo, hi))
    counted = []
    target, got = scans.cosine_to_row(lay, row, progress=lambda it, n: counted.append(n) or it)
    assert sorted(reads) == [0, 128, 192] and reads[0] == row // SHARD * SHARD  # the target's shard first
    assert counted == [3]
    assert_array_equal(target, m[row])
    assert_allclose(got[usable], scans.cosine(lay, m[row])[usable], rtol=1e-15)
    assert scans.cosine_to_row(lay, 9)[1] is None  # all zero: no pass at all


def test_column_major_reads_the_same_values(layer):
    lay, m, usable = layer
    arr = lay.array("mean")
    block = np.asarray(scans.column_major(arr)[0:64])
    assert_array_equal(block, np.asarray(arr[0:64]))
    assert block.flags["F_CONTIGUOUS"] or not hasattr(arr, "with_config")
    plain = object()  # a zarr without with_config (before 3.1.6): read as it is
    assert scans.column_major(plain) is plain


def test_fingerprint_channels_are_spread_runs():
    runs = scans.fingerprint_channels(508)
    assert len(runs) == scans.FINGERPRINT_RUNS and runs[0].start == 0 and runs[-1].stop == 508
    picked = np.concatenate([np.arange(508)[r] for r in runs])
    assert len(np.unique(picked)) == scans.FINGERPRINT_RUNS * scans.FINGERPRINT_RUN  # no run overlaps another
    assert scans.fingerprint_channels(65)[-1].stop == 65
    assert scans.fingerprint_channels(10) == [slice(0, 10)]  # a small layer is all fingerprint


def test_fingerprints_are_the_stored_columns(layer):
    lay, m, usable = layer
    columns = np.concatenate([np.arange(C)[r] for r in scans.fingerprint_channels(C)])
    got = scans.fingerprints(lay)
    assert got.shape == (N, columns.size)
    assert_array_equal(got[usable], m[usable][:, columns].astype(np.float32))
    assert lay._fingerprints is lay._fingerprints  # read once a layer
