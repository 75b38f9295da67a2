"""matplotlib figures: a layer's statistics and exemplar grids.

Offers:
    histogram(counts, edges, quantiles, title, warning, constant=None) -> Figure   one channel, log counts
    small_multiples(counts, title, warning, groups) -> Figure   every channel of a layer (bins, not values, across)
    correlation(corr, order, title, warning) -> Figure              clustered heatmap
    grid_figure(rows, title, warning) -> Figure                    exemplar tiles, rows of (label, tiles)
    save(figure, path)                                              PNG, then closes the figure
    distinct(values) -> list[str]                                   numbers in as few digits as tell them apart

A store made with random weights passes ``warning``, which every figure shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    # The caller's backend stays: a notebook's inline one, a script's window toolkit (matplotlib
    # itself falls back to Agg where there is no display; the command line asks for Agg).
    import matplotlib.pyplot as plt

    return plt


def distinct(values, digits: int = 3) -> list[str]:
    """``values`` with ``digits`` significant digits, or as many more (up to the 9 that tell float32s
    apart) as tell the different ones apart: the quantiles of a channel within 1e4 ... 1e4 + 0.01 all
    read "1e+04"."""
    values = [float(v) for v in values]
    for width in range(digits, 10):
        texts = [f"{v:.{width}g}" for v in values]
        if len(set(texts)) == len(set(values)):
            break
    return texts


def _warn(figure, warning: str) -> None:
    if warning:
        figure.text(0.5, 0.005, warning, ha="center", va="bottom", color="#b00020", fontsize=10, weight="bold")


def histogram(counts, edges, quantiles: dict, title: str, warning: str = "", constant=None):
    """Log counts with the quantiles' lines; ``constant``: the one value of a channel that has no
    distribution, said in words (its single bar stood on a made-up axis under four equal lines)."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 4), dpi=110)
    if constant is not None:
        ax.axis("off")
        ax.text(0.5, 0.5, f"every image has the value {constant:.7g}: no distribution to draw",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        _warn(figure, warning)
        return figure
    ax.stairs(np.maximum(counts, 0.8), edges, fill=True, color="#4c72b0", baseline=0.8)
    ax.set_yscale("log")
    ax.set_ylim(0.8, max(2, counts.max()) * 1.5)
    colours = ["#555555", "#dd8452", "#c44e52", "#8172b3"]
    for (name, value), text, colour in zip(quantiles.items(), distinct(quantiles.values()), colours):
        ax.axvline(value, color=colour, linestyle="--", linewidth=1.2, label=f"{name} = {text}")
    ax.set_xlabel("activation")
    ax.set_ylabel("images (log)")
    ax.set_title(title)
    if quantiles:  # beside the plot: the lines cross it
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    _warn(figure, warning)
    figure.tight_layout(rect=(0, 0.03 if warning else 0, 1, 1))
    return figure


def small_multiples(counts, title: str, warning: str = "", groups: dict | None = None):
    """Every channel's histogram in its own cell, drawn as one LineCollection (fast at 1000+)."""
    from matplotlib.collections import LineCollection

    plt = _pyplot()
    channels, bins = counts.shape
    cols = int(np.ceil(np.sqrt(channels * 1.6)))
    rows = int(np.ceil(channels / cols))
    width = min(24, max(cols * 0.55 + 1, 6.0))  # a layer of a few channels still has room for its title
    figure, ax = plt.subplots(figsize=(width, min(24, rows * 0.45 + 1.2)), dpi=100)
    logc = np.log1p(counts.astype(float))
    height = logc / np.maximum(logc.max(axis=1, keepdims=True), 1e-9)
    x = (np.arange(bins) + 0.5) / bins
    segments, colours = [], []
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    group_of = np.zeros(channels, dtype=int)
    for g, (lo, hi) in enumerate((groups or {}).values()):
        group_of[lo:hi] = g
    for c in range(channels):
        r, k = divmod(c, cols)
        segments.append(np.column_stack([k + 0.05 + 0.9 * x, rows - r - 1 + 0.05 + 0.8 * height[c]]))
        colours.append(palette[group_of[c] % len(palette)])
    ax.add_collection(LineCollection(segments, colors=colours, linewidths=0.7))
    ax.set_xlim(0, cols)
    ax.set_ylim(0, rows)
    ax.set_xticks([])
    ax.set_yticks(np.arange(rows) + 0.5, [str((rows - 1 - i) * cols) for i in range(rows)], fontsize=6)
    ax.set_ylabel("first channel of the row")
    if groups:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=palette[i % len(palette)], label=f"{name} ({lo}-{hi - 1})")
                   for i, (name, (lo, hi)) in enumerate(groups.items())]
        ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles),
                  frameon=False, fontsize=8)
    ax.set_title("\n".join(_lines(title, width, 11.0)), fontsize=10, pad=18 if groups else 6)
    _warn(figure, warning)
    figure.tight_layout(rect=(0, 0.02 if warning else 0, 1, 1))
    return figure


