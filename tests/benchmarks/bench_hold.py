"""``similar`` and a dense direction from the store, then within ``layer.hold(["mean"])``.

Usage: .venv/bin/python tests/benchmarks/bench_hold.py [N ...]   (default: 50000 1281167)

For each N, a store is imported from a ReLU-like random (N, 508) matrix (as
``bench_query.py`` makes it); ``layer.similar(11)`` and a direction of 254 channels
are timed twice each reading the store, then the means are held (the read timed)
and the same queries timed twice again and checked equal. Peak memory is the
process's (``ru_maxrss``), so run one N at a time for its own figure.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_query import make_inputs


def _timed(call):
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def run(n: int, workdir: Path) -> str:
    import pipeline
    from pipeline.importing import import_matrix

    matrix, paths = make_inputs(workdir, n)
    store = workdir / f"s{n}.zarr"
    import_matrix(store, np.load(matrix, mmap_mode="r"), "mixed4a", paths.read_text().splitlines())
    layer = pipeline.open_store(store)["mixed4a"]
    layer.topk(0)  # the path list and the done markers, read once
    direction = ",".join(f"{c}:1" for c in range(0, 508, 2))
    queries = {"similar": lambda: layer.similar(11).rows.tolist(),
               "direction": lambda: layer.direction(direction).rows.tolist()}
    read = {name: [_timed(q) for _ in range(2)] for name, q in queries.items()}
    hold = layer.hold(["mean"])
    seconds, _ = _timed(hold.__enter__)
    try:
        held = {name: [_timed(q) for _ in range(2)] for name, q in queries.items()}
    finally:
        hold.__exit__(None, None, None)
    for name in queries:
        assert all(r == read[name][0][1] for _, r in read[name] + held[name]), name
    shown = "; ".join(f"{name} {', '.join(f'{t:.2f}' for t, _ in read[name])} s from the store, "
                      f"{', '.join(f'{t:.2f}' for t, _ in held[name])} s held" for name in queries)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return f"{n:,} x 508: {shown}; the hold's read {seconds:.2f} s; peak {peak:.0f} MB"


if __name__ == "__main__":
    for n in [int(a) for a in sys.argv[1:]] or [50_000, 1_281_167]:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            print(run(n, Path(tmp)), flush=True)
