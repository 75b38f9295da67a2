"""Feature visualisation (lucent's activation maximisation), cached in the store.

Offers:
    cached(layer, channel) -> uint8 (S, S, 3) or None      torch-free; damaged bytes: None, said
    featureviz(store_path, layer, channel, size, steps, seed, redo, not_cached=None) -> uint8 (S, S, 3)
    command(layer, channel) -> str   the command that caches a channel's picture, with the store's settings
    marked(picture, warning, title="") -> PIL image   the picture, centred, with a title and the store's warning under it

The picture is optimised once, with the store's own weights, and kept in
``<layer>/featureviz`` (one chunk per channel; ``featureviz_done`` marks which
exist), so pictures and galleries show the synthetic "ideal" input beside the
real exemplars without running the model again.
"""

from __future__ import annotations

import warnings

import numpy as np

from .damage import DECODE_ERRORS, out_of_bounds
from .errors import QueryError, StoreError, StoreLockedError, first_line
from .progress import say
from .writers import writer_lock

# lucent's images are 128-224 px; 100,000 asked numpy for 37 GiB before anything was said
SIZES = (16, 1024)


def cached(layer, channel: int):
    """The channel's cached picture, or None: not cached, or cached bytes that no longer decode
    (said in one line; ``featureviz`` then optimises it again and writes it over them)."""
    group = layer.group
    if "featureviz_done" not in group:
        return None
    try:
        if not bool(group["featureviz_done"][channel]):
            return None
        return np.asarray(group["featureviz"][channel])
    except DECODE_ERRORS as exc:
        if out_of_bounds(exc):
            raise
        say(f"warning: the cached feature visualisation of {layer.name} channel {channel} in {layer.store.path} "
            f"is damaged ({first_line(exc)}); `{command(layer, channel)} --redo` makes it again")
        return None


def _flags(settings: dict) -> str:
    return " ".join(f"--{name} {settings[name]}" for name in ("size", "steps", "seed") if name in settings)


def command(layer, channel: int) -> str:
    """``exemplars featureviz ...`` for ``channel``, with the settings the layer's pictures
    were cached with: the defaults' command would be refused on such a store."""
    settings = layer.attrs.get("featureviz")
    flags = f" {_flags(settings)}" if settings else ""
    return f"exemplars featureviz --store {layer.store.path} --layer {layer.name} -c {channel}{flags}"


def _optimise(store, layer: str, channel: int, size: int, steps: int, seed: int) -> np.ndarray:
    from .heatmap import model_for, weights_spec

    weights_spec(store)  # refused before torch's import
    import torch

    model = model_for(store)
    numpy_state = np.random.get_state()  # lucent's jitter, scale and rotation draw from numpy's global generator
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*")  # kornia's, at lucent's import
        from lucent.optvis import param, render

        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            images = render.render_vis(model, f"{layer}:{channel}", param_f=lambda: param.image(size),
                                       thresholds=(steps,), show_image=False, progress=False)
        finally:
            np.random.set_state(numpy_state)  # the caller's own draws go on as if nothing happened
    return (np.clip(images[-1][0], 0, 1) * 255).round().astype(np.uint8)


