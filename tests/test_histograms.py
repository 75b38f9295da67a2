"""Histograms of a block against np.histogram with the same edges."""

from __future__ import annotations

import numpy as np
from numpy.testing import assert_array_equal

from pipeline.histograms import HIST_BINS, histogram_counts


def test_histogram_counts_equal_numpys_on_values_at_the_edges(recwarn):
    """With edges at a column's own min and max, values on a coarse float32 grid sit on inner edges."""
    rng = np.random.default_rng(3)
    columns = [np.float32([10000.1015625, 10006.025390625, 10009.974609375])]  # the middle one is edge 24
    columns += [(1e4 + 10 * rng.uniform(size=500)).astype(np.float32) for _ in range(200)]
    columns += [rng.normal(size=500).astype(np.float32) for _ in range(200)]
    columns += [np.full(7, value, np.float32) for value in (1e20, -3e17, 1e16, 3.5)]  # constants past 2**53 too
    for column in columns:
        counts, edges = histogram_counts(column[:, None], column.min(keepdims=True), column.max(keepdims=True))
        assert len(np.unique(edges[0])) == HIST_BINS + 1
        assert_array_equal(counts[0], np.histogram(column.astype(np.float64), bins=edges[0])[0])
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
