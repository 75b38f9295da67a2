"""Phase one's start-up at ImageNet-train size: listing, store creation and the resume check.

Makes ``N`` empty files named as ImageNet's (1,000 class folders of ``nXXXXXXXX_i.JPEG``),
then times, in this process: ``images.scan`` against the least any tool pays (``os.walk``
and one ``os.stat`` per file, in the same run), creating the store's image arrays, and
reopening it as a resumed run does (the fingerprint compared). The network is not run:
these are the seconds before the first batch. Usage:
    python tests/benchmarks/bench_startup.py [N] [FOLDER]
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

IMAGENET_TRAIN = 1_281_167


def make_tree(root: Path, n: int, classes: int = 1000) -> Path:
    """Empty files, ``n`` in all: only names, sizes and times matter to start-up."""
    marker = root / f".made_{n}"
    if marker.exists():
        return root
    for c in range(classes):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(c, n, classes):
            os.close(os.open(folder / f"n{c:08d}_{i}.JPEG", os.O_CREAT | os.O_WRONLY, 0o644))
    marker.touch()
    return root


def walk_and_stat(root: Path) -> int:
    """The baseline: every file listed and stat()ed once, nothing else."""
    count = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            os.stat(os.path.join(dirpath, name))
            count += 1
    return count


def seconds(call):
    started = time.perf_counter()
    out = call()
    return time.perf_counter() - started, out


def run(n: int, workdir: Path) -> dict:
    from pipeline import images as imgs
    from pipeline import store as st
    from pipeline.opening import image_arrays, root_meta as _root_meta

    tree = make_tree(workdir / "tree", n)
    walk_and_stat(tree)  # the first pass warms the file system's caches for both
    base, count = seconds(lambda: walk_and_stat(tree))
    scan, listed = seconds(lambda: imgs.scan(tree))
    assert len(listed) == n and count == n + 1  # the marker file is no image
    meta = _root_meta(listed, {"kind": "random", "seed": 0})
    store = workdir / "s.zarr"
    create, _ = seconds(lambda: st.create_store(store, meta, image_arrays(listed), st.DEFAULT_SHARD_ROWS,
                                                overwrite=True))
    rescan, again = seconds(lambda: imgs.scan(tree))
    resume, _ = seconds(lambda: st.create_store(store, _root_meta(again, {"kind": "random", "seed": 0}),
                                                image_arrays(again), st.DEFAULT_SHARD_ROWS, overwrite=False))
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    return {"n": len(listed), "walk_stat": base, "scan": scan, "create": create, "rescan": rescan,
            "resume": resume, "store_mb": size / 1e6,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def report(r: dict) -> str:
    return "\n".join([
        f"start-up of phase one at {r['n']:,} files (empty, ImageNet-train's names), one process:",
        "| step | seconds | note |", "| --- | --- | --- |",
        f"| os.walk + os.stat of every file (baseline) | {r['walk_stat']:.1f} | the least any tool pays |",
        f"| images.scan (list, sort, labels, stat) | {r['scan']:.1f} | {r['scan'] / r['walk_stat']:.2f}x the baseline |",
        f"| create the store's image arrays | {r['create']:.1f} | {r['store_mb']:.0f} MB on disk |",
        f"| resume: scan again + reopen and compare | {r['rescan'] + r['resume']:.1f} | "
        f"scan {r['rescan']:.1f} + compare {r['resume']:.1f} |",
        f"| peak memory of the process | {r['peak_mb']:.0f} MB | |"])


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else IMAGENET_TRAIN
    if len(sys.argv) > 2:
        print(report(run(n, Path(sys.argv[2]))))
    else:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            print(report(run(n, Path(tmp))))
