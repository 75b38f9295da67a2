"""Tests of loading.py: decoding processes and threads, shared memory, the prefetching thread."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.loading import decoding, prefetched


def test_prefetched_keeps_order_and_raises_the_loaders_error():
    assert list(prefetched(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetched(broken()):
            got.append(item)
    assert got == [1]


def test_prefetched_stops_its_thread_when_the_consumer_stops():
    import threading

    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    for item in prefetched(endless(), depth=2):
        if item == 3:
            break  # closing the generator must not leave the producer blocked on a full queue
    assert not any(t.name == "prefetch" for t in threading.enumerate())
    assert len(produced) <= 3 + 2 + 2


@pytest.mark.parametrize("device, workers, world, expected", [
    ("cpu", None, 1, (0, "cores")),   # the batch decodes in threads of this process
    ("cpu", 3, 1, (3, 1)),            # asked for worker processes: one thread each
    ("cpu", 0, 1, (0, "cores")),
    ("cpu", None, 2, (0, "half")),    # two ranks on one host share its cores
    ("cuda", None, 1, ("cores-1", 1)),
])
def test_decoding_defaults(device, workers, world, expected, monkeypatch):
    from pipeline import loading

    monkeypatch.setattr(loading, "usable_cores", lambda: 6)
    names = {"cores": 6, "half": 3, "cores-1": 5}
    expected = tuple(names.get(e, e) for e in expected)
    assert decoding(SimpleNamespace(type=device), workers, world) == expected


def test_workers_that_shared_memory_cannot_hold_are_refused_with_the_fixes():
    from pipeline.loading import check_shared_memory
    from pipeline.errors import InputError

    batch = 256 * 3 * 224 * 224
    with pytest.raises(InputError, match=r"15 decoding workers with batches of 256 need about 2279 MB of shared "
                                         r"memory and /dev/shm has 64 MB free .*--shm-size.*--workers.*--batch-size"):
        check_shared_memory(15, 256, free=64 << 20)  # CUDA's defaults in Docker's default container
    in_flight = 15 * 4 + 2  # prefetched, plus the batch being computed and the one before it
    check_shared_memory(15, 256, free=in_flight * batch)  # exactly enough
    with pytest.raises(InputError):
        check_shared_memory(15, 256, free=in_flight * batch - 1)
    with pytest.raises(InputError, match="^2 ranks, each with 15 decoding workers"):  # ranks on one host share it
        check_shared_memory(15, 256, free=in_flight * batch, ranks_here=2)
    check_shared_memory(0, 4096, free=0)  # decoding threads share no memory between processes


def test_this_machines_shared_memory_is_read(monkeypatch):
    from types import SimpleNamespace

    from pipeline import loading
    from pipeline.errors import InputError

    monkeypatch.setattr(loading.os, "statvfs", lambda path: SimpleNamespace(f_bavail=4, f_frsize=1 << 20, f_flag=0))
    with pytest.raises(InputError, match="has 4 MB free"):
        loading.check_shared_memory(1, 8)  # 6 batches of 1.2 MB in flight
    loading.check_shared_memory(1, 4)


def test_a_read_only_shared_memory_is_named_before_the_run(monkeypatch):
    """Its queues failed at once, and the run stopped saying only "Read-only file system"."""
    from types import SimpleNamespace

    from pipeline import loading
    from pipeline.errors import InputError

    roomy = SimpleNamespace(f_bavail=1 << 20, f_frsize=1 << 20, f_flag=loading.os.ST_RDONLY)
    monkeypatch.setattr(loading.os, "statvfs", lambda path: roomy)
    with pytest.raises(InputError, match="^/dev/shm is read-only.*--workers 0"):
        loading.check_shared_memory(1, 4)
    loading.check_shared_memory(0, 4)  # threads need none of it


@pytest.mark.parametrize("world, local, pinned, cores", [
    (1, None, False, 64),   # no torchrun
    (8, None, False, 8),    # every rank on this host, sharing its cores
    (16, "8", False, 8),    # two hosts of 8 ranks: this host's 8 share them
    (8, "8", True, 64),     # torchrun --numa-binding: this rank's affinity is its own share already
])
def test_a_ranks_cores(monkeypatch, world, local, pinned, cores):
    from pipeline import loading

    monkeypatch.setattr(loading, "usable_cores", lambda: 64)
    monkeypatch.setattr(loading, "pinned_apart", lambda: pinned)
    if local is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    assert loading.rank_cores(world) == cores
