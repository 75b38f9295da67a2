"""CPU lanes: each core decodes and computes whole batches of its own, results in order.

Offers:
    lanes_for(device_type, workers, compiled, cores, asked=None) -> int   how many lanes phase one runs
    in_lanes(work, items, lanes) -> iterator of work(item), in the items' order
    one_thread_each(lanes, cores)                                          torch's threads split between lanes

Why lanes: with one lane (``--lanes 1``) a batch is decoded by every core and then goes
through the network on every core, and both halves lose time to their sharing: OpenMP's threads
spin after each parallel region while the decoding threads want the cores, and the
network's many small operations leave one core waiting at each barrier. With a lane per
core, each core runs whole batches alone, one thread each, and neither waits for the
other: phase one 1.02-1.11x faster on 2 cores in three benchmark runs (README), 1.1x in
bf16 in one script, while the network alone is no faster. Compiled graphs measured
slower in lanes (inductor's CPU kernels hold the GIL, so lanes take turns; with its
``cpp_wrapper``, which releases it, within noise), so ``--compile`` keeps one. Results come back in the order of the
batches, so the shard writer sees the same sequence as with one lane.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import deque

from .errors import InputError


def lanes_for(device_type: str, workers: int, compiled: bool, cores: int, asked: int | None = None) -> int:
    """The lanes for this run: one per core on the CPU without --compile or decoding processes, else 1."""
    if asked is not None and asked < 1:
        raise InputError(f"--lanes must be 1 or more, not {asked}")
    if asked is None:
        return cores if device_type == "cpu" and not compiled and workers == 0 else 1
    if asked > 1 and device_type != "cpu":
        raise InputError("--lanes is for the CPU; on CUDA one lane feeds the GPU")
    if asked > 1 and workers:
        raise InputError("--lanes decodes in each lane; it cannot be combined with --workers (decoding processes)")
    return asked


def in_lanes(work, items, lanes: int):
    """``work(item)`` for every item, ``lanes`` at a time in threads; yields the results in order.

    Up to two items a lane are in flight, so that no lane waits while an earlier
    result is still being computed elsewhere. A failure is raised where its item's
    result would have come, and the items not started are dropped.
    """
    from concurrent.futures import ThreadPoolExecutor

    items = iter(items)
    pool = ThreadPoolExecutor(lanes, thread_name_prefix="lane")
    pending = deque(pool.submit(work, item) for item in itertools.islice(items, 2 * lanes))
    try:
        while pending:
            result = pending.popleft().result()
            pending.extend(pool.submit(work, item) for item in itertools.islice(items, 1))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def one_thread_each(lanes: int, cores: int):
    """torch's intra-op threads divided between the lanes (all of them for one lane), restored after."""
    import torch

    before = torch.get_num_threads()
    if lanes > 1:
        torch.set_num_threads(max(1, cores // lanes))
    try:
        yield
    finally:
        torch.set_num_threads(before)
