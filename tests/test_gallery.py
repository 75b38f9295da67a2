"""The gallery: built from a store, opened in a real headless Chromium from the file system.

Chromium and chromedriver come from Debian (``.ci/run`` installs them); where
they are missing the browser tests fail with a message saying so.
"""

from __future__ import annotations

import html
import re
import shutil

import numpy as np
import pytest

import pipeline
from conftest import make_folder, make_image, run_cli
from pipeline.extract import extract
from pipeline.errors import OutputError
from pipeline.gallery import build_gallery
from pipeline.selectivity import share_text

HOSTILE = "<img src=x onerror=alert(1)>.jpg"


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory):
    """A store whose dataset holds a hostile file name and later loses a file."""
    root = tmp_path_factory.mktemp("hostile")
    data = make_folder(root / "data", classes=("a<b>", "c&d"), per_class=5, seed=3)
    make_image(np.random.default_rng(9), 300, 260).save(data / "a<b>" / HOSTILE)
    store = root / "s.zarr"
    extract(data, store, weights="random", workers=0, shard_rows=8, progress=False)
    return store, data


@pytest.fixture(scope="module")
def site(hostile_store, tmp_path_factory):
    store, data = hostile_store
    layer = pipeline.open_store(store)["mixed4a"]
    gone = layer.topk(0, k=1).paths[0]
    (data / gone).unlink()  # disappeared since the store was made: a placeholder, not a crash
    out = tmp_path_factory.mktemp("site") / "site"
    summary = build_gallery(layer, out, k=4, progress=False, workers=2)
    return out, summary, gone


def test_site_files(site):
    out, summary, _ = site
    assert (out / "index.html").exists() and len(list((out / "channels").glob("*.html"))) == 508
    assert summary.decoded == summary.images
    for page in [out / "index.html", *sorted((out / "channels").glob("*.html"))[:50]]:
        text = page.read_text()
        assert HOSTILE not in text and "<img src=x" not in text
        assert "RANDOM WEIGHTS" in text
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))
    page = (out / "channels" / "0001.html").read_text()
    top = page.split("<h2>Top")[1].split("<h2>")[0]
    assert top.count('<div class="pair">') == 4  # each image and its crop wrap together
    assert "/<wbr>" in top  # paths break after a slash, not inside a name
    alts = re.findall(r'<img src="../img/(\d+)(_c\d+)?\.jpg" alt="([^"]*)"', top)
    assert len(alts) == 8  # a name a screen reader can say: the file's (its caption's), and what a crop is
    for row, crop, alt in alts:
        alt = html.unescape(alt)
        name = alt.split(":")[0] if crop else alt.split(", ")[0]
        assert f"/<wbr>{html.escape(name)}<br>" in top, alt
        assert alt.endswith("the receptive field at the channel's peak") if crop else ", " in alt


def test_a_constant_channel_says_its_top_images_are_no_exemplars(site, hostile_store):
    out, _, _ = site
    table = pipeline.open_store(hostile_store[0])["mixed4a"].stats()
    constant, varying = int(np.flatnonzero(table["std"] == 0)[0]), int(np.flatnonzero(table["std"] > 0)[0])
    page = (out / "channels" / f"{constant:04d}.html").read_text()
    assert "on every image: these tie, and are the first rows, not exemplars" in page
    assert "None: the channel is the same on every image" in page and "selectivity index" not in page
    assert "no distribution to draw" in page and "<svg" not in page
    varied = (out / "channels" / f"{varying:04d}.html").read_text()
    assert "not exemplars" not in varied and "log scale" in varied
    index = (out / "index.html").read_text()
    card = {c: re.search(rf'href="channels/{c:04d}\.html"[^>]*>(.*?)</a>', index).group(1) for c in (constant, varying)}
    assert "constant: 0 on every image" in card[constant] and "<img" not in card[constant]
    assert card[varying].count("<img") + card[varying].count('class="gone"') == 4 and "constant" not in card[varying]
    layer = pipeline.open_store(hostile_store[0])["mixed4a"]
    tied = next(c for c in range(layer.channels) if table["std"][c] > 0
                and any(" tie at " in n for n in layer.topk(c, k=2, bottom=True).notes))
    assert "images tie at 0: these are the first 2 of them by row" in (out / "channels" / f"{tied:04d}.html").read_text()


def test_thumbnails_are_reused(site, hostile_store):
    out, first, _ = site
    layer = pipeline.open_store(hostile_store[0])["mixed4a"]
    again = build_gallery(layer, out, k=4, progress=False, workers=2)
    assert again.decoded <= 1  # only the vanished image is tried again


