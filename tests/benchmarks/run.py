"""``make bench``: every benchmark, in one run, printed as README-ready tables.

Usage: .venv/bin/python tests/benchmarks/run.py [extract] [query] [stats] [gallery] [hold] [startup]

``startup`` (1.28M empty files, as many inodes) runs only when named.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_extract  # noqa: E402
import bench_gallery  # noqa: E402
import bench_hold  # noqa: E402
import bench_query  # noqa: E402
import bench_startup  # noqa: E402
import bench_stats  # noqa: E402
from common import machine  # noqa: E402


def main(which: list[str]) -> None:
    which = which or ["extract", "query", "stats", "gallery", "hold"]
    print(f"machine: {machine()}\n")
    notebook_rate = None
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        if "extract" in which:
            rows = bench_extract.run(Path(tmp) / "extract")
            notebook_rate = rows[0]["rate"]
            print(bench_extract.report(rows), "\n", flush=True)
            rates = bench_extract.network_sweep()
            print(bench_extract.sweep_report(rates), "\n", flush=True)
            print(bench_extract.roofline_report(rates, bench_extract.roofline()), "\n", flush=True)
        if "query" in which:
            (Path(tmp) / "query").mkdir()
            print(bench_query.report(bench_query.run(Path(tmp) / "query"), notebook_rate), "\n", flush=True)
        if "stats" in which:
            (Path(tmp) / "stats").mkdir()
            print(bench_stats.report(bench_stats.run(Path(tmp) / "stats")), "\n", flush=True)
        if "startup" in which:
            print(bench_startup.report(bench_startup.run(bench_startup.IMAGENET_TRAIN, Path(tmp))), "\n", flush=True)
        if "gallery" in which:
            (Path(tmp) / "gallery").mkdir()
            print(bench_gallery.report(bench_gallery.run(Path(tmp) / "gallery")), "\n", flush=True)
        if "hold" in which:
            for n in (50_000, 1_281_167):  # peak memory is the whole run's here; bench_hold.py N alone gives each
                (Path(tmp) / f"hold{n}").mkdir()
                print(bench_hold.run(n, Path(tmp) / f"hold{n}"), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
