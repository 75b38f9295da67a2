"""pipeline/hardware.py: the advice on slow precisions, malloc kept from unmapping freed memory."""

import os

import pytest

from pipeline.hardware import cpu_flags, precision_note


def test_fp16_on_a_cpu_without_amx_fp16_is_called_slow():
    note = precision_note("fp16", "cpu", frozenset({"avx512f", "amx_bf16"}))
    assert "no fp16 matrix units (AMX-FP16)" in note and "likely slower than fp32" in note and "--precision bf16" in note
    assert "bf16" not in precision_note("fp16", "cpu", frozenset({"avx2"})).partition("fp32")[2]


def test_bf16_on_a_cpu_without_amx_bf16_is_called_slow():
    # AVX-512 BF16 alone: oneDNN's bf16 convolutions ran at half the fp32 rate on such a machine
    note = precision_note("bf16", "cpu", frozenset({"avx512f", "avx512_bf16", "avx512_fp16"}))
    assert "no bf16 matrix units (AMX-BF16)" in note and "--precision bf16 is likely slower than fp32" in note
    assert "fast one here" not in note


def test_no_note_where_the_precision_is_fast_or_the_cpu_unknown():
    assert precision_note("fp16", "cpu", frozenset({"amx_fp16", "amx_bf16"})) is None
    assert precision_note("bf16", "cpu", frozenset({"avx512_bf16", "amx_bf16"})) is None
    assert precision_note("fp16", "cuda", frozenset({"avx2"})) is None
    assert precision_note("bf16", "cuda", frozenset({"avx2"})) is None
    assert precision_note("fp32", "cpu", frozenset({"avx2"})) is None
    for precision in ("fp32", "bf16", "fp16"):  # flags unreadable (macOS, aarch64): no guess
        assert precision_note(precision, "cpu", frozenset()) is None


def test_cpu_flags_read_this_machine():
    flags = cpu_flags()
    assert isinstance(flags, frozenset)
    assert not flags or "fpu" in flags  # on Linux x86 every CPU lists fpu


_REUSE = """
import resource, sys
import numpy as np
from pipeline.hardware import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
np.ones(12 << 20, np.float32)  # 48 MB, freed at once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    np.ones(12 << 20, np.float32)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_freed_memory_is_reused_without_page_faults():
    import subprocess
    import sys

    def faults(mode):
        out = subprocess.run([sys.executable, "-c", _REUSE, mode], capture_output=True, text=True, check=True)
        kept, count = out.stdout.split()
        return kept, int(count)

    kept, after = faults("keep")
    if kept != "True":
        pytest.skip("not glibc: malloc's thresholds are left as they are")
    _, before = faults("default")
    assert after < 10 < before, (after, before)  # glibc maps each 48 MB block anew by default


_ONE_CORE = """
import os
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # as taskset or SLURM would
from pipeline.loading import decoding, rank_cores
from pipeline.hardware import usable_cores
from pipeline.lanes import lanes_for

class Cpu:
    type = "cpu"

print(os.cpu_count() > 1, usable_cores(), lanes_for("cpu", 0, False, rank_cores(1)), decoding(Cpu, None, 1))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity") or (__import__("os").cpu_count() or 1) < 2,
                    reason="needs CPU affinity and two cores")
def test_a_process_given_one_core_runs_one_lane_of_one_thread():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _ONE_CORE], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "1", "1", "(0,", "1)"], out  # not one lane per core of the machine


@pytest.mark.parametrize("cpu_max, cores", [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1),
                                            ("400000 100000", 4), ("garbage", None)])
def test_a_cgroup_quota_caps_the_cores(tmp_path, cpu_max, cores):
    from pipeline.hardware import cgroup_cpu_quota

    (tmp_path / "proc_cgroup").write_text("0::/job/step\n")
    (tmp_path / "job" / "step").mkdir(parents=True)
    (tmp_path / "job" / "step" / "cpu.max").write_text(cpu_max + "\n")
    assert cgroup_cpu_quota(tmp_path / "proc_cgroup", tmp_path) == cores


