"""Statistics and pictures of a layer, as methods of ``query.Layer``.

Offers (on a Layer):
    stats(by), histograms(by), moments(), correlations(), selectivity(), no_selectivity(), pca(),
    check_usable()
    histogram_figure(channel, by), correlation_figure(), peaks(rows, channel), flat(rows, channel),
    crop_peaks(rows, channel), grid(...)   (a warning for images that could not be read)
read_only(array) -> array   marks a cached array shared by later queries unwritable (``query`` too)

Statistics come from ``pipeline.stats`` (numpy); figures from ``pipeline.render``
and ``pipeline.pictures``; only heatmaps import torch.
"""

from __future__ import annotations

import numpy as np

from .errors import QueryError
from .parsing import check_channel as _channel


def read_only(array: np.ndarray) -> np.ndarray:
    """``array``, no longer writable: cached, and shared by every later query of the layer."""
    array.flags.writeable = False
    return array


class Analysis:
    # Statistics (``pipeline.stats``): exact, streaming over the store.
    def check_usable(self) -> None:
        """A QueryError where the layer has no usable image: every channel would read as dead."""
        if not self.usable.any():
            raise QueryError(f"layer {self.name} has no usable image{' yet' if not self.done.all() else ''}: "
                             f"{self.notes()[-1]}")

    def table(self, by: str, progress=None) -> dict:
        """The full per-channel table (histograms included), computed once per layer object."""
        from . import stats

        self.array(by)
        self.check_usable()
        cache = self.__dict__.setdefault("_tables", {})
        if by not in cache:
            # Whether the layer has negative values is the means' to say for the maxima too: a max
            # of exactly 0 on a layer with negative means was called dead (so "max" needs "mean")
            negative = by == "max" and stats.has_negative(self.table("mean", progress))
            table = stats.channel_table(self, by, progress=progress, negative=negative)
            # shared by every later stats(), figure and page of the layer: `t = layer.stats(); t["mean"] -= 1`
            # changed them all
            cache[by] = {name: read_only(v) if isinstance(v, np.ndarray) else v for name, v in table.items()}
        return cache[by]

    def stats(self, by: str = "mean") -> dict:
        """Per-channel columns (C,) each: mean, std, max, q50, q90, q99, q99.9, active, kurtosis, dead.

        ``dead`` is "never above 0" on a layer without negative values (dead units after a
        ReLU); on a layer with negative values (logits, an import) no channel is dead, as
        staying at or below 0 is no sign of one (``max <= 0`` finds those channels). The means
        decide that for both, so ``stats("max")`` computes the means' table too.

        ``pandas.DataFrame(layer.stats())`` makes the table; histograms are ``histograms(by)``.
        """
        return {k: v for k, v in self.table(by).items() if not k.startswith("hist_")}

    def histograms(self, by: str = "mean") -> tuple[np.ndarray, np.ndarray]:
        """(counts (C, bins), edges (C, bins + 1)) of every channel's spatial ``by``."""
        table = self.table(by)
        return table["hist_counts"], table["hist_edges"]

    def histogram_figure(self, channel: int, by: str = "mean"):
        """One channel's histogram (log counts, quantile lines) as a matplotlib Figure."""
        from .render import histogram

        channel = _channel(channel, self.channels)
        table = self.table(by)
        marks = {q: table[q][channel] for q in ("q50", "q90", "q99", "q99.9")}
        constant = table["max"][channel] if not table["std"][channel] > 0 else None  # as the gallery's pages decide
        return histogram(table["hist_counts"][channel], table["hist_edges"][channel], marks,
                         f"{self.name} channel {channel}: spatial {by}", self.note(), constant)

    def correlation_figure(self):
        """The channel correlation matrix, ordered by hierarchical clustering, as a Figure."""
        from .render import correlation
        from .stats import cluster_order

        corr = self.correlations()
        title = f"{self.name} ({int(self.usable.sum())} images): channel correlations"
        return correlation(corr, cluster_order(corr), title, self.note())

    def moments(self, progress=None):
        """Covariance and per-class sums (one pass over the shards), centred on the exact means."""
        from . import stats

        if "_moments" not in self.__dict__:
            self._moments = stats.second_moments(self, self.table("mean"), progress=progress)
        return self._moments

    def correlations(self) -> np.ndarray:
        """(C, C) Pearson correlations of the channels' spatial means over the usable images; 0 for a
        constant (dead) channel."""
        from . import stats

        return stats.correlations(self.moments())

    def selectivity(self, top: int = 5) -> dict | None:
        """Per channel: top classes, the index (mu_max - mu_rest) / (mu_max + mu_rest), and the top
        class's share of the class means with and without the labels shuffled; per class, its
        channels (``pipeline.selectivity``). None without two classes among the usable images
        (``no_selectivity()`` says why)."""
        from .selectivity import selectivity

        top = self.check_k(top, "top")  # top=-1 sliced off the last class, 1.5 was numpy's TypeError
        return selectivity(self.moments(), self.store.class_names, top=top)

    def no_selectivity(self) -> str:
        """Why ``selectivity()`` is None, in a few words ("" where it is not)."""
        if self.selectivity() is not None:
            return ""
        present = int((self.moments().class_counts > 0).sum())
        if present == 0:
            return "the images have no labels" + (" (a flat folder)" if self.attrs.get("model") != "imported" else "")
        incomplete = " (an incomplete store: its first classes only)" if not self.done.all() else ""
        return f"the {int(self.usable.sum())} usable images are all of one class{incomplete}, and it compares classes"

    def pca(self) -> dict:
        """PCA of the spatial means: explained variance ratio, participation ratio, components for 90 / 99 %."""
        from . import stats

        return stats.pca(self.moments().cov)

    # Pictures (``pipeline.pictures``); only heatmaps import torch.
    def peaks(self, rows, channel: int) -> list[tuple[int, int]]:
        """(y, x) of each row's stored argmax for ``channel`` on the layer's grid."""
        if "argmax" not in self.available:
            raise QueryError(f"layer {self.name} stores no argmax (an imported store)")
        rows = self.store.check_rows(rows)
        if rows.size == 0:
            return []
        flat = self.stored("argmax").get_orthogonal_selection((rows, [_channel(channel, self.channels)]))[:, 0]
        width = self.spatial_shape[1]
        return [(int(f) // width, int(f) % width) for f in flat]

    def flat(self, rows, channel: int) -> np.ndarray:
        """Whether each row's map for ``channel`` is flat (its max equals its mean: all zero after
        a ReLU), where the stored argmax is only the first cell and marks no peak."""
        rows = self.store.check_rows(rows)
        if rows.size == 0 or "max" not in self.available or np.prod(self.spatial_shape) <= 1:
            return np.zeros(rows.size, dtype=bool)  # a 1 x 1 map's one cell is its peak
        channel = _channel(channel, self.channels)
        peak, mean = (self.stored(stat).get_orthogonal_selection((rows, [channel]))[:, 0] for stat in ("max", "mean"))
        return peak == mean

    def crop_peaks(self, rows, channel: int) -> list[tuple[int, int] | None]:
        """Each row's peak to crop around, None where the map is flat and has none."""
        return [None if f else peak for peak, f in zip(self.peaks(rows, channel), self.flat(rows, channel))]

    def grid(self, channels, k: int = 10, by: str = "mean", crop: bool = False, heatmap: bool = False,
             bottom: bool = False, samples: bool = False, featureviz: bool = False, shown: list | None = None):
        """The notebook's figure from the store: a matplotlib Figure (shows inline in Jupyter).
        ``shown``, a list, receives (path, "" or why it could not be read) for each image drawn;
        without it, images that could not be read are a warning."""
        from .pictures import grid, missing_warning

        from .query import _flag

        self.check_k(k)
        # heatmap="no" is true: it ran the model; bottom="no" added rows (as topk's flags are checked)
        crop, heatmap, bottom, samples, featureviz = (_flag(value, name) for value, name in (
            (crop, "crop"), (heatmap, "heatmap"), (bottom, "bottom"), (samples, "samples"), (featureviz, "featureviz")))
        record = [] if shown is None else shown
        figure = grid(self, channels, k, by, crop, heatmap, bottom, samples, featureviz=featureviz, shown=record)
        warning = missing_warning(record, self.store.root, "open the store with pipeline.open_store(path, root={folder})")
        if shown is None and warning:
            import warnings

            warnings.warn(warning, stacklevel=2)
        return figure
