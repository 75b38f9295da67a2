"""Rewrites of the traced InceptionV1 graph that keep its results (to float32 round-off).

Offers:
    speed_up(graph_module) -> graph_module         in place, and returned
    local_response_norm(x, size, alpha, beta, k)   F.local_response_norm, bit for bit, in cache-sized blocks
                                                   (fp16: summed in float32, where F's would overflow)
    max_pool_3x3_same(x)                           a 3x3 stride-1 max pool as two separable maxima
    own_copy(graph_module) -> graph_module         with its own graph and parameters
    prepare_compile()                              before torch.compile: normalisation outside the graph
    fuse_conv_relu(graph_module) -> graph_module   CPU, eager: oneDNN applies the ReLU
                                                   as the convolution writes (equal to float32
                                                   round-off: bit for bit here with 2 threads,
                                                   2.4e-6 absolute with 1, where oneDNN picks
                                                   other kernels)
    separable_pools(graph_module) -> graph_module  CPU, eager: the 3x3 stride-1 max pools as a
                                                   maximum along rows, then along columns
                                                   (bit for bit: a maximum is one whatever the order)

``speed_up`` makes four rewrites; on this project's 2-core CPU the network cut at mixed4a spent 37%
of its time in local response normalisation, 16% copying tensors into padded
ones and 6% in out-of-place ReLUs:
- ``F.local_response_norm`` -> the same sum over 9 neighbouring channels, added
  in the same order, over cache-sized blocks of pixels (channels_last on the CPU;
  4-6x faster than avg_pool1d there) or with ``avg_pool1d`` along channels;
- ``F.pad(value=-inf)`` before a max pool -> the pool's own padding, or
  ``ceil_mode`` for the one-sided (0, 1, 0, 1) pads (same windows, same maxima);
- ``F.pad`` with zeros before a convolution -> the convolution's own padding;
- lucent's ReLU layers (an autograd Function, out of place) -> ``F.relu(inplace=True)``
  where the convolution output it reads has no other use.
"""

from __future__ import annotations

import math


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """F.local_response_norm for (N, C, H, W), bit for bit, without its 5-D copies (in float32 and
    bf16; fp16 input is normalised in float32, as F's squares would overflow it).

    On the CPU, for channels_last input, the sum runs block by block over pixels
    small enough to stay in cache (the whole tensor would be read and written a
    dozen times otherwise), outside the graph when torch.compile traces it; elsewhere
    it is taken with ``avg_pool1d`` along channels.
    """
    import torch

    if x.dtype == torch.float16:
        # x * x overflows float16 past 256 (a ReLU output of 300 is plausible): the window's sum is
        # then inf and the pixel silently 0, as F.local_response_norm makes it under fp16 autocast.
        # The squares and sums go in float32; the result (|out| <= |x|) fits float16 again.
        return local_response_norm(x.float(), size, alpha, beta, k).to(torch.float16)
    if x.device.type == "cpu" and x.is_contiguous(memory_format=torch.channels_last):
        if not torch.compiler.is_compiling():
            return _lrn_blocks(x, size, alpha, beta, k)
        if _blocks_outside_graph is not None:
            return _blocks_outside_graph(x, size, alpha, beta, k)
    return _lrn_pooled(x, size, alpha, beta, k)


_blocks_outside_graph = None  # ``_lrn_blocks`` behind torch.compiler.disable, once prepare_compile() ran


def prepare_compile() -> None:
    """Call before torch.compile: a compiled graph then runs the blocks outside itself (a graph break each).

    Inductor's fused kernel for the pooled form, with its bounds masks, measured
    1.3x slower than the blocks in float32 and 5x in bf16 on this project's CPU
    (where it took 74% of a compiled bf16 network). Made here rather than during
    tracing, which would trace the maker too.
    """
    import torch

    global _blocks_outside_graph
    if _blocks_outside_graph is None:
        _blocks_outside_graph = torch.compiler.disable(_lrn_blocks)


