"""Feeding phase one: how many decoding processes and threads, and the loaders that run them.

Offers:
    rank_cores(world) -> int       this process's share of the machine's cores under ``world`` ranks
    local_ranks(world) -> int      the job's ranks on this host
    decoding(device, workers, world) -> (worker processes, decoding threads): the defaults
    check_shared_memory(workers, batch_size, free=None, ranks_here=1)   refuse workers /dev/shm cannot hold
    make_loader(images, sampler, workers, threads, pin, decoder) -> a DataLoader of batches
    prefetched(batches, depth)     iterate in a background thread, ``depth`` batches ahead

The decoders themselves, and the batches they make, are ``decode.py``'s.
"""

from __future__ import annotations

import os

from .decode import collate, make_dataset
from .errors import InputError
from .hardware import pinned_apart, usable_cores
from .images import PREPROCESSING


def local_ranks(world: int) -> int:
    """How many of the job's ranks run on this host (torchrun's LOCAL_WORLD_SIZE; all of them without it)."""
    if world <= 1:
        return 1
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    except ValueError:
        return world


def rank_cores(world: int) -> int:
    """This rank's share of the cores: the ranks on one host share them, unless each was pinned to
    its own (``torchrun --numa-binding``), when its affinity already is its share."""
    return max(1, usable_cores() // (1 if pinned_apart() else local_ranks(world)))


def decoding(dev, workers: int | None, world: int) -> tuple[int, int]:
    """(worker processes, decoding threads in this process) for the device.

    On CUDA, worker processes decode while the GPU computes (threads of this
    process measured 4x slower there: the GIL). On the CPU both halves need the same
    cores, so by default there is no worker process: each lane decodes its own batch
    (``lanes.py``), or with one lane the batch is decoded in threads of this process
    and then the network runs. A worker process was as fast or slower on 2 cores (84
    against 82, 91 against 80 and 87 against 76 images/s in three runs; README) and
    costs 0.5 GB and a start-up.
    """
    cores = rank_cores(world)
    if workers is None:
        # On an H100 one worker decodes about 270 images/s and the network takes 8,000:
        # decoding is the ceiling up to about 30 workers (README, GPU figures).
        workers = max(1, min(32, cores - 1)) if dev.type == "cuda" else 0
    return workers, (cores if workers == 0 else 1)


PREFETCH = 4  # batches in flight per decoding worker
SHARED_MEMORY = "/dev/shm"


def check_shared_memory(workers: int, batch_size: int, free: int | None = None, ranks_here: int = 1) -> None:
    """Refuse, before the run, decoding workers whose batches ``/dev/shm`` cannot hold.

    Workers hand their batches over in shared memory, up to ``PREFETCH`` each. When an
    allocation fails there, the worker's error stays in its queue's feeder thread and the
    DataLoader waits for ever: a run in a container with Docker's default 64 MB hung at
    0 images. A batch is 224 x 224 x 3 bytes an image (uint8; encoded JPEGs are smaller).
    Besides the prefetched batches the loader holds the one being computed and the one
    before it (a 5 MB /dev/shm hung where 4 batches of 1.2 MB were counted, 6 MB did not);
    ``ranks_here`` torchrun ranks on this host share /dev/shm.
    """
    if workers == 0:
        return
    if free is None:
        try:
            stat = os.statvfs(SHARED_MEMORY)
        except (OSError, AttributeError):  # no /dev/shm (macOS, Windows): torch shares memory another way
            return
        if stat.f_flag & os.ST_RDONLY:  # the loader's queues fail there at once, named only as "Read-only file system"
            raise InputError(f"{SHARED_MEMORY} is read-only, and decoding workers hand their batches over there: "
                             "pass --workers 0 (the batch decodes in threads) or mount it writable")
        free = stat.f_bavail * stat.f_frsize
    crop = PREPROCESSING["center_crop"]
    need = ranks_here * (workers * PREFETCH + 2) * batch_size * 3 * crop * crop
    if need > free:
        here = f"{ranks_here} ranks, each with " if ranks_here > 1 else ""
        raise InputError(
            f"{here}{workers} decoding worker{'s' * (workers > 1)} with batches of {batch_size} "
            f"{'needs' if workers == 1 and not here else 'need'} about "
            f"{-(-need >> 20)} MB of shared memory and {SHARED_MEMORY} has {free >> 20} MB free (Docker's default "
            "is 64 MB): give the container more (docker run --shm-size=8g, or --ipc=host), or pass fewer "
            "--workers (0 decodes in threads) or a smaller --batch-size")


def make_loader(images, sampler, workers: int, threads: int, pin: bool, decoder: str):
    from torch.utils.data import DataLoader

    return DataLoader(make_dataset(images.root, images.paths, decoder, threads), batch_sampler=sampler,
                      num_workers=workers, pin_memory=pin, collate_fn=collate,
                      persistent_workers=False, prefetch_factor=PREFETCH if workers else None)


def prefetched(batches, depth: int = 3):
    """Iterate ``batches`` in a background thread, up to ``depth`` batches ahead.

    On CUDA without worker processes, the batch decodes in threads of this
    process; this lets the next batches decode while the GPU computes.
    Errors of the loader are raised here, in the consumer.
    """
    import queue
    import threading

    items, stop, end = queue.Queue(depth), threading.Event(), object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(end)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
