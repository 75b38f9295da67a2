"""Phase two against plain numpy on generated stores: invalid rows, ties, a missing shard."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import zarr
from numpy.testing import assert_array_equal, assert_allclose

import pipeline
from conftest import ROOT, run_cli
from pipeline.errors import DamagedStoreError, LayerError, QueryError, StoreError
from pipeline.parsing import parse_bands
from pipeline.results import Results
from pipeline.importing import import_matrix
from pipeline.store import refresh_completeness

N, C, ROWS = 203, 12, 32


def _matrix(seed=0):
    rng = np.random.default_rng(seed)
    m = np.maximum(rng.normal(size=(N, C)), 0).astype(np.float32)  # ReLU-like: many exact zeros
    m[:, 3] = np.round(m[:, 3], 1)  # heavy ties
    m[[7, 50, 120], :] = np.nan  # invalid rows
    return m


@pytest.fixture
def generated(tmp_path):
    m = _matrix()
    paths = [f"c{i % 4}/img_{i:04d}.jpg" for i in range(N)]
    labels = np.arange(N) % 4
    path = tmp_path / "gen.zarr"
    import_matrix(path, m, "layer1", paths, labels, ["ant", "bee", "cat", "dog"], shard_rows=ROWS)
    return path, m, paths, labels


def _reference_top(column, usable, k, bottom=False):
    rows = np.flatnonzero(usable)
    keys = -column[rows] if bottom else column[rows]
    order = np.lexsort((rows, -keys))  # value first, then lower row
    return rows[order][:k]


@pytest.mark.parametrize("channel", [0, 3, 11])
@pytest.mark.parametrize("bottom", [False, True])
@pytest.mark.parametrize("k", [1, 10, 500])
def test_topk_equals_numpy(generated, channel, bottom, k):
    path, m, paths, labels = generated
    usable = np.isfinite(m).all(axis=1)
    result = pipeline.open_store(path)["layer1"].topk(channel, k=k, bottom=bottom)
    expected = _reference_top(m[:, channel], usable, k, bottom)
    assert_array_equal(result.rows, expected)
    assert_allclose(result.activations, m[expected, channel])
    assert result.paths == [paths[r] for r in expected]
    assert len(result) == min(k, usable.sum())  # asking for more returns all valid ones


def test_missing_shard_is_excluded_and_reported(generated):
    path, m, _, _ = generated
    group = zarr.open_group(str(path), mode="r+")
    group["layer1/done"][2] = False  # rows 64-95 still being written
    refresh_completeness(group, "layer1")
    layer = pipeline.open_store(path)["layer1"]
    usable = np.isfinite(m).all(axis=1)
    usable[64:96] = False
    result = layer.topk(5, k=300)
    assert_array_equal(result.rows, _reference_top(m[:, 5], usable, 300))
    assert "answering from 6 of 7 shards" in result.note and f"{usable.sum()} of {N}" in result.note


def test_direction_equals_dot_product(generated, tmp_path):
    path, m, _, _ = generated
    usable = np.isfinite(m).all(axis=1)
    layer = pipeline.open_store(path)["layer1"]
    w = np.zeros(C)
    w[[2, 9]] = [0.7, 0.3]
    got = layer.direction("2:0.7,9:0.3", k=15)
    projection = np.nan_to_num(m.astype(np.float64)) @ w
    assert_array_equal(got.rows, _reference_top(projection, usable, 15))
    dense = np.random.default_rng(1).normal(size=C)
    np.save(tmp_path / "v.npy", dense)
    got = layer.direction(str(tmp_path / "v.npy"), k=15, bottom=True)
    assert_array_equal(got.rows, _reference_top(np.nan_to_num(m.astype(np.float64)) @ dense, usable, 15, True))


def test_similar_equals_cosine(generated):
    path, m, paths, _ = generated
    usable = np.isfinite(m).all(axis=1)
    clean = np.nan_to_num(m.astype(np.float64))
    norms = np.linalg.norm(clean, axis=1)
    cosine = clean @ clean[10] / np.where(norms > 0, norms, 1) / norms[10]
    usable[10] = False
    layer = pipeline.open_store(path)["layer1"]
    for image in (10, paths[10], "./" + paths[10]):  # "./x" names the stored "x"
        got = layer.similar(image, k=8)
        assert_array_equal(got.rows, _reference_top(cosine, usable, 8))
        assert_allclose(got.activations, cosine[got.rows])


def test_samples_come_from_their_rank_bands(generated):
    path, m, _, _ = generated
    usable = np.isfinite(m).all(axis=1)
    column = m[:, 1]
    order = _reference_top(column, usable, N)
    n = order.size
    got = pipeline.open_store(path)["layer1"].samples(1, bands="1%,10%,50%,zeros", per_band=4, seed=3)
    bands = {"top 1%": set(order[: int(np.ceil(n * 0.01))]),
             "top 1-10%": set(order[int(np.ceil(n * 0.01)): int(np.ceil(n * 0.1))]),
             "top 10-50%": set(order[int(np.ceil(n * 0.1)): int(np.ceil(n * 0.5))]),
             "zeros": set(np.flatnonzero(usable & (column == 0)))}
    assert set(got.bands) == set(bands)
    for row, band in zip(got.rows, got.bands):
        assert row in bands[band] and (band == "zeros") == (column[row] == 0)  # zeros only there
    assert got.bands.count("zeros") == 4 and got.bands.count("top 1%") == len(bands["top 1%"])
    again = pipeline.open_store(path)["layer1"].samples(1, bands="1%,10%,50%,zeros", per_band=4, seed=3)
    assert_array_equal(again.rows, got.rows)


def _ranked_store(tmp_path, n, name="ranked.zarr"):
    """n images whose channel 0 is n, n-1, ..., 1: rank r is row r."""
    m = np.stack([np.arange(n, 0, -1), np.zeros(n)], axis=1).astype(np.float32)
    path = tmp_path / name
    import_matrix(path, m, "layer1", [f"img_{i:04d}.jpg" for i in range(n)], shard_rows=16)
    return pipeline.open_store(path)["layer1"]


@pytest.mark.parametrize("n", [1, 3, 10, 40, 100, 1000])
@pytest.mark.parametrize("bands", ["0.1%,1%,10%,50%", "7%,14%,28%,57%", "17%,34%,55%,56%,68%,81%"])
def test_band_edges_are_exact_at_every_size(tmp_path, n, bands):
    """Rank r is in band p-q when p <= r/n < q, in exact arithmetic (7% of 100 is 7 images)."""
    from fractions import Fraction

    layer = _ranked_store(tmp_path, n)
    got = layer.samples(0, bands=bands, per_band=n)
    edges = [Fraction(0)] + [Fraction(b.rstrip("%")) / 100 for b in bands.split(",")]
    expected = {}
    for (label, _), lo, hi in zip(parse_bands(bands), edges, edges[1:]):
        expected[label] = [r for r in range(n) if lo <= Fraction(r, n) < hi]
    for label, rows in expected.items():
        assert [r for r, b in zip(got.rows.tolist(), got.bands) if b == label] == rows, label
    empty = [label for label, rows in expected.items() if not rows]
    assert (f"no image in {', '.join(empty)}" in got.note) == bool(empty)


def test_band_sizes_at_a_hundred_images(tmp_path):
    layer = _ranked_store(tmp_path, 100)
    got = layer.samples(0, bands="7%,50%", per_band=100)
    assert got.bands.count("top 7%") == 7 and got.bands.count("top 7-50%") == 43
    # the rank shown is the image's place in the channel (rank r is row r here), not in the list
    few = layer.samples(0, bands="7%,50%", per_band=3, seed=1)
    assert [item["rank"] for item in few.to_list()] == (few.rows + 1).tolist() and few.rows.tolist() != [0, 1, 2]
    as_floats = layer.samples(0, bands=[("top 7%", 0.07), ("top 7-50%", 0.5)], per_band=100)  # the API's form
    assert as_floats.bands == got.bands
    tiny = _ranked_store(tmp_path, 3, "tiny.zarr").samples(0, per_band=3)
    # rank 0 (0 < 0.1%) and rank 1 (1/3 in 10-50%); rank 2 (2/3) is in no band, nor in zeros
    assert list(zip(tiny.rows.tolist(), tiny.bands)) == [(0, "top 0.1%"), (1, "top 10-50%")]
    assert "no image in top 0.1-1%, top 1-10%, zeros (of 3 usable images)" in tiny.note
    with pytest.raises(QueryError, match="unknown band"):
        parse_bands("1/3%")


def test_flat_maps_have_no_peak(small_store):
    """A map with max == mean (all zero after the ReLU) stores argmax 0, which is no peak."""
    layer = pipeline.open_store(small_store)["mixed4a"]
    flat = np.asarray(layer.group["max"][:]) == np.asarray(layer.group["mean"][:])
    channel = int(np.argmax(flat.sum(axis=0)))
    assert flat[:, channel].any()  # random weights leave some channels all zero on some images
    got = layer.topk(channel, k=layer.store.n, by="max")
    for row, peak in zip(got.rows, got.peaks):
        assert (peak is None) == bool(flat[row, channel])
    items = got.to_list()
    assert all((item["peak"] is None) == bool(flat[row, channel]) for item, row in zip(items, got.rows))
    assert ("no peak" in repr(got)) == bool(flat[got.rows, channel].any())


def test_similar_to_an_all_zero_image_is_refused(tmp_path):
    m = np.array([[0, 0], [1, 2], [2, 1]], dtype=np.float32)
    import_matrix(tmp_path / "z.zarr", m, "layer1", ["a.jpg", "b.jpg", "c.jpg"])
    layer = pipeline.open_store(tmp_path / "z.zarr")["layer1"]
    with pytest.raises(QueryError, match="every channel 0"):
        layer.similar("a.jpg")
    assert layer.similar("b.jpg", k=1).paths == ["c.jpg"]


def test_direction_on_an_incomplete_store_warns_nothing(generated, recwarn):
    path, m, _, _ = generated
    group = zarr.open_group(str(path), mode="r+")
    group["layer1/done"][1] = False
    group["layer1/mean"][32:64] = np.inf  # anything may be there before a shard is done
    refresh_completeness(group, "layer1")
    for weights in ("0:1,3:-2", ",".join(f"{c}:1" for c in range(C))):  # column and block paths
        got = pipeline.open_store(path)["layer1"].direction(weights, k=5)
        assert not set(got.rows.tolist()) & set(range(32, 64))
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_diverse_caps_classes_and_skips_duplicates(generated, tmp_path):
    path, m, paths, labels = generated
    layer = pipeline.open_store(path)["layer1"]
    got = layer.topk(0, k=6, diverse=True, per_class=1)
    assert sorted(got.labels) == [0, 1, 2, 3]  # four classes, one each: no more can be found
    usable = int(np.isfinite(m).all(axis=1).sum())
    assert f"only 4 images pass the diversity rules; left out: {usable - 4} over 1 a class" in got.note
    assert "diversity" not in layer.topk(0, k=4, diverse=True, per_class=1).note
    import_matrix(tmp_path / "one.zarr", m[:20], "layer1", paths[:20], np.zeros(20, dtype=int), ["a"])
    one = pipeline.open_store(tmp_path / "one.zarr")["layer1"].topk(0, k=3, diverse=True, per_class=1)
    assert "only 1 image passes the diversity rules" in one.note  # one class
    # A near-duplicate (same vector, other class) of the top image never shows twice.
    dup = m.copy()
    top = int(_reference_top(m[:, 0], np.isfinite(m).all(axis=1), 1)[0])
    dup[top + 1] = dup[top] * 0.999
    import_matrix(tmp_path / "dup.zarr", dup, "layer1", paths, np.arange(N) % 50,
                  shard_rows=ROWS)
    rows = pipeline.open_store(tmp_path / "dup.zarr")["layer1"].topk(0, k=5, diverse=True).rows
    assert top in rows and top + 1 not in rows
    # Without labels only near-duplicates are left out, and the note says so (no word of --per-class).
    twins = np.repeat(m[:1] + 1, 6, axis=0)
    import_matrix(tmp_path / "twins.zarr", twins, "layer1", [f"{i}.jpg" for i in range(6)])
    got = pipeline.open_store(tmp_path / "twins.zarr")["layer1"].topk(0, k=3, diverse=True)
    assert len(got) == 1 and "left out: 5 near-duplicates of an image shown" in got.note and "per-class" not in got.note


def test_results_convert_and_render(generated):
    path, _, _, _ = generated
    result = pipeline.open_store(path)["layer1"].topk(2, k=3)
    items = result.to_list()
    assert [i["rank"] for i in items] == [1, 2, 3]
    assert set(items[0]) == {"rank", "row", "path", "label", "class", "activation"}
    assert items[0]["class"] == ["ant", "bee", "cat", "dog"][items[0]["label"]]
    assert "<table>" in result._repr_html_() and items[0]["path"] in repr(result)


def test_errors(generated, tmp_path):
    path, _, _, _ = generated
    store = pipeline.open_store(path)
    with pytest.raises(LayerError, match="known layers: layer1"):
        store["mixed4a"]
    with pytest.raises(QueryError, match="out of range"):
        store["layer1"].topk(C)
    with pytest.raises(QueryError, match="at least 1"):
        store["layer1"].topk(0, k=0)
    import_matrix(tmp_path / "empty.zarr", np.zeros((0, 2), dtype=np.float32), "feat", [])
    with pytest.raises(QueryError, match="row 0 is out of range; the store has no images"):
        pipeline.open_store(tmp_path / "empty.zarr")["feat"].similar(0)
    with pytest.raises(QueryError, match="no spatial max"):
        store["layer1"].topk(0, by="max")
    with pytest.raises(QueryError, match="malformed direction"):
        store["layer1"].direction("3:")
    with pytest.raises(QueryError, match="channel 99 is out of range"):
        store["layer1"].direction("99:1")
    for spec, fragment in [("", "an empty direction"), ("3:0", r"a weight that is not 0 \(got '3:0'\)"),
                           ("3:nan", "finite numbers \\(channel 3 has nan\\)"), ("3:1,3:2", "channel 3 is given twice"),
                           ({3: 1, "3": 2}, "channel 3 is given twice")]:
        with pytest.raises(QueryError, match=fragment):
            store["layer1"].direction(spec)
    assert store["layer1"].direction("3").rows.tolist() == store["layer1"].topk(3).rows.tolist()  # a bare channel weighs 1
    np.save(tmp_path / "words.npy", np.array(["a", "b"]))
    np.savez(tmp_path / "pair.npz", x=np.ones(C))
    for name, said in (("words.npy", "one numeric array"), ("pair.npz", "archive of several arrays")):
        with pytest.raises(QueryError, match=said):
            store["layer1"].direction(str(tmp_path / name))
    with pytest.raises(QueryError, match="per_band must be at least 1"):
        store["layer1"].samples(0, per_band=0)
    with pytest.raises(QueryError, match="unknown band"):
        parse_bands("1%,lots")
    with pytest.raises(StoreError, match="no store"):
        pipeline.open_store(tmp_path / "absent")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError):
        pipeline.open_store(tmp_path / "plain")
    zarr.open_group(str(path), mode="r+").attrs["format_version"] = 99
    with pytest.raises(StoreError, match="newer than this tool"):
        pipeline.open_store(path)


def test_cli_topk_json_and_table(small_store):
    proc = run_cli("topk", "--store", small_store, "--layer", "mixed4a", "--channel", "97", "-k", "4", "--json")
    data = json.loads(proc.stdout)
    assert set(data) == {"layer", "channel", "by", "results"} and data["channel"] == 97
    assert [r["rank"] for r in data["results"]] == [1, 2, 3, 4]
    assert "RANDOM WEIGHTS" in proc.stderr
    table = run_cli("topk", "--store", small_store, "--channel", "97", "-k", "4", "--by", "max")
    assert "peak (y, x)" in table.stdout and table.stdout.count("RANDOM WEIGHTS") == 1
    assert "RANDOM WEIGHTS" not in table.stderr  # said once, in the table


@pytest.mark.parametrize("args, fragment", [
    (["topk", "--store", "NOPE", "-c", "1"], "no store at"),
    (["topk", "--store", "STORE", "-c", "9999"], "out of range"),
    (["topk", "--store", "STORE", "-c", "1", "-k", "0"], "at least 1"),
    (["topk", "--store", "STORE", "-c", "1", "--layer", "mixed9"], "unknown layer"),
    (["topk", "--store", "STORE", "--direction", "1:x"], "malformed direction"),
    (["topk", "--store", "STORE", "--direction", "1:1", "--diverse"], "--diverse is for --channel"),
    (["topk", "--store", "STORE", "-c", "1", "--per-class", "1"], "--per-class limits --diverse"),
    (["samples", "--store", "STORE", "-c", "1", "--bands", "1%,many"], "unknown band"),
    (["similar", "--store", "STORE", "-i", "nope.jpg"], "not an image of this store"),
])
def test_cli_errors_are_one_sentence(small_store, tmp_path, args, fragment):
    args = [str(tmp_path / "absent") if a == "NOPE" else str(small_store) if a == "STORE" else a for a in args]
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and fragment in proc.stderr
    assert proc.stdout == ""


def test_queries_never_import_torch(small_store):
    code = f"""
