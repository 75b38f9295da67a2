"""The gallery's HTML (pipeline.pages) against numpy on a small imported store: links, numbers, escaping, SVG."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
import zarr
from numpy.testing import assert_allclose
from PIL import Image

import pipeline
from pipeline import stats
from pipeline.gallery import build_gallery
from pipeline.importing import import_matrix
from pipeline.pages import histogram_svg
from pipeline.render import distinct
from pipeline.selectivity import share_text
from pipeline.store import refresh_completeness

N, C, K = 36, 5, 4
CLASSES = ['a<b>', 'c&d', 'e"f']


def _matrix():
    rng = np.random.default_rng(5)
    m = rng.gamma(2.0, 1.0, size=(N, C)).astype(np.float32)
    m[:, 2] = 1.5  # a constant channel
    m[:, 3] = m[:, 0] * 2 + rng.normal(scale=0.3, size=N).astype(np.float32)  # correlates with channel 0
    m[[4, 20], :] = np.nan  # invalid rows: the pages count only usable images
    return m


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pages")
    m = _matrix()
    labels = np.arange(N) % 3
    paths = [f"{CLASSES[l]}/im'g\"{i}.png" for i, l in enumerate(labels)]
    root = tmp / "data"
    rng = np.random.default_rng(1)
    for i, p in enumerate(paths):
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / p)
    gone = int(_reference_top(m[:, 0], np.isfinite(m).all(axis=1), 1)[0])
    (root / paths[gone]).unlink()  # one image gone: a placeholder where it is shown
    import_matrix(tmp / "s.zarr", m, "feat", paths, labels, CLASSES, root=root, shard_rows=12)
    layer = pipeline.open_store(tmp / "s.zarr")["feat"]
    out = tmp / "g"
    build_gallery(layer, out, k=K, crops=False, progress=False, workers=1)
    return layer, m, labels, paths, out, gone


def _page(out, c):
    return (out / "channels" / f"{c:04d}.html").read_text(encoding="utf-8")


def _section(page, head):
    return page.split(f"<h2>{head}", 1)[1].split("<h2>", 1)[0]


def _reference_top(column, usable, k, bottom=False):
    rows = np.flatnonzero(usable)
    keys = -column[rows] if bottom else column[rows]
    return rows[np.lexsort((rows, -keys))][:k]


def _tile_paths(section):
    return [html.unescape(p.replace("/<wbr>", "/")) for p in re.findall(r"</b>(?: [^<]*)?<br>(.*?)<br><i>", section)]


def test_each_section_shows_its_own_answer_in_order(built):
    layer, m, labels, paths, out, gone = built
    usable = np.isfinite(m).all(axis=1)
    for c in (0, 1, 4):
        page = _page(out, c)
        top, bottom = _reference_top(m[:, c], usable, K), _reference_top(m[:, c], usable, K // 2, bottom=True)
        assert _tile_paths(_section(page, "Top")) == [paths[r] for r in top]
        assert _tile_paths(_section(page, "Bottom")) == [paths[r] for r in bottom]
        values = [float(v) for v in re.findall(r"<b>([^<]+)</b>", _section(page, "Top"))]
        assert_allclose(values, m[top, c], rtol=1e-3)
        samples = layer.samples(c, per_band=1)
        assert _tile_paths(_section(page, "Quantile-band samples")) == samples.paths
        assert re.findall(r"</b> (top [^<]*) \(#(\d+)\)", _section(page, "Quantile-band samples")) == [
            (html.escape(b), str(r)) for b, r in zip(samples.bands, samples.ranks)]


def test_a_missing_image_is_a_placeholder_and_the_others_link_their_own_thumbnail(built):
    layer, m, labels, paths, out, gone = built
    usable = np.isfinite(m).all(axis=1)
    checked = 0
    for c in range(C):
        top = _section(_page(out, c), "Top")
        rows = _reference_top(m[:, c], usable, K)
        srcs = [int(r) for r in re.findall(r'<img src="../img/(\d+)\.jpg"', top)]
        assert srcs == [r for r in rows if r != gone]
        assert top.count('<div class="missing">') == int(gone in rows)
        checked += gone in rows
        for r in srcs:
            assert (out / "img" / f"{r}.jpg").exists()
    assert checked
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "1 of the images shown could not be read" in index


def test_the_nav_links_the_previous_and_next_channels(built):
    _, _, _, _, out, _ = built
    for c in range(C):
        nav = _page(out, c).split("<p>", 1)[1].split("</p>", 1)[0]
        assert re.findall(r'href="(\d+)\.html">(?:← )?(\d+)', nav) == [
            (f"{n:04d}", str(n)) for n in (c - 1, c + 1) if 0 <= n < C]
        assert 'href="../index.html"' in nav


def test_the_facts_and_neighbours_are_numpys(built):
    _, m, _, _, out, _ = built
    x = m[np.isfinite(m).all(axis=1)].astype(np.float64)
    live = x.std(0) > 0
    corr = np.zeros((C, C))
    corr[np.ix_(live, live)] = np.corrcoef(x[:, live], rowvar=False)
    for c in (0, 1, 3):
        page = _page(out, c)
        facts = dict(re.findall(r"<tr><th>([^<]+)</th><td>([^<]+)</td></tr>", page))
        expected = {"mean": x[:, c].mean(), "std (population)": x[:, c].std(), "max": x[:, c].max(),
                    "median (q50)": np.quantile(x[:, c], 0.5), "q90": np.quantile(x[:, c], 0.9),
                    "q99": np.quantile(x[:, c], 0.99), "q99.9": np.quantile(x[:, c], 0.999),
                    "active (share of images &gt; 0)": (x[:, c] > 0).mean()}
        for name, value in expected.items():
            assert float(facts[name]) == pytest.approx(value, rel=1e-3), name
        assert f"<caption>over {len(x)} images</caption>" in page
        near = _section(page, "Most correlated channels")
        linked = [(int(n), float(r)) for n, r in re.findall(r'<a href="\d+\.html">(\d+)</a> \(r = (-?[\d.]+)\)', near)]
        others = [o for o in np.argsort(-corr[c], kind="stable") if o != c and live[o]]
        assert [n for n, _ in linked] == others
        assert_allclose([r for _, r in linked], corr[c, others], atol=0.006)


def test_a_constant_channel_says_so_and_draws_no_histogram(built):
    _, _, _, _, out, _ = built
    page = _page(out, 2)
    assert "The channel is 1.5 on every image: these tie, and are the first rows, not exemplars." in page
    assert "Every image has the value 1.5: no distribution to draw." in page and "<svg" not in page
    assert "none: the channel is constant over the dataset" in page
    assert "None: the channel is the same on every image." in page
    assert page.count("on every image: no image stands out") == 0  # the top's own note, said once above instead
    for c in (0, 1, 3, 4):
        other = _page(out, c)
        assert "<svg" in other and "not exemplars" not in other and "Pearson r of the spatial means" in other
    index = (out / "index.html").read_text(encoding="utf-8")
    card = re.search(r'href="channels/0002\.html"[^>]*>(.*?)</a>', index).group(1)
    assert "constant: 1.5 on every image" in card and "<img" not in card


def test_the_histogram_is_numpys_with_lines_at_the_quantiles(built):
    _, m, _, _, out, _ = built
    x = m[np.isfinite(m).all(axis=1)].astype(np.float64)
    for c in (0, 4):
        svg = _page(out, c).split("<svg", 1)[1].split("</svg>", 1)[0]
        lo, hi = x[:, c].min(), x[:, c].max()
        counts = np.histogram(x[:, c], bins=np.linspace(lo, hi, 41))[0]
        heights = np.array([float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)])
        assert_allclose(heights, 150 * np.log1p(counts) / np.log1p(counts).max(), atol=0.06)
        tops = np.array([float(y) for y in re.findall(r'<rect [^>]*y="([\d.]+)"', svg)])
        assert_allclose(tops + heights, 164, atol=0.11)  # every bar stands on the axis
        lines = [float(v) for v in re.findall(r'<line x1="([\d.]+)"', svg)]
        quantiles = np.quantile(x[:, c], [0.5, 0.9, 0.99, 0.999])
        assert_allclose(lines, 420 * (quantiles - lo) / (hi - lo), atol=0.06)
        assert f"(tallest: {counts.max():,})" in svg
        ends = re.findall(r'font-size="10"(?: text-anchor="end")?>([^<]*)</text></svg>|<text x="0" y="[\d.]+" '
                          r'font-size="10">([^<]*)</text>', svg + "</svg>")
        assert distinct([lo, hi])[0] in [e[1] for e in ends] and svg.endswith(f">{distinct([lo, hi])[1]}</text>")


def test_histogram_labels_stay_beside_their_lines():
    svg = histogram_svg([3, 1, 2, 5], [0.0, 1.0, 2.0, 3.0, 4.0], {"q50": 1.0, "q99.9": 3.9}, width=400)
    texts = re.findall(r'<text x="([\d.]+)" y="[\d.]+" font-size="10" text-anchor="(start|end)" stroke', svg)
    assert texts == [("102.0", "start"), ("388.0", "end")]  # the last near the right edge: on its left


def test_selectivity_lines_are_numpys_and_escaped(built):
    layer, m, labels, _, out, _ = built
    keep = np.isfinite(m).all(axis=1)
    x, lab = m[keep].astype(np.float64), labels[keep]
    means = np.stack([x[lab == k].mean(0) for k in range(3)])
    chance_labels = stats.shuffled_labels(labels, layer.usable)[keep]
    chance = np.stack([x[chance_labels == k].mean(0) for k in range(3)])
    share, shuffled = (means / means.sum(0)).max(0), (chance / chance.sum(0)).max(0)
    for c in (0, 1, 4):
        line = _section(_page(out, c), "Classes")
        top = [html.escape(CLASSES[k]) for k in np.argsort(-means[:, c], kind="stable")]
        assert (f"top class share {share_text(share[c])} ({share_text(shuffled[c])} with the labels shuffled)"
                in line), line
        best = int(means[:, c].argmax())
        rest = x[lab != best, c].mean()
        index = (means[best, c] - rest) / (means[best, c] + rest)
        assert f"selectivity index {index:.3f}; top classes: {', '.join(top)}</p>" in line


def test_dataset_text_is_escaped_in_captions_and_alt_text(built):
    _, m, labels, paths, out, _ = built
    for c in range(C):
        page = _page(out, c)
        assert not any(name in page for name in CLASSES) and "im'g\"" not in page
        for alt in re.findall(r'alt="([^"]*)"', page):
            assert html.unescape(alt).split(", ")[0].startswith("im'g\"")
        classes = re.findall(r"<i>([^<]*)</i>", page)
        assert classes and all(html.unescape(k) in CLASSES for k in classes)


def test_the_index_links_each_card_to_its_channel_with_its_top_images(tmp_path, built):
    layer, m, _, _, out, gone = built
    usable = np.isfinite(m).all(axis=1)
    index = (out / "index.html").read_text(encoding="utf-8")
    assert f"<h1>feat: {C} channels, {usable.sum()} images</h1>" in index
    assert f"<h2>channels (0-{C - 1})</h2>" in index and f"with its top {K} images" in index
    for c in (0, 1, 3, 4):
        card = re.search(rf'<a class="card" href="channels/{c:04d}\.html" aria-label="channel {c}">{c}<br>(.*?)</a>',
                         index).group(1)
        rows = _reference_top(m[:, c], usable, K)
        assert re.findall(r'<img src="img/(\d+)\.jpg"|class="(gone)"', card) == [
            ("", "gone") if r == gone else (str(r), "") for r in rows]
    # A larger k still shows five thumbnails a card, and samples k // 5 images a band
    build_gallery(layer, tmp_path / "g8", k=10, crops=False, progress=False, workers=1)
    index = (tmp_path / "g8" / "index.html").read_text(encoding="utf-8")
    card = re.search(r'href="channels/0000\.html"[^>]*>(.*?)</a>', index).group(1)
    assert card.count("<img") + card.count('class="gone"') == 5 and "with its top 5 images" in index
    assert '<link rel="stylesheet" href="../style.css">' in _page(tmp_path / "g8", 0)
    samples = _section(_page(tmp_path / "g8", 1), "Quantile-band samples")
    assert _tile_paths(samples) == layer.samples(1, per_band=2).paths
    assert len(_tile_paths(_section(_page(tmp_path / "g8", 1), "Bottom"))) == 5


def test_the_stores_notes_are_the_banner_and_not_repeated_under_each_section(tmp_path):
    m = _matrix()
    import_matrix(tmp_path / "s.zarr", m, "feat", [f"{i}.jpg" for i in range(N)], shard_rows=12)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r+")
    group["feat/done"][1] = False  # rows 12-23 not yet written
    refresh_completeness(group, "feat")
    layer = pipeline.open_store(tmp_path / "s.zarr")["feat"]
    build_gallery(layer, tmp_path / "g", k=3, crops=False, progress=False, workers=1)
    page = _page(tmp_path / "g", 0)
    note = layer.note()
    assert note.startswith("incomplete store: answering from 2 of 3 shards")
    assert page.count(html.escape(note)) == 1 and f'<p class="warn">{html.escape(note)}</p>' in page
    assert f"<caption>over {int(layer.usable.sum())} images</caption>" in page
    assert not set(_reference_top(m[:, 0], layer.usable, 3).tolist()) & set(range(12, 24))
    assert "No class selectivity: the images have no labels." in page


def test_each_channel_page_names_its_own_branch(tmp_path):
    """Channels at the edges of mixed4a's branches: 191 is the last of 1x1, 192 the first of 3x3."""
    from pipeline.pages import Site
    from pipeline.stats import KNOWN_BRANCHES, neighbours

    m = np.random.default_rng(3).random((10, 508), dtype=np.float32)
    import_matrix(tmp_path / "b.zarr", m, "mixed4a", [f"{i}.jpg" for i in range(10)])
    layer = pipeline.open_store(tmp_path / "b.zarr")["mixed4a"]
    edges = (0, 191, 192, 395, 396, 443, 444, 507)
    per_channel = {c: (layer.topk(c, k=2), layer.topk(c, k=1, bottom=True), layer.samples(c, per_band=1), [])
                   for c in edges}
    corr = layer.correlations()
    (tmp_path / "g" / "channels").mkdir(parents=True)
    site = Site(layer, tmp_path / "g", per_channel, {}, layer.table("mean"), corr, neighbours(corr, 5), None, False)
    for c in edges:
        site.write_channel(c)
        expected = next(name for name, (lo, hi) in KNOWN_BRANCHES["mixed4a"].items() if lo <= c < hi)
        assert f"<h1>mixed4a channel {c} <small>{expected}</small></h1>" in _page(tmp_path / "g", c)