def test_an_imported_store_has_a_gallery_without_asking_for_no_crops(tmp_path):
    from pipeline.importing import import_matrix

    import_matrix(tmp_path / "s.zarr", np.random.default_rng(0).random((6, 2)), "feat", [f"{i}.jpg" for i in range(6)])
    proc = run_cli("gallery", "--store", tmp_path / "s.zarr", "--layer", "feat", "-o", tmp_path / "g", "-k", "2")
    assert proc.returncode == 0 and (tmp_path / "g" / "channels" / "0001.html").exists()  # no argmax: no crops
    assert not list((tmp_path / "g" / "img").glob("*_c*.jpg"))


def test_pages_give_each_answers_own_notes(tmp_path):
    """Ties in the top images, fewer images than asked and empty bands are said on the page as the API says them."""
    from pipeline.importing import import_matrix

    m = np.random.default_rng(0).random((12, 3)).astype(np.float32)
    m[[1, 4, 6, 8, 10], 1] = 9.0  # channel 1: five images tie at the top
    m[:, 2] = 0.0  # channel 2: constant
    paths, labels = [f"d/{i}.jpg" for i in range(12)], np.arange(12) % 2
    import_matrix(tmp_path / "s.zarr", m, "three", paths, labels=labels, classes=["a", "C" * 300])
    import_matrix(tmp_path / "s.zarr", m[:, [0, 2]], "two", paths, labels=labels)
    store = pipeline.open_store(tmp_path / "s.zarr")
    build_gallery(store["three"], tmp_path / "g3", k=3, crops=False, progress=False)
    tied = (tmp_path / "g3" / "channels" / "0001.html").read_text()
    assert "<p class=\"note\">5 images tie at 9: these are the first 3 of them by row, not exemplars.</p>" in tied
    flat = (tmp_path / "g3" / "channels" / "0002.html").read_text()
    assert flat.count("on every image:") == 1  # said once, above the top images, not again under each section
    build_gallery(store["three"], tmp_path / "g20", k=20, crops=False, progress=False)
    page = (tmp_path / "g20" / "channels" / "0000.html").read_text()
    assert "12 images, not 20: the store has no more to rank." in page
    band_notes = store["three"].samples(0, per_band=4).notes
    assert band_notes and all(f"{html.escape(note)}." in page for note in band_notes)
    index = (tmp_path / "g3" / "index.html").read_text()
    assert index.count('class="gone"') == 2 * 3 and "could not be read" in index  # no images: grey, and said
    assert index.count("constant: 0 on every image") == 1  # channel 2's card: no arbitrary first rows
    build_gallery(store["two"], tmp_path / "g2", k=3, crops=False, progress=False)
    page = (tmp_path / "g2" / "channels" / "0000.html").read_text()
    assert "none: every other channel is constant over the dataset" in page
    assert "<small></small>" in page  # no branches: no made-up branch name


def test_the_images_are_the_same_from_fresh_worker_processes(site, hostile_store, tmp_path, monkeypatch):
    """Python 3.14 starts workers with forkserver on Linux (macOS: spawn); nothing may rely on a fork's memory."""
    import functools
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import pipeline.gallery

    fresh = functools.partial(ProcessPoolExecutor, mp_context=multiprocessing.get_context("forkserver"))
    monkeypatch.setattr(pipeline.gallery, "ProcessPoolExecutor", fresh)
    out, first, _ = site
    again = build_gallery(pipeline.open_store(hostile_store[0])["mixed4a"], tmp_path / "g", k=4, progress=False,
                          workers=2)
    assert (again.images, again.decoded, again.missing) == (first.images, first.decoded, first.missing)
    names = sorted(p.name for p in (out / "img").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "g" / "img").iterdir())
    assert all((out / "img" / n).read_bytes() == (tmp_path / "g" / "img" / n).read_bytes() for n in names)


