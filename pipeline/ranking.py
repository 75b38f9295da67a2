"""Ranking a column of values: top/bottom k, quantile bands, diverse picks (numpy only).

Offers:
    finite_or_zero(array)        NaN and +-inf as 0
    top_rows(values, usable, k, bottom=False) -> rows, best first
    ranked_all(values, usable, bottom=False) -> every usable row, best first
    band_samples(values, usable, bands, per_band, seed, zero_only=None) -> (rows, band labels, empty bands, ranks)
    diverse(values, usable, k, bottom, labels, fingerprints, per_class, skipped=None) -> rows

Ties always go to the lower row, so every answer is reproducible.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

DUPLICATE_COSINE = 0.995


def finite_or_zero(array: np.ndarray) -> np.ndarray:
    """NaN and ±inf as 0 (``nan_to_num`` would make inf 1.8e308, which overflows in products)."""
    return np.where(np.isfinite(array), array, 0.0)


def _keys(values, rows, bottom):
    """The usable rows' keys, larger is better; NaN counts as -inf (ties go to the lower row).

    Only the usable rows take part, so no sentinel value can collide with a real
    one (an infinite activation is a value like any other).
    """
    keys = np.asarray(values)[rows]
    keys = -keys if bottom else keys  # indexing made a copy; float32 stays float32: half the bytes
    nan = np.isnan(keys)
    if nan.any():
        keys[nan] = -np.inf
    return keys


def _ranked(keys, rows):
    """``rows`` (with their ``keys``) sorted by key descending, then row ascending."""
    return rows[np.lexsort((rows, -keys))]


def top_rows(values, usable, k: int, bottom: bool = False) -> np.ndarray:
    """The rows of the ``k`` largest (or smallest) usable values, best first."""
    rows = np.flatnonzero(usable)
    k = min(int(k), rows.size)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    keys = _keys(values, rows, bottom)
    threshold = np.partition(keys, keys.size - k)[keys.size - k]
    above = np.flatnonzero(keys > threshold)
    ties = np.flatnonzero(keys == threshold)[: k - above.size]  # rows ascend: ties go to the lower row
    picked = np.concatenate([above, ties])
    return _ranked(keys[picked], rows[picked])


def ranked_all(values, usable, bottom: bool = False) -> np.ndarray:
    """Every usable row in rank order (a full stable sort)."""
    rows = np.flatnonzero(usable)
    return rows[np.argsort(-_keys(values, rows, bottom), kind="stable")]


def band_samples(values, usable, bands, per_band: int, seed: int, zero_only: list | None = None):
    """Random rows from nested rank bands: top 0.1%, then 0.1-1%, ... and exact zeros.

    Rank r (0 = best) of the n usable rows is in the band "top previous-p" when
    previous <= r / n < p, and the zeros band (``fraction`` None) holds the rows exactly 0;
    with one, the rank bands leave their zero rows to it. So bands never overlap (no row
    is shown twice), and a band may hold none (narrower than one image of this store, or
    all zeros: such labels also go to the list ``zero_only``): returned by label in ``empty``. Rows within a sample are shown best first.
    Returns (rows, labels, empty, ranks): ``ranks`` is each row's rank among the usable rows (0 = best).
    """
    rng = np.random.default_rng(seed)
    values = np.asarray(values)
    order = ranked_all(values, usable)
    n = order.size
    zeros_band = any(fraction is None for _, fraction in bands)
    rows, labels, ranks, empty, start = [], [], [], [], 0
    for label, fraction in bands:
        if fraction is None:
            pool = np.flatnonzero(usable & (values == 0))
            # The zeros follow every positive row in the ranking, in row order (ties go to the lower row).
            places = np.count_nonzero(usable & (values > 0)) + np.arange(pool.size)
        else:
            # A float from the API is read as the decimal it prints as (0.07, not 0.0700000000000000067)
            exact = fraction if isinstance(fraction, Fraction) else Fraction(repr(float(fraction)))
            stop = min(n, math.ceil(n * exact))
            pool, places, start = order[start:stop], np.arange(start, max(start, stop)), stop
            if zeros_band and pool.size:
                live = values[pool] != 0
                pool, places = pool[live], places[live]
                if not pool.size and zero_only is not None:  # it had images, every one of them 0
                    zero_only.append(label)
        if not pool.size:
            empty.append(label)
            continue
        which = rng.choice(pool.size, size=min(per_band, pool.size), replace=False)
        best_first = np.argsort(places[which], kind="stable")  # a rank is the order of the ranking
        rows.extend(pool[which][best_first].tolist())
        ranks.extend(places[which][best_first].tolist())
        labels.extend([label] * which.size)
    return np.asarray(rows, dtype=np.int64), labels, empty, np.asarray(ranks, dtype=np.int64)


def diverse(values, usable, k, bottom, labels, fingerprints, per_class: int = 2, skipped: dict | None = None):
    """Top rows skipping near-duplicates and classes already shown ``per_class`` times.

    Near-duplicates: cosine above ``DUPLICATE_COSINE`` between the images'
    activations on a spread subset of channels (crops and re-encodes of one
    photo land there; different photos rarely do). ``skipped``, a dict, receives
    how many rows each rule left out ("class", "duplicate") in the last pass.
    """
    fingerprints = np.asarray(fingerprints)
    chosen, counts = [], {}
    units = np.empty((min(k, int(usable.sum())), fingerprints.shape[1]))  # the chosen rows' unit fingerprints
    pool = min(int(usable.sum()), max(50 * k, 1000))
    why = skipped if skipped is not None else {}
    while True:
        candidates = top_rows(values, usable, pool, bottom)
        # Only the candidates are normalised: at 1.28M images the whole matrix took a second a query.
        unit = finite_or_zero(np.asarray(fingerprints[candidates], dtype=np.float64))
        unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
        why.update(dict.fromkeys(("class", "duplicate"), 0))
        for row, vector in zip(candidates, unit):
            if row in chosen:
                continue
            label = int(labels[row])
            if label >= 0 and counts.get(label, 0) >= per_class:
                why["class"] += 1
                continue
            if chosen and (units[:len(chosen)] @ vector).max() > DUPLICATE_COSINE:
                why["duplicate"] += 1
                continue
            units[len(chosen)] = vector
            chosen.append(int(row))
            counts[label] = counts.get(label, 0) + 1
            if len(chosen) == k:
                break
        if len(chosen) == k or pool >= usable.sum():
            chosen = np.asarray(chosen, dtype=np.int64)
            return _ranked(_keys(values, chosen, bottom), chosen)
        pool = min(int(usable.sum()), pool * 4)
