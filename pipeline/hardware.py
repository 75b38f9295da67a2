"""What the CPU computes fast, for the one-line advice phase one gives before it starts.

Offers:
    cpu_flags() -> frozenset[str]                 the CPU's feature flags (Linux; empty elsewhere)
    precision_note(precision, device_type, flags=None) -> str | None

On a CPU, fp16 autocast is only fast with AMX-FP16 (Granite Rapids and later).
Without it oneDNN converts each fp16 operand to fp32 and back: on this project's
Sapphire Rapids machine the cut network ran at 0.71-0.75x its fp32 rate, while bf16
(AMX-BF16) ran at 2.0x (README, Benchmarks). A user who asked for speed should
hear that before a long run, not after it.
"""

from __future__ import annotations

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
