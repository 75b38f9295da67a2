"""Compiled against eager network, one process of two threads or two processes of one thread each.

    .venv/bin/python tests/benchmarks/threads_probe.py [SECONDS]

Answers whether ``--compile`` could gain from a lane per core: it prints each variant's
images/s (the network cut at mixed4a alone, batch 8, random weights, fp32); the two
one-thread processes start together and their rates are summed.
"""

from __future__ import annotations

import subprocess
import sys
import time

CHILD = """
import sys, time, torch
threads, compiled, seconds, start_at = int(sys.argv[1]), sys.argv[2] == "1", float(sys.argv[3]), float(sys.argv[4])
torch.set_num_threads(threads)
from pipeline.forward import forward_pass
from pipeline.model import cut, load_model
model, _ = load_model("random", 0)
forward = forward_pass(cut(model, ["mixed4a"]), torch.device("cpu"), "fp32", compiled, 8)
x = torch.randint(0, 256, (8, 3, 224, 224), dtype=torch.uint8)
with torch.inference_mode():
    for _ in range(3):
        forward(x)  # compilation and oneDNN's kernel choice
    while time.time() < start_at:
        time.sleep(0.01)
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        forward(x)
        n += 8
    print(n / (time.perf_counter() - started))
"""


def _rates(threads: int, compiled: bool, processes: int, seconds: float) -> list[float]:
    start_at = str(time.time() + 60)  # after every process has built (and compiled) its network
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(threads), str(int(compiled)), str(seconds), start_at],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(processes)]
    return [float(p.communicate()[0]) for p in procs]


def main(seconds: float = 15.0) -> None:
    for compiled in (False, True):
        name = "compiled" if compiled else "eager"
        one = _rates(2, compiled, 1, seconds)
        two = _rates(1, compiled, 2, seconds)
        print(f"{name}: one process, 2 threads {one[0]:.1f} images/s; "
              f"two processes, 1 thread each {' + '.join(f'{r:.1f}' for r in two)} = {sum(two):.1f}")


if __name__ == "__main__":
    main(*(float(a) for a in sys.argv[1:2]))
