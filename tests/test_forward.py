"""The forward pass: CPU low precision equals autocast, exact mode keeps float32 on cuDNN, the reduction."""

from __future__ import annotations

import pytest

from pipeline.forward import ieee_fp32, reduce


def test_reduce_is_mean_max_and_flat_argmax():
    import torch

    acts = torch.randn(3, 5, 4, 6, generator=torch.Generator().manual_seed(0))
    out = reduce(acts)
    assert out.shape == (3, 3, 5)
    flat = acts.flatten(2)
    torch.testing.assert_close(out[:, 0], flat.mean(2))
    torch.testing.assert_close(out[:, 1], flat.amax(2))
    assert torch.equal(out[:, 2].long(), flat.argmax(2))


def test_ieee_fp32_turns_tf32_off_and_restores_it():
    import torch

    if not hasattr(torch.backends.cudnn, "conv"):
        pytest.skip("torch before 2.9 has only the legacy allow_tf32, which ieee_fp32 then sets")
    conv = torch.backends.cudnn.conv
    before = torch.backends.cudnn.allow_tf32
    try:
        for start in (True, False):
            torch.backends.cudnn.allow_tf32 = start
            with ieee_fp32():
                assert conv.fp32_precision == "ieee"  # what cuDNN's convolutions read
            assert torch.backends.cudnn.allow_tf32 is start
        torch.backends.cudnn.allow_tf32 = True
        with pytest.raises(KeyError), ieee_fp32():
            raise KeyError  # restored on the way out of an error too
        assert torch.backends.cudnn.allow_tf32 is True
        torch.backends.cudnn.rnn.fp32_precision = "ieee"  # set apart: the legacy flag can no longer be read
        with ieee_fp32():
            assert conv.fp32_precision == "ieee"
        assert conv.fp32_precision == "tf32"
    finally:
        torch.backends.cudnn.conv.fp32_precision = torch.backends.cudnn.rnn.fp32_precision = "tf32"
        torch.backends.cudnn.allow_tf32 = before


def test_ieee_fp32_on_a_torch_without_the_new_api_sets_the_legacy_flag(monkeypatch):
    import torch

    monkeypatch.setattr(torch.backends.cudnn, "conv", None, raising=False)  # as before torch 2.9
    before = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        with ieee_fp32():
            assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cpu_low_precision_equals_autocast(random_model, precision):
    """On the CPU the weights are converted once rather than by autocast: the same numbers."""
    import copy

    import torch

    from pipeline.forward import forward_pass
    from pipeline.fastgraph import speed_up
    from pipeline.images import to_model_input
    from pipeline.model import cut

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    layers = ["conv2d2", "mixed4a"]
    reference = speed_up(cut(copy.deepcopy(random_model), layers)).to(memory_format=torch.channels_last)
    batch = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    forward = forward_pass(cut(random_model, layers), torch.device("cpu"), precision, False, 2)
    with torch.inference_mode():
        got = forward(batch)
        with torch.autocast("cpu", dtype=dtype):
            expected = reference(to_model_input(batch).contiguous(memory_format=torch.channels_last))
    for name in layers:
        # Bit for bit here (2 threads); elsewhere oneDNN may pick kernels that round differently.
        torch.testing.assert_close(got[name], expected[name].float(), rtol=1e-2, atol=1e-2)
        assert (got[name] == expected[name].float()).float().mean() > 0.99, name
    assert all(p.dtype == torch.float32 for p in random_model.parameters())  # the shared model is untouched


def test_to_host_gives_the_numbers_when_waited_for():
    import torch

    from pipeline.forward import to_host

    values = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    wait = to_host(values)
    assert (wait() == values.numpy()).all()


def test_compile_on_cuda_without_a_c_compiler_is_one_sentence(monkeypatch):
    import shutil

    from pipeline.errors import PipelineError
    from pipeline.forward import check_compiler

    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no gcc, no clang (the C++ case: test_extract)
    with pytest.raises(PipelineError, match="--compile on CUDA needs a C compiler for Triton"):
        check_compiler(cuda=True)


def test_reduce_argmax_is_exact_on_large_maps():
    """Argmax travels as float32 beside the mean and max: exact for conv2d0's 112 x 112 (12,544 positions)."""
    import torch

    acts = torch.zeros(2, 2, 112, 112)
    acts[0, 0, 110, 3] = 1.0  # flat 12323: bf16 or fp16 would round it
    acts[0, 1, 7, 111] = 1.0
    acts[1, 0, 111, 111] = 1.0
    acts[1, 1, 0, 1] = 1.0
    out = reduce(acts)
    assert out.dtype == torch.float32
    assert out[:, 2].long().tolist() == [[110 * 112 + 3, 7 * 112 + 111], [111 * 112 + 111, 1]]


def test_a_short_batch_under_compile_gives_its_own_rows(random_model, monkeypatch):
    """--compile pads a short batch to one size with zero images; the results are the batch's rows."""
    import torch

    from pipeline import fastgraph
    from pipeline.forward import forward_pass
    from pipeline.model import cut

    seen = []  # the padding and slicing, not inductor: one graph for every batch
    monkeypatch.setattr(torch, "compile", lambda net, **kwargs: lambda x: (seen.append(x.shape[0]), net(x))[1])
    monkeypatch.setattr(fastgraph, "_blocks_outside_graph", None)
    batch = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    # Built outside inference mode, as extract does: the cut graph shares the session's model,
    # whose weights would otherwise become inference tensors for every later test.
    compiled, eager = (forward_pass(cut(random_model, ["conv2d1"]), torch.device("cpu"), "fp32", c, 4)
                       for c in (True, False))
    with torch.inference_mode():
        padded, plain = compiled(batch), eager(batch)
    assert seen == [4] and padded["conv2d1"].shape[0] == 2
    torch.testing.assert_close(padded["conv2d1"], plain["conv2d1"], rtol=1e-5, atol=1e-5)
