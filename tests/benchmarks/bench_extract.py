"""Phase one against the notebook's loop, on the same images in the same run.

Steady-state images/s = (N_large - N_small) / (T_large - T_small), so that
imports, model build and worker start-up cancel; start-up is reported apart.
Each rate is the median of interleaved rounds (``ROUNDS``), with their range.
Peak memory is the whole process tree's (DataLoader workers included).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import ROOT, imagenet_like, timed

# The 896 images between the two take about 10 s: a start-up that varies by +-0.3 s then moves a rate by 3%, not 7%.
SMALL, LARGE = 64, 960
SWEEP_BATCHES = (1, 2, 4, 8, 16, 32, 64)


ROUNDS = 3


def _measure(commands: dict, rounds: int = ROUNDS) -> dict:
    """Steady rates of several commands, each the median over interleaved rounds.

    Every command first runs once untimed: that fills the page cache and
    torch.compile's cache, so the timed runs start equally. Then each round runs
    every command on the small and the large folder in turn; a drift of the
    machine (this one moves by 10%) falls on all of them alike, and the median
    of the rounds resists one disturbed run.
    """
    import statistics

    for command_for in commands.values():
        timed(command_for(SMALL))
    runs = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command_for in commands.items():
            runs[name].append((timed(command_for(SMALL)), timed(command_for(LARGE))))
    rows = {}
    for name, pairs in runs.items():
        rates = [(LARGE - SMALL) / (large[0] - small[0]) for small, large in pairs]
        rate = statistics.median(rates)
        startup = statistics.median(small[0] - SMALL / rate for small, _ in pairs)
        rows[name] = {"name": name, "rate": rate, "spread": (min(rates), max(rates)), "startup": startup,
                      "mem_small": max(small[1] for small, _ in pairs), "mem_large": max(large[1] for _, large in pairs)}
    return rows


# Each mode's options; "exact" is the default, the others are opt-in (issue 6).
# The three "exact, ..." rows are the defaults' alternatives, kept to show the choice.
MODES = {
    "exact (defaults)": [],
    "exact, --lanes 1 (each batch decoded, then computed, by both cores)": ["--lanes", "1"],
    "exact, --batch-size 32": ["--batch-size", "32"],
    "exact, --workers 1 (one decoding process)": ["--workers", "1"],
    "--decoder fast": ["--decoder", "fast"],
    "--precision bf16": ["--precision", "bf16"],
    "--precision bf16 --decoder fast": ["--precision", "bf16", "--decoder", "fast"],
    "--precision fp16": ["--precision", "fp16"],
    "--compile": ["--compile"],
    "--compile --precision bf16 --decoder fast": ["--compile", "--precision", "bf16", "--decoder", "fast"],
}


def run(workdir: Path, modes=MODES, rounds: int = ROUNDS) -> list[dict]:
    import zarr

    from pipeline.agreement import agreement

    folders = {n: imagenet_like(workdir / f"images_{n}", n) for n in (SMALL, LARGE)}
    py = sys.executable
    notebook = "notebook loop (batch 64, 2 workers, full network, hook)"
    commands = {notebook: lambda n: [py, str(ROOT / "tests/benchmarks/notebook_loop.py"), str(folders[n])]}
    stores = {name: (lambda n, i=i: workdir / f"store_{i}_{n}.zarr") for i, name in enumerate(modes)}
    for name, options in modes.items():
        commands[f"exemplars activations {name}"] = (
            lambda n, name=name, options=options: [py, "-m", "pipeline", "activations", str(folders[n]), "--store",
                                                   str(stores[name](n)), "--weights", "random", "--overwrite",
                                                   *options])
    measured = _measure(commands, rounds)
    rows, exact = [measured[notebook]], None
    for name in modes:  # the first mode is the defaults: the others are measured against it
        row = measured[f"exemplars activations {name}"]
        mean = zarr.open_group(str(stores[name](LARGE)), mode="r")["mixed4a/mean"][:]
        exact = mean if exact is None else exact
        row["agreement"] = agreement(exact, mean)
        rows.append(row)
    for row in rows:
        row["ratio"] = row["rate"] / rows[0]["rate"]
    return rows


def network_sweep(batches=SWEEP_BATCHES, precisions=("fp32", "bf16", "fp16"), images=64, rounds=3) -> dict:
    """The cut network alone (no decoding): images/s by batch size, median of interleaved rounds."""
    import statistics
    import time

    import torch

    from pipeline.forward import forward_pass
    from pipeline.model import cut, load_model

    model, _ = load_model("random", 0)
    nets = {p: forward_pass(cut(model, ["mixed4a"]), torch.device("cpu"), p, False, 1) for p in precisions}
    rates = {(p, b): [] for p in precisions for b in batches}
    x = torch.randint(0, 256, (max(batches), 3, 224, 224), dtype=torch.uint8)
    with torch.inference_mode():
        for _ in range(rounds):
            for (p, b) in rates:
                nets[p](x[:b])  # warm: oneDNN picks and caches its kernels per shape
                started, n = time.perf_counter(), 0
                while n < images:
                    nets[p](x[:b])
                    n += b
                rates[p, b].append(n / (time.perf_counter() - started))
    return {key: statistics.median(values) for key, values in rates.items()}


def roofline(size=2048, repeats=10) -> dict:
    """The cut network's GFLOP per image and this CPU's matmul GFLOP/s per precision.

    A large matmul is as close to the machine's peak as oneDNN/MKL get, so
    network rate x GFLOP / matmul rate says how far from the limit a precision is.
    """
    import time

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.model import cut, load_model

    net = cut(load_model("random", 0)[0], ["mixed4a"])  # outside the counter: tracing would count too
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, 224, 224))
    peak = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        for _ in range(3):
            a @ b
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        peak[name] = 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9
    return {"gflop": counter.get_total_flops() / 1e9, "size": size, "matmul": peak, "conv_share": _conv_share()}


def _conv_share(batch=8, repeats=4) -> float:
    """Share of the exact network's time spent in convolutions (torch.profiler, self time)."""
    import torch

    from pipeline.forward import forward_pass
    from pipeline.model import cut, load_model

    forward = forward_pass(cut(load_model("random", 0)[0], ["mixed4a"]), torch.device("cpu"), "fp32", False, batch)
    x = torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8)
    with torch.inference_mode():
        forward(x)
        with torch.profiler.profile() as prof:
            for _ in range(repeats):
                forward(x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if "convolution" in e.key) / total


