"""What users type: channel lists, quantile bands, directions, whole numbers (no store needed)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from pipeline.errors import QueryError
from pipeline.parsing import parse_bands, parse_channels, parse_direction, whole_number


def test_parse_channels():
    assert parse_channels("0-3,97", 508) == [0, 1, 2, 3, 97]
    assert parse_channels(" 5 ,", 508) == [5]
    for text, fragment in [("500-510", "out of range"), ("a-b", "malformed"), ("5-2", "runs backwards; write 2-5"),
                           ("", "no channels given"), ("2.5", "malformed"), (b"12", "not bytes"),
                           ([], "no channels given")]:
        with pytest.raises(QueryError, match=fragment):
            parse_channels(text, 508)
    assert parse_channels(np.array([3, 97]), 508) == [3, 97] and parse_channels(np.int64(5), 508) == [5]


def test_bands_are_exact_fractions_with_readable_labels():
    bands = parse_bands("0.1%,1%,7,zeros")
    assert bands == [("top 0.1%", Fraction(1, 1000)), ("top 0.1-1%", Fraction(1, 100)),
                     ("top 1-7%", Fraction(7, 100)), ("zeros", None)]
    for text, fragment in [("1/3%", "unknown band"), ("nan", "unknown band"), ("5%,5%", "must be above 5%"),
                           ("101%", "at most 100%"), ("", "no bands given"), ("1e9999999%", "at most 100%"),
                           ("1e-9999999%", "must be above 0%"), ("50%,zeros,zero", "zeros band is given twice"),
                           ("50%,10%", r"above 50% and at most 100% \(bands go from the top down")]:
        with pytest.raises(QueryError, match=fragment):
            parse_bands(text)


def test_directions_from_text_dicts_and_arrays():
    vector = parse_direction("3:0.5,1", 4)
    assert vector.tolist() == [0.0, 1.0, 0.0, 0.5]  # a bare channel weighs 1
    assert parse_direction({2: -1}, 4).tolist() == [0, 0, -1, 0]
    assert parse_direction(np.ones((1, 4)), 4).tolist() == [1, 1, 1, 1]
    for spec, fragment in [("", "an empty direction"), ("3:0", "a weight that is not 0"),
                           ("3:inf", "finite numbers"), ("1:1,1:2", "channel 1 is given twice"),
                           ({1: 1, "1": 2}, "channel 1 is given twice"), ({1: 0, "1": 2}, "channel 1 is given twice"),
                           ("9:1", "out of range"),
                           ("x", "malformed direction"), (np.ones(3), "needs 4 weights, not 3"),
                           (np.ones((2, 2)), "in one dimension"), (np.ones(4, complex), "4 real numbers"),
                           (["1", "2", "3", "4"], "4 real numbers"), ({1, 2}, "not a set"), (3.5, "not a float"),
                           (np.array(["1", "2", "3", "4"], dtype=object), "4 real numbers"),
                           (np.ma.masked_array([1, 2, 3, 4], mask=[0, 1, 0, 0]), "masked weights")]:
        with pytest.raises(QueryError, match=fragment):
            parse_direction(spec, 4)


def test_a_direction_from_any_array_like():
    class Series:  # what pandas.Series offers numpy
        def __array__(self, dtype=None, copy=None):
            return np.array([0, 1, 0, 2])

    assert parse_direction(Series(), 4).tolist() == [0, 1, 0, 2]
    assert parse_direction(np.array([True, False, False, True]), 4).tolist() == [1, 0, 0, 1]
    assert parse_direction(range(4), 4).tolist() == [0, 1, 2, 3]
    assert parse_direction(np.array([1, 2, 3, 4], dtype=object), 4).tolist() == [1, 2, 3, 4]


def test_a_direction_written_out_is_never_a_file_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "5").write_text("notes")  # a file named like the direction
    assert parse_direction("5", 8).tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    np.save(tmp_path / "w.npy", np.arange(8.0))
    (tmp_path / "w.npy").rename(tmp_path / "w")
    assert parse_direction("w", 8).tolist() == list(range(8))  # a file without .npy is still read
    with pytest.raises(QueryError, match=r"direction file ./5 is not a .npy file; give one array saved with numpy.save"):
        parse_direction("./5", 8)  # numpy read it as a pickle, and advised allow_pickle=True


def test_whole_numbers():
    assert whole_number("7") == 7 and whole_number(7.0) == 7 and whole_number(np.int64(3)) == 3
    for value in (2.7, "abc", True, None):
        with pytest.raises(QueryError, match="whole number"):
            whole_number(value)


def test_negative_channels_and_degenerate_band_pairs_are_refused():
    from pipeline.parsing import check_channel

    for call in (lambda: check_channel(-1, 4), lambda: parse_direction({-1: 1.0}, 4),
                 lambda: parse_channels([-1], 4)):
        with pytest.raises(QueryError, match="channel -1 is out of range"):
            call()  # -1 is no channel, not the last one
    for pairs in ([("a", 0.1), ("b", 0.1)], [("a", 0)], [("a", 0.0), ("b", 0.5)]):
        with pytest.raises(QueryError):
            parse_bands(pairs)  # an equal or zero fraction makes a band that can hold no image
    with pytest.raises(QueryError, match="at most one zeros band"):
        parse_bands([("top 50%", 0.5), ("zeros", None), ("zeros again", None)])  # would draw the zeros twice
    assert parse_bands([("top 50%", 0.5), ("zeros", None)]) == [("top 50%", 0.5), ("zeros", None)]


def test_a_zip_cut_short_or_a_file_that_only_starts_like_one_is_one_sentence(tmp_path):
    """A .npz cut short was zipfile's BadZipFile traceback; "PKjunk" was said to hold Python objects."""
    np.savez(tmp_path / "z.npz", x=np.ones(4))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "z.npz").read_bytes()[:100])
    (tmp_path / "pk.npy").write_bytes(b"PKjunkjunk")
    with pytest.raises(QueryError, match="cannot read direction file .*cut.npz"):
        parse_direction(str(tmp_path / "cut.npz"), 4)
    with pytest.raises(QueryError, match="pk.npy is not a .npy file"):
        parse_direction(str(tmp_path / "pk.npy"), 4)