def _browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("Chromium and chromedriver are needed: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--allow-file-access-from-files"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def test_pages_load_in_a_real_browser(site):
    out, _, gone = site
    layer_pages = [out / "index.html", *sorted((out / "channels").glob("*.html"))[:3]]
    hostile_page = next(p for p in sorted((out / "channels").glob("*.html")) if "onerror=alert(1)" in p.read_text())
    driver = _browser()
    try:
        for page in [*layer_pages, hostile_page]:
            driver.get(page.as_uri())
            driver.execute_script("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
            driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
            broken = driver.execute_script(
                "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
            assert broken == [], f"{page.name}: images that do not resolve: {broken[:5]}"
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], f"{page.name}: console errors {errors}"
            assert driver.execute_script("return window.__hacked === undefined")
        driver.get(hostile_page.as_uri())
        assert HOSTILE in driver.find_element("tag name", "body").text  # shown as text, not markup
        driver.get((out / "channels" / "0000.html").as_uri())  # its top image was deleted
        shown = driver.execute_script("return document.body.innerText")
        assert "missing image" in shown and gone in shown
        driver.save_screenshot(str(out / "screenshot.png"))
        driver.set_window_size(390, 844)  # a phone: nothing may need sideways scrolling
        for page in (out / "index.html", out / "channels" / "0001.html"):
            driver.get(page.as_uri())
            wide = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            assert wide[0] <= wide[1], f"{page.name} is {wide[0]} px wide in a {wide[1]} px window"
    finally:
        driver.quit()


def test_gallery_cli_errors(small_store, tmp_path):
    proc = run_cli("gallery", "--store", small_store, "--layer", "nope", "-o", tmp_path / "s", check=False)
    assert proc.returncode == 2 and "unknown layer" in proc.stderr


def test_images_are_drawn_here_where_worker_processes_cannot_start(small_store, tmp_path, monkeypatch, capsys):
    """A read-only /dev/shm holds no locks for them: the gallery is drawn in this process, and says so."""
    import errno

    from pipeline import gallery

    layer = pipeline.open_store(small_store)["mixed4a"]
    build_gallery(layer, tmp_path / "pool", k=2, progress=False, workers=2)

    def refused(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(gallery, "ProcessPoolExecutor", refused)
    build_gallery(layer, tmp_path / "one", k=2, progress=False, workers=1)  # one worker: no pool at all
    assert capsys.readouterr().err == ""
    build_gallery(layer, tmp_path / "here", k=2, progress=False, workers=2)
    assert "drawn in this one process" in capsys.readouterr().err
    for site in ("one", "here"):
        made = sorted(p.relative_to(tmp_path / site) for p in (tmp_path / site).rglob("*.jpg"))
        assert made == sorted(p.relative_to(tmp_path / "pool") for p in (tmp_path / "pool").rglob("*.jpg"))
        assert all((tmp_path / site / p).read_bytes() == (tmp_path / "pool" / p).read_bytes() for p in made)


def test_a_store_older_than_its_receptive_fields_has_a_gallery_without_crops(small_store, tmp_path):
    """Stores made before 2026-11-26 14:00 have peaks but no receptive_field: the gallery stopped, naming --crop."""
    import shutil

    import zarr

    from pipeline.errors import QueryError

    old = tmp_path / "old.zarr"
    shutil.copytree(small_store, old)
    sub = zarr.open_group(str(old), mode="r+")["mixed4a"]
    sub.attrs.put({k: v for k, v in sub.attrs.asdict().items() if k != "receptive_field"})
    layer = pipeline.open_store(old)["mixed4a"]
    build_gallery(layer, tmp_path / "site", k=2, progress=False, workers=1)
    assert not list((tmp_path / "site" / "img").glob("*_c*.jpg")) and (tmp_path / "site" / "index.html").exists()
    with pytest.raises(QueryError, match="before 2026-11-26 14:00.*without --crop and --heatmap"):
        layer.grid([0], k=2, crop=True)


def test_a_rebuild_removes_only_what_a_build_wrote(small_store, tmp_path):
    out = tmp_path / "site"
    (out / "img").mkdir(parents=True)
    (out / "img" / "notes.txt").write_text("mine")
    (out / "img" / "holiday.jpg").write_bytes(b"mine")
    (out / "img" / "3.jpg").write_bytes(b"a stale thumbnail of another store")
    (out / "channels").mkdir()
    (out / "channels" / "0508.html").write_text("a page of a wider layer's channel 508")
    (out / "channels" / "notes.html").write_text("mine")
    layer = pipeline.open_store(small_store)["mixed4a"]
    build_gallery(layer, out, k=2, crops=False, progress=False, workers=1)
    assert (out / "img" / "notes.txt").read_text() == "mine"
    assert (out / "img" / "holiday.jpg").read_bytes() == b"mine"
    assert not (out / "channels" / "0508.html").exists() and (out / "channels" / "notes.html").exists()
    assert (out / "channels" / "0507.html").exists()
    stale = out / "img" / "3.jpg"  # no manifest of this store: removed, and redrawn if row 3 is shown
    assert not stale.exists() or stale.read_bytes() != b"a stale thumbnail of another store"
    # What an earlier build of this store showed (made while it was being written) and no page
    # of this one shows goes; a rebuild keeps only what its pages show.
    for name in ("9999.jpg", "9999_c3.jpg", "viz_7.png"):
        (out / "img" / name).write_bytes(b"an earlier build's")
    build_gallery(layer, out, k=1, crops=False, progress=False, workers=1)
    after = {p.name for p in (out / "img").iterdir()}
    pages = [page.read_text() for page in (out / "channels").glob("*.html")] + [(out / "index.html").read_text()]
    shown = {name for name in after if any(f"img/{name}" in page for page in pages)}
    assert after - {"notes.txt", "holiday.jpg"} == shown and not {"9999.jpg", "9999_c3.jpg", "viz_7.png"} & after


def test_gallery_out_that_is_a_file_is_one_sentence(small_store, tmp_path):
    (tmp_path / "file").write_text("x")
    proc = run_cli("gallery", "--store", small_store, "-o", tmp_path / "file", check=False)
    assert proc.returncode == 2 and "is a file" in proc.stderr and "Traceback" not in proc.stderr


def test_a_moved_dataset_is_named_and_found_again_with_root(image_folder, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    store = tmp_path / "s.zarr"
    extract(data, store, weights="random", workers=0, shard_rows=8, progress=False)
    data.rename(tmp_path / "moved")
    proc = run_cli("gallery", "--store", store, "-o", tmp_path / "lost", "-k", "2", "--no-crops")
    assert "could not be read" in proc.stderr and f"still under {data}" in proc.stderr and "--root" in proc.stderr
    assert ", 0 decoded" not in proc.stdout and "of them unreadable" in proc.stdout
    proc = run_cli("gallery", "--store", store, "-o", tmp_path / "found", "-k", "2", "--no-crops",
                   "--root", tmp_path / "moved")
    assert "could not be read" not in proc.stderr and "unreadable" not in proc.stdout
    assert len(list((tmp_path / "found" / "img").glob("*.jpg"))) > 0
    grid = run_cli("grid", "--store", store, "--channels", "1", "-k", "2", "-o", tmp_path / "g.png",
                   "--root", tmp_path / "moved")
    assert grid.returncode == 0 and "could not be read" not in grid.stderr
    wrong = run_cli("grid", "--store", store, "--channels", "1", "-k", "2", "-o", tmp_path / "g.png", "--root", tmp_path)
    assert f"are the images under {tmp_path}, the folder given?" in wrong.stderr and "If they moved" not in wrong.stderr
    lost = run_cli("grid", "--store", store, "--channels", "1,2", "-k", "2", "-o", tmp_path / "g.png")
    counted = re.search(r"warning: (\d+) of (\d+) images could not be read", lost.stderr)
    assert counted and counted[1] == counted[2] and f"still under {data}?" in lost.stderr
    top = pipeline.open_store(store)["mixed4a"]
    assert int(counted[1]) == len(set(top.topk(1, k=2).paths) | set(top.topk(2, k=2).paths))  # each image once
    proc = run_cli("grid", "--store", store, "-o", tmp_path / "g.png", "--root", tmp_path / "nowhere", check=False)
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


def test_a_folder_with_someone_elses_site_is_refused(small_store, tmp_path):
    out = tmp_path / "mysite"
    out.mkdir()
    (out / "index.html").write_text("my home page")
    layer = pipeline.open_store(small_store)["mixed4a"]
    with pytest.raises(OutputError, match="no gallery build made"):
        build_gallery(layer, out, k=2, crops=False, progress=False, workers=1)
    assert (out / "index.html").read_text() == "my home page"
    build_gallery(layer, tmp_path / "ours", k=2, crops=False, progress=False, workers=1)
    build_gallery(layer, tmp_path / "ours", k=2, crops=False, progress=False, workers=1)  # a rebuild is welcome


def test_a_folder_of_other_files_is_refused_and_a_build_cut_short_is_finished(small_store, tmp_path, image_folder):
    """``-o`` given the dataset itself wrote 1,400 pictures and pages among its images (and the next
    phase-one run found the dataset changed); a first build cut short (pictures, no manifest yet) is ours."""
    before = sorted(image_folder.rglob("*"))
    proc = run_cli("gallery", "--store", small_store, "-o", image_folder, "-k", "2", "--no-crops", check=False)
    assert proc.returncode == 2 and "which no gallery build made" in proc.stderr
    assert sorted(image_folder.rglob("*")) == before
    layer = pipeline.open_store(small_store)["mixed4a"]
    out = tmp_path / "site"
    (out / "img").mkdir(parents=True)
    (out / "img" / "0.jpg.part").write_bytes(b"cut")
    (out / "half.part").write_bytes(b"cut")
    (out / ".DS_Store").write_bytes(b"a file browser's")  # hidden: no reason to refuse the folder
    assert build_gallery(layer, out, k=2, crops=False, progress=False, workers=1).channels == 508


def test_every_link_leads_to_the_channel_it_names(site):
    out, _, _ = site
    index = (out / "index.html").read_text()
    cards = re.findall(r'<a class="card" href="channels/(\d+)\.html" aria-label="channel (\d+)">\2<br>', index)
    assert len(cards) == 508 and all(int(href) == int(text) for href, text in cards)
    checked = 0
    for c in (0, 1, 2, 3, 507):
        page = (out / "channels" / f"{c:04d}.html").read_text()
        nav = page.split("<p>", 1)[1].split("</p>", 1)[0]
        assert re.findall(r'href="(\d+)\.html">(?:← )?(\d+)', nav) == [
            (f"{n:04d}", str(n)) for n in (c - 1, c + 1) if 0 <= n < 508]
        near = page.split("<h2>Most correlated channels</h2><p>")[1].split("</p>")[0]
        linked = re.findall(r'<a href="(\d+)\.html">(\d+)</a> \(r = (-?[\d.]+)\)', near)
        assert near.startswith("none: the channel is constant") or (near.startswith("Pearson r of") and linked), near
        checked += bool(linked)
        assert all(int(href) == int(text) != c for href, text, _ in linked)
    assert checked >= 2


def test_dataset_text_is_escaped_wherever_it_is_shown(site):
    out, _, _ = site
    pages = [p.read_text() for p in sorted((out / "channels").glob("*.html"))]
    assert not any("a<b>" in text or "c&d" in text for text in pages)
    assert any("<i>a&lt;b&gt;</i>" in text for text in pages)  # a tile's class
    assert any(re.search(r"top classes: [^<]*c&amp;d", text) for text in pages)  # the selectivity line


def test_channel_pages_give_the_selectivity_index_and_its_chance_level(site, hostile_store):
    out, _, _ = site
    sel = pipeline.open_store(hostile_store[0])["mixed4a"].selectivity()
    for c in (0, 7):
        page = (out / "channels" / f"{c:04d}.html").read_text()
        assert (f"top class share {share_text(sel['share'][c])} ({share_text(sel['shuffled'][c])} with the labels shuffled), "
                f"selectivity index {sel['index'][c]:.3f}; top classes: ") in page


def test_each_thumbnail_and_crop_shows_its_own_row(site, hostile_store):
    from PIL import Image

    from pipeline.display import display_image
    from pipeline.pictures import crop_box, crop_field

    out, _, gone = site
    layer = pipeline.open_store(hostile_store[0])["mixed4a"]

    def differs(name, expected):
        drawn = np.asarray(Image.open(out / "img" / name).convert("RGB"), dtype=float)
        return np.abs(drawn - np.asarray(expected.resize((128, 128)), dtype=float)).mean()

    checked = 0
    for c in (1, 2, 3):
        top = layer.topk(c, k=4)
        for row, path, peak in zip(top.rows.tolist(), top.paths, layer.crop_peaks(top.rows, c)):
            if path == gone or peak is None:
                continue
            image, _ = display_image(layer.store.root, path)
            assert differs(f"{row}.jpg", image) < 4, path
            assert differs(f"{row}_c{c}.jpg", crop_field(image, crop_box(layer, *peak))) < 4, (path, c)
            checked += peak[0] != peak[1]
    assert checked  # a peak off the diagonal: x and y are not interchangeable


def test_a_histograms_quantile_lines_stand_at_their_values():
    from pipeline.pages import histogram_svg

    svg = histogram_svg([1, 10, 100, 5], [2.0, 3.0, 4.0, 5.0, 6.0], {"q50": 3.0, "q99": 5.5}, width=400)
    assert re.findall(r'<line x1="([\d.]+)"', svg) == ["100.0", "350.0"]  # (value - lo) / span of the width
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert heights.index(max(heights)) == 2 and heights[2] == 150.0


def test_an_image_cut_short_by_a_full_disk_is_not_left_for_the_next_build(tmp_path, monkeypatch):
    import errno

    from PIL import Image

    from pipeline.gallery import _save_jpeg

    def full_disk(self, path, *args, **kwargs):
        open(path, "wb").write(b"\xff\xd8")  # a JPEG's first bytes
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    image = Image.new("RGB", (8, 8))
    _save_jpeg(image, str(tmp_path / "1.jpg"))
    assert Image.open(tmp_path / "1.jpg").size == (8, 8)
    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(OSError):
        _save_jpeg(image, str(tmp_path / "2.jpg"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.jpg"]  # later builds reuse what exists


def test_a_replaced_file_is_a_placeholder_and_its_restored_original_drawn_again(tmp_path):
    """The dataset fingerprint is the store's, not the files' of today: each thumbnail keeps the
    size and time of the file it was drawn from, so a replaced or restored file is drawn again."""
    from PIL import Image

    data = make_folder(tmp_path / "data", classes=("cat", "dog"), per_class=3, seed=3)
    store = tmp_path / "s.zarr"
    extract(data, store, weights="random", workers=0, shard_rows=8, progress=False)
    layer = pipeline.open_store(store)["mixed4a"]
    row, path = int(layer.topk(0, k=1).rows[0]), layer.topk(0, k=1).paths[0]
    thumb = tmp_path / "site" / "img" / f"{row}.jpg"
    first = build_gallery(layer, tmp_path / "site", k=3, progress=False, workers=1)
    drawn = thumb.read_bytes()
    shutil.copy2(data / path, tmp_path / "original")
    Image.new("RGB", (300, 260), (255, 0, 0)).save(data / path)  # replaced by a red square
    second = build_gallery(layer, tmp_path / "site", k=3, progress=False, workers=1)
    assert (second.changed, second.missing, second.changed_example) == (1, 0, path)
    assert "1 changed since the store was made" in second.line()
    assert second.missing_line(layer.store.root).startswith(f"1 of {second.images} images changed since the store")
    assert not thumb.exists()  # neither the new picture nor the old one stands for the stored activation
    page = (tmp_path / "site" / "channels" / "0000.html").read_text()
    assert "changed image<br>changed since the store was made" in page
    assert 'title="changed image"' in (tmp_path / "site" / "index.html").read_text()

    shutil.copy2(tmp_path / "original", data / path)  # the original back, with its time (cp -p)
    third = build_gallery(layer, tmp_path / "site", k=3, progress=False, workers=1)
    assert (third.changed, third.decoded, third.missing_line(layer.store.root)) == (0, 1, "")
    assert thumb.read_bytes() == drawn
    again = build_gallery(layer, tmp_path / "site", k=3, progress=False, workers=1)
    assert again.decoded == 0 and first.decoded == first.images  # unchanged files: reused



def test_a_crop_is_drawn_again_where_the_remade_store_moved_its_peak(tmp_path):
    """A store made again over the same files with the same weights and precision (another --decoder,
    device or --compile: none of them in the gallery's identity) can move a near-tied peak: the
    rebuild reused the crop drawn around the old peak, beside the new one's activation."""
    from PIL import Image

    from pipeline import store as st
    from pipeline.display import display_image
    from pipeline.pictures import crop_box, crop_field

    data = make_folder(tmp_path / "data", classes=("cat", "dog"), per_class=2, seed=5)
    path = tmp_path / "s.zarr"
    extract(data, path, ["mixed4a"], weights="random", workers=0, shard_rows=8, progress=False)
    layer = pipeline.open_store(path)["mixed4a"]
    out = tmp_path / "site"
    build_gallery(layer, out, k=2, progress=False, workers=1)
    c = next(c for c in range(layer.channels) if None not in layer.crop_peaks(layer.topk(c, k=2).rows, c))
    row = int(layer.topk(c, k=2).rows[0])
    y, x = layer.peaks([row], c)[0]
    moved = (y + 7) % 14 * 14 + (x + 5) % 14  # far from the old peak, in both directions
    group = st.open_group(path, "r+")
    blocks = {"mixed4a": tuple(np.asarray(group["mixed4a"][name][:]) for name in ("mean", "max", "argmax"))}
    blocks["mixed4a"][2][row, c] = moved
    st.write_shard(group, ["mixed4a"], 0, blocks, [True] * len(blocks["mixed4a"][0]), [""] * len(blocks["mixed4a"][0]))

    layer = pipeline.open_store(path)["mixed4a"]
    assert layer.peaks([row], c)[0] == divmod(moved, 14)
    build_gallery(layer, out, k=2, progress=False, workers=1)
    image, _ = display_image(layer.store.root, layer.store.paths([row])[0])
    expected = np.asarray(crop_field(image, crop_box(layer, *divmod(moved, 14))).resize((128, 128)), dtype=float)
    drawn = np.asarray(Image.open(out / "img" / f"{row}_c{c}.jpg").convert("RGB"), dtype=float)
    assert np.abs(drawn - expected).mean() < 4


@pytest.mark.parametrize("damaged", ["featureviz/c/3/0/0/0", "featureviz_done/c/3"])
def test_a_damaged_cached_picture_is_said_and_left_out_not_a_traceback(tmp_path, monkeypatch, capsys, damaged):
    """The gallery copied the cached pictures by reading the store itself: a damaged one was a zstd traceback."""
    import pipeline.featureviz as fv
    from pipeline.featureviz import featureviz

    matrix = np.random.default_rng(0).random((12, 5)).astype(np.float32)
    store = tmp_path / "s.zarr"
    from pipeline.importing import import_matrix

    import_matrix(store, matrix, "feat", [f"x{i}.jpg" for i in range(12)])
    monkeypatch.setattr(fv, "_optimise", lambda *a: np.full((32, 32, 3), 9, dtype=np.uint8))
    for channel in (1, 3):
        featureviz(store, "feat", channel, size=32, steps=2)
    (store / "feat" / damaged).write_bytes(b"not zstd")
    out = tmp_path / "site"
    build_gallery(pipeline.open_store(store)["feat"], out, k=2, crops=False, progress=False, workers=1)
    assert "feature visualisation of feat channel 3" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "img").glob("*viz*")) == ["viz_1.png"]


def test_every_picture_a_page_links_was_drawn(site):
    """A flat map has no peak, hence no crop: its tile says so rather than linking a crop never drawn."""
    out, _, _ = site
    drawn = {p.name for p in (out / "img").iterdir()}
    flat = 0
    for page in sorted((out / "channels").glob("*.html")):
        text = page.read_text()
        assert set(re.findall(r'src="\.\./img/([^"]+)"', text)) <= drawn, page.name
        flat += text.count("no peak: the map is flat")
    assert flat  # random weights leave some top images' maps all zero
    assert set(re.findall(r'src="img/([^"]+)"', (out / "index.html").read_text())) <= drawn


def test_a_picture_a_stopped_build_left_half_written_is_removed_by_the_next(tmp_path):
    """Pictures are written as NAME.part and then renamed: a build stopped in between left one."""
    from PIL import Image

    from pipeline.importing import import_matrix

    paths = [f"c/{i}.png" for i in range(6)]
    for p in paths:
        (tmp_path / "data" / "c").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 20, 3), 40 * int(p[2]), dtype=np.uint8)).save(tmp_path / "data" / p)
    import_matrix(tmp_path / "s.zarr", np.arange(12, dtype=np.float32).reshape(6, 2), "feat", paths,
                  root=tmp_path / "data")
    layer = pipeline.open_store(tmp_path / "s.zarr")["feat"]
    build_gallery(layer, tmp_path / "g", k=2, crops=False, progress=False, workers=1)
    left = tmp_path / "g" / "img" / (sorted(p.name for p in (tmp_path / "g" / "img").glob("*.jpg"))[0] + ".part")
    left.write_bytes(b"\xff\xd8 cut short")
    build_gallery(layer, tmp_path / "g", k=2, crops=False, progress=False, workers=1)
    assert not left.exists() and not list((tmp_path / "g" / "img").glob("*.part"))


def test_a_gallery_reads_each_shard_of_each_array_once_and_builds_what_it_built_before(small_store, tmp_path,
                                                                                       monkeypatch):
    """Each channel's queries read an index and a chunk of every shard they touched: 13,534 reads of
    the store for mixed4a's 508 channels, a request each on S3. The arrays are now read whole, once,
    and the pages are those built reading the store channel by channel (``budget()`` 0)."""
    import collections

    import zarr.storage

    reads, get = collections.Counter(), zarr.storage.LocalStore.get

    async def counted(self, key, *args, **kwargs):
        reads[key] += 1
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", counted)
    build_gallery(pipeline.open_store(small_store)["mixed4a"], tmp_path / "held", k=4, progress=False, workers=1)
    shards = {key for key in reads if "/c/" in key and key.split("/")[1] in ("mean", "max", "argmax")}
    assert shards == {f"mixed4a/{name}/c/{s}/0" for name in ("mean", "max", "argmax") for s in range(3)}
    assert all(reads[key] == 1 for key in shards), reads

    monkeypatch.setattr("pipeline.held.budget", lambda: 0)
    build_gallery(pipeline.open_store(small_store)["mixed4a"], tmp_path / "read", k=4, progress=False, workers=1)
    pages = sorted(p.relative_to(tmp_path / "held") for p in (tmp_path / "held").rglob("*.html"))
    assert len(pages) == 509 and pages == sorted(p.relative_to(tmp_path / "read") for p in (tmp_path / "read").rglob("*.html"))
    for page in pages:
        assert (tmp_path / "held" / page).read_bytes() == (tmp_path / "read" / page).read_bytes(), page
    assert reads["mixed4a/mean/c/0/0"] > 500  # read channel by channel when nothing may be held


def test_a_gallery_without_crops_reads_no_peak_array(small_store, tmp_path, monkeypatch):
    """Its pages show no crop, so nothing reads ``max`` or ``argmax`` (``--no-crops``, an imported
    layer with its max, a layer whose units see the whole image): none is read whole either (two
    thirds of the arrays' reading and memory for nothing)."""
    import collections

    import zarr.storage

    reads, get = collections.Counter(), zarr.storage.LocalStore.get

    async def counted(self, key, *args, **kwargs):
        if key.startswith("mixed4a/") and "/c/" in key:
            reads[key.split("/")[1]] += 1
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", counted)
    build_gallery(pipeline.open_store(small_store)["mixed4a"], tmp_path / "g", k=4, crops=False, progress=False, workers=1)
    assert reads["mean"] == 3 and reads["max"] == reads["argmax"] == 0, reads


def test_a_picture_deleted_since_the_last_build_is_drawn_again(small_store, tmp_path):
    """The manifest still gives the deleted crop's box: a rebuild that trusted it linked a crop never drawn."""
    layer = pipeline.open_store(small_store)["mixed4a"]
    out = tmp_path / "site"
    build_gallery(layer, out, k=2, progress=False, workers=1)
    crop = sorted((out / "img").glob("*_c*.jpg"))[0]
    drawn = crop.read_bytes()
    crop.unlink()
    again = build_gallery(layer, out, k=2, progress=False, workers=1)
    assert again.decoded == 1 and crop.read_bytes() == drawn


def test_pictures_of_another_drawing_are_drawn_again(small_store, tmp_path):
    """A manifest of an older drawing (no ``pictures`` version: before square crops) or of another store:
    its pictures are not reused, though their files' sizes and times still match."""
    import json

    from pipeline.gallery import MANIFEST

    layer = pipeline.open_store(small_store)["mixed4a"]
    out = tmp_path / "site"
    first = build_gallery(layer, out, k=2, progress=False, workers=1)
    manifest = json.loads((out / MANIFEST).read_text())
    for change in ({"pictures": None}, {"fingerprint": "another dataset"}):
        (out / MANIFEST).write_text(json.dumps({k: v for k, v in {**manifest, **change}.items() if v is not None}))
        assert build_gallery(layer, out, k=2, progress=False, workers=1).decoded == first.images


def test_a_layer_whose_units_see_the_whole_image_has_no_crops(small_store, tmp_path):
    """mixed5a, mixed5b and the logits: each crop was the whole image shrunk into a grey square."""
    import zarr

    store = tmp_path / "wide.zarr"
    shutil.copytree(small_store, store)
    sub = zarr.open_group(str(store), mode="r+")["mixed4a"]
    sub.attrs.update({"receptive_field": {"size": 907, "stride": 16, "start": -400}})
    build_gallery(pipeline.open_store(store)["mixed4a"], tmp_path / "site", k=2, progress=False, workers=1)
    assert not list((tmp_path / "site" / "img").glob("*_c*.jpg"))
    assert list((tmp_path / "site" / "img").glob("*.jpg"))


def test_pictures_drawn_under_another_root_are_checked_against_the_store_again(tmp_path):
    """A copy without times (``cp -r``), shown with --root, then moved into the dataset's place: its
    times are not the store's, and a fresh build says each image changed; the rebuild kept showing them."""
    data = make_folder(tmp_path / "data", classes=("cat",), per_class=3, seed=2)
    store = tmp_path / "s.zarr"
    extract(data, store, ["mixed4a"], weights="random", workers=0, shard_rows=8, progress=False)
    shutil.copytree(data, tmp_path / "copy", copy_function=shutil.copy)
    out = tmp_path / "site"
    copied = pipeline.open_store(store, root=tmp_path / "copy")["mixed4a"]
    assert build_gallery(copied, out, k=2, crops=False, progress=False, workers=1).changed == 0
    data.rename(tmp_path / "original")
    (tmp_path / "copy").rename(data)
    layer = pipeline.open_store(store)["mixed4a"]
    again = build_gallery(layer, out, k=2, crops=False, progress=False, workers=1)
    fresh = build_gallery(layer, tmp_path / "fresh", k=2, crops=False, progress=False, workers=1)
    assert again.changed == fresh.changed == fresh.images


def test_a_channel_page_names_its_5_most_correlated_channels(site):
    """The README promises the 5 most correlated channels on each page (links to each)."""
    out, _, _ = site
    near = (out / "channels" / "0001.html").read_text().split("<h2>Most correlated channels</h2><p>")[1].split("</p>")[0]
    assert len(re.findall(r'<a href="\d+\.html">\d+</a> \(r = ', near)) == 5


def test_the_unreadable_images_warning_names_one_of_them_and_why(site):
    """The closing warning says "e.g. PATH: WHY" of an image that could not be read, not "e.g. "."""
    _, summary, gone = site
    assert summary.missing and summary.example == f"{gone}: FileNotFoundError"
    assert f"(e.g. {gone}: FileNotFoundError)" in summary.missing_line("/data")
