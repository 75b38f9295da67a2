"""Phase two at ImageNet sizes: stores built with ``exemplars import``, then timed queries.

Reports the API's time per ``topk`` for random channels (store opened once)
and the wall time of ``exemplars topk`` in a fresh process; then every other
query kind through the API (``every_query``). Run alone, it prints both tables
for the ``pipeline`` on ``sys.path`` (``PYTHONPATH=<another checkout>`` times that one).
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
        kinds = every_query(layer, n)
        cli = [timed([sys.executable, "-m", "pipeline", "topk", "--store", str(store), "--layer", "mixed4a",
                      "--channel", str(c), "--json"])[0] for c in (5, 97, 301)]
        rows.append({"name": name, "n": n, "build_s": build, "api_ms": 1000 * statistics.median(per_query),
                     "api_max_ms": 1000 * max(per_query), "cli_s": statistics.median(cli),
                     "kinds": kinds, "store_gb": sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1e9})
        matrix.unlink()
    return rows


def _median_ms(call, args) -> tuple[float, float]:
    """(median, first) of ``call(a)`` over ``args``, in ms."""
    times = []
    for a in args:
        start = time.perf_counter()
        call(a)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), times[0]


def every_query(layer, n: int) -> dict:
    """Each query kind through the API, the store opened and warmed by ``topk`` (median ms)."""
    rng = np.random.default_rng(2)
    channels = rng.integers(0, CHANNELS, 10).tolist()
    kinds = {
        "bottom": _median_ms(lambda c: layer.topk(c, bottom=True), channels),
        "samples": _median_ms(layer.samples, channels),
        # The first diverse query reads the fingerprint columns; later ones reuse them.
        "diverse": _median_ms(lambda c: layer.topk(c, diverse=True), channels[:5]),
        "direction, 2 channels": _median_ms(lambda c: layer.direction(f"{c}:0.7,{(c + 1) % CHANNELS}:0.3"),
                                            channels[:5]),
        "direction, all channels": _median_ms(layer.direction, [rng.normal(size=CHANNELS) for _ in range(3)]),
        "similar": _median_ms(layer.similar, rng.integers(0, n, 3).tolist()),
    }
    return kinds


def kinds_report(rows) -> str:
    names = list(rows[0]["kinds"])
    lines = ["| store | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for r in rows:
        cells = []
        for name, (median, first) in r["kinds"].items():
            cells.append(f"{median:,.0f} ms (first {first:,.0f})" if name == "diverse" else f"{median:,.1f} ms"
                         if median < 100 else f"{median:,.0f} ms")
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(rows, notebook_rate: float | None = None) -> str:
    lines = ["| store | images × channels | API topk median (max) | `exemplars topk` wall | notebook: one full pass | store size | import time |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        notebook = f"{r['n'] / notebook_rate / 3600:.1f} h at {notebook_rate:.1f} img/s" if notebook_rate else "n/a"
        lines.append(f"| {r['name']} | {r['n']:,} × {CHANNELS} | {r['api_ms']:.1f} ms ({r['api_max_ms']:.1f}) | "
                     f"{r['cli_s']:.2f} s | {notebook} | {r['store_gb']:.2f} GB | {r['build_s']:.0f} s |")
    return "\n".join(lines) + "\n\nEvery other query kind, API, median:\n" + kinds_report(rows)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        print(report(run(Path(tmp))))
