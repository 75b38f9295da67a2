"""Results: the ranked table every query returns (built by hand here; queries fill them in test_query)."""

from __future__ import annotations

import html

import numpy as np
import pytest

from pipeline.results import Results


def _results(**changes):
    fields = dict(layer="l", query="channel 1 (top 2)", by="mean", rows=np.array([3, 1]), activations=np.array([2.0, 1.0]),
                  paths=["a.jpg", "b.jpg"], labels=[0, 1], classes=["ant", "bee"], channel=1)
    return Results(**{**fields, **changes})


def test_ranks_are_the_places_in_the_list_unless_given():
    assert _results().ranks.tolist() == [1, 2] and [item["rank"] for item in _results()] == [1, 2]
    drawn = _results(ranks=np.array([7, 40]))  # samples: each image's place in the whole channel
    assert [item["rank"] for item in drawn] == [7, 40]


def test_results_compare_by_contents():
    assert _results() == _results() and _results() != _results(rows=np.array([3, 2]))
    assert _results() != _results(ranks=np.array([7, 40])) and _results() != _results(notes=["RANDOM WEIGHTS"])
    assert _results() != "not results"
    odd = _results(activations=np.array([np.nan, 1.0]))
    assert odd == odd and odd == _results(activations=np.array([np.nan, 1.0]))  # NaN equals itself here
    with pytest.raises(TypeError):
        hash(_results())  # mutable (notes are added), like a list


def test_items_carry_their_own_values_and_every_field_counts_in_equality():
    assert [item["activation"] for item in _results()] == [2.0, 1.0]
    assert [(item["row"], item["path"], item["class"]) for item in _results()] == [(3, "a.jpg", "ant"), (1, "b.jpg", "bee")]
    assert _results(channel=None, query="direction 1:1 (top 2)").to_dict()["query"] == "direction 1:1 (top 2)"
    assert "query" not in _results().to_dict()
    for changes in ({"paths": ["a.jpg", "c.jpg"]}, {"bands": ["top 1%", "top 1-10%"]}, {"peaks": [(0, 1), None]}):
        assert _results() != _results(**changes), changes
    assert _results(bands=["x", "y"]) != _results(bands=["x", "z"])


def test_the_text_table_lines_up_wide_and_combining_characters():
    """Columns are counted as a terminal shows them: a CJK character takes two, a combining accent none."""
    from pipeline.results import columns

    table = _results(paths=["狗/一.jpg", "e\u0301t\u0301e\u0301/x.jpg"], classes=["狗", "été"]).__repr__()
    head, *rows = table.splitlines()[1:]
    starts = [columns(line[:line.rindex(word)]) for line, word in zip(rows, ["狗", "été"])]
    assert starts[0] == starts[1] == columns(head[:head.index("class")])
    assert columns("狗") == 2 and columns("e\u0301") == 1 and columns("ab") == 2
    # wcwidth's counts: decomposed Hangul (as macOS names files), Thai and Devanagari signs, a zero-width space
    import unicodedata

    assert columns(unicodedata.normalize("NFD", "한국어")) == columns("한국어") == 6
    assert columns("ที่นี่") == 2 and columns("हिंदी") == 4 and columns("a\u200bb\ufeff") == 2
    assert all(line == line.rstrip() for line in table.splitlines())


def test_a_newline_in_a_name_keeps_its_row_on_one_line():
    results = _results(paths=["a\nb.jpg", "c\td.jpg"], classes=["x\ry", "bee"], query="similar to a\nb.jpg")
    lines = repr(results).splitlines()
    assert len(lines) == 4 and lines[0].startswith("l similar to a\\nb.jpg")
    assert "a\\nb.jpg" in lines[2] and "x\\ry" in lines[2] and "c\\td.jpg" in lines[3]
    assert results.to_list()[0]["path"] == "a\nb.jpg"  # the data itself (--json) keeps the name as it is


def test_the_table_heads_what_the_numbers_are():
    heads = {query: repr(_results(query=query, channel=None)).splitlines()[1].split()[1]
             for query in ("channel 1 (top 2)", "direction 1:0.5,2:0.5 (top 2)", "similar to a.jpg (row 3)")}
    assert list(heads.values()) == ["activation", "projection", "cosine"]
    assert all("activation" in item for item in _results(query="similar to a.jpg (row 3)"))  # JSON's key stays


def test_the_text_table_shows_small_and_huge_values_as_numbers_not_zeros():
    """A channel of small values (an imported probe, a nearly silent unit) printed 0.0000 for every
    image, as its zeros band does; one near 3e38 printed 39 digits."""
    table = repr(_results(activations=np.array([2.5e-7, -1.3e-9])))
    assert "0.0000" not in table and "2.5e-07" in table and "-1.3e-09" in table
    table = repr(_results(activations=np.array([2.98e38, 0.0])))
    assert "2.98e+38" in table and "0.0000" in table  # an exact zero stays as it was
    assert "1.2346" in repr(_results(activations=np.array([1.23456, 0.5])))  # activations' usual range: as before


def test_jupyters_table_of_a_long_answer_shows_its_head_and_counts_the_rest():
    n = 100_000
    long = _results(rows=np.arange(n), activations=np.linspace(1, 0, n), paths=[f"{i}.jpg" for i in range(n)],
                    labels=[0] * n, classes=["ant"] * n)
    page = long._repr_html_()  # every row made 7 MB of HTML here (22 MB at 300,000 images)
    assert len(page) < 100_000 and page.count("<tr>") == 201 and "<td>199.jpg</td>" in page
    assert "<td>200.jpg</td>" not in page and "and 99,800 more rows" in page
    assert len(repr(long).splitlines()) == n + 2 and len(long.to_list()) == n  # the text table keeps them all
    assert "more row" not in _results()._repr_html_() and _results()._repr_html_().count("<tr>") == 3


def test_json_keeps_the_statistic_and_peaks_as_y_then_x():
    got = _results(by="max", peaks=[(1, 5), None])
    data = got.to_dict()
    assert (data["by"], data["channel"]) == ("max", 1)
    assert [item["peak"] for item in data["results"]] == [[1, 5], None]  # [y, x], as the README says
    assert [line.split()[-2:] for line in repr(got).splitlines()[2:]] == [["(1,", "5)"], ["no", "peak"]]


def test_a_file_named_like_a_query_word_does_not_rename_the_column():
    table = repr(_results(query="similar to direction.jpg (row 3)", channel=None))
    assert table.splitlines()[1].split()[:2] == ["rank", "cosine"]


def test_negative_values_keep_the_four_decimals_positive_ones_have():
    from pipeline.results import value_text

    assert [value_text(v) for v in (-2.34567, 2.34567, -1234.5, -0.5)] == ["-2.3457", "2.3457", "-1234.5000", "-0.5000"]
    assert "-2.3457" in repr(_results(activations=np.array([-2.34567, -3.0])))


def test_jupyters_table_escapes_every_text_from_the_dataset():
    hostile = "<img src=x onerror=alert(1)>"
    got = _results(layer="l<1>", paths=[f"{hostile}.jpg", "b&c.jpg"], classes=["<b>ant</b>", "bee"],
                   query=f"similar to {hostile}.jpg (row 3)", channel=None, notes=[f"note about {hostile}"])
    page = got._repr_html_()
    assert "<img" not in page and "<b>ant" not in page and "l<1>" not in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") == 3  # the title, the note and the path's cell
    assert "<td>&lt;b&gt;ant&lt;/b&gt;</td>" in page and "<td>b&amp;c.jpg</td>" in page
    assert f"<p><b>note about {html.escape(hostile)}</b></p>" in page