def correlation(corr, order, title: str, warning: str = ""):
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 7), dpi=110)
    image = ax.imshow(corr[np.ix_(order, order)], cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    # Ticks name the channels at their places in the clustering order (every one up to 40, else 20 spread out)
    shown = np.arange(len(order)) if len(order) <= 40 else np.linspace(0, len(order) - 1, 20).round().astype(int)
    names = [str(int(order[i])) for i in shown]
    ax.set_xticks(shown, names, fontsize=7, rotation=90)
    ax.set_yticks(shown, names, fontsize=7)
    ax.set_title(title)
    ax.set_xlabel("channels, in clustering order")
    ax.set_ylabel("channels, in clustering order")
    figure.colorbar(image, ax=ax, fraction=0.046, label="Pearson correlation")
    _warn(figure, warning)
    figure.tight_layout(rect=(0, 0.03 if warning else 0, 1, 1))
    return figure


def _lines(text: str, inches: float, per_inch: float) -> list[str]:
    import textwrap

    return textwrap.wrap(text, max(20, int(inches * per_inch))) if text else []


def grid_figure(rows, title: str, warning: str = ""):
    """Rows of tiles; each tile's caption (its activation) above it, the row's label at its left.

    The figure is never narrower than its title and warning need, wrapped: a one-image
    grid must still say what it shows and that its weights are random.
    """
    plt = _pyplot()
    n_rows, n_cols = len(rows), max((len(t) for _, t in rows), default=1)
    width = max(1.7 * n_cols + 0.9, 6.0)
    title_lines, warn_lines = _lines(title, width, 9.0), _lines(warning, width, 9.5)
    height = 1.85 * n_rows + 0.5 + 0.2 * len(title_lines) + 0.18 * len(warn_lines)
    # constrained layout makes room for the title, the captions and the warning as they are
    figure, axes = plt.subplots(n_rows, max(n_cols, 1), figsize=(width, height), dpi=100, squeeze=False,
                                layout="constrained")
    for r, (label, tiles) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(tiles):
                ax.axis("off")
                continue
            tile = tiles[c]
            if tile.image is None and tile.error:
                _placeholder(ax, tile.error)
            elif tile.image is None:
                _message(ax, tile.note)
            else:
                ax.imshow(np.asarray(tile.image))
            rank = f"#{tile.rank}  " if r == 0 and tile.rank is not None else ""
            ax.set_title(rank + tile.caption, fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=10, rotation=0, labelpad=8, ha="right", va="center")
    figure.suptitle("\n".join(title_lines), fontsize=12)
    if warn_lines:
        figure.supxlabel("\n".join(warn_lines), color="#b00020", fontsize=10, weight="bold")
    return figure


def _placeholder(ax, error: str) -> None:
    """A grey square naming the file and why it could not be shown, inside the tile."""
    import os
    import textwrap

    from .display import CHANGED, unshown

    path, _, why = error.rpartition(": ")
    # "missing", "changed" or "unreadable": a file that is there but cannot be decoded is no missing one
    head = unshown(why)
    if head == "changed":  # said once: "changed since the store was made", then how
        head, why = CHANGED, why.removeprefix(CHANGED).strip(" ()")
    _grey(ax, [*textwrap.wrap(head, 22), *textwrap.wrap(os.path.basename(path) or error, 22)[:2],
               *textwrap.wrap(why, 22)[:3]])


def _message(ax, text: str) -> None:
    """A grey square with ``text`` (a picture not made yet, and how to make it), wrapped, whole."""
    import textwrap

    _grey(ax, textwrap.wrap(text, 22))


def _grey(ax, lines: list[str]) -> None:
    ax.imshow(np.full((8, 8, 3), 221, dtype=np.uint8))
    ax.text(0.5, 0.5, "\n".join(lines), ha="center", va="center", fontsize=6, transform=ax.transAxes, clip_on=True)


def save(figure, path, dpi: int | None = None) -> None:
    """``figure`` to ``path`` at ``dpi`` (default: the figure's own)."""
    try:
        figure.savefig(path, dpi=dpi or "figure")
    except OSError:  # a full disk: no truncated file left to look like a figure
        Path(path).unlink(missing_ok=True)
        raise
    _pyplot().close(figure)
