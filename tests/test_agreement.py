"""The measure of an approximate store against an exact one (pipeline/agreement.py)."""

import numpy as np
import pytest

from pipeline.agreement import agreement


def test_agreement_metric():
    exact = np.arange(40, dtype=np.float32).reshape(20, 2)  # channel 0 peaks at 38, channel 1 at 39
    other = exact.copy()
    other[0, 0] += 0.38  # 1% of channel 0's scale, ranks unchanged
    other[[18, 19], 1] = 0  # two of channel 1's top-10 fall out, an error of its whole scale
    assert agreement(exact[:, :1], other[:, :1]) == pytest.approx({"topk_overlap": 1.0, "max_relative_error": 0.01})
    result = agreement(exact, other)
    assert result == pytest.approx({"topk_overlap": (1.0 + 0.8) / 2, "max_relative_error": 1.0})


def test_agreement_leaves_out_silent_channels_and_rows_invalid_in_either():
    rows = np.arange(20, dtype=np.float64)
    exact = np.stack([rows, np.linspace(-10, 1, 20), rows * 1e-7], axis=1)  # channel 2 is nearly silent
    other = exact.copy()
    other[10, 0] = 8.5  # falls from channel 0's top 10 to 11th: 9 of 10 kept, an error of 1.5 on a scale of 19
    other[0, 1] += 0.1  # 1% of channel 1's scale, |-10| (its largest value is only 1)
    other[:, 2] *= 3  # ranks kept; its relative error (2) is left out: its scale is under 1% of the median's
    other[5] = np.nan  # invalid in the approximate store only
    assert agreement(exact, other) == pytest.approx({"topk_overlap": (0.9 + 1 + 1) / 3, "max_relative_error": 1.5 / 19})


def test_a_layer_mostly_silent_still_has_a_measure():
    """Over half the channels silent (mixed4e_pool_reduce with random weights): the median scale is 0."""
    exact = np.zeros((20, 3), np.float32)
    exact[:, 0] = np.arange(20)
    other = exact.copy()
    assert agreement(exact, other)["max_relative_error"] == 0.0  # was NaN, which fails every bound
    other[3, 0] += 0.19
    assert agreement(exact, other)["max_relative_error"] == pytest.approx(0.01, rel=1e-5)
