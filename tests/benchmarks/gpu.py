"""``make bench-gpu``: phase one on CUDA against the notebook's loop, same images, same run.

Makes its own ImageNet-sized JPEGs (20,000 by default), times the notebook's
loop (batch 64, 2 workers, full network, hook) and ``exemplars activations``
on the GPU, each on a small and a large folder so start-up cancels.
Where no CUDA device exists it says so and exits 0. The whole script keeps
within ``BUDGET_S``: a variant that would pass it is killed and reported as
not finished, and the others still print. Usage:
    python tests/benchmarks/gpu.py [N_LARGE]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import ROOT, make_image, timed  # noqa: E402


def _write(args):
    root, start, stop = args
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        folder = root / f"n{i % 100:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        w, h = (500, 375) if i % 3 else (375, 500)
        make_image(rng, w, h).save(folder / f"img_{i:06d}.jpg", quality=90)


def folder(root: Path, n: int) -> Path:
    step = 500
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write, [(root, lo, min(n, lo + step)) for lo in range(0, n, step)]))
    return root


BUDGET_S = 450  # the issue allows 8 minutes; leave room for imports and clean-up


def _means(store):
    import zarr

    return zarr.open_group(store, mode="r")["mixed4a/mean"][:]


def main(large: int) -> None:
    from pipeline.agreement import agreement

    import torch

    if not torch.cuda.is_available():
        print("bench-gpu: no CUDA device here; nothing measured")
        return
    deadline = time.monotonic() + BUDGET_S
    small = max(large // 10, 1000)
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, {os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dirs = {n: folder(tmp / f"img{n}", n) for n in (small, large)}
        py = sys.executable
        workers = str(os.cpu_count() - 1)

        def ours(*options):
            return lambda n, tag="_".join(options) or "exact": [
                py, "-m", "pipeline", "activations", str(dirs[n]), "--store", str(tmp / f"s{n}{tag}.zarr"),
                "--weights", "random", "--device", "cuda", "--batch-size", "256", "--workers", workers,
                "--overwrite", *options]

        variants = {
            "notebook loop (batch 64, 2 workers)":
                lambda n: [py, str(ROOT / "tests/benchmarks/notebook_loop.py"), str(dirs[n]), "64", "2", "cuda"],
            f"exemplars, exact (batch 256, {workers} workers)": ours(),
            "exemplars --precision fp16": ours("--precision", "fp16"),
            "exemplars --decoder gpu": ours("--decoder", "gpu"),
            "exemplars --decoder gpu --precision fp16": ours("--decoder", "gpu", "--precision", "fp16"),
        }
        rates, stores = {}, {}
        for name, cmd in variants.items():
            try:
                ts, _, _ = timed(cmd(small), timeout=deadline - time.monotonic())
                tl, peak, _ = timed(cmd(large), timeout=deadline - time.monotonic())
            except (TimeoutError, RuntimeError) as exc:
                print(f"{name}: not measured: {str(exc)[-600:]}", flush=True)
                continue
            rates[name] = (large - small) / (tl - ts)
            store = cmd(large)[cmd(large).index("--store") + 1] if "--store" in cmd(large) else None
            stores[name] = store
            print(f"{name}: {rates[name]:.0f} images/s steady, start-up {ts - small / rates[name]:.1f} s, "
                  f"peak host memory {peak:.0f} MB", flush=True)
        base = rates.get(list(variants)[0])
        exact_name = list(variants)[1]
        exact = _means(stores[exact_name]) if exact_name in stores else None
        for name, rate in rates.items():
            agree = agreement(exact, _means(stores[name])) if stores[name] and exact is not None else None
            extra = f"{agree['topk_overlap']:.3f} | {agree['max_relative_error']:.2e}" if agree else "– | –"
            ratio = f"{rate / base:.2f}" if base else "–"
            print(f"| {name} | {rate:.0f} | {ratio} | {extra} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
