"""Where phase one's time goes on CUDA: each half alone, in one process.

Prints, for the same ImageNet-sized JPEGs:
  - the network alone (cut at mixed4a, batch 256) in float32, TF32 and fp16,
  - the loader alone (worker processes, no network) for each decoder,
  - ``finish_batch`` with the GPU decoder, per batch of 256,
so the end-to-end rates of ``gpu.py`` can be read against their two ceilings.
``exemplars activations --decoder fast`` under cProfile (where the main
process spends its time), and ``exemplars activations --decoder gpu`` end to end. A step that hangs
prints every thread's stack (faulthandler) and ends the probe, so the
riskiest steps come last. Where no CUDA device exists it says so and exits 0.
Usage: python tests/benchmarks/gpu_probe.py [N_IMAGES]
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import timed  # noqa: E402
from gpu import activations, cut_network, folder, profiled, say  # noqa: E402

GFLOP = 1.97  # per image, the cut network (bench_extract.roofline counts it)
STEP_S = 60  # a step still running after this prints its stacks and the process exits


def network(batch_size: int = 256) -> None:
    import torch

    from pipeline.forward import ieee_fp32
    from pipeline.images import to_model_input

    net = cut_network().to("cuda", memory_format=torch.channels_last)
    batch = torch.randint(0, 256, (batch_size, 3, 224, 224), dtype=torch.uint8, device="cuda")
    modes = {"float32 (exact)": ieee_fp32, "TF32": contextlib.nullcontext,
             "fp16 autocast": lambda: torch.autocast("cuda", dtype=torch.float16)}
    torch.backends.cudnn.allow_tf32 = True
    with torch.inference_mode():
        for name, context in modes.items():
            x = to_model_input(batch).contiguous(memory_format=torch.channels_last)
            with context():
                for _ in range(3):
                    net(x)
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(10):
                    net(x)
                torch.cuda.synchronize()
            rate = 10 * batch_size / (time.perf_counter() - start)
            say(f"network alone, {name}, batch {batch_size}: {rate:,.0f} images/s "
                f"({rate * GFLOP / 1e3:.1f} TFLOP/s)")


def loader(data: Path, decoder: str, workers: int, batch_size: int = 256) -> None:
    import torch

    from pipeline.decode import finish_batch
    from pipeline.loading import make_loader
    from pipeline.shards import ShardBatches
    from pipeline.images import scan

    images = scan(data)
    n = len(images.paths)
    sampler = ShardBatches([0], n, n, batch_size)
    # Workers decode ahead from the start: count only batches after every worker has
    # delivered twice, when arrivals are paced by decoding alone.
    start, arrivals = time.perf_counter(), []
    for index, _, _, _ in make_loader(images, sampler, workers, 1, True, decoder):
        arrivals.append((time.perf_counter(), len(index)))  # a gpu batch is an Encoded, not a tensor
    k = min(2 * workers, len(arrivals) // 2)
    rate = sum(m for _, m in arrivals[k + 1:]) / (arrivals[-1][0] - arrivals[k][0])
    say(f"loader alone, --decoder {decoder}, {workers} workers: {rate:,.0f} images/s "
        f"(first batch after {arrivals[0][0] - start:.1f} s)")
    if decoder == "gpu":
        loaded = list(make_loader(images, ShardBatches([0], n, min(n, 2048), batch_size), workers, 1, True, decoder))
        finish_batch(loaded[0][1], torch.device("cuda"))  # warm: nvJPEG's handles and buffers
        say("finish_batch on one batch: ok")
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _, b, _, _ in loaded:
            finish_batch(b, torch.device("cuda"))
        torch.cuda.synchronize()
        rate = sum(len(index) for index, _, _, _ in loaded) / (time.perf_counter() - start)
        say(f"finish_batch (GPU decode + resize) alone: {rate:,.0f} images/s")


def end_to_end(data: Path, store: Path) -> None:
    seconds, _, _ = timed(activations(data, store, "--decoder", "gpu"), timeout=STEP_S - 5)
    say(f"activations --decoder gpu: {seconds:.1f} s for the folder, start-up included")


def main(n: int) -> None:
    import torch

    if not torch.cuda.is_available():
        print("gpu_probe: no CUDA device here; nothing measured")
        return
    workers = os.cpu_count() - 1
    steps = [("network", network)]
    with tempfile.TemporaryDirectory() as tmp:
        data = folder(Path(tmp) / "img", n)
        steps += [(f"loader {d}", lambda d=d: loader(data, d, workers)) for d in ("pil", "fast", "gpu")]
        steps.append(("profile", lambda: profiled(data, Path(tmp) / "fast.zarr", "--decoder", "fast", timeout=STEP_S - 5)))
        steps.append(("activations --decoder gpu", lambda: end_to_end(data, Path(tmp) / "gpu.zarr")))
        for name, step in steps:
            faulthandler.dump_traceback_later(STEP_S, exit=True)
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - a probe reports and goes on
                say(f"{name}: failed: {exc.__class__.__name__}: {str(exc)[-4000:]}")
            finally:
                faulthandler.cancel_dump_traceback_later()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 16000)
