"""Phase one against the notebook's loop, on the same images in the same run.

Steady-state images/s = (N_large - N_small) / (T_large - T_small), so that
imports, model build and worker start-up cancel; start-up is reported apart.
Peak memory is the whole process tree's (DataLoader workers included).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common import ROOT, imagenet_like, timed

SMALL, LARGE = 64, 448


def _measure(name, command_for):
    runs = {}
    for label, folder in (("small", SMALL), ("large", LARGE)):
        runs[label] = timed(command_for(folder))
    (ts, ms, _), (tl, ml, _) = runs["small"], runs["large"]
    rate = (LARGE - SMALL) / (tl - ts)
    return {"name": name, "rate": rate, "startup": ts - SMALL / rate, "mem_small": ms, "mem_large": ml}


def run(workdir: Path) -> list[dict]:
    folders = {n: imagenet_like(workdir / f"images_{n}", n) for n in (SMALL, LARGE)}
    py = sys.executable
    notebook = _measure("notebook loop (batch 64, 2 workers, full network, hook)",
                        lambda n: [py, str(ROOT / "tests/benchmarks/notebook_loop.py"), str(folders[n])])
    ours = _measure("exemplars activations (defaults)",
                    lambda n: [py, "-m", "pipeline", "activations", str(folders[n]), "--store",
                               str(workdir / f"store_{n}.zarr"), "--weights", "random", "--overwrite"])
    rows = [notebook, ours]
    for row in rows:
        row["ratio"] = row["rate"] / notebook["rate"]
    return rows


def report(rows) -> str:
    lines = ["| phase one | images/s (steady) | × notebook | start-up s | peak MB (64 / 448 images) |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['rate']:.1f} | {r['ratio']:.2f} | {r['startup']:.1f} | "
                     f"{r['mem_small']:.0f} / {r['mem_large']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(report(run(Path(tmp))))
