"""Statistics of a stored layer, streaming over the store (numpy only, no torch).

Offers:
    QUANTILES, HIST_BINS
    has_negative(table) -> bool    whether the layer has negative values (no ReLU at its end)
    channel_table(layer, by="mean", progress=None, negative=False) -> dict of per-channel arrays:
        mean, std, max, q50, q90, q99, q99.9, active (fraction > 0), kurtosis
        (excess, Fisher), dead (never > 0, on a layer without negative values),
        hist_counts (C, bins), hist_edges (C, bins+1): from each column's min to its max
    second_moments(layer, table=None, progress=None) -> Moments: n, mean, cov (C, C), class sums and counts,
        and class sums with the labels shuffled (``pipeline.selectivity``'s chance level)
    cluster_order(corr) -> channel order by average-linkage clustering on 1 - r
    correlations(moments) -> (C, C) Pearson matrix (0 where a channel is constant)
    neighbours(corr, k) -> (C, k) most correlated other channels (-1: none)
    pca(cov) -> dict: explained variance ratio, participation ratio, n for 90/99 %
    branches(layer) -> {branch: (lo, hi)} for an Inception "mixed" layer, else {}

Memory is bounded by one block of columns (``COLUMN_BLOCK`` channels x N rows,
read as whole columns so quantiles are exact) or one shard of rows, and its working
copies, per thread (``WORKERS``).
Invalid rows and rows of unfinished shards are excluded everywhere.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .histograms import HIST_BINS, histogram_counts
from .scans import WORKERS, shard_map

QUANTILES = (0.5, 0.9, 0.99, 0.999)
COLUMN_BLOCK = 16
SAFE = 2.0 ** 20  # |values| up to this (and down to its inverse) keep float32 fourth powers in range
# The layer the notebook studies; other mixed layers record theirs at extraction.
KNOWN_BRANCHES = {"mixed4a": {"1x1": (0, 192), "3x3": (192, 396), "5x5": (396, 444), "pool": (444, 508)}}


def _column_blocks(layer, by):
    arr = layer.array(by)
    for lo in range(0, layer.channels, COLUMN_BLOCK):
        yield lo, min(layer.channels, lo + COLUMN_BLOCK), arr


def _scales(*tops: np.ndarray) -> np.ndarray | None:
    """Per column, the power of two that brings the largest of ``tops`` into [0.5, 1), as float32;
    None where every column is 0 or within [1/SAFE, SAFE] (activations: the usual case, left as it is).

    The float32 powers below are taken of values so scaled: a power of two changes no rounding,
    so the results are those of the unscaled values, bit for bit, wherever those stay within
    float32's range (about 1e+-38); an imported matrix of values near 1e20 or 1e-25 no longer
    overflows or underflows there. (Scaling every block cost 17% of `exemplars stats` at 1.28M.)
    """
    top = np.maximum.reduce([np.abs(t).astype(np.float64) for t in tops])
    if ((top == 0) | ((top >= 1 / SAFE) & (top <= SAFE))).all():
        return None
    _, exponent = np.frexp(np.where(top > 0, top, 1.0))
    return np.ldexp(1.0, np.clip(-exponent, -126, 126)).astype(np.float32)


def _quantiles(x: np.ndarray) -> np.ndarray:
    """np.quantile's default (linear) method, with one multi-rank partition per column."""
    n = len(x)
    position = np.asarray(QUANTILES) * (n - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    frac = position - below
    ranks = np.unique(np.concatenate([below, above]))
    out = np.empty((len(QUANTILES), x.shape[1]))
    for j in range(x.shape[1]):
        part = np.partition(x[:, j], ranks)
        a, b = part[below].astype(np.float64), part[above].astype(np.float64)
        out[:, j] = a + (b - a) * frac
    return out


def _block_table(layer, lo, hi, arr) -> dict:
    x = np.asarray(arr[:, lo:hi])
    if not layer.usable.all():
        x = x[layer.usable]
    if not len(x):
        return {}
    n = len(x)
    mean = x.sum(axis=0, dtype=np.float64) / n
    # Moments about the float32-rounded mean (float32 products, float64 sums: fast), then
    # moved to the exact mean: far from zero (1e4 + U(0, 1)) the rounding alone put the
    # kurtosis 3e-4 off.
    largest, smallest = x.max(axis=0), x.min(axis=0)
    scale, centre = _scales(largest, smallest, mean), mean.astype(np.float32)
    if scale is None:
        y, scale = x - centre, np.ones(x.shape[1])
        # float32 rounding is monotone: these are y's own max and min, without a pass over y
        top, bottom = largest - centre, smallest - centre
    else:
        y = x * scale
        y -= centre * scale
        top, bottom = y.max(axis=0), y.min(axis=0)
    again = _scales(top, bottom)  # centred values far smaller than the mean: their fourth powers underflowed
    if again is not None:
        y *= again
        scale = scale * again.astype(np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    d = y.sum(axis=0, dtype=np.float64) / n / scale
    power = y * y
    r2 = power.sum(axis=0, dtype=np.float64) / n / scale ** 2
    power *= y
    r3 = power.sum(axis=0, dtype=np.float64) / n / scale ** 3
    power *= y
    r4 = power.sum(axis=0, dtype=np.float64) / n / scale ** 4
    del y, power
    m2 = np.maximum(r2 - d * d, 0.0)
    m4 = np.maximum(r4 - 4 * d * r3 + 6 * d * d * r2 - 3 * d ** 4, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        kurtosis = np.where(m2 > 0, m4 / m2 ** 2 - 3.0, np.nan)
    counts, edges = histogram_counts(x, smallest, largest)
    return {"mean": mean, "std": np.sqrt(m2), "max": largest, "kurtosis": kurtosis,
            "active": (x > 0).mean(axis=0), "hist_counts": counts, "hist_edges": edges,
            **{f"q{q * 100:g}": v for q, v in zip(QUANTILES, _quantiles(x))}}


def has_negative(table: dict) -> bool:
    """Whether a ``channel_table``'s values go below 0 anywhere: no ReLU ends the layer."""
    return bool((table["hist_edges"][:, 0] < 0).any())


def channel_table(layer, by: str = "mean", progress=None, negative: bool = False) -> dict:
    """Exact per-channel statistics of the spatial ``by`` over the usable images.

    ``negative``: the layer has negative values by another table's account (the means, for
    ``by="max"``: a mean is at most its map's max, so negative means need not make a negative max).
    Blocks of whole columns go to ``WORKERS`` threads.
    """
    from concurrent.futures import ThreadPoolExecutor

    names = ["mean", "std", "max", *(f"q{q * 100:g}" for q in QUANTILES), "active", "kurtosis"]
    out = {name: np.zeros(layer.channels) for name in names}
    out["hist_counts"] = np.zeros((layer.channels, HIST_BINS), dtype=np.int64)
    out["hist_edges"] = np.zeros((layer.channels, HIST_BINS + 1))
    blocks = list(_column_blocks(layer, by))
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = pool.map(lambda b: (b[0], b[1], _block_table(layer, *b)), blocks)
        for lo, hi, table in progress(results, len(blocks)) if progress else results:
            for name, values in table.items():
                out[name][lo:hi] = values
    # Never above 0 is a dead unit after a ReLU; where the layer has negative values (logits, an
    # import) it is only a channel that stays at or below 0.
    out["dead"] = (out["max"] <= 0) & (not (negative or has_negative(out)))
    return out


@dataclass
class Moments:
    n: int
    mean: np.ndarray  # (C,)
    cov: np.ndarray  # (C, C), population covariance
    class_sums: np.ndarray  # (K, C)
    class_counts: np.ndarray  # (K,)
    chance_sums: np.ndarray  # (K, C): class_sums with the labels shuffled (same counts)
    signed: np.ndarray  # (C,) bool: some usable value is negative


SHUFFLE_SEED = 0


def shuffled_labels(labels: np.ndarray, usable: np.ndarray, seed: int = SHUFFLE_SEED) -> np.ndarray:
    """``labels`` with the usable labelled rows' labels permuted among themselves (seeded): every
    class keeps its number of usable images, and no class its images."""
    out = labels.copy()
    rows = np.flatnonzero(usable & (labels >= 0))
    out[rows] = labels[np.random.default_rng(seed).permutation(rows)]
    return out


def _class_sums(x, labelings, wide, n_classes) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each labeling of ``x``'s rows, (class sums (K, C), counts (K,)), divided by ``wide`` (the scales).

    The sums are float64, each column's by ``np.bincount`` (rows in order, no sorted copy of the
    shard): float32 sums within a shard put a channel 1e4 + 0.01 x's class means 1e-3 apart and
    cost a dense channel's index, a small difference of two means, its 5th significant digit;
    float64 sums of a sorted copy cost 3-6% of ``stats`` at 1.28M, bincount's are faster than the
    float32 ones were (77-134 against 229-623 ms a shard of 65536 x 508, 1,000 classes)."""
    out = []
    for lab in labelings:
        sums, counts = np.zeros((n_classes, x.shape[1])), np.zeros(n_classes, dtype=np.int64)
        if n_classes and (lab >= 0).any():
            bins = np.where(lab >= 0, lab, n_classes)  # unlabelled rows (-1) go to a last bin, dropped
            counts = np.bincount(bins, minlength=n_classes + 1)[:n_classes]
            for c in range(x.shape[1]):
                sums[:, c] = np.bincount(bins, weights=x[:, c], minlength=n_classes + 1)[:n_classes]
            sums /= wide
        out.append((sums, counts))
    return out


def _shard_moments(layer, lo, hi, x, centre, scale, labels, chance, n_classes):
    keep = layer.usable[lo:hi]
    lab, shuffled = labels[lo:hi], chance[lo:hi]
    if not keep.all():
        x, lab, shuffled = x[keep], lab[keep], shuffled[keep]
    if scale is not None:  # see _scales; in place: a shard is 133 MB
        x = np.multiply(x, scale, out=x if x.flags.writeable else None)
        centre = centre * scale
    xc = x - centre
    # unscaled in float64: the scales' products leave float32's range
    wide = np.ones(x.shape[1]) if scale is None else scale.astype(np.float64)
    gram = (xc.T @ xc).astype(np.float64) / np.outer(wide, wide)
    offset = xc.sum(axis=0, dtype=np.float64) / wide  # the centre is float32's: sum of (x - centre)
    del xc  # memory is bounded by a few shard-sized buffers per thread
    (sums, counts), (chance_sums, _) = _class_sums(x, (lab, shuffled), wide, n_classes)
    return gram, sums, counts, chance_sums, offset


def second_moments(layer, table=None, progress=None) -> Moments:
    """One pass over the shards of ``mean``: covariance and per-class sums (with the real labels, and
    with them shuffled once: what class selectivity would be by chance).

    ``table`` (``channel_table(layer)``, made if not given) gives the exact means, which
    centre each shard before the float32 product and keep its round-off small, and each
    column's range, which decides its scale (``_scales``); shards go to ``WORKERS`` threads.
    """
    labels = layer.store.all_labels
    n_classes = max(len(layer.store.classes), int(labels.max(initial=-1)) + 1)
    table = table if table is not None else channel_table(layer)
    mean = table["mean"]
    scale = _scales(table["max"], table["hist_edges"][:, 0], mean)  # the edge: each column's min
    gram = np.zeros((layer.channels, layer.channels))
    sums, chance = np.zeros((n_classes, layer.channels)), np.zeros((n_classes, layer.channels))
    counts, offset = np.zeros(n_classes, dtype=np.int64), np.zeros(layer.channels)
    centre = mean.astype(np.float32)
    work = functools.partial(_shard_moments, layer, centre=centre, scale=scale, labels=labels,
                             chance=shuffled_labels(labels, layer.usable), n_classes=n_classes)
    for _, _, part in shard_map(layer, work, progress):
        gram += part[0]
        sums += part[1]
        counts += part[2]
        chance += part[3]
        offset += part[4]
    n = int(layer.usable.sum())
    # About the exact mean, not the float32 centre: the centre's rounding, squared, once made a channel whose
    # spread is a few float32 steps of its mean (1e4 + 0.01 x) correlate 0.87 with a copy of itself
    delta = offset / max(n, 1)
    cov = gram / max(n, 1) - np.outer(delta, delta)
    return Moments(n, mean, cov, sums, counts, chance, table["hist_edges"][:, 0] < 0)


def correlations(moments: Moments) -> np.ndarray:
    std = np.sqrt(np.clip(np.diag(moments.cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = moments.cov / np.outer(std, std)
    corr[~np.isfinite(corr)] = 0.0  # a constant (dead) channel correlates with nothing
    np.fill_diagonal(corr, np.where(std > 0, 1.0, 0.0))
    return np.clip(corr, -1.0, 1.0)


def neighbours(corr: np.ndarray, k: int = 5) -> np.ndarray:
    """Each channel's ``k`` most correlated other channels, best first; -1 fills the places
    left where there are fewer other channels than ``k``. A constant channel correlates with
    nothing: it has no neighbours and is nobody's."""
    constant = np.diag(corr) == 0  # correlations() puts 0 on the diagonal of a constant channel
    masked = corr.astype(np.float64, copy=True)
    np.fill_diagonal(masked, -np.inf)
    masked[:, constant] = -np.inf
    masked[constant, :] = -np.inf
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    order[np.take_along_axis(masked, order, axis=1) == -np.inf] = -1
    return np.pad(order, ((0, 0), (0, k - order.shape[1])), constant_values=-1)


def pca(cov: np.ndarray) -> dict:
    eig = np.clip(np.linalg.eigvalsh(cov)[::-1], 0, None)
    total = eig.sum()
    ratio = eig / total if total > 0 else eig
    cumulative = np.cumsum(ratio)

    def components(share: float) -> int:  # none when there is no variance to explain
        return int(min(np.searchsorted(cumulative, share) + 1, eig.size)) if total > 0 else 0

    return {"explained_variance_ratio": ratio,
            "participation_ratio": float(total ** 2 / (eig ** 2).sum()) if total > 0 else 0.0,
            "components_90": components(0.90), "components_99": components(0.99)}


def branches(layer) -> dict[str, tuple[int, int]]:
    """The layer's branches: recorded at extraction, else known by name; none unless they tile
    its channels (a matrix imported under the name ``mixed4a`` may have any width)."""
    stored = layer.attrs.get("branches") or KNOWN_BRANCHES.get(layer.name, {})
    found = {name: (int(lo), int(hi)) for name, (lo, hi) in dict(stored).items()}
    tiles = sorted(found.values())
    if not tiles or tiles[0][0] != 0 or tiles[-1][1] != layer.channels or any(
            a[1] != b[0] for a, b in zip(tiles, tiles[1:])) or any(lo >= hi for lo, hi in tiles):
        return {}
    return found


def cluster_order(corr: np.ndarray) -> np.ndarray:
    """Channel order from average-linkage clustering on 1 - correlation."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    if len(corr) < 3:
        return np.arange(len(corr))
    distance = np.clip(1.0 - corr, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    return leaves_list(linkage(squareform(distance, checks=False), method="average"))
