"""Class selectivity of a layer's channels, against what the labels give by chance (numpy only).

Offers:
    selectivity(moments, class_names, top=5) -> dict or None:
        per channel: top classes; "index", (mu_max - mu_rest) / (mu_max + mu_rest); "share", the
        top class's share of the sum of the channel's class means; "shuffled", the largest share
        with the labels shuffled; "excess" = share - shuffled; "most", the channel with the
        largest excess (None where none is above round-off);
        per class: "class_index", "class_share" and "channels_per_class", the channels whose share
        for that class most exceeds their shuffled share ("class_excess")
    share_text(value) -> str   a share as the stats line and gallery pages print it

Why not the index alone: it is near 1 for any sparse channel (mu_rest near 0). One active on a
single image of 50,000 has index 1.0; one that fires on exactly one class's 50 images, 1.0
as well, and 0.95 with the labels shuffled. The share has the same flaw for the first (1.0),
but with the labels shuffled (once, seeded, every class keeping its number of images) the
first keeps 1.0 while the second falls to about 0.05: a share above the shuffled one means
that the images a channel fires on share a class more than chance would put them together.
Channels with negative values get NaN: both measures assume activations >= 0 (after a ReLU).
"""

from __future__ import annotations

import numpy as np

# Real and shuffled class sums are added in other orders: a constant channel's shares differ by
# about 1e-10, which must not make it the channel named.
ROUND_OFF = 1e-6


def share_text(value: float) -> str:
    """Three decimals, or three significant digits below 0.1: with 1,000 classes a channel alike on
    all has 0.001, and its shuffled share differs in the fourth decimal."""
    return f"{value:.3f}" if value >= 0.1 else f"{value:.3g}"


def _shares(means: np.ndarray) -> np.ndarray:
    """(K', C): each class's mean over the sum of the channel's class means (0 where that is 0)."""
    total = means.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, means / np.where(total > 0, total, 1), 0.0)


def _class_index(sums: np.ndarray, counts: np.ndarray, means: np.ndarray):
    """(K', C) each: each class's mean against the mean over the other classes' images, and that mean.
    A channel's index is its top class's entry."""
    others = (sums.sum(axis=0) - sums) / np.maximum(counts.sum() - counts, 1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(means + others != 0, (means - others) / (means + others), 0.0), others


def selectivity(moments, class_names, top: int = 5) -> dict | None:
    """Class selectivity from per-class means; None when the images hold fewer than two classes
    (no labels, or an incomplete store's first class), which it could only call all alike."""
    counts = moments.class_counts
    if (counts > 0).sum() < 2:
        return None
    present = np.flatnonzero(counts > 0)
    sums, n = moments.class_sums[present], counts[present]
    means = sums / n[:, None]
    own, others = _class_index(sums, n, means)
    best, cols = np.argmax(means, axis=0), np.arange(means.shape[1])  # first class on ties
    index, mu_max, mu_rest = own[best, cols], means[best, cols], others[best, cols]
    class_share = _shares(means)
    share = class_share.max(axis=0)
    shuffled = _shares(moments.chance_sums[present] / n[:, None]).max(axis=0)
    signed = moments.signed
    for values in (index, own, class_share, share, shuffled):
        values[..., signed] = np.nan
    excess = share - shuffled
    # A class's channels by its share less the channel's shuffled one: the largest share any class
    # had by chance, so a channel that fired on one image of the class is not among them.
    class_excess = class_share - shuffled
    top_channels = np.argsort(-np.nan_to_num(class_excess, nan=-np.inf), axis=1, kind="stable")[:, :top]
    ranked = np.nan_to_num(excess, nan=-np.inf)
    return {"classes": present, "class_names": [class_names[c] if c < len(class_names) else str(c) for c in present],
            "class_means": means, "index": index, "mu_max": mu_max, "mu_rest": mu_rest,
            "top_classes": present[np.argsort(-means, axis=0, kind="stable")[:top].T],
            "share": share, "shuffled": shuffled, "excess": excess,
            "most": int(np.argmax(ranked)) if ranked.max() > ROUND_OFF else None,
            "class_index": own, "class_share": class_share, "class_excess": class_excess,
            "channels_per_class": top_channels}
