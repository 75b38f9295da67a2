"""``exemplars stats``' files and summary lines (pipeline.report) against numpy on small imported stores."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

import pipeline
from pipeline import render
from pipeline.importing import import_matrix
from pipeline.report import write_stats

N, C = 60, 8


def _matrices():
    rng = np.random.default_rng(11)
    mean = np.maximum(rng.normal(size=(N, C)) + 0.3, 0).astype(np.float32)
    mean[:, 2] = 0.0  # dead on the spatial mean
    mean[:, 5] = mean[:, 4] * 3 + rng.random(N).astype(np.float32)
    biggest = (mean * 2 + rng.random((N, C)) + 1).astype(np.float32)  # its own distribution, above the mean
    mean[[9, 31], :] = np.nan  # invalid rows
    return mean, biggest


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report")
    mean, biggest = _matrices()
    import_matrix(tmp_path / "s.zarr", mean, "feat", [f"{i}.jpg" for i in range(N)], np.arange(N) % 3,
                  ["ant", "bee", "cat"], max_matrix=biggest, shard_rows=16)
    layer = pipeline.open_store(tmp_path / "s.zarr")["feat"]
    figures = {}
    save = render.save

    def keep(figure, path, dpi=None):
        figures[path.name] = figure.axes[0]
        save(figure, path, dpi)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(render, "save", keep)
        lines = write_stats(layer, tmp_path / "o", channel=3, progress=False)
    keep_rows = np.isfinite(mean).all(axis=1)
    return tmp_path / "o", lines, figures, mean[keep_rows].astype(np.float64), biggest[keep_rows].astype(np.float64)


def _read(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_channel_tables_hold_both_statistics_as_numpy_computes_them(written):
    out, _, _, x, y = written
    rows = _read(out / "channels.csv")
    assert json.loads((out / "channels.json").read_text()) == [
        {k: (None if v == "" else v == "True" if k.endswith("_dead") else int(v) if k == "channel" else float(v))
         for k, v in row.items()} for row in rows]
    for by, values in (("mean", x), ("max", y)):
        for c, row in enumerate(rows):
            assert float(row[f"{by}_mean"]) == pytest.approx(values[:, c].mean(), rel=1e-6)
            assert float(row[f"{by}_max"]) == pytest.approx(values[:, c].max(), rel=1e-6)
            assert float(row[f"{by}_q90"]) == pytest.approx(np.quantile(values[:, c], 0.9), rel=1e-6)
            assert float(row[f"{by}_std"]) == pytest.approx(values[:, c].std(), rel=1e-5, abs=1e-9)
            assert float(row[f"{by}_active"]) == pytest.approx((values[:, c] > 0).mean())
    assert [row["mean_dead"] for row in rows] == [str(c == 2) for c in range(C)]
    assert rows[2]["mean_kurtosis"] == "" and json.loads((out / "channels.json").read_text())[2]["mean_kurtosis"] is None


def test_a_channels_histogram_figures_are_of_their_own_statistic(written):
    out, _, figures, x, y = written
    for by, values in (("mean", x), ("max", y)):
        stairs = figures[f"histogram_{by}_ch3.png"].patches[0].get_data()
        edges = np.linspace(values[:, 3].min(), values[:, 3].max(), 41)
        assert_allclose(stairs.edges, edges, rtol=1e-6)
        assert_allclose(stairs.values, np.maximum(np.histogram(values[:, 3], bins=edges)[0], 0.8))
        assert [line.get_xdata()[0] for line in figures[f"histogram_{by}_ch3.png"].get_lines()] == pytest.approx(
            np.quantile(values[:, 3], [0.5, 0.9, 0.99, 0.999]), rel=1e-6)
        assert (out / f"histograms_{by}.png").stat().st_size > 1000


def test_pca_and_the_summary_lines_are_numpys(written):
    out, lines, _, x, _ = written
    eig = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))[::-1], 0, None)
    ratio = eig / eig.sum()
    pca = json.loads((out / "pca.json").read_text())
    assert_allclose(pca["layer"]["explained_variance_ratio"], ratio, rtol=1e-5, atol=1e-9)
    cumulative = np.cumsum(ratio)
    n90, n99 = int(np.argmax(cumulative >= 0.9)) + 1, int(np.argmax(cumulative >= 0.99)) + 1
    participation = eig.sum() ** 2 / (eig ** 2).sum()
    assert (pca["layer"]["components_90"], pca["layer"]["components_99"]) == (n90, n99)
    assert pca["layer"]["participation_ratio"] == pytest.approx(participation, rel=1e-5)
    assert f"feat ({len(x)} images): 1 dead channel (never > 0 on the spatial mean)" in lines
    assert (f"effective dimensionality: participation ratio {participation:.1f}, {n90} components for 90% of "
            f"variance, {n99} for 99%") in lines
    assert lines[-1].startswith("wrote channels.csv, channels.json, correlation.png, histogram_max_ch3.png, "
                                "histogram_mean_ch3.png, histograms_max.png, histograms_mean.png, neighbours.csv, "
                                "pca.json, selectivity_channels.csv, selectivity_classes.csv to ")


def test_neighbours_are_the_most_correlated_other_channels(written):
    out, _, _, x, _ = written
    live = x.std(0) > 0
    corr = np.zeros((C, C))
    corr[np.ix_(live, live)] = np.corrcoef(x[:, live], rowvar=False)
    for c, row in enumerate(_read(out / "neighbours.csv")):
        if not live[c]:
            assert all(row[f"n{i}"] == row[f"r{i}"] == "" for i in range(1, 6))
            continue
        others = [o for o in np.argsort(-corr[c], kind="stable") if o != c and live[o]][:5]
        assert [int(row[f"n{i + 1}"]) for i in range(5)] == others
        assert [float(row[f"r{i + 1}"]) for i in range(5)] == pytest.approx(corr[c, others], abs=1e-6)


def test_branches_get_their_own_pca_and_summary_line(tmp_path):
    """A layer named mixed4a with its 508 channels: each branch's PCA is that of its own block of channels."""
    rng = np.random.default_rng(2)
    m = rng.random((24, 508), dtype=np.float32)
    m[:, 396:444] = m[:, :48] * 2  # the 5x5 branch: a copy of channels 0-47, rank 23 at most
    import_matrix(tmp_path / "b.zarr", m, "mixed4a", [f"{i}.jpg" for i in range(24)])
    layer = pipeline.open_store(tmp_path / "b.zarr")["mixed4a"]
    lines = write_stats(layer, tmp_path / "o", progress=False)
    pca = json.loads((tmp_path / "o" / "pca.json").read_text())
    x = m.astype(np.float64)
    for name, (lo, hi) in {"1x1": (0, 192), "5x5": (396, 444), "pool": (444, 508)}.items():
        eig = np.clip(np.linalg.eigvalsh(np.cov(x[:, lo:hi], rowvar=False, bias=True))[::-1], 0, None)
        participation = eig.sum() ** 2 / (eig ** 2).sum()
        assert pca[name]["participation_ratio"] == pytest.approx(participation, rel=1e-4)
        n90 = int(np.argmax(np.cumsum(eig) / eig.sum() >= 0.9)) + 1
        assert pca[name]["components_90"] == n90
        assert f"  branch {name} ({lo}-{hi - 1}): participation ratio {participation:.1f}, 90% in {n90}" in lines


def test_the_layers_warning_leads_the_summary(tmp_path):
    import zarr

    from pipeline.store import refresh_completeness

    mean, _ = _matrices()
    import_matrix(tmp_path / "s.zarr", mean, "feat", [f"{i}.jpg" for i in range(N)], shard_rows=16)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r+")
    group["feat/done"][3] = False  # rows 48-59 not yet written
    refresh_completeness(group, "feat")
    layer = pipeline.open_store(tmp_path / "s.zarr")["feat"]
    lines = write_stats(layer, tmp_path / "o", progress=False)
    assert lines[0] == layer.note() and lines[0].startswith("incomplete store: answering from 3 of 4 shards")
    assert lines[1].startswith(f"feat ({int(layer.usable.sum())} images): ")
