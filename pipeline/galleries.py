"""Several layers' galleries in one folder, a subfolder each, and the index that links them. Offers:

    layers_folder(out_dir, names) -> Path   a folder checked for several layers' galleries, before they are built
    layers_index(out_dir, store_path, built, warning="") -> Path   an index.html linking them
"""

from __future__ import annotations

import json
from pathlib import Path

from . import outputs, pages
from .errors import OutputError
from .gallery import LAYERS, MANIFEST, foreign_entry


def layers_folder(out_dir, names=()) -> Path:
    """``out_dir`` made ready for several layers' galleries (``names``), before any is built: refused
    where it holds a page or a gallery that no build of several layers made, or where a layer's
    subfolder would take the name of the index's own files."""
    taken = [name for name in names if name in ("index.html", "style.css", MANIFEST, LAYERS)]
    if taken:
        raise OutputError(f"layer {taken[0]} would have its gallery in a folder named as the index's own "
                          "file; build it alone with -o")
    out = Path(out_dir).resolve()
    outputs.folder(out)
    if not (out / LAYERS).exists() and any((out / name).exists() for name in ("index.html", "style.css", MANIFEST)):
        raise OutputError(f"{out} holds an index.html, style.css or gallery that no build of several layers "
                          "made; give a new or empty folder with -o")
    stranger = foreign_entry(out, set(names)) if not (out / LAYERS).exists() else None
    if stranger:
        raise OutputError(f"{out} holds {stranger}, which no gallery build made; give a new or empty folder with -o")
    return out


def layers_index(out_dir, store_path: str, built: dict, warning: str = "") -> Path:
    """``out_dir/index.html``: a page linking the galleries of several layers, ``built`` {layer: Summary},
    each in its own subfolder of ``layers_folder(out_dir, names)``, made before the builds."""
    out = outputs.folder(Path(out_dir).resolve())
    items = "".join(f'<li><a href="{pages.esc(name)}/index.html">{pages.esc(name)}</a>: {s.channels} channels, '
                    f"{s.images} images shown</li>" for name, s in built.items())
    warn = f'<p class="warn">{pages.esc(warning)}</p>' if warning else ""
    (out / "style.css").write_text(pages.CSS, encoding="utf-8")
    (out / "index.html").write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        'content="width=device-width, initial-scale=1"><title>galleries</title><link rel="stylesheet" '
        f'href="style.css"></head><body>{warn}<h1>Galleries of {pages.esc(store_path)}</h1><ul>{items}</ul>'
        "</body></html>", encoding="utf-8")
    (out / LAYERS).write_text(json.dumps(sorted(built)), encoding="utf-8")
    return out / "index.html"
