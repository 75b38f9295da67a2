"""Helpers shared by the benchmarks: ImageNet-sized folders, timed subprocesses.

Timings are ratios against a baseline measured in the same run, because this
machine is noisy; start-up is removed by timing a small and a large folder.
"""

from __future__ import annotations

import os
import contextlib
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_image  # noqa: E402


def imagenet_like(root: Path, n: int, classes: int = 10, seed: int = 0) -> Path:
    """``n`` JPEGs of ImageNet's typical size (about 500x375, quality 90)."""
    if root.exists() and len(list(root.rglob("*.jpg"))) == n:
        return root
    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = root / f"n{i % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        w, h = (500, 375) if i % 3 else (375, 500)
        make_image(rng, w, h).save(folder / f"img_{i:06d}.jpg", quality=90)
    return root


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def timed(cmd: list[str], env=None) -> tuple[float, float, str]:
    """Run ``cmd``; return (seconds, peak RSS in MB of its whole process tree, stdout).

    The tree's RSS (workers included) is sampled every 20 ms.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=dict(os.environ, **(env or {})))
    peak, watched = 0, psutil.Process(proc.pid)
    while proc.poll() is None:
        peak = max(peak, _tree_rss(watched))
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed:\n{err[-2000:]}")
    return seconds, peak / 1e6, out


def machine() -> str:
    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")
