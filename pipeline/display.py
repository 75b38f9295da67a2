"""The images as the notebook displays them, and whether a file is still the one phase one measured.

Offers:
    display_image(root, path, recorded=None) -> (PIL.Image | None, error)  the 224x224 image the
                                 model saw, as the notebook displays it (torch-free); None where
                                 the file is missing, unreadable or changed
    changed(path, recorded) -> str   why the file is not the one measured ("" where nothing says so)
    differs(now, recorded) -> str    the same for a stat taken already
    unshown(error) -> str            a placeholder's word: "missing", "unreadable" or "changed"
    CHANGED                          the words that start a changed file's error
"""

from __future__ import annotations

import os

from PIL import Image

from .images import PREPROCESSING, file_stat, load_rgb


CHANGED = "changed since the store was made"


def changed(path: str, recorded) -> str:
    """Why the file at ``path`` is not the one phase one measured, "" where nothing says so.

    ``recorded`` is the store's (size, mtime_ns) of that row (``Store.recorded``), its mtime None
    where it is not to be compared, or None where nothing was recorded (an imported store). A stat,
    never a hash: drawing an image must stay as cheap as decoding it. A missing file is not
    "changed": opening it says so.
    """
    return differs(file_stat(path) if recorded is not None else None, recorded)


def differs(now, recorded) -> str:
    """``changed`` for a file's ``now`` (``file_stat``), taken already."""
    if now is None or recorded is None:
        return ""
    size, mtime = recorded
    if now[0] != size:
        return f"{CHANGED} (now {now[0]} bytes, was {size})"
    if mtime is not None and now[1] != mtime:
        return f"{CHANGED} (same size, another modification time)"
    return ""


def unshown(error: str) -> str:
    """The word a placeholder starts with for ``display_image``'s error: a file that is there but
    cannot be decoded is no "missing" one."""
    if error.startswith(CHANGED):
        return "changed"
    if error in ("FileNotFoundError", "NotADirectoryError") or "no dataset root" in error:
        return "missing"
    return "unreadable"


def display_image(root: str | None, path: str, recorded=None):
    """The notebook's Resize(256) + CenterCrop(224) with PIL alone; (None, why) if unreadable, or
    if the file is no longer the one measured (``recorded``: see ``changed``): the picture would
    stand beside another image's activation."""
    if root is None:
        return None, "the store records no dataset root"
    why = changed(os.path.join(root, path), recorded)
    if why:
        return None, why
    try:
        image = load_rgb(os.path.join(root, path))
    except Exception as exc:  # a missing or broken file becomes a labelled placeholder
        return None, f"{exc.__class__.__name__}"
    size, crop = PREPROCESSING["resize"], PREPROCESSING["center_crop"]
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)  # torchvision's rounding
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top, left = int(round((new_h - crop) / 2.0)), int(round((new_w - crop) / 2.0))
    return image.crop((left, top, left + crop, top + crop)), ""
