"""A Layer's statistics and figures (pipeline.analysis) against numpy and scipy on small imported stores."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from numpy.testing import assert_allclose, assert_array_equal

import pipeline
from pipeline.errors import QueryError
from pipeline.importing import import_matrix
from pipeline.store import refresh_completeness

N, C = 50, 6


@pytest.fixture
def layer(tmp_path):
    rng = np.random.default_rng(8)
    base = rng.normal(size=(N, 2))
    m = np.abs(np.column_stack([base[:, 0], base[:, 1], base[:, 0] + 0.1 * rng.normal(size=N),
                                base[:, 1] * 2, rng.random(N), base[:, 0] - base[:, 1]])).astype(np.float32)
    biggest = (m + rng.random((N, C)) * 3).astype(np.float32)
    m[[2, 17, 40], :] = np.nan  # invalid rows: N - 3 images are counted
    import_matrix(tmp_path / "s.zarr", m, "feat", [f"{i}.jpg" for i in range(N)], np.arange(N) % 2, ["a", "b"],
                  max_matrix=biggest, shard_rows=16)
    keep = np.isfinite(m).all(axis=1)
    return pipeline.open_store(tmp_path / "s.zarr")["feat"], m[keep].astype(np.float64), biggest[keep].astype(np.float64)


def test_the_correlation_figure_is_clustered_by_average_linkage_and_counts_usable_images(layer):
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    lay, x, _ = layer
    corr = np.corrcoef(x, rowvar=False)
    distance = np.clip(1 - corr, 0, 2)
    np.fill_diagonal(distance, 0)
    order = leaves_list(linkage(squareform(distance, checks=False), method="average"))
    assert not np.array_equal(order, np.arange(C))  # the clustering moves channels
    figure = lay.correlation_figure()
    ax = figure.axes[0]
    assert_allclose(ax.images[0].get_array(), corr[np.ix_(order, order)], atol=1e-5)
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(c) for c in order]
    assert ax.get_title() == f"feat ({len(x)} images): channel correlations"


def test_a_histogram_figure_is_of_the_channel_and_statistic_asked(layer):
    lay, x, y = layer
    for by, values in (("mean", x), ("max", y)):
        for c in (1, 4):
            ax = lay.histogram_figure(c, by=by).axes[0]
            stairs = ax.patches[0].get_data()
            edges = np.linspace(values[:, c].min(), values[:, c].max(), 41)
            assert_allclose(stairs.edges, edges, rtol=1e-6)
            assert_array_equal(stairs.values, np.maximum(np.histogram(values[:, c], bins=edges)[0], 0.8))
            assert [line.get_xdata()[0] for line in ax.get_lines()] == pytest.approx(
                np.quantile(values[:, c], [0.5, 0.9, 0.99, 0.999]), rel=1e-6)
            assert ax.get_title() == f"feat channel {c}: spatial {by}"


def test_stats_of_the_max_are_the_max_columns(layer):
    lay, x, y = layer
    table = lay.stats("max")
    assert_allclose(table["mean"], y.mean(0), rtol=1e-6) and assert_allclose(table["max"], y.max(0), rtol=1e-6)
    assert_allclose(lay.stats()["mean"], x.mean(0), rtol=1e-6)
    counts, edges = lay.histograms("max")
    assert_allclose(edges[:, 0], y.min(0), rtol=1e-6) and (counts.sum(axis=1) == len(y)).all()


def test_a_layer_with_no_usable_image_is_refused_and_says_why(tmp_path):
    m = np.ones((20, 3), dtype=np.float32)
    import_matrix(tmp_path / "s.zarr", m, "feat", [f"{i}.jpg" for i in range(20)], shard_rows=8)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r+")
    group["feat/done"][:] = False  # nothing written yet
    refresh_completeness(group, "feat")
    layer = pipeline.open_store(tmp_path / "s.zarr")["feat"]
    with pytest.raises(QueryError, match="layer feat has no usable image yet: incomplete store: answering from 0 of 3"):
        layer.stats()
    partly = np.ones((20, 3), dtype=np.float32)
    partly[:19] = np.nan  # one valid image of twenty is enough
    import_matrix(tmp_path / "p.zarr", partly, "feat", [f"{i}.jpg" for i in range(20)], shard_rows=8)
    assert pipeline.open_store(tmp_path / "p.zarr")["feat"].stats()["mean"].tolist() == [1.0, 1.0, 1.0]


def test_correlations_and_class_sums_leave_out_unfinished_shards(layer):
    lay, _, _ = layer
    path = lay.store.path
    group = zarr.open_group(str(path), mode="r+")
    group["feat/done"][1] = False  # rows 16-31 still being written: whatever they hold is no data yet
    group["feat/mean"][16:32] = np.random.default_rng(0).random((16, C)).astype(np.float32) * 1000
    refresh_completeness(group, "feat")
    fresh = pipeline.open_store(path)["feat"]
    keep = np.asarray(fresh.usable)
    assert not keep[16:32].any() and keep.sum() == N - 16 - 2  # rows 2 and 40 invalid, 17 in the unfinished shard
    x = np.asarray(group["feat/mean"][:], dtype=np.float64)[keep]
    assert_allclose(fresh.correlations(), np.corrcoef(x, rowvar=False), atol=1e-5)
    assert_allclose(fresh.moments().cov, np.cov(x, rowvar=False, bias=True), rtol=1e-5, atol=1e-7)
    labels = (np.arange(N) % 2)[keep]
    assert fresh.moments().class_counts.tolist() == np.bincount(labels).tolist()
    assert_allclose(fresh.selectivity()["class_means"], np.stack([x[labels == k].mean(0) for k in (0, 1)]), rtol=1e-6)
