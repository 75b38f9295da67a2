"""What this machine's CPU offers phase one: its fast precisions, its usable cores, malloc's reuse.

Offers:
    cpu_flags() -> frozenset[str]                 the CPU's feature flags (Linux; empty elsewhere)
    usable_cores() -> int                         the cores this process may use (affinity, cgroup quota)
    pinned_apart() -> bool                        given fewer cores than its parent (a rank pinned alone)
    precision_note(precision, device_type, flags=None) -> str | None
    keep_freed_memory() -> bool                   glibc: freed blocks stay mapped for the next batch
    available_memory() -> int | None              bytes this process may still take (MemAvailable, cgroup limits)

On a CPU, a reduced precision is only fast with its matrix units: AMX-BF16 for
bf16 (Sapphire Rapids and later), AMX-FP16 for fp16 (Granite Rapids and later).
Without them oneDNN computes with vector instructions, slower than its fp32 kernels:
on an AMX machine the cut network ran fp16 at 0.71-0.75x its fp32 rate and bf16 at
2.0x; on a machine with AVX-512 BF16 and FP16 but no AMX, bf16 ran at about half
the fp32 rate (README, Benchmarks). A user who asked for speed should hear that
before a long run, not after it (as "likely": other CPUs without AMX were not
measured). Where the flags cannot be read (not Linux, or not
x86) nothing is said: no advice is better than a guess.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def usable_cores() -> int:
    """The cores this process may run on, which lanes, threads and workers are sized to.

    ``os.cpu_count()`` counts the machine's: a job given 4 cores of a 64-core node (SLURM,
    taskset, ``docker --cpuset-cpus`` set the affinity; ``docker --cpus`` a cgroup quota)
    would start 64 lanes on 4 cores. Python 3.13's ``os.process_cpu_count`` reads the
    affinity only.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, quota) if quota else cores)


def available_memory(meminfo="/proc/meminfo", cgroup_file="/proc/self/cgroup", root="/sys/fs/cgroup") -> int | None:
    """Bytes this process may still take: the kernel's MemAvailable, less where the cgroup (v2 or v1)
    of its group, one above it, or the mounted root one, is limited to less; None where unknown (not Linux).

    A container's limit is not in MemAvailable, which counts the whole machine's memory."""
    try:
        with open(meminfo) as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    groups = {}
    try:
        with open(cgroup_file) as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                groups[controllers] = path
    except (OSError, ValueError):
        pass
    v1 = next((path for names, path in groups.items() if "memory" in names.split(",")), "")
    places = [(os.path.join(root, "memory"), v1, "memory.limit_in_bytes", "memory.usage_in_bytes"),
              (root, groups.get("", ""), "memory.max", "memory.current")]
    for mount, path, limit_file, used_file in places:
        # The group's folder and each above it, up to the mount's root (a container sees its own group
        # there): a limit binds every group below it (a SLURM job's binds its tasks' groups)
        parts = [part for part in path.split("/") if part]
        for depth in range(len(parts) + 1):
            where = os.path.join(mount, *parts[:depth])
            room = _room(os.path.join(where, limit_file), os.path.join(where, used_file))
            free = min(free, room) if room is not None else free
    return free


def _room(limit_file: str, used_file: str) -> int | None:
    try:
        with open(limit_file) as f:
            limit = f.read().strip()
        with open(used_file) as f:
            used = int(f.read().strip())
        return None if limit == "max" else max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def pinned_apart() -> bool:
    """Whether this process may use fewer cores than its parent: ``torchrun --numa-binding``
    pins each rank to its own, where a job's affinity (SLURM, taskset) is its launcher's too."""
    try:
        return os.sched_getaffinity(0) < os.sched_getaffinity(os.getppid())
    except (AttributeError, OSError):
        return False


def cgroup_cpu_quota(cgroup_file="/proc/self/cgroup", root="/sys/fs/cgroup") -> int | None:
    """Whole cores allowed by the cgroup v2 CPU quotas of this process's group and its ancestors
    (the smallest, rounded up), None if unlimited or unknown."""
    try:
        with open(cgroup_file) as f:
            group = next((line.rstrip("\n")[3:] for line in f if line.startswith("0::")), None)
    except OSError:
        return None
    if group is None:
        return None
    parts = [part for part in group.split("/") if part]
    quotas = [quota for depth in range(len(parts) + 1)
              if (quota := _quota(os.path.join(root, *parts[:depth], "cpu.max"))) is not None]
    return min(quotas, default=None)


def _quota(cpu_max: str) -> int | None:
    try:
        with open(cpu_max) as f:
            limit, _, period = f.read().strip().partition(" ")
        return None if limit == "max" else max(1, math.ceil(int(limit) / int(period or 100000)))
    except (OSError, ValueError):
        return None


_MATRIX_UNITS = {"bf16": "amx_bf16", "fp16": "amx_fp16"}  # the flag in /proc/cpuinfo


def precision_note(precision: str, device_type: str, flags=None) -> str | None:
    """Advice when the asked-for precision is slow on this device, else None."""
    unit = _MATRIX_UNITS.get(precision)
    if device_type != "cpu" or unit is None:
        return None
    flags = cpu_flags() if flags is None else flags
    if not flags or unit in flags:
        return None
    faster = " --precision bf16 is the fast one here (AMX-BF16)." if "amx_bf16" in flags else ""
    return (f"note: this CPU has no {precision} matrix units ({unit.replace('_', '-').upper()}), so "
            f"--precision {precision} is likely slower than fp32 on it.{faster}")


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory mapped, so that each batch reuses the last one's pages.

    Activations of tens of MB are above malloc's mmap threshold, which glibc moves
    as it goes: some runs then unmapped and mapped them again at every call, and the
    kernel zeroed each new page (5,000-9,000 page faults a batch of 8, cut network).
    With the thresholds fixed the faults went to none, and the network alone ran
    1.18x faster in fp32 and 1.2-1.3x in bf16 where there had been faults, and at the
    same rate where there had been none (three runs of each, one script). Peak memory
    is unchanged: the pages are the ones the previous batch already held. False where
    the C library is not glibc (nothing is changed there).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # glibc before 2.35 refuses an mmap threshold above 32 MB on 64-bit machines.
    mapped = any(mallopt(_M_MMAP_THRESHOLD, size) == 1 for size in (1 << 30, 32 << 20))
    return mapped and mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1) == 1
