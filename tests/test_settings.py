"""Whether a store was made with a run's settings: what older stores imply, and what a refusal names."""

from __future__ import annotations

import pytest

from pipeline.errors import StoreMismatchError
from pipeline.settings import check_compatible, stored_setting
from pipeline.store import create_store


def _store(tmp_path, paths=("a.jpg", "b.jpg", "c.jpg"), meta=None):
    n = len(paths)
    images = {"path": list(paths), "label": [0] * n, "classes": ["c"], "size": [10 * (i + 1) for i in range(n)],
              "mtime_ns": [100] * n}
    return create_store(tmp_path / "s.zarr", dict(meta or {}, dataset_fingerprint="old"), images, shard_rows=2,
                        overwrite=False)


def _images(paths, sizes=None):
    return {"path": list(paths), "size": sizes or [10 * (i + 1) for i in range(len(paths))],
            "mtime_ns": [100] * len(paths)}


def test_a_recorded_setting_wins_over_what_older_stores_imply():
    """Only an absent setting is implied: a store made with the fast decoder in bf16 says so."""
    attrs = {"preprocessing": {"resize": 256, "decoder": "fast"}, "model": {"name": "m", "precision": "bf16"}}
    assert stored_setting(attrs, "preprocessing") == {"resize": 256, "decoder": "fast"}
    assert stored_setting(attrs, "model")["precision"] == "bf16"
    assert stored_setting({"preprocessing": {"resize": 256}}, "preprocessing") == {"resize": 256, "decoder": "pil"}
    assert stored_setting({"shard_rows": 8}, "shard_rows") == 8


def test_a_store_made_with_the_fast_decoder_refuses_a_pil_run(tmp_path):
    group = _store(tmp_path, meta={"preprocessing": {"resize": 256, "decoder": "fast"}})
    check_compatible(group, {"preprocessing": {"resize": 256, "decoder": "fast"}})
    with pytest.raises(StoreMismatchError, match="preprocessing.decoder='fast', this run has preprocessing.decoder='pil'"):
        check_compatible(group, {"preprocessing": {"resize": 256, "decoder": "pil"}})
    with pytest.raises(StoreMismatchError, match="preprocessing.decoder='fast', this run has preprocessing.decoder='pil'"):
        check_compatible(group, {"preprocessing": {"resize": 256}})  # a run that does not say: PIL


def test_a_changed_dataset_names_the_files_added_removed_and_changed(tmp_path):
    group = _store(tmp_path)
    with pytest.raises(StoreMismatchError, match=r"the images changed since store .* was made: 1 added: d.jpg; "
                                                 r"1 removed: c.jpg; a store holds one fixed set"):
        check_compatible(group, {"dataset_fingerprint": "new"}, _images(["a.jpg", "b.jpg", "d.jpg"]))
    with pytest.raises(StoreMismatchError, match=r"was made: 1 changed in size or modification time \(a copy that "
                                                 r"does not keep times changes them\): b.jpg; a store"):
        check_compatible(group, {"dataset_fingerprint": "new"}, _images(["a.jpg", "b.jpg", "c.jpg"], [10, 21, 30]))
    with pytest.raises(StoreMismatchError, match="was made: the same files in another order; "):
        check_compatible(group, {"dataset_fingerprint": "new"}, {"path": ["c.jpg", "b.jpg", "a.jpg"],
                                                                 "size": [30, 20, 10], "mtime_ns": [100] * 3})


def test_many_changed_files_are_counted_and_three_named(tmp_path):
    group = _store(tmp_path, paths=[f"{i}.jpg" for i in range(4)])
    with pytest.raises(StoreMismatchError, match=r"was made: 4 removed: 0.jpg, 1.jpg, 2.jpg, \.\.\.; a store"):
        check_compatible(group, {"dataset_fingerprint": "new"}, _images([]))
    with pytest.raises(StoreMismatchError, match=r"was made: 3 removed: 1.jpg, 2.jpg, 3.jpg; a store"):
        check_compatible(group, {"dataset_fingerprint": "new"}, _images(["0.jpg"]))


def test_a_changed_dataset_without_the_runs_images_names_the_fingerprint(tmp_path):
    group = _store(tmp_path)
    with pytest.raises(StoreMismatchError, match="made with dataset_fingerprint='old', this run has "
                                                 "dataset_fingerprint='new'"):
        check_compatible(group, {"dataset_fingerprint": "new"})



def test_a_copy_that_did_not_keep_times_names_every_file_changed(tmp_path):
    """Sizes the same, modification times new (``cp`` without ``-p``): each file is changed, not reordered."""
    group = _store(tmp_path)
    with pytest.raises(StoreMismatchError, match=r"was made: 3 changed in size or modification time .*: "
                                                 r"a.jpg, b.jpg, c.jpg; a store"):
        check_compatible(group, {"dataset_fingerprint": "new"}, {"path": ["a.jpg", "b.jpg", "c.jpg"],
                                                                 "size": [10, 20, 30], "mtime_ns": [200] * 3})
