"""Build data/sample: about 200 small JPEGs in an ImageFolder tree.

Run from the repository root:  .venv/bin/python data/make_sample.py
Needs scikit-image (``pip install scikit-image``), whose bundled photos are
public domain or CC0 (see data/README.md). The output is deterministic: a
fixed seed picks every crop, flip and scale.
"""

from __future__ import annotations

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
    import io

    import skimage.data

    rng = np.random.default_rng(SEED)
    made = set()
    for folder, name in SOURCES.items():
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        (out / folder).mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            path = out / folder / f"{folder}_{i:03d}.jpg"
            encoded = io.BytesIO()
            variant(image, rng).save(encoded, format="JPEG", quality=85)
            # An unchanged file keeps its modification time, so a store made from it still resumes.
            if not path.exists() or path.read_bytes() != encoded.getvalue():
                path.write_bytes(encoded.getvalue())
            made.add(path)
    for stale in set(out.rglob("*")) - made:
        if stale.is_file():
            stale.unlink()
    for folder in sorted((p for p in out.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    files = list(out.rglob("*.jpg"))
    print(f"{len(files)} images, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB in {out}")


if __name__ == "__main__":
    main()
