"""matplotlib figures drawn from given arrays: what lies where, on which scale."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from pipeline import render


def test_the_correlation_heatmap_is_in_clustering_order_on_a_fixed_scale():
    corr = np.array([[1.0, 0.2, -0.5], [0.2, 1.0, 0.1], [-0.5, 0.1, 1.0]])
    order = np.array([2, 0, 1])
    image = render.correlation(corr * 0.5, order, "t").axes[0].images[0]
    assert np.array_equal(image.get_array(), (corr * 0.5)[np.ix_(order, order)])
    assert image.get_clim() == (-1, 1)  # weak correlations stay pale, not stretched to full colour
    ax = render.correlation(corr, order, "t").axes[0]
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):  # channel numbers, not places in the order
        assert [t.get_text() for t in ticks] == ["2", "0", "1"]
    big = np.eye(100)
    order = np.random.default_rng(0).permutation(100)
    ax = render.correlation(big, order, "t").axes[0]
    assert all(t.get_text() == str(order[int(round(pos))]) for t, pos in zip(ax.get_xticklabels(), ax.get_xticks()))


def test_a_few_channels_histograms_keep_their_whole_title():
    figure = render.small_multiples(np.ones((1, 5), dtype=np.int64), "probe (30 images): spatial mean per channel "
                                    "(log counts)")
    figure.canvas.draw()
    box = figure.axes[0].title.get_window_extent(figure.canvas.get_renderer())
    assert 0 <= box.x0 and box.x1 <= figure.bbox.width


def test_a_histogram_draws_its_counts_and_a_line_at_each_quantile():
    counts, edges = np.array([0, 5, 40, 3]), np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    marks = {"q50": 1.7, "q90": 2.4, "q99": 3.1, "q99.9": 3.9}
    ax = render.histogram(counts, edges, marks, "t").axes[0]
    values, drawn_edges, _ = ax.patches[0].get_data()
    assert np.array_equal(values, [0.8, 5, 40, 3]) and np.array_equal(drawn_edges, edges)
    assert [line.get_xdata()[0] for line in ax.get_lines()] == list(marks.values())
    assert [line.get_label() for line in ax.get_lines()][0] == "q50 = 1.7"
    low, high = ax.get_ylim()
    assert low <= 1 and high >= 40  # the tallest bar is drawn whole


def test_small_multiples_put_each_channel_in_its_cell_scaled_to_itself():
    channels, bins = 7, 5
    counts = np.zeros((channels, bins), dtype=np.int64)
    for c in range(channels):
        counts[c, c % bins] = 10 ** (c % 3 + 1)  # peaks of 10, 100, 1000: each drawn full height
    groups = {"a": (0, 3), "b": (3, 7)}
    figure = render.small_multiples(counts, "t", groups=groups)
    ax = figure.axes[0]
    lines = ax.collections[0]
    cols = int(np.ceil(np.sqrt(channels * 1.6)))
    labels = [t.get_text() for t in ax.get_yticklabels()]  # bottom to top
    for c, segment in enumerate(lines.get_segments()):
        r, k = divmod(c, cols)
        assert k < segment[:, 0].min() and segment[:, 0].max() < k + 1
        cell = int(segment[:, 1].min())  # the row of cells it lies in, from the bottom
        assert int(labels[cell]) == r * cols, c  # the label at its left names its row's first channel
        assert np.isclose(segment[:, 1].max() - segment[:, 1].min(), 0.8), c
    colours = lines.get_colors()
    assert all(np.allclose(colours[c], colours[0]) for c in range(3))
    assert all(np.allclose(colours[c], to_rgba("#dd8452")) for c in range(3, channels))


def test_the_library_keeps_its_callers_matplotlib_backend(tmp_path):
    """A script's or notebook's backend is the user's: drawing a figure must not switch it to Agg."""
    import os
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('pdf'); import numpy as np; from pipeline import render; "
            "f = render.histogram(np.ones(4), np.arange(5.0), {}, 'ch 0', ''); "
            f"render.save(f, {str(tmp_path / 'h.png')!r}); print(matplotlib.get_backend())")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "pdf" and (tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")


def test_a_figure_that_cannot_be_written_leaves_no_truncated_file(tmp_path, monkeypatch):
    import errno

    import matplotlib.figure

    from pipeline.render import histogram, save

    def full_disk(self, path, **kwargs):
        open(path, "wb").write(b"\x89PNG")  # the first bytes made it
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    figure = histogram(np.ones(4), np.arange(5.0), {}, "t", None)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_disk)
    with pytest.raises(OSError):
        save(figure, tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


def test_a_constant_channels_histogram_gives_its_value_to_float32_precision():
    ax = render.histogram(np.array([0, 0, 7, 0]), np.arange(5.0), {}, "t", constant=1.2345678).axes[0]
    assert [t.get_text() for t in ax.texts] == ["every image has the value 1.234568: no distribution to draw"]
