"""Build data/sample: about 200 small JPEGs in an ImageFolder tree.

Run from the repository root:  .venv/bin/python data/make_sample.py
Needs scikit-image (``pip install scikit-image``), whose bundled photos are
public domain or CC0 (see data/README.md). The output is deterministic: a
fixed seed picks every crop, flip and scale.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

# class folder -> scikit-image function; all CC0 or public domain.
SOURCES = {
    "astronaut": "astronaut", "brick": "brick", "camera": "camera", "cat": "chelsea",
    "coffee": "coffee", "coins": "coins", "grass": "grass", "gravel": "gravel",
    "hubble": "hubble_deep_field", "rocket": "rocket",
}
PER_CLASS = 20
SEED = 2026


def variant(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random crop (30-100% of the side), maybe mirrored, scaled to 160-320 px."""
    w, h = image.size
    side = int(min(w, h) * rng.uniform(0.3, 1.0))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    aspect = rng.uniform(0.75, 1.33)
    crop = image.crop((x, y, x + side, y + min(h - y, int(side / aspect))))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    target = int(rng.integers(160, 321))
    scale = target / max(crop.size)
    return crop.resize((max(1, int(crop.width * scale)), max(1, int(crop.height * scale))),
                       Image.Resampling.LANCZOS)


def main(out: Path = Path(__file__).parent / "sample") -> None:
    import skimage.data

    rng = np.random.default_rng(SEED)
    shutil.rmtree(out, ignore_errors=True)
    for folder, name in SOURCES.items():
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        (out / folder).mkdir(parents=True)
        for i in range(PER_CLASS):
            variant(image, rng).save(out / folder / f"{folder}_{i:03d}.jpg", quality=85)
    files = list(out.rglob("*.jpg"))
    print(f"{len(files)} images, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB in {out}")


if __name__ == "__main__":
    main()
