"""Which device phase one computes on, checked before any work.

Offers:
    check_options(precision, decoder, device)   InputError for values the CLI would not take
    torch_device(name) -> torch.device          "auto" | "cpu" | "cuda" | "cuda:N", checked against the machine
    rank_device(name, ranks) -> torch.device    under torchrun, ``cuda`` is the rank's own GPU
    checked_device(name, decoder, compile, ranks) -> torch.device   also refuses --decoder gpu off CUDA,
                                                --decoder fast|gpu without torchvision's JPEG decoder
                                                and --compile without a compiler

torch is imported inside the functions.
"""

from __future__ import annotations

import re

from .decode import DECODERS
from .errors import InputError
from .forward import PRECISIONS, check_compiler


def torch_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name} was asked for but no CUDA device is available")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: this machine has CUDA devices 0-{torch.cuda.device_count() - 1}")
    return torch.device(name)


def check_options(precision: str, decoder: str, device: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be fp32, bf16 or fp16, not {precision!r}")
    if decoder not in DECODERS:
        raise InputError(f"--decoder must be one of {', '.join(DECODERS)}, not {decoder!r}")
    if device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:[0-9]+", device):
        raise InputError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")


def rank_device(name: str, ranks):
    """The device this rank computes on: under torchrun, ``cuda`` is the rank's own GPU."""
    import torch

    dev = torch_device(name)
    if ranks.world > 1 and dev.type == "cuda" and dev.index is None:
        dev = torch_device(f"cuda:{ranks.local_rank}")
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)  # pinned memory, events and nvJPEG then use this rank's GPU
    return dev


def checked_device(name: str, decoder: str, compile: bool, ranks):
    """This rank's device, checked against the decoder and ``--compile`` before the store is made
    (inductor, and Triton on CUDA, would fail at the first batch)."""
    dev = rank_device(name, ranks)
    if decoder == "gpu" and dev.type != "cuda":
        raise InputError("--decoder gpu needs a CUDA device; use --decoder fast on the CPU")
    if decoder != "pil":
        _check_jpeg_decoder(decoder)
    if compile:
        check_compiler(cuda=dev.type == "cuda")
    return dev


def _check_jpeg_decoder(decoder: str) -> None:
    # torchvision 0.29 deprecated its image decoders for TorchCodec; once they are gone the
    # decoding workers would fail at their first image, after the store was made.
    import torchvision
    import torchvision.io

    missing = [name for name in ("decode_jpeg", "read_file", "ImageReadMode") if not hasattr(torchvision.io, name)]
    if missing:
        raise InputError(f"--decoder {decoder} needs torchvision.io.{missing[0]}, which torchvision "
                         f"{torchvision.__version__} no longer has; use --decoder pil (the exact one)")