def test_a_parents_quota_caps_a_child_without_one(tmp_path):
    from pipeline.hardware import cgroup_cpu_quota

    (tmp_path / "proc_cgroup").write_text("0::/job/step\n")
    (tmp_path / "job" / "step").mkdir(parents=True)
    (tmp_path / "job" / "cpu.max").write_text("100000 100000\n")  # the job: one core
    (tmp_path / "job" / "step" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path / "proc_cgroup", tmp_path) == 1
    (tmp_path / "job" / "step" / "cpu.max").write_text("50000 100000\n")  # half a core below it: still 1
    assert cgroup_cpu_quota(tmp_path / "proc_cgroup", tmp_path) == 1
    (tmp_path / "job" / "cpu.max").write_text("800000 100000\n")
    (tmp_path / "job" / "step" / "cpu.max").write_text("300000 100000\n")
    assert cgroup_cpu_quota(tmp_path / "proc_cgroup", tmp_path) == 3  # the smallest on the way up


def test_no_cgroup_v2_means_no_quota(tmp_path):
    from pipeline.hardware import cgroup_cpu_quota

    (tmp_path / "proc_cgroup").write_text("12:cpu,cpuacct:/job\n")  # cgroup v1 only
    assert cgroup_cpu_quota(tmp_path / "proc_cgroup", tmp_path) is None
    assert cgroup_cpu_quota(tmp_path / "absent", tmp_path) is None


def test_a_process_pinned_to_fewer_cores_than_its_parent_is_apart(monkeypatch):
    from pipeline import hardware

    parent = os.getppid()
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: set(range(8)) if pid == parent else {0, 1})
    assert hardware.pinned_apart()
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1})  # a job's affinity, its launcher's too
    assert not hardware.pinned_apart()


def _memory(tmp_path, available_kb=8_000_000, cgroup="0::/job\n", files=None):
    (tmp_path / "meminfo").write_text(f"MemTotal: 9999999 kB\nMemAvailable: {available_kb} kB\n")
    (tmp_path / "cgroup").write_text(cgroup)
    for name, text in (files or {}).items():
        (tmp_path / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / name).write_text(text)
    from pipeline.hardware import available_memory

    return available_memory(tmp_path / "meminfo", tmp_path / "cgroup", str(tmp_path / "fs"))


def test_free_memory_is_memavailable_without_a_cgroup_limit(tmp_path):
    assert _memory(tmp_path) == 8_000_000 * 1024
    assert _memory(tmp_path, files={"job/memory.max": "max\n", "job/memory.current": "5\n"}) == 8_000_000 * 1024


@pytest.mark.parametrize("cgroup, files", [
    ("0::/job\n", {"job/memory.max": "3000000000\n", "job/memory.current": "1000000000\n"}),  # v2, its group
    ("0::/\n", {"memory.max": "3000000000\n", "memory.current": "1000000000\n"}),  # v2, a container's root
    ("4:memory:/job\n0::/\n", {"memory/job/memory.limit_in_bytes": "3000000000\n",  # v1
                                "memory/job/memory.usage_in_bytes": "1000000000\n"}),
    ("4:cpu,memory:/x\n", {"memory/memory.limit_in_bytes": "3000000000\n", "memory/memory.usage_in_bytes": "1000000000"})])
def test_a_cgroup_limit_below_the_free_memory_is_the_room_left(tmp_path, cgroup, files):
    assert _memory(tmp_path, cgroup=cgroup, files=files) == 2_000_000_000


def test_free_memory_unknown_without_meminfo(tmp_path):
    from pipeline.hardware import available_memory

    assert available_memory(tmp_path / "none", tmp_path / "none", str(tmp_path)) is None
    assert _memory(tmp_path, files={"job/memory.max": "1000\n", "job/memory.current": "4000\n"}) == 0


@pytest.mark.parametrize("cgroup, files", [
    # cgroup v2: a SLURM task's group under its job's, the limit the job's (the task's own "max")
    ("0::/job_7/step_0/task_0\n", {"job_7/memory.max": "3000000000\n", "job_7/memory.current": "1000000000\n",
                                   "job_7/step_0/task_0/memory.max": "max\n",
                                   "job_7/step_0/task_0/memory.current": "900000000\n"}),
    # cgroup v1: a session scope in a limited user slice
    ("4:memory:/user.slice/session-3.scope\n", {
        "memory/user.slice/memory.limit_in_bytes": "3000000000\n", "memory/user.slice/memory.usage_in_bytes": "1000000000\n",
        "memory/user.slice/session-3.scope/memory.limit_in_bytes": "9223372036854771712\n",
        "memory/user.slice/session-3.scope/memory.usage_in_bytes": "5"})])
def test_a_limit_on_a_group_above_the_process_one_is_the_room_left(tmp_path, cgroup, files):
    """A limit binds every group below it: the process's own group need not carry it."""
    assert _memory(tmp_path, cgroup=cgroup, files=files) == 2_000_000_000
