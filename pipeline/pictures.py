"""Exemplar grids: the notebook's figure from the store, with crops, heatmaps and bands.

Offers:
    Tile(image, caption, error)           one picture of a grid (image None: placeholder)
    crop_box(layer, y, x), crop_field(image, box)   a unit's receptive field, square, grey outside the image
    covers_input(layer)                   whether every unit sees the whole input (logits, mixed5a/5b): no crops
    upsample(heat, size, field)           a channel's map placed on its units' receptive fields
    overlay(image, heat, scale, field)    a map coloured and blended over its image
    heat_scale(*heats) -> float           the value a channel's heatmaps draw brightest
    tiles(layer, results, crop, heat, scale) -> list[Tile]   heat: (k, H, W) maps, or None
    grid(layer, channels, k, by, crop, heatmap, bottom, samples, ..., shown=None) -> matplotlib Figure
    missing_line(missing, shown, example, root, fix, given) -> the warning for images that could not be read
    changed_line(changed, shown, example) -> the warning for images changed since the store was made
    missing_warning(shown, root, fix, given) -> those warnings for ``grid``'s ``shown`` list, a line
                                           each ("" if none)

Torch is imported only for ``heatmap=True`` (through ``pipeline.heatmap``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import QueryError
from .geometry import from_dict
from .display import CHANGED, display_image
from .parsing import parse_channels

TILE = 224  # the network's input side: a whole image is drawn at its own resolution
OUTSIDE = (128, 128, 128)  # a crop's part beyond the image's border


@dataclass
class Tile:
    image: Image.Image | None
    caption: str
    error: str = ""
    rank: int | None = None  # shown above the first row's tiles; a feature visualisation has none
    note: str = ""  # no image and no missing file: what the grey square says instead


def _field(layer):
    field = layer.attrs.get("receptive_field")
    if not field:
        raise QueryError(f"layer {layer.name} records no receptive field (an imported store, or one made before "
                         "2026-11-26 14:00), which crops and heatmaps need: draw it without --crop and --heatmap")
    return from_dict(field)


def crop_box(layer, y: int, x: int) -> tuple[int, int, int, int]:
    """The receptive field of unit (y, x) in input pixels (left, top, right, bottom), square and
    not clipped: near the border part of it lies outside the 224 x 224 input (``crop_field``)."""
    if covers_input(layer):  # every unit sees the whole input (the logits, mixed5b): the image is its crop
        size = int(layer.attrs.get("input_size", 224))
        return 0, 0, size, size
    top, left, bottom, right = _field(layer).box(y, x)
    return int(np.floor(left)), int(np.floor(top)), int(np.floor(right)), int(np.floor(bottom))


def covers_input(layer) -> bool:
    """Whether every unit's receptive field holds the whole input, so a crop shows nothing more: the
    logits (1 x 1), and mixed5a and mixed5b, whose 7 x 7 units see 587 and 715 px (their crops
    were the image shrunk into a grey square)."""
    field, side = _field(layer), int(layer.attrs.get("input_size", 224))
    last = max(layer.spatial_shape) - 1  # the unit whose field starts furthest in
    return field.start + field.stride * last <= 0 and field.start + field.size >= side


def crop_field(image: Image.Image, box) -> Image.Image:
    """``box`` of ``image``, grey where it lies outside: square crops keep their proportions and
    the peak at their centre (a clipped box, stretched to a square tile, distorted both)."""
    left, top, right, bottom = box
    out = Image.new("RGB", (right - left, bottom - top), OUTSIDE)
    inside = (max(0, left), max(0, top), min(image.width, right), min(image.height, bottom))
    if inside[0] < inside[2] and inside[1] < inside[3]:
        out.paste(image.convert("RGB").crop(inside), (inside[0] - left, inside[1] - top))
    return out


def _spread(cells: int, pixels: int, field) -> np.ndarray:
    """(pixels, cells) linear-interpolation weights that put cell i at the centre of its receptive field."""
    where = np.clip((np.arange(pixels) - field.centre(0)) / field.stride, 0, cells - 1)
    lo = np.floor(where).astype(int)
    hi = np.minimum(lo + 1, cells - 1)
    weights = np.zeros((pixels, cells))
    np.add.at(weights, (np.arange(pixels), lo), 1 - (where - lo))
    np.add.at(weights, (np.arange(pixels), hi), where - lo)
    return weights


def upsample(heat: np.ndarray, size: tuple[int, int], field) -> np.ndarray:
    """A (h, w) map at the input's (height, width), each cell centred on its unit's receptive field.

    Resizing the map to the image would put cell i at 16i + 7.5 for mixed4a; its unit looks
    at 16i + 15 (the field's centre), half a cell further down and right.
    """
    h, w = heat.shape
    return _spread(h, size[0], field) @ np.asarray(heat, dtype=np.float64) @ _spread(w, size[1], field).T


def overlay(image: Image.Image, heat: np.ndarray, scale: float, field) -> Image.Image:
    """The map, placed on the units' receptive fields and coloured, blended over the image."""
    from matplotlib import colormaps

    if not np.isfinite(heat).all():
        return image
    values = np.clip(upsample(heat, (image.height, image.width), field) / (scale or 1.0), 0, 1)
    colour = (colormaps["inferno"](values)[..., :3] * 255).astype(np.uint8)
    return Image.blend(image.convert("RGB"), Image.fromarray(colour), 0.55)


def heat_scale(*heats) -> float:
    """The value drawn brightest: the largest of the maps (1 where none is finite and positive)."""
    finite = [float(np.nanmax(h)) for h in heats if h is not None and np.isfinite(h).any()]
    return max(finite) if finite and max(finite) > 0 else 1.0


def tiles(layer, results, crop: bool = False, heat: np.ndarray | None = None, scale: float | None = None) -> list[Tile]:
    """``heat``: the maps to overlay, coloured from 0 (black) to ``scale`` (default their own maximum)."""
    store = layer.store
    out = []
    peaks = layer.crop_peaks(results.rows, results.channel) if crop else None
    scale = scale or heat_scale(heat)
    field = _field(layer) if heat is not None else None
    recorded = store.recorded(results.rows)  # a replaced file would stand beside another image's activation
    for i, item in enumerate(results.to_list()):
        caption = f"{item['activation']:.3g}" + (f"  {item['band']}" if "band" in item else "")
        image, error = display_image(store.root, item["path"], recorded[i])
        if image is not None and heat is not None:
            image = overlay(image, heat[i], scale, field)
        if image is not None and crop and peaks[i] is None:
            caption += "\n(flat map: whole image)"  # its argmax is the first cell, no peak to crop around
        elif image is not None and crop:
            image = crop_field(image, crop_box(layer, *peaks[i]))
        if image is not None:
            image = image.resize((TILE, TILE), Image.Resampling.BICUBIC if crop else Image.Resampling.BILINEAR)
        out.append(Tile(image, caption, error and f"{item['path']}: {error}", item["rank"]))
    return out


def _ties(results) -> str:
    """A row label's mark for answers that are no exemplars: a constant channel, or the first of many ties."""
    return f"\n({results.ties})" if results.ties else ""


def missing_line(missing: int, shown: int, example: str, root, fix: str = "pass --root {folder}",
                 given: bool = False) -> str:
    """What to say when ``missing`` of ``shown`` images could not be read: most of them
    missing means the dataset moved, which ``fix`` (the CLI's ``--root``) mends; where the user
    ``given`` that folder already, the question is only whether it is the right one."""
    if missing * 2 <= shown:
        where = "they are shown as placeholders"
    elif root and given:
        where = f"are the images under {root}, the folder given?"
    elif root:
        where = f"are the images still under {root}? If they moved, {fix.format(folder='NEW_FOLDER')}"
    else:  # an imported store made without --root
        where = f"this store records no image folder: {fix.format(folder='FOLDER')}"
    return f"{missing} of {shown} images could not be read (e.g. {example}); {where}"


def changed_line(changed: int, shown: int, example: str) -> str:
    """What to say when ``changed`` of ``shown`` images are no longer the files phase one measured."""
    return (f"{changed} of {shown} images changed since the store was made (size or modification time; e.g. "
            f"{example}): they are shown as placeholders; to measure them again, rerun `exemplars activations` "
            "with --overwrite (or another --store)")


def missing_warning(shown: list, root, fix: str = "pass --root {folder}", given: bool = False) -> str:
    """The warnings for ``grid``'s ``shown`` (path, error) pairs, an image in several rows counted
    once: one line for images that could not be read, one for those changed since."""
    images = dict(shown)
    changed = [path for path, error in images.items() if error.startswith(f"{path}: {CHANGED}")]
    missing = [error for path, error in images.items() if error and path not in set(changed)]
    lines = [missing_line(len(missing), len(images), missing[0], root, fix, given) if missing else "",
             changed_line(len(changed), len(images), changed[0]) if changed else ""]
    return "\n".join(filter(None, lines))


def grid(layer, channels, k: int = 10, by: str = "mean", crop: bool = False, heatmap: bool = False,
         bottom: bool = False, samples: bool = False, featureviz: bool = False,
         shown: list | None = None):
    """The notebook's figure (rows = channels, columns = ranks), with optional extra rows.

    ``featureviz`` puts each channel's cached feature visualisation first in its row.
    ``shown``, a list, receives (path, "" or why it could not be read) for each image drawn.
    """
    from .featureviz import cached, command
    from .render import grid_figure

    channels = parse_channels(channels, layer.channels)
    layer.check_usable()  # else a figure of empty rows, "top 0 images" each, written as if it answered
    rows = []
    for channel in channels:
        top = layer.topk(channel, k=k, by=by)
        queries = [(f"ch {channel}{_ties(top)}", top)]
        if bottom:
            least = layer.topk(channel, k=k, by=by, bottom=True)
            queries.append((f"ch {channel}\nbottom{_ties(least)}", least))
        if samples:
            queries.append((f"ch {channel}\nsamples", layer.samples(channel, per_band=max(1, k // 5), by=by)))
        heats, scale = [None] * len(queries), None
        if heatmap:
            from .heatmap import channel_maps

            heats = [channel_maps(layer, results.rows, channel) for _, results in queries]
            # One colour scale for a channel's rows: the bottom row's faint maps stay faint.
            scale = heat_scale(*heats)
            finite = [h[np.isfinite(h)] for h in heats if h is not None]
            finite = np.concatenate(finite) if finite else np.zeros(0)
            # not a made-up 0-1 scale; and a map below 0 everywhere (before a ReLU) is no map of zeros
            if finite.size and finite.max() > 0:
                heat = f"heat 0-{scale:.3g}"
            elif not finite.size:
                heat = "heat: no map (no image read)"
            elif finite.min() == 0:
                heat = "heat: 0 everywhere"
            else:
                heat = f"heat: none above 0 (max {finite.max():.3g})"
            queries[0] = (f"{queries[0][0]}\n{heat}", queries[0][1])
        for (label, results), heat in zip(queries, heats):
            drawn = tiles(layer, results, crop=crop, heat=heat, scale=scale)
            if shown is not None:
                shown.extend((path, "" if t.image is not None else t.error) for t, path in zip(drawn, results.paths))
            if featureviz and results is top:
                picture = cached(layer, channel)
                ideal = Image.fromarray(picture).resize((TILE, TILE)) if picture is not None else None
                drawn.insert(0, Tile(ideal, "feature viz", note="" if ideal is not None else
                                     f"not cached: {command(layer, channel)}"))
            rows.append((label, drawn))
    what = "receptive-field crops around the peak" if crop else "whole images"
    top_n = min(k, int(layer.usable.sum()))  # a store of 200 images shows 200, whatever k asked
    title = (f"{layer.name}: top {top_n} images per channel by spatial {by} ({what}"
             f"{'; heatmaps of the channel, black 0 to bright at the value by its label' if heatmap else ''})")
    return grid_figure(rows, title, layer.note())
