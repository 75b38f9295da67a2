"""What the CPU computes fast, for the one-line advice phase one gives before it starts.

Offers:
    cpu_flags() -> frozenset[str]                 the CPU's feature flags (Linux; empty elsewhere)
    precision_note(precision, device_type, flags=None) -> str | None
    keep_freed_memory() -> bool                   glibc: freed blocks stay mapped for the next batch

On a CPU, fp16 autocast is only fast with AMX-FP16 (Granite Rapids and later).
Without it oneDNN converts each fp16 operand to fp32 and back: on this project's
Sapphire Rapids machine the cut network ran at 0.71-0.75x its fp32 rate, while bf16
(AMX-BF16) ran at 2.0x (README, Benchmarks). A user who asked for speed should
hear that before a long run, not after it.
"""

from __future__ import annotations

import ctypes
import functools


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


def precision_note(precision: str, device_type: str, flags=None) -> str | None:
    """Advice when the asked-for precision is slow on this device, else None."""
    if device_type != "cpu" or precision != "fp16":
        return None
    flags = cpu_flags() if flags is None else flags
    if "amx_fp16" in flags:
        return None
    faster = " --precision bf16 is the fast one here (AMX-BF16)." if "amx_bf16" in flags else ""
    return ("note: this CPU has no fp16 matrix units (AMX-FP16), so --precision fp16 runs slower "
            f"than fp32 on it.{faster}")


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
