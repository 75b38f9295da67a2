"""Tests of devices.py: the device phase one computes on, and the options checked before any work."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline import devices
from pipeline.errors import InputError

ONE = SimpleNamespace(world=1, local_rank=0)


@pytest.mark.parametrize("precision, decoder, device", [
    ("fp32", "pil", "auto"), ("bf16", "fast", "cpu"), ("fp16", "gpu", "cuda"), ("fp32", "pil", "cuda:12"),
])
def test_the_options_the_cli_takes_pass(precision, decoder, device):
    devices.check_options(precision, decoder, device)


@pytest.mark.parametrize("precision, decoder, device, fragment", [
    ("fp8", "pil", "cpu", "--precision must be fp32, bf16 or fp16, not 'fp8'"),
    ("fp32", "turbo", "cpu", "--decoder must be one of pil, fast, gpu, not 'turbo'"),
    ("fp32", "pil", "gpu", "--device must be auto, cpu, cuda or cuda:N, not 'gpu'"),
    ("fp32", "pil", "cuda:", "--device must be"), ("fp32", "pil", "cuda:1x", "--device must be"),
])
def test_other_options_are_refused_in_one_sentence(precision, decoder, device, fragment):
    with pytest.raises(InputError, match=f"^{fragment}"):
        devices.check_options(precision, decoder, device)


def _cuda(monkeypatch, count):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_auto_is_the_cpu_without_cuda(monkeypatch):
    _cuda(monkeypatch, 0)
    assert devices.torch_device("auto").type == "cpu"
    with pytest.raises(InputError, match="^--device cuda:0 was asked for but no CUDA device is available"):
        devices.torch_device("cuda:0")


def test_auto_is_cuda_where_there_is_one_and_an_index_past_the_last_is_refused(monkeypatch):
    _cuda(monkeypatch, 2)
    assert devices.torch_device("auto").type == "cuda"
    assert devices.torch_device("cuda:1").index == 1
    with pytest.raises(InputError, match="^--device cuda:2: this machine has CUDA devices 0-1"):
        devices.torch_device("cuda:2")


def test_under_torchrun_cuda_is_the_ranks_own_gpu(monkeypatch):
    import torch

    _cuda(monkeypatch, 4)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert devices.rank_device("cuda", SimpleNamespace(world=4, local_rank=3)).index == 3
    assert devices.rank_device("cuda:1", SimpleNamespace(world=4, local_rank=3)).index == 1  # asked for by name
    assert [d.index for d in chosen] == [3, 1]
    assert devices.rank_device("cpu", SimpleNamespace(world=4, local_rank=3)).type == "cpu"


def test_the_gpu_decoder_needs_cuda(monkeypatch):
    _cuda(monkeypatch, 0)
    with pytest.raises(InputError, match="^--decoder gpu needs a CUDA device; use --decoder fast"):
        devices.checked_device("cpu", "gpu", False, ONE)
    assert devices.checked_device("cpu", "fast", False, ONE).type == "cpu"


def test_a_torchvision_without_its_jpeg_decoder_is_named(monkeypatch):
    import torchvision.io

    monkeypatch.delattr(torchvision.io, "read_file")
    with pytest.raises(InputError, match=r"^--decoder fast needs torchvision.io.read_file, which torchvision .* "
                                         r"no longer has; use --decoder pil"):
        devices.checked_device("cpu", "fast", False, ONE)
    assert devices.checked_device("cpu", "pil", False, ONE).type == "cpu"  # the exact decoder is PIL's
