"""The graph rewrites keep the cut network's results: bit for bit where they say so."""

from __future__ import annotations

import copy
import warnings

import pytest

from pipeline.model import cut


def _lrn_input(shape, memory_format, seed=0):
    import torch

    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).relu() * 40
    return x.contiguous(memory_format=memory_format)


@pytest.mark.parametrize("size", [9, 4, 1])
@pytest.mark.parametrize("shape", [(3, 70, 13, 11), (2, 192, 56, 56)])
def test_local_response_norm_is_bit_for_bit(shape, size):
    import torch
    import torch.nn.functional as F

    from pipeline.fastgraph import local_response_norm

    for memory_format in (torch.channels_last, torch.contiguous_format):  # blocks, and avg_pool1d
        x = _lrn_input(shape, memory_format)
        expected = F.local_response_norm(x, size, alpha=9.99999974738e-05, beta=0.5, k=1)
        got = local_response_norm(x, size, alpha=9.99999974738e-05, beta=0.5, k=1)
        assert torch.equal(got, expected)
        assert got.is_contiguous(memory_format=memory_format)


def test_local_response_norm_sums_bf16_in_float32():
    import torch
    import torch.nn.functional as F

    from pipeline.fastgraph import local_response_norm

    x = _lrn_input((2, 64, 20, 20), torch.channels_last).bfloat16()
    got = local_response_norm(x, 9, alpha=1e-4, beta=0.75, k=2.0)
    assert got.dtype == torch.bfloat16
    expected = F.local_response_norm(x.float(), 9, alpha=1e-4, beta=0.75, k=2.0)
    torch.testing.assert_close(got.float(), expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("layout", ["contiguous_format", "channels_last"])
def test_local_response_norm_in_fp16_survives_values_past_256(layout):
    import torch
    import torch.nn.functional as F

    from pipeline.fastgraph import local_response_norm

    x = _lrn_input((2, 16, 6, 6), getattr(torch, layout)) * 50  # up to a few hundred
    assert x.abs().max() > 256  # squared, past float16's 65504
    got = local_response_norm(x.half(), 5, alpha=1e-4, beta=0.75, k=1.0)
    assert got.dtype == torch.float16 and got.is_contiguous(memory_format=getattr(torch, layout))
    assert torch.isinf(x.half() * x.half()).any()  # what zeroed such pixels (x / inf) before
    assert torch.isfinite(got).all() and ((got == 0) == (x == 0)).all()
    expected = F.local_response_norm(x.half().float(), 5, alpha=1e-4, beta=0.75, k=1.0)
    torch.testing.assert_close(got.float(), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("layers", [["mixed4a"], ["maxpool1", "mixed3b"], ["mixed5b"]])
def test_fast_graph_equals_the_plain_cut(random_model, layers):
    import torch

    from pipeline.fastgraph import speed_up

    model = copy.deepcopy(random_model)  # .to() below changes the parameters of the shared model
    plain, fast = cut(model, layers), speed_up(cut(model, layers))
    assert not any(n.target is torch.nn.functional.local_response_norm for n in fast.graph.nodes)
    x = (torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 60)
    for memory_format in (torch.contiguous_format, torch.channels_last):
        plain, fast = plain.to(memory_format=memory_format), fast.to(memory_format=memory_format)
        with torch.inference_mode():
            a = plain(x.contiguous(memory_format=memory_format))
            b = fast(x.contiguous(memory_format=memory_format))
            for name in layers:
                torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-5)


def test_fused_convolutions_equal_the_plain_cut(random_model):
    import torch
    import torch.nn.functional as F

    from pipeline.fastgraph import fuse_conv_relu, speed_up

    layers, model = ["conv2d2", "mixed4a"], copy.deepcopy(random_model)
    plain = cut(model, layers).to(memory_format=torch.channels_last)
    fused = fuse_conv_relu(speed_up(cut(model, layers))).to(memory_format=torch.channels_last)
    targets = [n.target for n in fused.graph.nodes if n.op == "call_function"]
    if torch.backends.mkldnn.is_available():  # every ReLU of a convolution is folded into it
        assert F.relu not in targets
        assert targets.count(torch.ops.mkldnn._convolution_pointwise) == 21  # conv2d0..2, 6 per mixed
    x = (torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 60)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        a, b = plain(x), fused(x)
    for name in layers:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-5)
        assert (b[name] >= 0).all()


@pytest.mark.parametrize("shape", [(2, 5, 1, 1), (1, 3, 2, 5), (2, 7, 3, 3), (2, 256, 28, 28)])
def test_separable_max_pool_is_bit_for_bit(shape):
    import torch
    import torch.nn.functional as F

    from pipeline.fastgraph import max_pool_3x3_same

    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    x.view(-1)[::7] = -float("inf")
    x.view(-1)[3] = float("nan")  # the pool's NaN wins its windows; torch.maximum's does too
    for memory_format in (torch.channels_last, torch.contiguous_format):
        x = x.contiguous(memory_format=memory_format)
        expected = F.max_pool2d(x, 3, stride=1, padding=1)
        got = max_pool_3x3_same(x)
        assert torch.equal(got.isnan(), expected.isnan())
        assert torch.equal(got.nan_to_num(), expected.nan_to_num())
        assert got.is_contiguous(memory_format=memory_format)


def test_separable_pools_replace_the_branch_pools_bit_for_bit(random_model):
    import torch

    from pipeline.fastgraph import fuse_conv_relu, max_pool_3x3_same, separable_pools, speed_up

    layers, model = ["mixed3b", "mixed4a"], copy.deepcopy(random_model)
    before = fuse_conv_relu(speed_up(cut(model, layers))).to(memory_format=torch.channels_last)
    after = separable_pools(fuse_conv_relu(speed_up(cut(model, layers)))).to(memory_format=torch.channels_last)
    pools = [n for n in after.graph.nodes if n.target is max_pool_3x3_same]
    assert len(pools) == 3  # mixed3a, mixed3b and mixed4a's pool branches; the stride-2 pools stay
    x = (torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3)) * 60)
    with torch.inference_mode():
        a, b = before(x.contiguous(memory_format=torch.channels_last)), after(x.contiguous(memory_format=torch.channels_last))
    for name in layers:
        assert torch.equal(a[name], b[name])


def test_local_response_norm_under_torch_compile_runs_the_blocks_outside_the_graph(monkeypatch):
    """Inductor's fused form is slower and not bit for bit; a compiled graph calls the blocks instead."""
    import torch
    import torch.nn.functional as F

    from pipeline import fastgraph

    calls = []

    def spy(*args):
        calls.append(torch.compiler.is_compiling())
        return blocks(*args)

    blocks = fastgraph._lrn_blocks
    monkeypatch.setattr(fastgraph, "_lrn_blocks", spy)
    monkeypatch.setattr(fastgraph, "_blocks_outside_graph", None)
    fastgraph.prepare_compile()
    x = _lrn_input((2, 64, 12, 12), torch.channels_last)
    compiled = torch.compile(lambda t: fastgraph.local_response_norm(t, 9, alpha=9.99999974738e-05, beta=0.5, k=1),
                             backend="eager")
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("error")  # dynamo warned about the lru_cache this replaced
        got = compiled(x)
    assert calls == [False]  # called once, and run eagerly, outside the traced graph
    assert torch.equal(got, F.local_response_norm(x, 9, alpha=9.99999974738e-05, beta=0.5, k=1))
