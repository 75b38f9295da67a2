"""``exemplars gallery``: a static, offline HTML site of a whole layer.

Offers:
    build_gallery(layer, out_dir, k=10, crops=True, progress=True, workers=None) -> Summary
    Summary                      its closing line, and the warning for unreadable images

The site: ``index.html`` (every channel, grouped by Inception branch, with its
top exemplars), ``channels/NNNN.html`` (top-k with receptive-field crops,
bottom-k, quantile-band samples, histogram, most correlated channels, top
classes, the feature visualisation when cached), ``img/`` (thumbnails and
crops). Every image is decoded once per build, in worker processes (in this
one where they cannot start: a read-only /dev/shm), and a later build of the
same store reuses what it finds whose source file has the size and modification
time it was drawn from (the manifest keeps them). All text from the dataset
is escaped; every file written is named by numbers inside ``out_dir``. Several layers' galleries,
each in a subfolder, are linked by ``galleries``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import outputs, pages
from .pages import IMAGE_FILE, PAGE_FILE, crop_name, thumb_name, viz_name
from .hardware import usable_cores
from .display import CHANGED, differs, display_image
from .images import file_stat
from .pictures import covers_input, crop_box, crop_field
from .progress import say

THUMB, CROP = 128, 128
MANIFEST = ".exemplars-gallery.json"
LAYERS = ".exemplars-galleries.json"  # marks an index of several layers' galleries, each in a subfolder
PICTURES = 2  # how thumbnails and crops are drawn; a change redraws older builds' files (2: square crops)


@dataclass
class Summary:
    out: str
    channels: int
    images: int
    decoded: int
    seconds: float
    missing: int = 0  # images that could not be read this time (shown as placeholders)
    example: str = ""  # one of them, with why
    changed: int = 0  # images changed since the store was made (placeholders too)
    changed_example: str = ""  # one of their paths

    def line(self) -> str:
        unread = f", {self.missing} of them unreadable" if self.missing else ""
        unread += f", {self.changed} changed since the store was made" if self.changed else ""
        return (f"gallery of {self.channels} channels at {self.out}/index.html: {self.images} images "
                f"({self.decoded} decoded this time{unread}) in {self.seconds:.1f} s")

    def missing_line(self, root, given: bool = False) -> str:
        """The warnings, a line each: images that could not be read, images changed since ("" if none)."""
        from .pictures import changed_line, missing_line

        return "\n".join(filter(None, [
            missing_line(self.missing, self.images, self.example, root, given=given) if self.missing else "",
            changed_line(self.changed, self.images, self.changed_example) if self.changed else ""]))


def _render_images(job):
    """Decode one image once; write its thumbnail and every crop asked of it. Returns the row, the
    error or "", and the (size, mtime_ns) the pictures were drawn from, taken before the decoding:
    a file replaced meanwhile is drawn again by the next build."""
    root, path, row, boxes, folder, recorded = job
    source = file_stat(os.path.join(root, path)) if root else None
    image, error = display_image(root, path, recorded)
    if image is None:
        return row, error, None
    _save_jpeg(image.resize((THUMB, THUMB), resample=2), os.path.join(folder, thumb_name(row)))
    for channel, box in boxes:
        _save_jpeg(crop_field(image, box).resize((CROP, CROP), resample=3), os.path.join(folder, crop_name(row, channel)))
    return row, "", source


def _save_jpeg(image, path: str) -> None:
    """Written whole or not at all: later builds reuse every image file that exists."""
    part = path + ".part"
    try:
        image.save(part, format="JPEG", quality=85)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise
    os.replace(part, path)


def _identity(layer) -> dict:
    attrs = layer.store.attrs
    where = layer.store.path
    return {"store": where if "://" in where else os.path.abspath(where), "layer": layer.name,
            "fingerprint": attrs.get("dataset_fingerprint"), "weights": attrs.get("model"),
            "pictures": PICTURES}


def _drawn_from(out: Path, identity: dict) -> tuple[dict, dict] | None:
    """The manifest's {row: [size, mtime_ns]} of the files its pictures were drawn from, and its
    {crop file: [left, top, right, bottom]} of the box each crop shows, None where the last build was
    of another store, layer or drawing (nothing of it is reused). A manifest written before the
    sources (or the boxes) were kept gives {}: each picture (each crop) is drawn once more. The box
    is kept because a store made again over the same files and weights (another --decoder, device or
    --compile, none of them in the identity) can move a near-tied peak."""
    try:
        found = json.loads((out / MANIFEST).read_text())
        sources, crops = found.pop("sources", {}), found.pop("crops", {})
    except (OSError, ValueError, AttributeError):
        return None
    return (sources, crops) if found == identity and isinstance(sources, dict) and isinstance(crops, dict) else None


def foreign_entry(out: Path, own: set[str]) -> str | None:
    """The first entry of ``out`` (sorted) that is neither in ``own``, nor a file a build was cut short
    writing, nor a layer's gallery (a build of several layers cut short before its index), nor hidden
    (a file browser's ``.DS_Store``), None where there is none."""
    return next((entry.name for entry in sorted(out.iterdir()) if entry.name not in own
                 and not entry.name.endswith(".part") and not entry.name.startswith(".")
                 and not (entry / MANIFEST).is_file()), None)


def _built_layer(out: Path) -> str | None:
    """The layer whose gallery ``out`` holds, None where it holds none."""
    try:
        return json.loads((out / MANIFEST).read_text()).get("layer")
    except (OSError, ValueError, AttributeError):
        return None


def _forget(folder: Path, row: int, boxes) -> None:
    """Remove the pictures of ``row``: they came from another file than the one there now."""
    for name in (thumb_name(row), *(crop_name(row, c) for c, _ in boxes)):
        (folder / name).unlink(missing_ok=True)


def _queries(layer, k: int, crops: bool):
    per_channel, needs = {}, {}
    for c in range(layer.channels):
        top = layer.topk(c, k=k)
        bottom = layer.topk(c, k=max(1, k // 2), bottom=True)
        samples = layer.samples(c, per_band=max(1, k // 5))
        peaks = layer.crop_peaks(top.rows, c) if crops else []
        per_channel[c] = (top, bottom, samples, peaks)
        for results in (top, bottom, samples):
            for row in results.rows.tolist():
                needs.setdefault(row, [])
        for row, peak in zip(top.rows.tolist(), peaks):
            if peak is not None:
                needs[row].append((c, crop_box(layer, *peak)))
    return per_channel, needs


def _write_featureviz(layer, folder: Path) -> set[str]:
    """Copy the store's cached feature visualisations next to the thumbnails; returns their names."""
    from PIL import Image

    from .damage import DECODE_ERRORS
    from .featureviz import cached

    if "featureviz_done" not in layer.group:
        return set()
    try:
        channels = np.flatnonzero(layer.group["featureviz_done"][:]).tolist()
    except DECODE_ERRORS:  # a marker that does not decode: each channel asked alone, the damaged one said
        channels = range(layer.channels)
    names = set()
    for c in channels:
        picture = cached(layer, c)  # None, said, where its bytes no longer decode
        if picture is not None:
            Image.fromarray(picture).save(folder / viz_name(c))
            names.add(viz_name(c))
    return names


def _remove_unused(folder: Path, needs: dict, kept: set[str]) -> None:
    """Drop what an earlier build of this store wrote that no page of this one shows (a build
    made while the store was being written showed other images)."""
    used = kept | {thumb_name(row) for row in needs} | {crop_name(row, c) for row, boxes in needs.items() for c, _ in boxes}
    for old in folder.iterdir():
        if (IMAGE_FILE.fullmatch(old.name) and old.name not in used) or old.name.endswith(".part"):
            old.unlink()  # .part: an image whose writer was stopped


def _statistics(layer):
    from .stats import neighbours

    corr = layer.correlations()
    return layer.table("mean"), corr, neighbours(corr, 5), layer.selectivity(top=3)


def _pool(workers: int):
    """``workers`` processes to draw the images, or None to draw them in this one: for a single worker,
    or where they cannot start (their locks live in /dev/shm: a read-only one refuses them)."""
    if workers <= 1:
        return None
    try:
        return ProcessPoolExecutor(max_workers=workers)
    except OSError as exc:  # said before the bar starts, not in the middle of its line
        say(f"note: images are drawn in this one process: worker processes could not start "
            f"({exc.strerror or exc}; on Linux their locks live in /dev/shm)")
        return None


def build_gallery(layer, out_dir, k: int = 10, crops: bool = True, progress: bool = True,
                  workers: int | None = None) -> Summary:
    from .errors import OutputError

    started = time.perf_counter()
    out = Path(out_dir).resolve()
    # No crops where the store has no peak (an imported layer) or each unit sees the whole image (a crop would
    # repeat it): the default builds a gallery of every store, as --no-crops did
    # nor where no receptive field is recorded (stores made before 2026-11-26 14:00 have peaks but none)
    crops = crops and "argmax" in layer.available and "receptive_field" in layer.attrs and not covers_input(layer)
    layer.check_usable()  # before a folder is made
    outputs.folder(out)
    if (out / LAYERS).exists():
        raise OutputError(f"{out} holds the galleries of several layers, a subfolder each; build this one into "
                          f"{out / layer.name}, or all of them again with several --layer")
    if not (out / MANIFEST).exists() and any((out / name).exists() for name in ("index.html", "style.css")):
        raise OutputError(f"{out} holds an index.html or style.css that no gallery build made; "
                         "give a new or empty folder with -o")
    stranger = foreign_entry(out, {"img", "channels"}) if not (out / MANIFEST).exists() else None
    if stranger:  # `-o` given the dataset's own folder wrote 1,400 files among its images
        raise OutputError(f"{out} holds {stranger}, which no gallery build made; give a new or empty folder with -o")
    other = _built_layer(out)
    if other not in (None, layer.name):  # replacing it would lose another layer's site without a word
        raise OutputError(f"{out} holds the gallery of layer {other}; give each layer its own folder with -o, "
                          "or pass several --layer at once (a subfolder each, and an index of them)")
    for folder in (out / "img", out / "channels"):
        outputs.folder(folder)
    # Every channel is read: each array once, not a request a shard a channel; the peaks' arrays only
    # where crops are drawn (nothing else reads them)
    with layer.hold(("mean", "argmax", "max") if crops else ("mean",), progress=progress):
        return _build(layer, out, k, crops, progress, workers, started)


def _build(layer, out: Path, k: int, crops: bool, progress: bool, workers: int | None, started: float) -> Summary:
    from .progress import bar

    identity = _identity(layer)
    drawn = _drawn_from(out, identity)
    drawn, boxes_drawn = drawn if drawn is not None else (None, {})
    if drawn is None:
        drawn = {}
        for old in (out / "img").iterdir():
            if IMAGE_FILE.fullmatch(old.name):
                old.unlink()
    per_channel, needs = _queries(layer, k, crops)
    jobs, sources, root, folder = [], {}, layer.store.root, out / "img"
    rows = sorted(needs)
    for row, path, recorded in zip(rows, layer.store.paths(rows), layer.store.recorded(rows)):
        source = file_stat(os.path.join(root, path)) if root else None  # a stat an image: no hashing
        # A file replaced, restored with `cp -p` or gone since its pictures were drawn: the dataset
        # fingerprint sees none of that. Pictures drawn under another --root (sizes alone compared)
        # are checked against the store again.
        if source is not None and drawn.get(str(row)) == list(source) and not differs(source, recorded):
            sources[str(row)] = list(source)
        else:
            _forget(folder, row, needs[row])
        # A crop is reused only where it shows this store's box (its peak may have moved since)
        boxes = [(c, box) for c, box in needs[row] if not (folder / crop_name(row, c)).exists()
                 or boxes_drawn.get(crop_name(row, c)) != list(box)]
        if boxes or not (folder / thumb_name(row)).exists():  # made once, reused by later builds
            jobs.append((root, path, row, boxes, str(folder), recorded))
    missing, paths = {}, dict(zip((job[2] for job in jobs), (job[1] for job in jobs)))
    pool = _pool(workers or usable_cores())
    with pool or contextlib.nullcontext():
        results = pool.map(_render_images, jobs, chunksize=16) if pool else map(_render_images, jobs)
        for row, error, source in bar(results, total=len(jobs), desc="images", unit="img",
                                      disable=not progress or not jobs):  # a rebuild that redraws nothing: no bar
            if error:
                missing[row] = error
                sources.pop(str(row), None)
            else:
                sources[str(row)] = list(source) if source else None
    crops_drawn = {crop_name(row, c): list(box) for row, boxes in needs.items() if row not in missing
                   for c, box in boxes}
    (out / MANIFEST).write_text(json.dumps({**identity, "sources": sources, "crops": crops_drawn}), encoding="utf-8")
    _remove_unused(out / "img", needs, _write_featureviz(layer, out / "img"))
    table, corr, near, chosen = _statistics(layer)
    site = pages.Site(layer, out, per_channel, missing, table, corr, near, chosen, crops)
    for c in bar(range(layer.channels), desc="pages", unit="page", disable=not progress):
        site.write_channel(c)
    for old in (out / "channels").iterdir():  # an earlier build's pages of channels this layer lacks
        if (page := PAGE_FILE.fullmatch(old.name)) and int(page[1]) >= layer.channels:
            old.unlink()
    site.write_index()
    changed = [row for row, error in missing.items() if error.startswith(CHANGED)]
    unread = [row for row in missing if row not in set(changed)]
    example = next((f"{paths[row]}: {missing[row]}" for row in unread), "")
    return Summary(str(out), layer.channels, len(needs), len(jobs), time.perf_counter() - started,
                   len(unread), example, len(changed), paths[changed[0]] if changed else "")
