"""``exemplars gallery`` for all 508 channels of a 50,000-image store, 10 exemplars with crops.

The 50,000 ImageNet-sized JPEGs are generated once (kept in /tmp for later
runs); the store is written with ``pipeline.store``'s own writer from random
ReLU-like statistics and random peak positions, with mixed4a's geometry, so
that the gallery meets a realistic spread of exemplars across images.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from common import ROOT, make_image

N, C, CLASSES = 50_000, 508, 1000
IMAGES = Path("/tmp/exemplars-bench-50k")


def _write(start: int) -> None:
    rng = np.random.default_rng(start)
    for i in range(start, min(N, start + 1000)):
        path = IMAGES / f"n{i % CLASSES:08d}" / f"img_{i:06d}.jpg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            w, h = (500, 375) if i % 3 else (375, 500)
            make_image(rng, w, h).save(path, quality=90)


def make_store(path: Path) -> Path:
    from pipeline import images as imgs
    from pipeline import store as st

    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write, range(0, N, 1000)))
    found = imgs.scan(IMAGES)
    meta = {"dataset": {"root": found.root, "layout": found.layout, "n_images": N},
            "dataset_fingerprint": imgs.fingerprint(found), "preprocessing": imgs.PREPROCESSING,
            "model": {"name": "benchmark", "weights": {"kind": "random", "name": "random", "seed": 0}}}
    group = st.create_store(path, meta, {"path": found.paths, "label": found.labels, "classes": found.classes,
                                         "size": found.sizes, "mtime_ns": found.mtimes}, N, overwrite=True)
    st.add_layer(group, "mixed4a", C, (14, 14), {
        "weights": meta["model"]["weights"], "input_size": 224,
        "receptive_field": {"size": 171, "stride": 16, "start": -70.0},
        "branches": {"1x1": [0, 192], "3x3": [192, 396], "5x5": [396, 444], "pool": [444, 508]}})
    rng = np.random.default_rng(0)
    mean = np.maximum(rng.standard_normal((N, C), dtype=np.float32), 0)
    peak = mean * 3 + rng.random((N, C), dtype=np.float32)
    where = rng.integers(0, 196, (N, C)).astype(np.int32)
    st.write_shard(group, ["mixed4a"], 0, {"mixed4a": (mean, peak, where)}, np.ones(N, bool), [""] * N)
    st.refresh_completeness(group, "mixed4a")
    return path


def run(workdir: Path) -> dict:
    store = make_store(workdir / "s.zarr")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "gallery", "--store", str(store), "-o",
                           str(workdir / "site"), "-k", "10"], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline", "gallery", "--store", str(store), "-o",
                    str(workdir / "site"), "-k", "10"], capture_output=True, text=True, cwd=ROOT, check=True)
    return {"seconds": seconds, "again": time.perf_counter() - start, "line": proc.stdout.strip()}


def report(result: dict) -> str:
    return ("| `exemplars gallery` (508 channels, 50,000 images, k = 10 with crops) | first build | rebuild |\n"
            "| --- | --- | --- |\n"
            f"| {result['line']} | {result['seconds']:.1f} s | {result['again']:.1f} s |")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        print(report(run(Path(tmp))))
