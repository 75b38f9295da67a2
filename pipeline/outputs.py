"""Where results are written: checked before the work, so a typo never costs a long run.

Offers:
    folder(path) -> Path                    made if missing, and written into once; an existing file is refused
    figure_file(path) -> Path               a file matplotlib can write (png, pdf, svg, ...), opened once
    image_file(path) -> Path                a file PIL can write (png, jpg, webp, ...), opened once

Each raises OutputError (one sentence) instead of an OSError from deep inside a save.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .errors import OutputError


def folder(path) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file; give a folder to write into")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot make folder {path}: {exc.strerror}") from None
    try:
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        raise OutputError(f"cannot write into folder {path}: {exc.strerror}") from None
    return path


def _file(path, formats: set[str], kind: str) -> Path:
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise OutputError(f"cannot write {kind} {path}: its name must end in one of "
                          f"{', '.join('.' + f for f in sorted(formats))}")
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    folder(path.parent)
    _writable(path)
    return path


def _writable(path: Path) -> None:
    """Open the file for appending (and remove it again if it was not there): the one sure test."""
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    if not existed:
        path.unlink()


# What each writer saves in colour without extra programs (matplotlib's pgf needs LaTeX;
# PIL lists formats such as xbm or h5 whose writers refuse RGB or need a plugin).
FIGURE_FORMATS = {"png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp"}
IMAGE_FORMATS = {"png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp", "gif", "ppm"}


def figure_file(path) -> Path:
    from matplotlib.backend_bases import FigureCanvasBase

    return _file(path, FIGURE_FORMATS & set(FigureCanvasBase.get_supported_filetypes()), "a figure")


def image_file(path) -> Path:
    from PIL import Image

    formats = {ext.lstrip(".") for ext, name in Image.registered_extensions().items() if name in Image.SAVE}
    return _file(path, IMAGE_FORMATS & formats, "an image")
