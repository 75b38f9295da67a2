"""Phase one's computation: the network as a function of a uint8 batch, and its reduction.

Offers:
    PRECISIONS                         ("fp32", "bf16", "fp16")
    forward_pass(traced, device, precision, compiled, batch_size) -> forward(batch) -> {layer: tensor}
    reduce(acts) -> (B, 3, C) tensor   spatial mean, max and flat argmax, on the device
    to_host(tensor) -> wait() -> numpy  the copy to the host, waited for later (non-blocking on CUDA)
    ieee_fp32()                        context: cuDNN convolutions in float32, not TF32
    check_compiler(cuda)               PipelineError unless torch.compile can build its kernels here

``forward_pass`` applies the exact graph rewrites (``fastgraph``), channels_last,
the precision (weights converted once on the CPU, autocast elsewhere) and
``torch.compile`` when asked. torch is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import functools

from . import images as imgs
from .errors import PipelineError
from .hardware import keep_freed_memory

PRECISIONS = ("fp32", "bf16", "fp16")


def reduce(acts):
    """(B, C, H, W) activations -> (B, 3, C): spatial mean, max, argmax (as float).

    A layer without a spatial map (the logits, (B, C)) counts as 1 x 1.
    """
    import torch

    flat = acts.flatten(2) if acts.ndim > 2 else acts[:, :, None]
    peak, where = flat.max(dim=2)
    # argmax < 2**24 is exact in float32, so one tensor (one copy) carries all three.
    return torch.stack((flat.mean(dim=2), peak, where.to(flat.dtype)), dim=1)


def to_host(tensor):
    """Start copying ``tensor`` to the host; returns a function that waits and gives a numpy array.

    On CUDA the copy goes to pinned memory without blocking, and the wait comes one
    batch later, after the next batch is queued: a ``.cpu()`` here would leave the GPU
    idle while the loop fetches each batch.
    """
    import torch

    if tensor.device.type != "cuda":
        host = tensor.cpu()
        return host.numpy
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record(torch.cuda.current_stream(tensor.device))  # the copy's stream, whatever the current device

    def wait():
        copied.synchronize()
        return host.numpy()

    return wait


def _onednn_supports(precision: str) -> bool:
    """Whether oneDNN has kernels for this precision on this CPU (else autocast's fallbacks run)."""
    import torch

    check = getattr(torch.ops.mkldnn, f"_is_mkldnn_{precision}_supported", None)
    return bool(torch.backends.mkldnn.is_available() and check is not None and check())


@contextlib.contextmanager
def ieee_fp32():
    """cuDNN convolutions in true float32 while inside.

    cuDNN's default is TF32 (a 10-bit mantissa): mixed4a measured 5.9e-04 off the
    CPU's float32 on an H100 (5.8e-07 without it), enough to reorder near-tied
    top-k images, so exact mode turns it off. The network alone still outruns
    decoding there (8,231 against 4,013 images/s; see the README).
    """
    import torch

    # torch 2.9+ sets convolutions' precision alone; its legacy ``allow_tf32`` raises when read
    # after someone set convolutions and RNNs apart through the new API.
    conv = getattr(torch.backends.cudnn, "conv", None)
    owner, name, value = ((conv, "fp32_precision", "ieee") if hasattr(conv, "fp32_precision")
                          else (torch.backends.cudnn, "allow_tf32", False))
    before = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, before)


def check_compiler(cuda: bool = False) -> None:
    """Raise a PipelineError where torch.compile could not build its kernels: inductor compiles its
    code with the machine's C++ compiler, and on CUDA Triton its launchers with a C compiler."""
    import os
    import shutil

    from torch._inductor import exc
    from torch._inductor.cpp_builder import get_cpp_compiler

    if cuda and not (os.environ.get("CC") or shutil.which("clang") or shutil.which("gcc")):
        raise PipelineError("--compile on CUDA needs a C compiler for Triton (gcc or clang, or one named by CC); "
                            "install one or run without --compile")
    try:
        get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        raise PipelineError("--compile needs a C++ compiler (g++ or clang++, or one named by CXX); "
                            "install one or run without --compile") from None


def forward_pass(traced, dev, precision: str, compiled: bool, batch_size: int):
    """The forward pass as a function of a uint8 batch, in ``precision``, compiled when asked.

    With ``compiled`` every batch is padded to ``batch_size``, so one graph serves all.
    """
    import torch

    from .fastgraph import fuse_conv_relu, own_copy, prepare_compile, separable_pools, speed_up

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    net = speed_up(traced)
    cpu_eager = dev.type == "cpu" and not compiled
    if dev.type == "cpu":
        keep_freed_memory()
    # On the CPU the weights are converted once instead of by autocast at every call: bit for
    # bit the same activations (tested), 1.1x, and the fused convolution + ReLU then applies
    # to bf16 too (1.35x in all, network alone). CUDA and compiled graphs keep autocast.
    cast = dtype if dtype is not None and cpu_eager and _onednn_supports(precision) else None
    if cast is not None:
        net = own_copy(net).to(cast)  # the cut graph shares its modules with the model
    if cpu_eager:
        net = separable_pools(fuse_conv_relu(net))
    net = net.to(dev, memory_format=torch.channels_last)
    if compiled:
        prepare_compile()
        # Not frozen: inductor's "freezing" option does not reach dynamo's tracing, which lifted the
        # weights as inputs and left freezing nothing to fold; made effective, it measured within noise.
        net = torch.compile(net, dynamic=False)

    if dtype is None:
        context = ieee_fp32 if dev.type == "cuda" else contextlib.nullcontext
    elif cast is None:
        context = functools.partial(torch.autocast, dev.type, dtype=dtype)
    else:
        context = contextlib.nullcontext

    def forward(batch):
        n = batch.shape[0]
        if compiled and n < batch_size:
            batch = torch.cat([batch, batch.new_zeros((batch_size - n, *batch.shape[1:]))])
        x = imgs.to_model_input(batch)
        x = (x.to(cast) if cast is not None else x).contiguous(memory_format=torch.channels_last)
        with context():
            out = net(x)
        return {name: value[:n].float() for name, value in out.items()}

    return forward
