"""Where results are written: checked before the work, so a typo never costs a long run.

Offers:
    folder(path) -> Path                    made if missing; an existing file is refused
    figure_file(path) -> Path               a file matplotlib can write (png, pdf, svg, ...)
    image_file(path) -> Path                a file PIL can write (png, jpg, webp, ...)

Each raises OutputError (one sentence) instead of an OSError from deep inside a save.
"""

from __future__ import annotations

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
    return path


def figure_file(path) -> Path:
    from matplotlib.backend_bases import FigureCanvasBase

    return _file(path, set(FigureCanvasBase.get_supported_filetypes()), "a figure")


def image_file(path) -> Path:
    from PIL import Image

    formats = {ext.lstrip(".") for ext, name in Image.registered_extensions().items()
               if name in Image.SAVE}
    return _file(path, formats, "an image")