import sys
sys.argv = ["exemplars", "topk", "--store", {str(small_store)!r}, "-c", "3", "--json"]
import pipeline
from pipeline.cli import app
try:
    app()
except SystemExit:
    pass
s = pipeline.open_store({str(small_store)!r})["mixed4a"]
s.topk(1); s.samples(1); s.direction("1:1,2:1"); s.similar(0)
assert "torch" not in sys.modules, "torch was imported"
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_import_cli_round_trip(tmp_path):
    m = _matrix(2)
    np.save(tmp_path / "m.npy", m)
    np.save(tmp_path / "labels.npy", np.arange(N) % 4)
    (tmp_path / "paths.txt").write_text("\n".join(f"x/{i}.jpg" for i in range(N)))
    proc = run_cli("import", tmp_path / "m.npy", "--store", tmp_path / "i.zarr", "--layer", "probe",
                   "--paths", tmp_path / "paths.txt", "--labels", tmp_path / "labels.npy", "--shard-rows", "50")
    assert f"warning: 3 of {N} rows are invalid" in proc.stderr
    data = json.loads(run_cli("topk", "--store", tmp_path / "i.zarr", "--layer", "probe", "-c", "4",
                              "-k", "5", "--json").stdout)
    expected = _reference_top(m[:, 4], np.isfinite(m).all(axis=1), 5)
    assert [r["row"] for r in data["results"]] == expected.tolist()
    info = run_cli("info", "--store", tmp_path / "i.zarr").stdout
    assert "probe" in info and "invalid: 3" in info
    assert "invalid    row 7 x/7.jpg: non-finite values" in info and "precision" not in info  # an import: unknown
    assert f"probe        {C} channels, no spatial maps," in info and "layout: imported;" in info and "{" not in info


