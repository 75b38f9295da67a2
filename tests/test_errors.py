"""Tests of errors.py: the hierarchy, each error's built-in, and the sentences it builds."""

from __future__ import annotations

import pytest

from pipeline import errors
from pipeline.errors import first_line, unknown_layer


@pytest.mark.parametrize("name, builtin", [
    ("DatasetError", FileNotFoundError), ("LayerError", KeyError), ("WeightsError", OSError),
    ("StoreError", FileNotFoundError), ("DamagedStoreError", FileNotFoundError),
    ("StoreMismatchError", ValueError), ("StoreLockedError", BlockingIOError), ("QueryError", ValueError),
    ("OutputError", OSError), ("InputError", ValueError),
])
def test_each_error_is_a_pipeline_error_and_its_builtin(name, builtin):
    cls = getattr(errors, name)
    with pytest.raises(builtin):  # callers catch what they are used to, as zarr's errors allow
        raise cls("x")
    assert issubclass(cls, errors.PipelineError) and cls.exit_code == 2
    assert name in errors.__doc__


def test_damage_is_a_store_error():
    assert issubclass(errors.DamagedStoreError, errors.StoreError)


def test_a_layer_error_reads_as_its_sentence_not_a_quoted_key():
    assert str(errors.LayerError("unknown layer 'x'")) == "unknown layer 'x'"
    assert str(KeyError("unknown layer 'x'")) == "\"unknown layer 'x'\""  # what KeyError alone would print
    assert str(errors.LayerError()) == ""


def test_a_follower_says_nothing_of_its_own():
    assert str(errors.FollowerStopped("rank 0 refused")) == ""


def test_first_line():
    assert first_line(OSError("disk full\nmore detail")) == "disk full"
    assert first_line(ValueError("  \n")) == "ValueError"
    assert first_line(RuntimeError("x" * 500)) == "x" * 200
    said = "Stored and computed checksum do not match. Stored: b'%>\\xd6\\xb3'. Computed: b'\\x00\\x01\\x02\\x03'."
    assert first_line(ValueError(said)) == "Stored and computed checksum do not match."  # no raw bytes in a sentence


def test_unknown_layer_in_a_store_without_layers():
    assert "has no layer yet" in str(unknown_layer("mixed4a", []))


def test_unknown_layer_lists_a_few_names_in_full():
    known = [f"layer{i}" for i in range(20)]
    assert str(unknown_layer("nope", known)) == f"unknown layer 'nope'; known layers: {', '.join(known)}"


def test_unknown_layer_among_many_names_gives_close_ones_blocks_and_the_lister():
    known = [f"block{b}" for b in range(3)] + [f"block{b}_part{p}" for b in range(3) for p in range(10)]
    text = str(unknown_layer("block1_part", known, lister="`layers`"))
    assert text.startswith("unknown layer 'block1_part'; did you mean block1_part")
    assert "the blocks are block0, block1, block2; " in text and text.endswith("`layers` lists all 33")
    assert "did you mean" not in str(unknown_layer("zzzzzz", known))
    assert len(text) < 300  # the network's 138 names used to make a 3 KB line
    parts_only = [name for name in known if "_" in name]
    assert "blocks" not in str(unknown_layer("block1_part", parts_only))
