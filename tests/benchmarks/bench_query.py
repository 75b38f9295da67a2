"""Phase two at ImageNet sizes: stores built with ``exemplars import``, then timed queries.

Reports the API's time per ``topk`` for random channels (store opened once)
and the wall time of ``exemplars topk`` in a fresh process.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import timed

SIZES = {"ImageNet train": 1_281_167, "ImageNet val": 50_000}
CHANNELS = 508


def make_inputs(workdir: Path, n: int) -> tuple[Path, Path]:
    """A ReLU-like (n, 508) float32 matrix (about half exact zeros) and its paths."""
    matrix = np.lib.format.open_memmap(workdir / f"m{n}.npy", mode="w+", dtype=np.float32, shape=(n, CHANNELS))
    rng = np.random.default_rng(0)
    for lo in range(0, n, 65536):
        hi = min(n, lo + 65536)
        matrix[lo:hi] = np.maximum(rng.standard_normal((hi - lo, CHANNELS), dtype=np.float32), 0)
    matrix.flush()
    paths = workdir / f"p{n}.txt"
    paths.write_text("\n".join(f"n{i % 1000:08d}/img_{i:08d}.JPEG" for i in range(n)))
    return workdir / f"m{n}.npy", paths


def run(workdir: Path) -> list[dict]:
    import pipeline

    rows = []
    for name, n in SIZES.items():
        matrix, paths = make_inputs(workdir, n)
        store = workdir / f"s{n}.zarr"
        build, _, _ = timed([sys.executable, "-m", "pipeline", "import", str(matrix), "--store", str(store),
                             "--layer", "mixed4a", "--paths", str(paths)])
        layer = pipeline.open_store(store)["mixed4a"]
        layer.topk(0)  # loads the valid mask and done markers once, as a notebook session would
        per_query = []
        for channel in np.random.default_rng(1).integers(0, CHANNELS, 30):
            start = time.perf_counter()
            layer.topk(int(channel), k=10)
            per_query.append(time.perf_counter() - start)
        cli = [timed([sys.executable, "-m", "pipeline", "topk", "--store", str(store), "--layer", "mixed4a",
                      "--channel", str(c), "--json"])[0] for c in (5, 97, 301)]
        rows.append({"name": name, "n": n, "build_s": build, "api_ms": 1000 * statistics.median(per_query),
                     "api_max_ms": 1000 * max(per_query), "cli_s": statistics.median(cli),
                     "store_gb": sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1e9})
        matrix.unlink()
    return rows


def report(rows, notebook_rate: float | None = None) -> str:
    lines = ["| store | images × channels | API topk median (max) | `exemplars topk` wall | notebook: one full pass | store size | import time |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        notebook = f"{r['n'] / notebook_rate / 3600:.1f} h at {notebook_rate:.1f} img/s" if notebook_rate else "n/a"
        lines.append(f"| {r['name']} | {r['n']:,} × {CHANNELS} | {r['api_ms']:.1f} ms ({r['api_max_ms']:.1f}) | "
                     f"{r['cli_s']:.2f} s | {notebook} | {r['store_gb']:.2f} GB | {r['build_s']:.0f} s |")
    return "\n".join(lines)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        print(report(run(Path(tmp))))
