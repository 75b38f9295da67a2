"""Exemplar grids: the notebook's figure from the store, with crops, heatmaps and bands.

Offers:
    Tile(image, caption, error)           one picture of a grid (image None: placeholder)
    parse_channels("0-9,97") -> [0..9, 97]
    tiles(layer, results, crop, heatmap) -> list[Tile]
    grid(layer, channels, k, by, crop, heatmap, bottom, samples, ...) -> matplotlib Figure

Torch is imported only for ``heatmap=True`` (through ``pipeline.heatmap``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import QueryError
from .geometry import from_dict
from .images import display_image

TILE = 160


@dataclass
class Tile:
    image: Image.Image | None
    caption: str
    error: str = ""


def parse_channels(text: str, channels: int) -> list[int]:
    out = []
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        try:
            lo, _, hi = part.partition("-")
            lo, hi = int(lo), int(hi or lo)
        except ValueError:
            raise QueryError(f"malformed channel list {text!r}; write e.g. 0-9 or 3,97,301") from None
        for c in (lo, hi):
            if not 0 <= c < channels:
                raise QueryError(f"channel {c} is out of range; this layer has channels 0-{channels - 1}")
        out.extend(range(lo, hi + 1))
    if not out:
        raise QueryError("no channels given; for instance --channels 0-9")
    return out


def crop_box(layer, y: int, x: int) -> tuple[int, int, int, int]:
    """The receptive field of unit (y, x), clipped to the 224 x 224 input (left, top, right, bottom)."""
    field = layer.attrs.get("receptive_field")
    if not field:
        raise QueryError(f"layer {layer.name} records no receptive field (an imported store); draw it without --crop")
    top, left, bottom, right = from_dict(field).box(y, x)
    size = int(layer.attrs.get("input_size", 224))
    return max(0, int(left)), max(0, int(top)), min(size, int(right)), min(size, int(bottom))


def overlay(image: Image.Image, heat: np.ndarray, scale: float) -> Image.Image:
    """The map, upsampled bilinearly and coloured, blended over the image."""
    from matplotlib import colormaps

    if not np.isfinite(heat).all():
        return image
    field = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F").resize(image.size, Image.Resampling.BILINEAR)
    values = np.clip(np.asarray(field) / (scale or 1.0), 0, 1)
    colour = (colormaps["inferno"](values)[..., :3] * 255).astype(np.uint8)
    return Image.blend(image.convert("RGB"), Image.fromarray(colour), 0.55)


def tiles(layer, results, crop: bool = False, heat: np.ndarray | None = None) -> list[Tile]:
    store = layer.store
    out = []
    peaks = layer.peaks(results.rows, results.channel) if crop else None
    scale = float(np.nanmax(heat)) if heat is not None and np.isfinite(heat).any() else 1.0
    for i, item in enumerate(results.to_list()):
        caption = f"{item['activation']:.3g}" + (f"  {item['band']}" if "band" in item else "")
        image, error = display_image(store.root, item["path"])
        if image is not None and heat is not None:
            image = overlay(image, heat[i], scale)
        if image is not None and crop:
            image = image.crop(crop_box(layer, *peaks[i]))
        if image is not None:
            image = image.resize((TILE, TILE), Image.Resampling.BICUBIC if crop else Image.Resampling.BILINEAR)
        out.append(Tile(image, caption, error and f"{item['path']}: {error}"))
    return out


def grid(layer, channels, k: int = 10, by: str = "mean", crop: bool = False, heatmap: bool = False,
         bottom: bool = False, samples: bool = False, per_band: int | None = None, featureviz: bool = False):
    """The notebook's figure (rows = channels, columns = ranks), with optional extra rows.

    ``featureviz`` puts each channel's cached feature visualisation first in its row.
    """
    from .featureviz import cached
    from .render import grid_figure

    channels = parse_channels(channels, layer.channels) if isinstance(channels, str) else list(channels)
    rows = []
    for channel in channels:
        queries = [(f"ch {channel}", layer.topk(channel, k=k, by=by))]
        if bottom:
            queries.append((f"ch {channel}\nbottom", layer.topk(channel, k=k, by=by, bottom=True)))
        if samples:
            queries.append((f"ch {channel}\nsamples", layer.samples(channel, per_band=per_band or max(1, k // 5), by=by)))
        for label, results in queries:
            heat = None
            if heatmap:
                from .heatmap import channel_maps

                heat = channel_maps(layer, results.rows, channel)
            drawn = tiles(layer, results, crop=crop, heat=heat)
            if featureviz and label == f"ch {channel}":
                picture = cached(layer, channel)
                ideal = Image.fromarray(picture).resize((TILE, TILE)) if picture is not None else None
                drawn.insert(0, Tile(ideal, "feature viz", "" if ideal is not None else
                                     f"not cached: exemplars featureviz -c {channel}"))
            rows.append((label, drawn))
    what = "receptive-field crops around the peak" if crop else "whole images"
    title = (f"{layer.name}: top {k} images per channel by spatial {by} ({what}"
             f"{', activation heatmaps' if heatmap else ''})")
    return grid_figure(rows, title, layer.note())
