"""Statistics against direct numpy/scipy on generated stores with invalid rows and a dead channel."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats
from numpy.testing import assert_allclose, assert_array_equal

import pipeline
from conftest import run_cli
from pipeline import stats
from pipeline.importing import import_matrix
from pipeline.selectivity import share_text

N, C = 300, 10


def _matrix(seed=0):
    rng = np.random.default_rng(seed)
    m = np.maximum(rng.normal(size=(N, C)) + np.linspace(-1, 1, C), 0).astype(np.float32)
    m[:, 4] = 0.0  # a dead channel
    m[:, 6] = m[:, 5] * 2 + 0.1 * rng.normal(size=N)  # a strongly correlated pair
    m[[3, 100, 250], :] = np.nan  # invalid rows
    return m


@pytest.fixture
def layer(tmp_path):
    m = _matrix()
    labels = np.arange(N) % 3
    import_matrix(tmp_path / "s.zarr", m, "mixed4a", [f"{i}.jpg" for i in range(N)], labels,
                  ["n01440764", "n01443537", "n99999999"], shard_rows=64)
    return pipeline.open_store(tmp_path / "s.zarr")["mixed4a"], m, labels


def test_channel_table_equals_numpy(layer):
    lay, m, _ = layer
    x = m[np.isfinite(m).all(axis=1)].astype(np.float64)
    table = lay.stats()
    assert_allclose(table["mean"], x.mean(0), rtol=1e-6)
    assert_allclose(table["std"], x.std(0), rtol=1e-6, atol=1e-9)
    assert_allclose(table["max"], x.max(0), rtol=1e-6)
    for q in stats.QUANTILES:
        assert_allclose(table[f"q{q * 100:g}"], np.quantile(m[np.isfinite(m).all(axis=1)], q, axis=0), rtol=1e-6)
    assert_allclose(table["active"], (x > 0).mean(0))
    live = x.std(0) > 0
    # Central moments are float32 products summed in float64: round-off of order 1e-6.
    assert_allclose(table["kurtosis"][live], scipy.stats.kurtosis(x[:, live], axis=0, fisher=True, bias=True),
                    rtol=1e-5, atol=1e-5)
    assert np.isnan(table["kurtosis"][4])
    # Channel 6 goes below 0: no ReLU ends this layer, so channel 4's zeros are no dead unit
    assert not table["dead"].any() and (table["max"] <= 0).tolist() == [c == 4 for c in range(C)]
    counts, edges = lay.histograms()
    assert (counts.sum(axis=1) == len(x)).all() and edges.shape == (C, counts.shape[1] + 1)
    assert_allclose(edges[:, 0], x.min(0)) and assert_allclose(edges[[0, 9], -1], x.max(0)[[0, 9]])
    for c in (0, 6, 9):
        assert_array_equal(counts[c], np.histogram(x[:, c], bins=edges[c])[0])
    import pandas

    frame = pandas.DataFrame(table)  # one row per channel
    assert frame.shape == (C, 10) and not frame.loc[4, "dead"]


def test_dead_channels_are_those_of_a_layer_without_negative_values(tmp_path):
    m = np.maximum(_matrix(), 0)  # after a ReLU
    import_matrix(tmp_path / "r.zarr", m, "relu", [f"{i}.jpg" for i in range(N)], shard_rows=64)
    table = pipeline.open_store(tmp_path / "r.zarr")["relu"].stats()
    assert table["dead"].tolist() == [c == 4 for c in range(C)]


def test_a_histogram_spans_its_channels_own_range(tmp_path):
    """A logit within -0.00468 ... -0.00457 fell in one bin of a range stretched to 0; so did one within 3.1 ... 3.2."""
    rng = np.random.default_rng(0)
    m = np.stack([rng.uniform(-0.00468, -0.00457, N), rng.uniform(3.1, 3.2, N), rng.normal(size=N)], axis=1)
    import_matrix(tmp_path / "l.zarr", m.astype(np.float32), "logits", [f"{i}.jpg" for i in range(N)], shard_rows=64)
    counts, edges = pipeline.open_store(tmp_path / "l.zarr")["logits"].histograms()
    x = m.astype(np.float32).astype(np.float64)
    assert_allclose(edges[:, 0], x.min(0)) and assert_allclose(edges[:, -1], x.max(0))
    assert ((counts > 0).sum(axis=1) >= 30).all()  # uniform values fill most of the 40 bins
    for c in range(3):
        assert_array_equal(counts[c], np.histogram(x[:, c], bins=edges[c])[0])


def test_max_of_exactly_zero_is_not_dead_where_the_means_go_below_zero(tmp_path):
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(50, 3)).astype(np.float32)  # a layer with negative values
    peak = np.abs(mean)
    peak[:, 2] = 0.0  # never above 0 by its max
    import_matrix(tmp_path / "s.zarr", mean, "feat", [f"{i}.jpg" for i in range(50)], max_matrix=peak)
    lay = pipeline.open_store(tmp_path / "s.zarr")["feat"]
    assert not lay.stats("max")["dead"].any() and not lay.stats("mean")["dead"].any()


def test_labels_of_a_narrow_channel_tell_its_values_apart(tmp_path):
    from pipeline.pages import histogram_svg

    x = (1e4 + 0.01 * np.random.default_rng(0).uniform(size=(100, 1))).astype(np.float32)
    import_matrix(tmp_path / "n.zarr", x, "feat", [f"{i}.jpg" for i in range(100)])
    lay = pipeline.open_store(tmp_path / "n.zarr")["feat"]
    labels = [line.get_label() for line in lay.histogram_figure(0).axes[0].get_lines()]
    values = {lay.stats()[q][0] for q in ("q50", "q90", "q99", "q99.9")}
    assert len({label.split(" = ")[1] for label in labels}) == len(values) > 1, labels  # all "1e+04" before
    counts, edges = lay.histograms()
    import re

    ends = re.findall(r'font-size="10"(?: text-anchor="end")?>([-+.e\d]+)</text>', histogram_svg(counts[0], edges[0], {}))
    assert len(ends) == 2 and ends[0] != ends[1] and float(ends[0]) == pytest.approx(edges[0][0], rel=1e-8)


def test_a_constant_channels_histogram_says_so(layer):
    lay, _, _ = layer
    figure = lay.histogram_figure(4)  # every image 0
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["every image has the value 0: no distribution to draw"] and not figure.axes[0].get_lines()


def test_figures_from_the_api(layer):
    lay, _, _ = layer
    hist = lay.histogram_figure(2)
    assert hist.axes[0].get_yscale() == "log" and len(hist.axes[0].get_lines()) == 4
    corr = lay.correlation_figure()
    assert corr.axes[0].images[0].get_array().shape == (C, C)


def test_correlations_pca_and_selectivity(layer):
    lay, m, labels = layer
    keep = np.isfinite(m).all(axis=1)
    x, lab = m[keep].astype(np.float64), labels[keep]
    corr = lay.correlations()
    live = x.std(0) > 0
    assert_allclose(corr[np.ix_(live, live)], np.corrcoef(x[:, live], rowvar=False), atol=1e-5)
    assert (corr[4] == 0).all() and corr[5, 6] > 0.9
    assert stats.neighbours(corr, 1)[5, 0] == 6
    eig = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True)))[::-1]
    assert_allclose(lay.pca()["explained_variance_ratio"], np.clip(eig, 0, None) / eig.sum(), atol=1e-6)
    sel = lay.selectivity()
    class_means = np.stack([x[lab == k].mean(0) for k in range(3)])
    assert_allclose(sel["class_means"], class_means, rtol=1e-6)
    best = class_means.argmax(0)
    rest = np.stack([x[lab != best[c], c].mean() for c in range(C)])
    top = class_means[best, np.arange(C)]
    with np.errstate(invalid="ignore"):
        expected = np.nan_to_num((top - rest) / (top + rest))
    signed = x.min(0) < 0  # channel 6: both measures assume values >= 0
    assert signed.tolist() == [c == 6 for c in range(C)]
    expected[signed] = np.nan
    assert_allclose(sel["index"], expected, rtol=1e-5, atol=1e-6)  # float32 sums within a shard
    assert sel["class_names"] == ["tench", "goldfish", "n99999999"]  # WordNet ids become names
    assert_array_equal(sel["top_classes"][:, 0], best)
    # the top class's share of the class means, and the largest share with the usable rows' labels shuffled
    shuffled = stats.shuffled_labels(labels, lay.usable)[keep]
    chance = np.stack([x[shuffled == k].mean(0) for k in range(3)])
    with np.errstate(invalid="ignore"):
        share, chance = np.nan_to_num(class_means / class_means.sum(0)), np.nan_to_num(chance / chance.sum(0))
    share[:, signed], chance[:, signed] = np.nan, np.nan
    assert_allclose(sel["class_share"], share, rtol=1e-5, atol=1e-7)
    assert_allclose(sel["shuffled"], chance.max(0), rtol=1e-5, atol=1e-7)
    assert_allclose(sel["excess"], sel["share"] - sel["shuffled"]) and sel["most"] == np.nanargmax(sel["excess"])
    for k in range(3):  # a class's channels: the index with that class in place of the top one
        mine, others = class_means[k], x[lab != k].mean(0)
        with np.errstate(invalid="ignore"):
            own = np.nan_to_num((mine - others) / (mine + others))
        own[signed] = np.nan
        assert_allclose(sel["class_index"][k], own, rtol=1e-5, atol=1e-6)
        assert_array_equal(sel["channels_per_class"][k],
                           np.argsort(-np.nan_to_num(sel["class_share"][k] - sel["shuffled"], nan=-np.inf),
                                      kind="stable")[:5])


def test_stats_cli_writes_everything(layer, tmp_path):
    lay, _, _ = layer
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("a user's file")
    proc = run_cli("stats", "--store", lay.store.path, "--layer", "mixed4a", "-o", out, "--channel", "5")
    assert "mine.txt" not in proc.stdout and "channels.csv" in proc.stdout  # only what it wrote
    for name in ["channels.csv", "channels.json", "neighbours.csv", "pca.json", "correlation.png",
                 "histograms_mean.png", "histogram_mean_ch5.png", "selectivity_channels.csv",
                 "selectivity_classes.csv"]:
        assert (out / name).stat().st_size > 100, name
    # channel 6 of the matrix goes below 0, so channel 4 is "never > 0", not "dead"
    assert "1 channel never > 0 on the spatial mean (the layer has negative values" in proc.stdout
    assert "branch" not in proc.stdout  # 10 channels named mixed4a: not the 508 its branches divide
    assert set(json.loads((out / "pca.json").read_text())) == {"layer"}


def test_branches_only_where_they_tile_the_layer(tmp_path):
    rng = np.random.default_rng(0)
    import_matrix(tmp_path / "b.zarr", rng.random((12, 508), dtype=np.float32), "mixed4a",
                  [f"{i}.jpg" for i in range(12)])
    import_matrix(tmp_path / "b.zarr", rng.random((12, 16), dtype=np.float32), "feat", [f"{i}.jpg" for i in range(12)])
    store = pipeline.open_store(tmp_path / "b.zarr")
    assert stats.branches(store["mixed4a"]) == stats.KNOWN_BRANCHES["mixed4a"]
    proc = run_cli("stats", "--store", store.path, "--layer", "mixed4a", "-o", tmp_path / "out")
    assert "branch 3x3 (192-395)" in proc.stdout
    assert set(json.loads((tmp_path / "out" / "pca.json").read_text())) == {"layer", "1x1", "3x3", "5x5", "pool"}
    feat = store["feat"]
    for recorded, expected in [({"a": [0, 6], "b": [6, 16]}, {"a": (0, 6), "b": (6, 16)}),
                               ({"a": [0, 6], "b": [6, 20]}, {}),  # past the last channel
                               ({"a": [0, 6], "b": [8, 16]}, {})]:  # a gap
        feat.attrs["branches"] = recorded
        assert stats.branches(feat) == expected


def test_recorded_branches_count_only_where_they_cover_every_channel(tmp_path):
    import_matrix(tmp_path / "b.zarr", np.ones((4, 16), dtype=np.float32), "feat", [f"{i}.jpg" for i in range(4)])
    feat = pipeline.open_store(tmp_path / "b.zarr")["feat"]
    for recorded in ({"a": [0, 6], "b": [6, 12]},  # channels 12-15 in no branch: the index would lose them
                     {"a": [2, 6], "b": [6, 16]},  # channels 0-1 in none
                     {"a": [0, 6], "e": [6, 6], "b": [6, 16]}):  # an empty branch
        feat.attrs["branches"] = recorded
        assert stats.branches(feat) == {}, recorded


def test_unlabelled_layer_skips_selectivity(tmp_path):
    import_matrix(tmp_path / "u.zarr", _matrix(1), "feat", [f"{i}.jpg" for i in range(N)], shard_rows=64)
    proc = run_cli("stats", "--store", tmp_path / "u.zarr", "--layer", "feat", "-o", tmp_path / "o")
    assert proc.returncode == 0 and "selectivity skipped" in proc.stdout
    assert pipeline.open_store(tmp_path / "u.zarr")["feat"].selectivity() is None


def test_a_store_being_written_is_not_called_dead_or_selective(tmp_path):
    import zarr

    from pipeline.store import refresh_completeness

    labels = (np.arange(N) >= 64).astype(int)  # class a fills the first shard, as ImageFolder order does
    import_matrix(tmp_path / "w.zarr", _matrix(2), "feat", [f"{i}.jpg" for i in range(N)], labels, ["a", "b"],
                  shard_rows=64)
    group = zarr.open_group(str(tmp_path / "w.zarr"), mode="r+")
    group["feat/done"][1:] = False  # a writer's first shard is done
    refresh_completeness(group, "feat")
    proc = run_cli("stats", "--store", tmp_path / "w.zarr", "--layer", "feat", "-o", tmp_path / "o")
    assert "selectivity skipped: the 63 usable images are all of one class (an incomplete store: its first classes " \
        in proc.stdout and not (tmp_path / "o" / "selectivity_channels.csv").exists()
    group["feat/done"][0] = False  # its first seconds
    refresh_completeness(group, "feat")
    proc = run_cli("stats", "--store", tmp_path / "w.zarr", "--layer", "feat", "-o", tmp_path / "o2", check=False)
    assert proc.returncode == 2 and "error: layer feat has no usable image yet: incomplete store" in proc.stderr
    assert not (tmp_path / "o2").exists()
    proc = run_cli("gallery", "--store", tmp_path / "w.zarr", "--layer", "feat", "--no-crops", "-o", tmp_path / "g",
                   check=False)
    assert proc.returncode == 2 and "has no usable image yet" in proc.stderr and not (tmp_path / "g").exists()
    # a finished store whose rows are all invalid: no "yet"
    import_matrix(tmp_path / "bad.zarr", np.full((4, 3), np.nan, dtype=np.float32), "feat", list("abcd"))
    with pytest.raises(pipeline.errors.QueryError, match="has no usable image: no valid image: every one of the 4"):
        pipeline.open_store(tmp_path / "bad.zarr")["feat"].stats()


def test_one_class_is_no_selectivity_and_says_so(tmp_path):
    paths = [f"{i}.jpg" for i in range(N)]
    import_matrix(tmp_path / "one.zarr", _matrix(3), "feat", paths, np.zeros(N, dtype=int), shard_rows=64)
    layer = pipeline.open_store(tmp_path / "one.zarr")["feat"]
    assert layer.selectivity() is None
    assert layer.no_selectivity() == "the 297 usable images are all of one class, and it compares classes"
    proc = run_cli("stats", "--store", tmp_path / "one.zarr", "--layer", "feat", "-o", tmp_path / "o")
    assert "selectivity skipped: the 297 usable images are all of one class" in proc.stdout
    run_cli("gallery", "--store", tmp_path / "one.zarr", "--layer", "feat", "--no-crops", "-o", tmp_path / "g")
    page = (tmp_path / "g" / "channels" / "0001.html").read_text()
    assert "No class selectivity: the 297 usable images are all of one class" in page
    import_matrix(tmp_path / "none.zarr", _matrix(3), "feat", paths, shard_rows=64)
    assert pipeline.open_store(tmp_path / "none.zarr")["feat"].no_selectivity() == "the images have no labels"


def test_stats_on_an_extracted_store_has_max_too(small_store, tmp_path):
    proc = run_cli("stats", "--store", small_store, "-o", tmp_path / "o")
    assert (tmp_path / "o" / "histograms_max.png").stat().st_size > 100
    assert "RANDOM WEIGHTS" in proc.stdout and " dead channel" in proc.stdout  # ReLU


@pytest.mark.parametrize("args, fragment", [
    (["--layer", "nope"], "unknown layer"), (["--channel", "999"], "out of range")])
def test_stats_errors(small_store, tmp_path, args, fragment):
    proc = run_cli("stats", "--store", small_store, "-o", tmp_path / "o", *args, check=False)
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr


def test_no_variance_needs_no_components_and_json_has_no_nan(tmp_path):
    assert stats.pca(np.zeros((6, 6)))["components_90"] == 0
    assert stats.pca(np.diag([3.0, 1.0, 0.0]))["components_99"] == 2
    m = np.zeros((40, 5), dtype=np.float32)
    m[:, 0] = np.arange(40)  # one live channel; the constant ones have no kurtosis
    import_matrix(tmp_path / "z.zarr", m, "feat", [f"{i}.jpg" for i in range(40)])
    run_cli("stats", "--store", tmp_path / "z.zarr", "--layer", "feat", "-o", tmp_path / "o")

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    rows = json.loads((tmp_path / "o" / "channels.json").read_text(), parse_constant=refuse)
    assert rows[1]["mean_kurtosis"] is None and rows[0]["mean_kurtosis"] is not None
    json.loads((tmp_path / "o" / "pca.json").read_text(), parse_constant=refuse)


def test_small_values_keep_their_digits_and_no_channel_is_its_own_neighbour(tmp_path):
    rng = np.random.default_rng(2)
    m = np.stack([rng.random(60) * 1e-8, rng.random(60), np.full(60, 3.0)], axis=1).astype(np.float32)
    import_matrix(tmp_path / "t.zarr", m, "feat", [f"{i}.jpg" for i in range(60)])
    run_cli("stats", "--store", tmp_path / "t.zarr", "--layer", "feat", "-o", tmp_path / "o")
    rows = json.loads((tmp_path / "o" / "channels.json").read_text())
    x = m.astype(np.float64)
    assert_allclose([r["mean_mean"] for r in rows], x.mean(0), rtol=1e-6)  # 1e-8 is not written as 0.0
    assert_allclose([r["mean_std"] for r in rows], x.std(0), rtol=1e-5)
    near = (tmp_path / "o" / "neighbours.csv").read_text().splitlines()
    assert near[0] == "channel,n1,n2,n3,n4,n5,r1,r2,r3,r4,r5"
    assert [line.split(",")[1:6] for line in near[1:]] == [
        ["1", "", "", "", ""], ["0", "", "", "", ""], ["", "", "", "", ""]]  # 2 is constant: nobody's, none of its own


def test_neighbours_are_other_channels():
    corr = np.array([[1.0, 0.5], [0.5, 1.0]])
    assert stats.neighbours(corr, 3).tolist() == [[1, -1, -1], [0, -1, -1]]
    assert stats.neighbours(np.ones((1, 1)), 2).tolist() == [[-1, -1]]
    with_constant = np.array([[1.0, 0.0, 0.2], [0.0, 0.0, 0.0], [0.2, 0.0, 1.0]])
    assert stats.neighbours(with_constant, 2).tolist() == [[2, -1], [-1, -1], [0, -1]]


def test_kurtosis_far_from_zero(tmp_path):
    rng = np.random.default_rng(3)
    m = np.stack([1e4 + rng.random(400), 3 * rng.standard_normal(400) + 1], axis=1).astype(np.float32)
    import_matrix(tmp_path / "k.zarr", m, "feat", [f"{i}.jpg" for i in range(400)])
    table = pipeline.open_store(tmp_path / "k.zarr")["feat"].stats()
    x = m.astype(np.float64)
    assert_allclose(table["kurtosis"], scipy.stats.kurtosis(x, axis=0), rtol=1e-6, atol=1e-6)  # was 3e-4 off
    assert_allclose(table["std"], x.std(0), rtol=1e-6)


def test_a_spread_of_a_few_float32_steps_keeps_its_correlation_and_kurtosis(tmp_path):
    """Centred on the float32-rounded mean, a channel of 1e4 + 0.01 x correlated 0.87 with a copy
    of itself (the rounding squared, never taken off), and one of 1e-6 and a step above it had a
    kurtosis of -3 (fourth powers below float32's range) unless another column was scaled."""
    a, u = np.float32(1000), np.spacing(np.float32(1000))
    m = np.stack([[a, a, a, a + u], [0, 0, 0, 1]], axis=1).astype(np.float32)
    import_matrix(tmp_path / "a.zarr", m, "feat", [f"{i}.jpg" for i in range(4)])
    lay = pipeline.open_store(tmp_path / "a.zarr")["feat"]
    assert lay.correlations()[0, 1] == pytest.approx(1.0, abs=1e-9)
    assert lay.moments().cov[0, 0] == pytest.approx(lay.stats()["std"][0] ** 2, rel=1e-9)
    rng = np.random.default_rng(0)
    signal = rng.normal(size=1000)
    m = np.stack([1e4 + 0.01 * signal, signal + 0.1 * rng.normal(size=1000)], axis=1).astype(np.float32)
    import_matrix(tmp_path / "b.zarr", m, "feat", [f"{i}.jpg" for i in range(1000)], shard_rows=300)
    want = np.corrcoef(m.astype(np.float64).T)[0, 1]
    assert pipeline.open_store(tmp_path / "b.zarr")["feat"].correlations()[0, 1] == pytest.approx(want, abs=1e-6)
    b = np.float32(1e-6)
    x = np.full(10, b, dtype=np.float32)
    x[0] = np.nextafter(b, np.float32(1))
    for extra in ([], [np.full(10, 1e20, dtype=np.float32)]):  # with or without a column that needs scaling
        import_matrix(tmp_path / f"k{len(extra)}.zarr", np.stack([x, np.arange(10, dtype=np.float32), *extra], 1),
                      "feat", [f"{i}.jpg" for i in range(10)])
        got = pipeline.open_store(tmp_path / f"k{len(extra)}.zarr")["feat"].stats()["kurtosis"][0]
        assert got == pytest.approx(scipy.stats.kurtosis(x.astype(np.float64)), rel=1e-6)


def test_a_layer_with_negative_values_has_no_dead_channels_to_speak_of(tmp_path):
    m = np.random.default_rng(4).normal(size=(30, 3)).astype(np.float32)
    m[:, 1] = -np.abs(m[:, 1])  # never > 0, as half the logits are
    import_matrix(tmp_path / "n.zarr", m, "logits", [f"{i}.jpg" for i in range(30)])
    proc = run_cli("stats", "--store", tmp_path / "n.zarr", "--layer", "logits", "-o", tmp_path / "o")
    assert "1 channel never > 0 on the spatial mean (the layer has negative values" in proc.stdout
    assert "dead channels" not in proc.stdout


def test_magnitudes_far_from_activations_neither_overflow_nor_underflow(tmp_path):
    """float32 powers of an imported matrix near 1e20, 1e-25 or float32's limit stay finite."""
    rng = np.random.default_rng(0)
    m = np.stack([rng.normal(size=300) * 1e20, rng.normal(size=300) * 1e-25,
                  rng.uniform(-3e38, 3e38, size=300), rng.uniform(0, 1e-38, size=300)], axis=1).astype(np.float32)
    labels = np.arange(300) % 2
    import_matrix(tmp_path / "x.zarr", m, "feat", [f"{i}.jpg" for i in range(300)], labels, shard_rows=64)
    lay = pipeline.open_store(tmp_path / "x.zarr")["feat"]
    x = m.astype(np.float64)
    table = lay.stats()
    assert_allclose(table["std"], x.std(0), rtol=1e-5)
    assert_allclose(table["kurtosis"], scipy.stats.kurtosis(x, axis=0, fisher=True, bias=True), rtol=1e-4)
    counts, edges = lay.histograms()
    for c in (2, 3):  # a range past float32's, and one too narrow for its reciprocal
        assert_array_equal(counts[c], np.histogram(x[:, c], bins=edges[c])[0])
    assert_allclose(lay.correlations(), np.corrcoef(x, rowvar=False), rtol=1e-4, atol=1e-6)
    assert_allclose(lay.selectivity()["class_means"], np.stack([x[labels == k].mean(0) for k in (0, 1)]), rtol=1e-5)


def test_scaling_by_powers_of_two_changes_no_bit(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    m = np.maximum(rng.normal(size=(500, 6)), 0).astype(np.float32)
    m[:, 1] *= 1e7  # past SAFE: its block takes the scaled path, which must not move a bit
    m[:, 2] = 1e4 + rng.random(500)
    import_matrix(tmp_path / "b.zarr", m, "feat", [f"{i}.jpg" for i in range(500)], np.arange(500) % 3, shard_rows=128)

    def everything():
        lay = pipeline.open_store(tmp_path / "b.zarr")["feat"]
        table = stats.channel_table(lay)
        moments = stats.second_moments(lay, table)
        return {**table, "cov": moments.cov, "sums": moments.class_sums}

    assert stats._scales(m.max(axis=0)) is not None and stats._scales(m[:, [0, 2]].max(axis=0)) is None
    scaled = everything()
    monkeypatch.setattr(stats, "SAFE", 2.0 ** 200)  # nothing is scaled
    plain = everything()
    for name in plain:
        assert_array_equal(scaled[name], plain[name], err_msg=name)


def test_stats_files_hold_what_the_api_computes(layer, tmp_path):
    import csv

    from pipeline.report import write_stats

    lay, _, _ = layer
    lines = write_stats(lay, tmp_path / "o", progress=False)
    sel, corr = lay.selectivity(), lay.correlations()
    names = dict(zip(sel["classes"].tolist(), sel["class_names"]))
    most = int(np.nanargmax(sel["share"] - sel["shuffled"]))
    assert (f"top class share furthest above chance: channel {most} (its top class, "
            f"{names[int(sel['top_classes'][most][0])]}, "
            f"holds {share_text(sel['share'][most])} of the sum of its class means, {share_text(sel['shuffled'][most])} "
            f"with the labels shuffled; index {sel['index'][most]:.3f})") in lines

    def read(name):
        with open(tmp_path / "o" / name, newline="") as f:
            return list(csv.DictReader(f))

    for c, row in enumerate(read("selectivity_channels.csv")):
        if c == 6:  # signed: no selectivity
            assert row["selectivity"] == row["share"] == row["shuffled"] == ""
            continue
        assert float(row["selectivity"]) == pytest.approx(sel["index"][c], rel=1e-6)
        assert float(row["shuffled"]) == pytest.approx(sel["shuffled"][c], rel=1e-6)
        assert float(row["share"]) == pytest.approx(sel["share"][c], rel=1e-6)
        assert [row[f"class{i + 1}"] for i in range(3)] == [names[int(k)] for k in sel["top_classes"][c]]
    for i, row in enumerate(read("selectivity_classes.csv")):
        for j, ch in enumerate(sel["channels_per_class"][i]):
            assert int(row[f"channel{j + 1}"]) == ch
            assert float(row[f"excess{j + 1}"]) == pytest.approx(sel["class_excess"][i, ch], rel=1e-6)
    near = stats.neighbours(corr, 5)
    for c, row in enumerate(read("neighbours.csv")):
        for i in range(5):
            if near[c, i] >= 0:
                assert (int(row[f"n{i + 1}"]), float(row[f"r{i + 1}"])) == (near[c, i], pytest.approx(corr[c, near[c, i]], rel=1e-6))


def test_unlabelled_rows_among_labelled_ones_belong_to_no_class(tmp_path):
    rng = np.random.default_rng(4)
    m = rng.random((40, 3)).astype(np.float32)
    labels = np.arange(40) % 3
    labels[::4] = -1  # some images without a label
    labels[:16][labels[:16] == 2] = -1  # and the first shard has none of the last class
    import_matrix(tmp_path / "p.zarr", m, "feat", [f"{i}.jpg" for i in range(40)], labels, ["a", "b", "c"],
                  shard_rows=16)
    lay = pipeline.open_store(tmp_path / "p.zarr")["feat"]
    assert lay.moments().class_counts.tolist() == np.bincount(labels[labels >= 0]).tolist()
    assert_allclose(lay.selectivity()["class_means"], np.stack([m[labels == k].mean(0) for k in range(3)]), rtol=1e-5)


def test_one_usable_image_and_a_share_reached_exactly(tmp_path):
    assert stats.pca(np.diag([9.0, 1.0]))["components_90"] == 1  # the first component holds exactly 90%
    m = np.array([[1.0, -2.0, 3.0], [np.nan, 0.0, 0.0]], dtype=np.float32)  # the second row is invalid
    import_matrix(tmp_path / "one.zarr", m, "feat", ["a.jpg", "b.jpg"])
    table = pipeline.open_store(tmp_path / "one.zarr")["feat"].stats()
    assert table["q50"].tolist() == table["q99.9"].tolist() == [1.0, -2.0, 3.0]


def test_class_means_are_summed_in_float64(tmp_path):
    """Class sums within a shard were float32: a channel 1e4 + 0.01 x had class means off by about 1e-3
    (its top classes in the wrong order), and the index of a dense channel, (mu_max - mu_rest) / (mu_max +
    mu_rest), a small difference of two means, lost its 5th significant digit (written with 7)."""
    rng = np.random.default_rng(7)
    n = 4096
    labels = np.arange(n) % 4
    m = np.stack([1e4 + 0.01 * rng.random(n) + 1e-3 * labels,  # class 3 highest, then 2, 1, 0
                  rng.exponential(1.0, n) * (rng.random(n) < 0.5) + 3.0], axis=1).astype(np.float32)
    import_matrix(tmp_path / "f.zarr", m, "feat", [f"{i}.jpg" for i in range(n)], labels, shard_rows=n)
    sel = pipeline.open_store(tmp_path / "f.zarr")["feat"].selectivity()
    x = m.astype(np.float64)
    means = np.stack([x[labels == k].mean(0) for k in range(4)])
    assert_allclose(sel["class_means"], means, rtol=1e-12)
    assert sel["top_classes"][0].tolist() == [3, 2, 1, 0]
    best = means.argmax(0)
    rest = np.array([x[labels != best[c], c].mean() for c in range(2)])
    mu = means[best, [0, 1]]
    assert_allclose(sel["index"], (mu - rest) / (mu + rest), rtol=1e-9)
