"""``exemplars stats`` over a 1,281,167 x 508 store (mean and max), under /usr/bin/time -v.

The store is made with ``exemplars import`` from ReLU-like random matrices and
1,000 labelled classes, the size of ImageNet train.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import ROOT

N, C, CLASSES = 1_281_167, 508, 1000


def _matrix(path: Path, seed: int) -> Path:
    m = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(N, C))
    rng = np.random.default_rng(seed)
    for lo in range(0, N, 65536):
        hi = min(N, lo + 65536)
        m[lo:hi] = np.maximum(rng.standard_normal((hi - lo, C), dtype=np.float32), 0)
    m.flush()
    return path


def run(workdir: Path) -> dict:
    mean, peak = _matrix(workdir / "mean.npy", 0), _matrix(workdir / "max.npy", 1)
    labels = workdir / "labels.npy"
    np.save(labels, (np.arange(N) % CLASSES).astype(np.int32))
    (workdir / "paths.txt").write_text("\n".join(f"n{i % CLASSES:08d}/{i:08d}.JPEG" for i in range(N)))
    (workdir / "classes.txt").write_text("\n".join(f"n{k:08d}" for k in range(CLASSES)))
    store = workdir / "s.zarr"
    subprocess.run([sys.executable, "-m", "pipeline", "import", str(mean), "--max", str(peak), "--store", str(store),
                    "--layer", "mixed4a", "--paths", str(workdir / "paths.txt"), "--labels", str(labels),
                    "--classes", str(workdir / "classes.txt")], check=True, capture_output=True, cwd=ROOT)
    mean.unlink()
    peak.unlink()
    proc = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "pipeline", "stats", "--store", str(store),
                           "--layer", "mixed4a", "-o", str(workdir / "stats")],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    hours, minutes, seconds = (float(g) if g else 0.0 for g in wall.groups())
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return {"seconds": hours * 3600 + minutes * 60 + seconds, "peak_mb": rss / 1024, "summary": proc.stdout}


def report(result: dict) -> str:
    return ("| `exemplars stats` over 1,281,167 × 508 (mean and max, 1,000 classes) | wall | peak RSS |\n"
            "| --- | --- | --- |\n"
            f"| /usr/bin/time -v | {result['seconds']:.1f} s | {result['peak_mb']:.0f} MB |")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        print(report(run(Path(tmp))))