def featureviz(store_path, layer: str, channel: int, size: int = 128, steps: int = 128, seed: int = 0,
               redo: bool = False, not_cached: list | None = None):
    """The channel's feature visualisation, from the cache or optimised now and cached.

    One store caches one set of settings. ``redo`` optimises again and replaces the
    cached picture; with other settings it first drops every picture cached before.
    A picture that cannot be cached (a read-only store; the store changed during the
    optimisation) is still returned; ``not_cached``, a list, receives why.
    """
    from . import open_store
    from .parsing import whole_number
    from .places import location

    size, steps = whole_number(size, "size"), whole_number(steps, "steps")  # lucent wants ints: 16.5 failed in it
    if not SIZES[0] <= size <= SIZES[1] or steps < 1:
        raise QueryError(f"a feature visualisation takes --size {SIZES[0]} to {SIZES[1]} pixels and --steps of 1 or "
                         f"more, not --size {size} --steps {steps}")
    store_path = location(store_path)
    target = open_store(store_path)[layer]
    target.column(channel)  # validates the channel
    settings = {"size": size, "steps": steps, "seed": seed, "method": "lucent.optvis.render.render_vis, param.image"}
    stored = target.attrs.get("featureviz")
    if stored and stored != settings and not redo:
        raise QueryError(f"this store caches feature visualisations made with {_flags(stored)}; ask for the "
                         "same settings, or pass --redo to replace every cached picture")
    picture = None if redo else cached(target, channel)
    if picture is not None:
        return picture
    try:
        with writer_lock(store_path):  # refused now if a writer is at work, not after the optimisation
            pass
        why = ""
    except StoreError as exc:  # read-only: the picture is made all the same (a StoreLockedError is no StoreError)
        why = _why(exc)
    picture = _optimise(target.store, layer, channel, size, steps, seed)
    if not why:
        try:
            with writer_lock(store_path):
                why = _cache(store_path, target, channel, picture, settings, stored)
        except (StoreLockedError, StoreError) as exc:  # a writer came during the optimisation, or the store went
            why = _why(exc)
    if why and not_cached is not None:
        not_cached.append(why)
    return picture


def _why(exc) -> str:
    """A store error's first clause, as the reason a picture was not cached."""
    return str(exc).split(";")[0]


def _cache(store_path, target, channel: int, picture, settings: dict, stored) -> str:
    """Keep ``picture`` in the store, unless the store changed since ``target`` was read: then
    why not. Called under the writer's lock, so nothing changes it meanwhile."""
    from .store import open_group

    root = open_group(store_path, mode="r+")
    if dict(root.attrs).get("model") != target.store.attrs.get("model"):
        return "the store was remade with other weights during the optimisation"
    if target.name not in root:
        return f"layer {target.name} left the store during the optimisation"
    group = root[target.name]
    now = group.attrs.get("featureviz")
    if now not in (stored, settings):  # a run of other settings cached its pictures meanwhile: keep them
        return f"another run cached pictures made with {now} meanwhile"
    if now != settings:  # other settings, or a first run cut short
        for name in ("featureviz", "featureviz_done"):
            if name in group:
                del group[name]
    if "featureviz" not in group:
        size = settings["size"]
        group.create_array("featureviz", shape=(target.channels, size, size, 3), dtype="uint8",
                           chunks=(1, size, size, 3), fill_value=0, dimension_names=("channel", "y", "x", "rgb"))
        group.create_array("featureviz_done", shape=(target.channels,), dtype=bool, chunks=(1,),
                           fill_value=False, dimension_names=("channel",))
        group.attrs["featureviz"] = settings
    group["featureviz"][channel] = picture
    group["featureviz_done"][channel] = True
    return ""


def _font():
    """matplotlib's DejaVu Sans (PIL's default bitmap font ran "channel 97" together at this size)."""
    from matplotlib import font_manager
    from PIL import ImageFont

    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), 11)
    except OSError:
        return ImageFont.load_default()


def marked(picture: np.ndarray, warning: str, title: str = ""):
    """The picture as a PIL image, pixel for pixel, centred above ``title`` (e.g. "mixed4a channel 97")
    and ``warning`` (random weights) in red; the bare picture when there is neither."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(picture)
    lines = [(text, colour) for text, colour in ((title, (0, 0, 0)), (warning.split(":")[0], (176, 0, 32))) if text]
    if not lines:
        return image
    draw, font = ImageDraw.Draw(image), _font()
    boxes = [draw.textbbox((0, 0), text, font=font) for text, _ in lines]
    width = max(image.width, *(right + 6 for _, _, right, _ in boxes))
    out = Image.new("RGB", (width, image.height + sum(bottom + 4 for *_, bottom in boxes)), (255, 255, 255))
    out.paste(image, ((width - image.width) // 2, 0))
    y, canvas = image.height + 2, ImageDraw.Draw(out)
    for (text, colour), (_, _, right, bottom) in zip(lines, boxes):
        canvas.text(((width - right) // 2, y), text, fill=colour, font=font)
        y += bottom + 4
    return out
