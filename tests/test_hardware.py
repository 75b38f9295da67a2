"""pipeline/hardware.py: the advice on slow precisions."""

from pipeline.hardware import cpu_flags, precision_note


def test_fp16_on_a_cpu_without_amx_fp16_is_called_slow():
    note = precision_note("fp16", "cpu", frozenset({"avx512f", "amx_bf16"}))
    assert "slower than fp32" in note and "--precision bf16" in note
    assert "bf16" not in precision_note("fp16", "cpu", frozenset({"avx2"})).partition("fp32")[2]


def test_no_note_where_the_precision_is_fast():
    assert precision_note("fp16", "cpu", frozenset({"amx_fp16", "amx_bf16"})) is None
    assert precision_note("fp16", "cuda", frozenset()) is None
    for precision in ("fp32", "bf16"):
        assert precision_note(precision, "cpu", frozenset()) is None


def test_cpu_flags_read_this_machine():
    flags = cpu_flags()
    assert isinstance(flags, frozenset)
    assert not flags or "fpu" in flags  # on Linux x86 every CPU lists fpu
