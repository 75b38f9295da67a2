"""Where a store lives: store names from a user, ~ in arguments, and what a store folder holds."""

from __future__ import annotations

import os

import pytest

from pipeline.errors import StoreError
from pipeline.places import LOCK_NAME, REBUILD_NAME, entries, home_argument, location, only_lock


def test_home_is_expanded_in_bare_and_equals_arguments_alone():
    home = os.path.expanduser("~")
    assert home_argument("~/s.zarr") == f"{home}/s.zarr"
    assert home_argument("--store=~/s.zarr") == f"--store={home}/s.zarr"
    assert home_argument("--store") == "--store" and home_argument("a=~/b") == "a=~/b"  # a file name with "="
    assert home_argument("x/~y") == "x/~y"


def test_a_blank_store_name_is_refused():
    for blank in ("", "   ", "local://  "):
        with pytest.raises(StoreError, match="the store's name is empty"):
            location(blank)


def test_a_folder_of_a_lock_and_the_overwrite_mark_holds_no_store_yet(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")
    (tmp_path / REBUILD_NAME).write_text("")
    assert only_lock(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    assert not only_lock(tmp_path) and not only_lock(tmp_path / "absent")


def test_a_killed_writers_half_written_zarr_json_is_no_entry(tmp_path):
    """zarr writes NAME.<uuid>.partial and renames it: only the store's own zarr.json's debris is ignored."""
    (tmp_path / LOCK_NAME).write_text("")
    (tmp_path / f"zarr.{'0f' * 16}.partial").write_text("{")
    assert entries(tmp_path) == [] and entries(tmp_path / "absent") == []
    (tmp_path / "zarr.mine.partial").write_text("x")
    assert entries(tmp_path) == ["zarr.mine.partial"]


def test_what_an_overwrite_cut_short_left_is_ours_but_no_store(tmp_path):
    """Its zarr.json already removed, a layer's folder left: the next writer may take it over and finish."""
    from pipeline.places import is_store, ours

    (tmp_path / "mixed4a").mkdir()
    (tmp_path / REBUILD_NAME).write_text("")
    assert ours(tmp_path) and not is_store(tmp_path)
    (tmp_path / REBUILD_NAME).unlink()
    assert not ours(tmp_path)