def _lrn_pooled(x, size, alpha, beta, k):
    import torch.nn.functional as F

    n, c, h, w = x.shape
    square = (x * x).permute(0, 2, 3, 1).reshape(-1, 1, c)
    div = F.avg_pool1d(F.pad(square, (size // 2, (size - 1) // 2)), size, stride=1)
    div = div.reshape(n, h, w, c).permute(0, 3, 1, 2)
    return x / div.mul(alpha).add(k).pow(beta)


def _lrn_blocks(x, size, alpha, beta, k):
    import torch

    n, c, h, w = x.shape
    before, after = size // 2, (size - 1) // 2
    pixels = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view: channels_last is (N, H, W, C) in memory
    out = torch.empty_like(pixels)
    rows = max(64, (1 << 18) // c)
    # float32 work buffers: under autocast x may be bf16, and nine bf16 additions lose bits.
    padded = torch.zeros(rows, before + c + after, dtype=torch.float32)
    total = torch.empty(rows, c, dtype=torch.float32)
    for start in range(0, pixels.shape[0], rows):
        block = pixels[start:start + rows]
        m = block.shape[0]
        square, div = padded[:m, before:before + c], total[:m]
        torch.mul(block, block, out=square)
        # The window's squares added left to right, then divided, as avg_pool does.
        if size == 1:
            div.copy_(square)
        else:  # the first addition writes ``div``: one pass less than copying first
            torch.add(padded[:m, 0:c], padded[:m, 1:1 + c], out=div)
        for j in range(2, size):
            div.add_(padded[:m, j:j + c])
        div.div_(size).mul_(alpha).add_(k).pow_(beta)
        torch.div(block, div, out=out[start:start + m])
    return out.reshape(n, h, w, c).permute(0, 3, 1, 2)


def own_copy(gm):
    """A copy of ``gm`` with its own graph and parameters, to convert without touching the model.

    ``copy.deepcopy`` would not do: it regenerates the module from its code, where our
    ``local_response_norm`` resolves by name to ``F.local_response_norm``.
    """
    import copy

    import torch

    out = torch.fx.GraphModule(gm, copy.deepcopy(gm.graph))  # submodules still shared here
    for name, child in list(out.named_children()):
        setattr(out, name, copy.deepcopy(child))
    return out


def _parameters(node, module):
    """get_attr nodes for a convolution module's weight and bias (None without one), before ``node``."""
    graph = node.graph
    with graph.inserting_before(node):
        weight = graph.get_attr(f"{node.target}.weight")
        bias = graph.get_attr(f"{node.target}.bias") if module.bias is not None else None
    return weight, bias


def _pad_of(node):
    import torch.nn.functional as F

    if node.op != "call_function" or node.target is not F.pad or len(node.users) != 1:
        return None
    pad = tuple(node.args[1] if len(node.args) > 1 else node.kwargs["pad"])
    value = node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
    return pad, value


def speed_up(gm):
    import torch.nn as nn
    import torch.nn.functional as F

    from lucent.modelzoo.inceptionv1 import helper_layers

    relus = (helper_layers.RedirectedReluLayer, helper_layers.ReluLayer)
    modules = dict(gm.named_modules())
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is F.local_response_norm:
            node.target = local_response_norm
            continue
        if (node.op == "call_module" and isinstance(modules[node.target], relus)
                and len(node.args[0].users) == 1
                and (node.args[0].op == "call_module" or node.args[0].target is F.conv2d)):
            # Its input (a convolution's output) feeds nothing else and is never returned.
            node.op, node.target, node.kwargs = "call_function", F.relu, {"inplace": True}
            continue
        found = _pad_of(node)
        if found is None:
            continue
        (pad, value), user = found, next(iter(node.users))
        if user.op != "call_module" or user.args[0] is not node:
            continue
        module = modules[user.target]
        if value == -math.inf and "kernel_size" in user.kwargs and not user.kwargs.get("padding"):
            if pad == (1, 1, 1, 1):
                user.kwargs = dict(user.kwargs, padding=1)
            elif pad == (0, 1, 0, 1) and tuple(user.kwargs.get("stride", (1, 1))) == (2, 2):
                user.kwargs = dict(user.kwargs, ceil_mode=True)
            else:
                continue
        elif value in (None, 0) and isinstance(module, nn.Conv2d) and module.padding in ((0, 0), 0):
            if len(set(pad)) != 1:
                continue  # asymmetric (conv2d0's (2, 3, 2, 3)): keep the explicit pad
            weight, bias = _parameters(user, module)
            user.op, user.target = "call_function", F.conv2d
            user.args = (node.args[0], weight, bias, module.stride, pad[0], module.dilation, module.groups)
            user.kwargs = {}
        else:
            continue
        user.replace_input_with(node, node.args[0])
        graph.erase_node(node)
    graph.lint()
    gm.recompile()
    return gm


def _conv_args(node, modules):
    """(input, weight, bias, padding, stride, dilation, groups) of a convolution node, or None."""
    import torch.nn as nn
    import torch.nn.functional as F

    if node.op == "call_module" and isinstance(modules[node.target], nn.Conv2d):
        module = modules[node.target]
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return None
        weight, bias = _parameters(node, module)
        return (node.args[0], weight, bias, list(module.padding), list(module.stride),
                list(module.dilation), module.groups)
    if node.op == "call_function" and node.target is F.conv2d and len(node.args) == 7 and not node.kwargs:
        x, weight, bias, stride, padding, dilation, groups = node.args
        padding = [padding] * 2 if isinstance(padding, int) else list(padding)
        return x, weight, bias, padding, list(stride), list(dilation), groups
    return None


def fuse_conv_relu(gm):
    """Each convolution followed by its in-place ReLU becomes one oneDNN call with a ReLU post-op.

    The op is the one inductor emits on the CPU; where this torch lacks it the
    graph is left as it is. About 4% of the network's time on 2 cores.
    """
    import torch
    import torch.nn.functional as F

    fused = getattr(torch.ops.mkldnn, "_convolution_pointwise", None) if torch.backends.mkldnn.is_available() else None
    if fused is None:
        return gm
    modules = dict(gm.named_modules())
    graph = gm.graph
    for node in list(graph.nodes):
        if not (node.op == "call_function" and node.target is F.relu and node.kwargs.get("inplace")):
            continue
        conv = node.args[0]
        args = _conv_args(conv, modules)
        if args is None:
            continue
        with graph.inserting_before(node):
            new = graph.call_function(fused, (*args, "relu", [], ""))
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        graph.erase_node(conv)
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()
    return gm


def max_pool_3x3_same(x):
    """F.max_pool2d(x, 3, stride=1, padding=1), bit for bit, without the indices eager's pool computes.

    Four elementwise maxima over shifted views (two along each axis); 1.3-1.8x faster
    than the pool for the Inception blocks' pool branches on the CPU, channels_last.
    The stride-2 pools stay as they are: their strided views made this 2x slower.
    """
    return _max3_along(_max3_along(x, 2), 3)


def _max3_along(x, dim):
    import torch

    n = x.shape[dim]
    if n < 2:
        return x.clone()
    pairs = torch.maximum(x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1))  # pairs[j] = max(x[j], x[j+1])
    out = torch.empty_like(x)
    out.narrow(dim, 0, 1).copy_(pairs.narrow(dim, 0, 1))  # the borders see two values: the padding is -inf
    out.narrow(dim, n - 1, 1).copy_(pairs.narrow(dim, n - 2, 1))
    if n > 2:
        torch.maximum(pairs.narrow(dim, 0, n - 2), pairs.narrow(dim, 1, n - 2), out=out.narrow(dim, 1, n - 2))
    return out


def _same_3x3(node, modules) -> bool:
    from lucent.modelzoo.inceptionv1 import helper_layers

    if node.op != "call_module" or not isinstance(modules.get(node.target), helper_layers.MaxPool2dLayer):
        return False
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    kw = node.kwargs
    return (len(node.args) == 1 and pair(kw.get("kernel_size", 3)) == (3, 3) and pair(kw.get("stride", 1)) == (1, 1)
            and pair(kw.get("padding", 0)) == (1, 1))


def separable_pools(gm):
    """Each 3x3, stride-1, padding-1 max pool becomes ``max_pool_3x3_same`` (after ``speed_up``)."""
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if _same_3x3(node, modules):
            node.op, node.target, node.kwargs = "call_function", max_pool_3x3_same, {}
    gm.graph.lint()
    gm.recompile()
    return gm