def roofline_report(rates, roof, batch=8) -> str:
    lines = [f"| network alone, batch {batch} | images/s | GFLOP/s ({roof['gflop']:.2f} GFLOP per image) "
             f"| {roof['size']}² matmul GFLOP/s | share of the matmul rate |", "| --- | --- | --- | --- | --- |"]
    for p in sorted({p for p, _ in rates}, key=("fp32", "bf16", "fp16").index):
        achieved = rates[p, batch] * roof["gflop"]
        lines.append(f"| {p} | {rates[p, batch]:.1f} | {achieved:.0f} | {roof['matmul'][p]:.0f} | "
                     f"{achieved / roof['matmul'][p]:.0%} |")
    share = roof["conv_share"]
    conv_rate = rates["fp32", batch] * roof["gflop"] / share
    lines.append(f"\nfp32: convolutions take {share:.0%} of the network's time (torch.profiler), so they run "
                 f"at {conv_rate:.0f} GFLOP/s, {conv_rate / roof['matmul']['fp32']:.0%} of the fp32 matmul rate.")
    return "\n".join(lines)


def sweep_report(rates) -> str:
    batches = sorted({b for _, b in rates})
    lines = ["| network alone, images/s | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "| --- |" + " --- |" * len(batches)]
    for p in sorted({p for p, _ in rates}, key=("fp32", "bf16", "fp16").index):
        lines.append(f"| {p} | " + " | ".join(f"{rates[p, b]:.1f}" for b in batches) + " |")
    return "\n".join(lines)


def report(rows) -> str:
    lines = ["| phase one | images/s (steady, median) | rounds' range | × notebook | start-up s "
             f"| peak MB ({SMALL} / {LARGE} images) | top-10 overlap vs exact | max relative error |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        agree = r.get("agreement")
        extra = (f"{agree['topk_overlap']:.3f} | {agree['max_relative_error']:.2e}" if agree else "– | –")
        low, high = r["spread"]
        lines.append(f"| {r['name']} | {r['rate']:.1f} | {low:.1f}–{high:.1f} | {r['ratio']:.2f} | "
                     f"{r['startup']:.1f} | {r['mem_small']:.0f} / {r['mem_large']:.0f} | {extra} |")
    return "\n".join(lines)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(report(run(Path(tmp))))
    rates = network_sweep()
    print(sweep_report(rates))
    print(roofline_report(rates, roofline()))