def test_api_arguments_are_checked_like_the_cli(generated):
    path, m, _, _ = generated
    layer = pipeline.open_store(path)["layer1"]
    for bad in (2.7, "abc", True, None):
        with pytest.raises(QueryError, match="whole number"):
            layer.topk(bad)
    with pytest.raises(QueryError, match="k must be a whole number"):
        layer.topk(1, k="x")
    assert layer.topk(np.int64(3), k=2.0).rows.tolist() == layer.topk(3, k=2).rows.tolist()
    weights = [0.0] * C
    weights[4] = 1.0
    assert layer.direction(weights, k=5).rows.tolist() == layer.topk(4, k=5).rows.tolist()
    with pytest.raises(QueryError, match="one dimension"):
        layer.direction(np.ones((2, C // 2)))
    row = np.zeros((1, C))
    row[0, 4] = 1
    assert layer.direction(row, k=5).rows.tolist() == layer.topk(4, k=5).rows.tolist()  # (1, C) is a vector
    assert len(layer.samples(4, per_band="2")) > 0
    assert layer.topk("4.0", k=3).rows.tolist() == layer.topk(4, k=3).rows.tolist()
    assert layer.samples("4.0").rows.tolist() == layer.samples(4).rows.tolist()
    for call, fragment in [(lambda: layer.topk(4, bottom="no"), "bottom must be True or False"),
                           (lambda: layer.topk(4, diverse=1), "diverse must be True or False"),
                           (lambda: layer.direction("4", bottom=None), "bottom must be True or False"),
                           (lambda: layer.samples(4, seed=-1), "seed must be 0 or more"),
                           (lambda: layer.samples(4, seed=1.5), "seed must be a whole number")]:
        with pytest.raises(QueryError, match=fragment):
            call()
    with pytest.raises(QueryError, match="projections overflow float64"):
        layer.direction({0: 1e308, 1: 1e308})
    assert layer.direction("4:1,", k=3).rows.tolist() == layer.topk(4, k=3).rows.tolist()
    with pytest.raises(QueryError, match="not an image of this store"):
        layer.similar("²")  # a digit to str.isdigit, not to int()
    with pytest.raises(QueryError, match="^'' is not an image of this store"):
        layer.similar("")  # said " is not an image", the name missing from the sentence


def test_short_answers_and_constant_channels_are_noted_each_on_a_line(tmp_path):
    layer = _ranked_store(tmp_path, 5)  # channel 0 ranks 5..1, channel 1 is 0 everywhere
    got = layer.topk(0, k=8)
    assert len(got) == 5 and "5 images, not 8: the store has no more to rank" in got.notes
    assert not any("stands out" in n for n in got.notes)
    flat = layer.topk(1, k=3)
    assert flat.notes == ["channel 1 is 0 on every image: no image stands out, so these are not exemplars"]
    assert (flat.ties, flat.ties_note, got.ties) == ("constant", flat.notes[0], "")
    assert repr(flat).splitlines()[1] == flat.notes[0]  # under the title, a line of its own
    assert any("stands out" in n for n in layer.samples(1).notes)
    assert layer.topk(0, k=5).notes == [] and layer.topk(0, k=2).notes == []
    near = layer.similar(0, k=10)
    assert len(near) == 4 and "4 images, not 10: the store has no more to rank" in near.notes
    two = Results("l", "q", "mean", np.array([1]), np.array([1.0]), ["a"], [0], [""], notes=["one; a", "two"])
    assert two.note == "one; a; two" and repr(two).splitlines()[1:3] == ["one; a", "two"]


def test_the_python_api_checks_what_the_cli_would(generated):
    path, m, _, _ = generated
    store = pipeline.open_store(path)
    layer = store["layer1"]
    # projection takes a direction as direction does, and refuses the wrong length (it summed the first 4)
    assert_array_equal(layer.projection({2: 1.0})[[0, 1]], m[[0, 1], 2].astype(np.float64))
    for vector, fragment in [(np.ones(4), f"needs {C} weights, not 4"), (np.ones(C + 1), f"needs {C} weights"),
                             ("2:1,x", "malformed direction"), ({0: "a"}, "must be a number")]:
        with pytest.raises(QueryError, match=fragment):
            layer.projection(vector)
    # samples: bands as a list of strings, the same draw as the text
    assert_array_equal(layer.samples(4, bands=["1%", "10%"]).rows, layer.samples(4, bands="1%,10%").rows)
    for bands in ([("top 1%", 2.0)], [("top 1%",)], 5, [], [1, 2], [("all", True)], [("a", 0.5), ("b", 0.1)],
                  [("a", 0.1), ("a", 0.5)]):
        with pytest.raises(QueryError, match="bands must be text|bands given as .label, fraction. pairs need"):
            layer.samples(4, bands=bands)
    with pytest.raises(QueryError, match="out of range; the store has rows 0-202"):
        layer.flat([N], 0)  # rows are the store's to check (tests/test_catalog.py)
    assert store.paths([]) == [] and store.labels(np.array([1, 2])).tolist() == [1, 2]
    # errors name the keyword arguments
    for call, fragment in [(lambda: layer.topk(4, by="MAX"), "by must be mean or max, not 'MAX'"),
                           (lambda: layer.topk(4, diverse=True, per_class=0), "per_class must be at least 1"),
                           (lambda: layer.samples(4, per_band=0), "per_band must be at least 1")]:
        with pytest.raises(QueryError, match=fragment):
            call()


def test_results_compare_by_contents_and_say_their_direction(generated):
    path, _, _, _ = generated
    layer = pipeline.open_store(path)["layer1"]
    assert layer.topk(4, k=3) == layer.topk(4, k=3) and layer.topk(4, k=3) != layer.topk(5, k=3)
    assert layer.topk(4, k=3).ranks.tolist() == [1, 2, 3]  # filled for every query, not only samples
    assert layer.direction({2: 0.7, 9: 0.3}).query == "direction 2:0.7,9:0.3 (top 10)"
    dense = np.arange(1, C + 1, dtype=float)
    assert layer.direction(dense).query == f"direction of {C} weights, largest 8:9,9:10,10:11,11:12 (top 10)"
    for method in (layer.topk, layer.samples, layer.direction, layer.similar, type(layer.topk(4))):
        assert method.__doc__ and len(method.__doc__) > 60


def test_a_column_read_by_mean_is_not_served_for_max(tmp_path):
    n = 20
    mean = np.stack([np.arange(n), np.ones(n)], axis=1).astype(np.float32)
    import_matrix(tmp_path / "mm.zarr", mean, "layer1", [f"{i}.jpg" for i in range(n)], max_matrix=mean[::-1].copy())
    layer = pipeline.open_store(tmp_path / "mm.zarr")["layer1"]
    assert layer.topk(0, k=3).rows.tolist() == [19, 18, 17]
    by_max = layer.topk(0, k=3, by="max")  # the same channel, the other statistic
    assert by_max.rows.tolist() == [0, 1, 2] and by_max.activations.tolist() == [19.0, 18.0, 17.0]


def test_diverse_bottom_ranks_the_bottom_and_says_nothing_of_a_short_store(generated):
    path, m, _, _ = generated
    layer = pipeline.open_store(path)["layer1"]
    usable = np.isfinite(m).all(axis=1)
    got = layer.topk(0, k=4, bottom=True, diverse=True, per_class=1)
    assert len(got) == 4 and (got.activations == m[usable, 0].min()).all()
    assert sorted(got.labels) == [0, 1, 2, 3]
    short = layer.topk(0, k=6, diverse=True, per_class=1)  # the diversity rules cut it, not the store
    assert len(short) == 4 and "no more to rank" not in short.note


def test_similar_refuses_an_image_not_usable(generated):
    path, m, _, _ = generated
    group = zarr.open_group(str(path), mode="r+")
    group["layer1/done"][0] = False  # rows 0-31 still being written: their values are not answers yet
    group["images/valid"][10] = False  # as a row reads before its shard is written (validity comes with it)
    refresh_completeness(group, "layer1")
    layer = pipeline.open_store(path)["layer1"]
    # It said "invalid or not yet computed" of both, leaving the user to guess whether a rerun helps
    with pytest.raises(QueryError, match=r"image 10 \(row 10\) is not yet computed in layer layer1: its shard 0 is "
                                         "unfinished \\(rerun exemplars activations"):
        layer.similar(10)
    with pytest.raises(QueryError, match=r"image 50 \(row 50\) is invalid in this store \("):
        layer.similar(50)


def test_a_direction_by_columns_never_ranks_an_unfinished_shard(generated):
    path, m, _, _ = generated
    group = zarr.open_group(str(path), mode="r+")
    group["layer1/done"][1] = False
    group["layer1/mean"][32:64] = np.inf  # what an unfinished shard may hold
    refresh_completeness(group, "layer1")
    got = pipeline.open_store(path)["layer1"].direction("0:1", k=5)  # one column, read whole
    assert not set(got.rows.tolist()) & set(range(32, 64))


def test_ties_notes_count_only_usable_rows_and_only_rows_left_out(tmp_path):
    m = np.zeros((40, 2), dtype=np.float32)
    m[:, 0] = np.arange(40, 0, -1)
    m[1, 0] = 40  # rows 0 and 1 tie at the top, and both are shown
    import_matrix(tmp_path / "t.zarr", m, "layer1", [f"{i}.jpg" for i in range(40)], shard_rows=16)
    both = pipeline.open_store(tmp_path / "t.zarr")["layer1"].topk(0, k=2)
    assert both.rows.tolist() == [0, 1] and (both.ties, both.notes) == ("", [])
    one = pipeline.open_store(tmp_path / "t.zarr")["layer1"].topk(0, k=1)  # a single answer is noted too
    assert one.notes == ["2 images tie at 40: this is the first of them by row, not an exemplar"]
    assert pipeline.open_store(tmp_path / "t.zarr")["layer1"].topk(1, k=1).ties == "constant"
    assert pipeline.open_store(tmp_path / "t.zarr")["layer1"].topk(0, k=1, bottom=True).notes == []
    group = zarr.open_group(str(tmp_path / "t.zarr"), mode="r+")
    group["layer1/done"][0] = False  # rows 0-15 unfinished, still 0 in channel 1
    refresh_completeness(group, "layer1")
    assert pipeline.open_store(tmp_path / "t.zarr")["layer1"].topk(1, k=3).ties == "constant"


def test_a_direction_is_named_by_its_largest_weights_whatever_their_sign(generated):
    path, _, _, _ = generated
    dense = np.arange(1, C + 1, dtype=float)
    dense[0] = -100
    query = pipeline.open_store(path)["layer1"].direction(dense).query
    assert query == f"direction of {C} weights, largest 0:-100,9:10,10:11,11:12 (top 10)"


def test_peaks_are_row_major_y_then_x(small_store):
    layer = pipeline.open_store(small_store)["mixed4a"]
    height, width = layer.spatial_shape
    argmax = np.asarray(layer.group["argmax"][:, 5])
    rows = np.flatnonzero(layer.usable & (argmax // width != argmax % width))[:4]
    assert rows.size
    assert layer.peaks(rows, 5) == [(int(a) // width, int(a) % width) for a in argmax[rows]]


def test_the_usable_mask_is_read_only_and_a_damaged_layer_still_has_a_repr(generated):
    path, m, _, labels = generated
    store = pipeline.open_store(path)
    layer = store["layer1"]
    before = layer.topk(0, k=5).rows.tolist()
    mask = layer.usable
    with pytest.raises(ValueError, match="read-only"):
        mask &= labels == 1  # it narrowed every later query to class 1, silently
    with pytest.raises(ValueError, match="read-only"):
        store.valid[0] = False
    assert layer.topk(0, k=5).rows.tolist() == before
    for shard in (path / "layer1" / "mean" / "c" / "1").iterdir():  # a done shard's file lost
        shard.unlink()
    damaged = pipeline.open_store(path)["layer1"]
    assert repr(damaged) == "<layer layer1: 12 channels, damaged: a query says how>"
    with pytest.raises(DamagedStoreError):
        damaged.topk(0)


def test_progress_is_true_false_or_a_function(generated, capsys):
    path, m, _, _ = generated
    layer = pipeline.open_store(path)["layer1"]
    expected = layer.similar(0, k=3)
    for progress in (True, False, None, np.True_, lambda it, total: it):
        assert layer.similar(0, k=3, progress=progress) == expected  # True was called: a raw TypeError
        assert layer.direction(np.ones(C), k=3, progress=progress) == layer.direction(np.ones(C), k=3)
    for bad in ("yes", 1):
        with pytest.raises(QueryError, match="progress must be True, False or a function"):
            layer.projection({0: 1}, progress=bad)


def test_a_layer_opens_each_of_its_arrays_once(generated, monkeypatch):
    """Each opening parses the array's metadata: a gallery of mixed4a opened them 2,064 times."""
    path, m, _, _ = generated
    layer = pipeline.open_store(path)["layer1"]

    def queries(channel):
        return (layer.topk(channel, k=3), layer.topk(channel, k=3, bottom=True), layer.samples(channel, per_band=2))

    queries(0)  # what a layer opens once: its arrays, the store's images, the damage checks
    opened = []
    getitem = zarr.Group.__getitem__
    monkeypatch.setattr(zarr.Group, "__getitem__", lambda group, name: opened.append(name) or getitem(group, name))
    for channel in range(1, C):
        top, _, _ = queries(channel)
    assert opened == []
    assert top.rows.tolist() == _reference_top(m[:, C - 1], ~np.isnan(m[:, C - 1]), 3).tolist()


def test_a_column_is_read_only_so_no_caller_changes_what_later_queries_rank(generated):
    path, m, _, _ = generated
    layer = pipeline.open_store(path)["layer1"]
    usable = np.isfinite(m).all(axis=1)
    column = layer.column(0)
    assert_array_equal(column, m[:, 0])
    with pytest.raises(ValueError, match="read-only"):
        column *= -1  # the cached column is the one topk, samples and bottom-k rank next
    assert_array_equal(layer.topk(0, k=5).rows, _reference_top(m[:, 0], usable, 5))


def test_only_by_max_gives_peaks(small_store):
    """The README: with --by max each result has the peak's grid position; by the mean none has."""
    layer = pipeline.open_store(small_store)["mixed4a"]
    by_mean = layer.topk(5, k=3)
    assert by_mean.peaks is None and "peak" not in by_mean.to_list()[0] and "peak (y, x)" not in repr(by_mean)
    by_max = layer.topk(5, k=3, by="max")
    assert by_max.peaks == layer.crop_peaks(by_max.rows, 5) and "peak" in by_max.to_list()[0]


def test_a_store_smaller_than_k_is_said_so_and_not_blamed_on_diversity_or_ties(tmp_path):
    m = np.zeros((6, 7), dtype=np.float32)
    m[:, :6] = np.eye(6) * 5 + np.random.default_rng(4).random((6, 6))  # six images alike in nothing
    m[[0, 3], 6] = 2.0
    import_matrix(tmp_path / "d.zarr", m, "layer1", [f"{i}.jpg" for i in range(6)], np.arange(6), list("abcdef"))
    layer = pipeline.open_store(tmp_path / "d.zarr")["layer1"]
    got = layer.topk(0, k=10, diverse=True)  # six classes of one image, none alike: every image passes
    assert sorted(got.rows.tolist()) == list(range(6))
    assert got.notes == ["6 images, not 10: the store has no more to rank"]
    # samples are drawn, not the first rows: a band of equal values is no "first of them by row"
    zeros = layer.samples(6, bands="zeros", per_band=2, seed=1)
    assert (zeros.activations == 0).all() and len(zeros) == 2
    assert zeros.ties == "" and not any("tie at" in note for note in zeros.notes)


def test_a_band_of_zeros_is_said_to_be_shown_under_zeros_not_to_be_empty(tmp_path):
    m = np.zeros((100, 2), dtype=np.float32)
    m[:5, 0] = [5, 4, 3, 2, 1]  # five images above 0, ninety-five at 0
    import_matrix(tmp_path / "z.zarr", m, "layer1", [f"{i}.jpg" for i in range(100)])
    got = pipeline.open_store(tmp_path / "z.zarr")["layer1"].samples(0, per_band=3)
    # rank 0 is the top 0.1%, ranks 1-9 the 1-10% (4 above 0), ranks 10-49 the 10-50% (all 0)
    assert got.notes == ["no image in top 0.1-1% (of 100 usable images)",
                         "top 10-50%: only images exactly 0, shown under zeros"]
    assert got.bands == ["top 0.1%"] + ["top 1-10%"] * 3 + ["zeros"] * 3
    assert (got.activations[4:] == 0).all() and got.rows[0] == 0
