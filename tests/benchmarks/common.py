"""Helpers shared by the benchmarks: ImageNet-sized folders, timed subprocesses.

Timings are ratios against a baseline measured in the same run, because this
machine is noisy; start-up is removed by timing a small and a large folder.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
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


def _stop(proc: subprocess.Popen, watched: psutil.Process) -> None:
    """Kill a command and its workers, after SIGABRT makes Python print every thread's stack."""
    children = watched.children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGABRT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    proc.kill()
    proc.wait()


def timed(cmd: list[str], env=None, timeout: float | None = None) -> tuple[float, float, str]:
    """Run ``cmd``; return (seconds, peak RSS in MB of its whole process tree, stdout).

    The tree's RSS (workers included) is sampled every 20 ms. Output goes to
    files, not pipes: a progress bar filling a pipe nobody reads would block the
    command forever. Past ``timeout`` seconds the command is killed and
    TimeoutError raised, carrying the end of its stderr with its threads' stacks.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        # faulthandler lets a stuck command say where it is stuck (see _stop).
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=ROOT,
                                env=dict(os.environ, PYTHONFAULTHANDLER="1", **(env or {})))
        peak, watched = 0, psutil.Process(proc.pid)
        while proc.poll() is None:
            peak = max(peak, _tree_rss(watched))
            if timeout is not None and time.perf_counter() - start > timeout:
                _stop(proc, watched)
                err.seek(0)
                # faulthandler's list of extension modules would push the stacks out of the tail.
                stacks = "\n".join(line for line in err.read().splitlines() if not line.startswith("Extension modules"))
                raise TimeoutError(f"{cmd} did not finish within {timeout:.0f} s; its stderr ends:\n{stacks[-4000:]}")
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed:\n{stderr[-2000:]}")
    return seconds, peak / 1e6, stdout


def machine() -> str:
    import torch

    from pipeline.hardware import cpu_flags

    # bf16's and fp16's rates depend on these matrix units more than on anything else here
    units = ", ".join(f"{unit}: {'yes' if unit in cpu_flags() else 'no'}" for unit in ("amx_bf16", "amx_fp16"))
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {units}")
