"""Ranking a column: ties, non-finite values, unusable rows, exact band edges, diversity rules."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from pipeline import ranking


def test_ranking_places_infinite_and_nan_values_and_never_an_unusable_row():
    values = np.array([np.inf, -np.inf, np.nan, 1.0, 5.0, -np.inf], dtype=np.float32)
    usable = np.array([False, True, True, True, True, True])
    assert ranking.top_rows(values, usable, 10).tolist() == [4, 3, 1, 2, 5]  # NaN as -inf; never row 0
    assert ranking.top_rows(values, usable, 10, bottom=True).tolist() == [1, 5, 3, 4, 2]
    assert ranking.top_rows(values, usable, 2, bottom=True).tolist() == [1, 5]
    assert ranking.ranked_all(values, usable).tolist() == [4, 3, 1, 2, 5]


def test_ties_go_to_the_lower_row():
    values = np.array([1.0, 2.0, 2.0, 1.0, 2.0])
    usable = np.ones(5, dtype=bool)
    assert ranking.top_rows(values, usable, 5).tolist() == [1, 2, 4, 0, 3]
    assert ranking.top_rows(values, usable, 5, bottom=True).tolist() == [0, 3, 1, 2, 4]


def test_band_edges_are_exact_and_empty_bands_are_named():
    values = np.arange(100, 0, -1, dtype=np.float32)  # rank r is row r
    usable = np.ones(100, dtype=bool)
    bands = [("top 7%", Fraction(7, 100)), ("top 7-50%", 0.5), ("zeros", None)]
    rows, labels, empty, ranks = ranking.band_samples(values, usable, bands, per_band=100, seed=0)
    assert ranks.tolist() == rows.tolist()  # rank r is row r
    assert sorted(rows[:7].tolist()) == list(range(7)) and labels.count("top 7%") == 7
    assert labels.count("top 7-50%") == 43 and empty == ["zeros"]


def test_rank_bands_leave_their_zeros_to_the_zeros_band():
    values = np.zeros(20, dtype=np.float32)
    values[[0, 5]] = [2.0, 1.0]  # 18 of 20 are 0: the 10-50% band holds zeros only
    usable = np.ones(20, dtype=bool)
    bands = [("top 10%", 0.1), ("top 10-50%", 0.5), ("zeros", None)]
    zero_only = []
    rows, labels, empty, ranks = ranking.band_samples(values, usable, bands, per_band=20, seed=0, zero_only=zero_only)
    assert len(set(rows.tolist())) == len(rows)  # no image twice
    assert list(zip(rows[:2].tolist(), labels[:2])) == [(0, "top 10%"), (5, "top 10%")]
    assert labels.count("zeros") == 18 and empty == zero_only == ["top 10-50%"]
    assert ranks[:2].tolist() == [0, 1] and sorted(ranks[2:].tolist()) == list(range(2, 20))
    # without a zeros band the rank bands keep their zeros
    rows, labels, _, _ = ranking.band_samples(values, usable, bands[:2], per_band=20, seed=0)
    assert labels.count("top 10-50%") == 8


def test_diverse_counts_what_each_rule_left_out():
    values = np.array([5.0, 4.0, 3.0, 2.0])
    usable = np.ones(4, dtype=bool)
    labels = np.array([0, 0, 1, -1])
    fingerprints = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])  # row 2 repeats row 0
    skipped = {}
    rows = ranking.diverse(values, usable, 4, False, labels, fingerprints, per_class=1, skipped=skipped)
    assert rows.tolist() == [0, 3] and skipped == {"class": 1, "duplicate": 1}


def test_diverse_compares_with_every_image_already_chosen():
    values = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    usable = np.ones(5, dtype=bool)
    labels = np.full(5, -1)
    # Row 2 repeats row 1 (the second chosen), row 3 repeats row 0; row 4 is new.
    fingerprints = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    skipped = {}
    rows = ranking.diverse(values, usable, 3, False, labels, fingerprints, skipped=skipped)
    assert rows.tolist() == [0, 1, 4] and skipped["duplicate"] == 2


def test_bands_keep_negative_rows_and_rank_zeros_between_positives_and_negatives():
    values = np.array([5, 4, 0, 0, -1, -2, -3, -4, -5, -6], dtype=np.float32)  # an import, no ReLU
    usable = np.ones(10, dtype=bool)
    bands = [("top 20%", 0.2), ("top 20-100%", 1.0), ("zeros", None)]
    zero_only = []
    rows, labels, empty, ranks = ranking.band_samples(values, usable, bands, per_band=10, seed=0, zero_only=zero_only)
    assert list(zip(rows.tolist(), labels, ranks.tolist())) == [
        (0, "top 20%", 0), (1, "top 20%", 1), *[(r, "top 20-100%", r) for r in range(4, 10)],
        (2, "zeros", 2), (3, "zeros", 3)]  # the zeros rank after the positives, before the negatives
    assert empty == zero_only == []
