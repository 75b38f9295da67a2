"""How far an approximate store is from an exact one (numpy only).

Offers:
    agreement(exact, other, k=10) -> {"topk_overlap", "max_relative_error"}
        topk_overlap: the share of each channel's top-k images (by the column) that
            both matrices agree on, averaged over channels
        max_relative_error: max over channels of max |other - exact| / max |exact|,
            the error measured against each channel's own scale, over the channels
            whose scale is above 0 and at least ``LIVE`` times the median channel's
"""

from __future__ import annotations

import numpy as np

from .ranking import top_rows

LIVE = 1e-2


def agreement(exact: np.ndarray, other: np.ndarray, k: int = 10) -> dict:
    usable = np.isfinite(exact).all(axis=1) & np.isfinite(other).all(axis=1)
    overlaps = []
    for c in range(exact.shape[1]):
        a = set(top_rows(exact[:, c], usable, k).tolist())
        b = set(top_rows(other[:, c], usable, k).tolist())
        overlaps.append(len(a & b) / max(1, len(a)))
    scale = np.abs(exact[usable]).max(axis=0)
    error = np.abs(other[usable] - exact[usable]).max(axis=0)
    # A nearly silent channel has no scale to measure against: leave it out of the ratio.
    # Silent channels have none either: when they are over half the layer the median is 0 (0 / 0 gave NaN).
    live = (scale > 0) & (scale >= LIVE * np.median(scale))
    relative = error[live] / scale[live]
    return {"topk_overlap": float(np.mean(overlaps)),
            "max_relative_error": float(relative.max()) if relative.size else 0.0}
