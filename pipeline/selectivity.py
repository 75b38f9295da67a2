"""Class selectivity of a layer's channels, with the level the labels give by chance (numpy only).

Offers:
    selectivity(moments, class_names, top=5) -> dict or None:
        per channel: top classes, the index (mu_max - mu_rest) / (mu_max + mu_rest), the same
        index with the labels shuffled ("shuffled") and the difference ("excess");
        per class: the channels with the largest excess for that class; "most", the channel
        with the largest excess

Why the shuffled labels: the index of a sparse channel is near 1 whatever its classes. One
active on a single image of 50,000 has mu_rest = 0 and index 1.0; one active on ten images
in ten classes, 0.99. Its index with the labels shuffled (once, seeded, every class keeping
its number of images) is as high, so what a channel's classes add is the excess over it.
One permutation is a sample of chance, not its distribution: for a heavy-tailed channel it
moves by several hundredths from one shuffle to the next, so a small excess is no evidence.
"""

from __future__ import annotations

import numpy as np

def _index(sums: np.ndarray, counts: np.ndarray):
    """(index, mu_max, mu_rest, class means) of each channel from its per-class sums (K', C)."""
    means = sums / counts[:, None]
    best = np.argmax(means, axis=0)  # first class on ties
    cols = np.arange(means.shape[1])
    mu_max = means[best, cols]
    rest_n = counts.sum() - counts[best]
    with np.errstate(invalid="ignore", divide="ignore"):
        mu_rest = (sums.sum(axis=0) - sums[best, cols]) / rest_n
        index = np.where(mu_max + mu_rest != 0, (mu_max - mu_rest) / (mu_max + mu_rest), 0.0)
    return np.nan_to_num(index), mu_max, np.nan_to_num(mu_rest), means


def _class_index(sums: np.ndarray, counts: np.ndarray, means: np.ndarray) -> np.ndarray:
    """(K', C): each class's mean against the mean over the other classes, as the index does."""
    with np.errstate(invalid="ignore", divide="ignore"):
        others = (sums.sum(axis=0) - sums) / np.maximum(counts.sum() - counts, 1)[:, None]
        return np.where(means + others != 0, (means - others) / (means + others), 0.0)


def selectivity(moments, class_names, top: int = 5) -> dict | None:
    """Class selectivity from per-class means; None when the images hold fewer than two classes
    (no labels, or an incomplete store's first class), which it could only call all alike."""
    counts = moments.class_counts
    if (counts > 0).sum() < 2:
        return None
    present = np.flatnonzero(counts > 0)
    sums, n = moments.class_sums[present], counts[present]
    index, mu_max, mu_rest, means = _index(sums, n)
    shuffled = _index(moments.chance_sums[present], n)[0]
    excess = index - shuffled
    names = [class_names[c] if c < len(class_names) else str(c) for c in present]
    top_classes = np.argsort(-means, axis=0, kind="stable")[:top].T  # (C, top)
    own = _class_index(sums, n, means)
    # A class's channels by its own index less the channel's chance level: by the raw class mean
    # every class listed the layer's few loudest channels, and by the index alone its sparsest.
    top_channels = np.argsort(-(own - shuffled), axis=1, kind="stable")[:, :top]  # (K', top)
    return {"classes": present, "class_names": names, "class_means": means, "index": index,
            "mu_max": mu_max, "mu_rest": mu_rest, "top_classes": present[top_classes],
            "channels_per_class": top_channels, "class_index": own,
            "shuffled": shuffled, "excess": excess, "most": int(np.argmax(excess))}
