"""Human-readable class names: ImageNet WordNet ids become their names.

Offers:
    imagenet_names() -> {wnid: name}   the 1,000 ImageNet-1k classes (shipped table)
    human_names(classes) -> list[str]  folder names, with known WordNet ids replaced
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

TABLE = Path(__file__).with_name("imagenet_classes.tsv")


@lru_cache(maxsize=1)
def imagenet_names() -> dict[str, str]:
    names = {}
    for line in TABLE.read_text().splitlines():
        if line and not line.startswith("#"):
            wnid, name = line.split("\t", 1)
            names[wnid] = name
    return names


def human_names(classes) -> list[str]:
    classes = list(classes)
    if not any(c.startswith("n") and c[1:].isdigit() for c in classes):
        return classes
    table = imagenet_names()
    return [table.get(c, c) for c in classes]
