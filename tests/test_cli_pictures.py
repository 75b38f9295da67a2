"""Tests of cli_pictures.py: grid, featureviz, gallery and stats check what they are given before the work."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import exemplars_here as _run, make_folder
from pipeline.importing import import_matrix


@pytest.fixture
def imported(tmp_path):
    """A store of 6 images made by `import` (no model), their files on disk."""
    root = make_folder(tmp_path / "imgs", classes=("a", "b"), per_class=3)
    paths = sorted(str(p.relative_to(root)) for p in root.rglob("*.*"))
    matrix = np.random.default_rng(0).random((len(paths), 4)).astype(np.float32)
    import_matrix(tmp_path / "s.zarr", matrix, "feat", paths, root=root)
    return tmp_path / "s.zarr", matrix, paths


def test_grid_draws_the_rows_asked_and_says_where(imported, tmp_path, monkeypatch, capsys):
    store, _, _ = imported
    out = tmp_path / "g.png"
    code, said, err = _run(monkeypatch, capsys, "grid", "--store", store, "--layer", "feat", "--channels", "0,3",
                           "-k", "2", "--out", out)
    assert code == 0 and said.strip() == f"wrote {out}" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, fragment", [
    (["--out", "{tmp}/g.txt"], "g.txt"),                 # not a figure format
    (["--channels", "9"], "channel"),                   # past the layer's 4 channels
    (["-k", "0"], "k must be at least 1"),
    (["--root", "{tmp}/absent"], "is not a folder"),
])
def test_grid_refuses_in_one_sentence_and_writes_nothing(imported, tmp_path, monkeypatch, capsys, args, fragment):
    store, _, _ = imported
    args = [a.format(tmp=tmp_path) for a in args]
    out = [] if "--out" in args else ["--out", tmp_path / "g.png"]
    code, _, err = _run(monkeypatch, capsys, "grid", "--store", store, "--layer", "feat", *out, *args)
    assert code == 2 and err.startswith("error: ") and fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "g.txt").exists()


def test_a_gallery_of_a_layer_named_twice_is_built_once(imported, tmp_path, monkeypatch, capsys):
    store, _, _ = imported
    code, said, _ = _run(monkeypatch, capsys, "gallery", "--store", store, "--layer", "feat", "--layer", "feat",
                         "-k", "2", "--out", tmp_path / "site", "--no-crops")
    assert code == 0 and "index of" not in said
    assert (tmp_path / "site" / "index.html").exists() and not (tmp_path / "site" / "feat").exists()


def test_a_gallery_checks_every_layer_and_k_before_building_any(imported, tmp_path, monkeypatch, capsys):
    store, _, _ = imported
    code, _, err = _run(monkeypatch, capsys, "gallery", "--store", store, "--layer", "feat", "--layer", "nope",
                        "--out", tmp_path / "site")
    assert code == 2 and "unknown layer 'nope'" in err and not (tmp_path / "site").exists()
    code, _, err = _run(monkeypatch, capsys, "gallery", "--store", store, "--layer", "feat", "-k", "-1",
                        "--out", tmp_path / "site")
    assert code == 2 and "k must be at least 1" in err and not (tmp_path / "site").exists()


def test_stats_refuses_a_channel_past_the_layer_before_writing(imported, tmp_path, monkeypatch, capsys):
    store, _, _ = imported
    code, _, err = _run(monkeypatch, capsys, "stats", "--store", store, "--layer", "feat", "-c", "4",
                        "--out", tmp_path / "st")
    assert code == 2 and "channel" in err and not (tmp_path / "st").exists()


def test_stats_writes_the_channels_histogram_asked(imported, tmp_path, monkeypatch, capsys):
    store, matrix, _ = imported
    code, said, _ = _run(monkeypatch, capsys, "stats", "--store", store, "--layer", "feat", "-c", "2",
                         "--out", tmp_path / "st")
    assert code == 0 and (tmp_path / "st" / "histogram_mean_ch2.png").exists()
    assert str(tmp_path / "st") in said


def test_featureviz_refuses_a_bad_picture_name_before_the_model(imported, tmp_path, monkeypatch, capsys):
    import pipeline.featureviz

    def never(*args, **kwargs):
        raise AssertionError("optimised before the output was checked")

    monkeypatch.setattr(pipeline.featureviz, "featureviz", never)
    store, _, _ = imported
    code, _, err = _run(monkeypatch, capsys, "featureviz", "--store", store, "--layer", "feat", "-c", "0",
                        "--out", tmp_path / "fv.docx")
    assert code == 2 and "fv.docx" in err and not (tmp_path / "fv.docx").exists()


def test_stats_of_an_object_store_read_each_shard_once_and_write_the_same_files(small_store, tmp_path,
                                                                                 monkeypatch, capsys):
    """On S3 each block of 16 columns read was a request a shard (3,393 for 24 images): a store at a URL
    has its arrays read whole once; one on a disk is read by blocks as before (faster there)."""
    import collections

    import zarr.storage

    reads, get = collections.Counter(), zarr.storage.LocalStore.get

    async def counted(self, key, *args, **kwargs):
        reads[key] += 1
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", counted)
    assert _run(monkeypatch, capsys, "stats", "--store", str(small_store), "-o", str(tmp_path / "disk"))[0] == 0
    assert reads["mixed4a/mean/c/0/0"] > 3
    reads.clear()
    monkeypatch.setattr("pipeline.places.is_url", lambda path: True)  # as a URL's store is
    assert _run(monkeypatch, capsys, "stats", "--store", str(small_store), "-o", str(tmp_path / "url"))[0] == 0
    shards = {key for key in reads if key.startswith(("mixed4a/mean/c/", "mixed4a/max/c/"))}
    assert shards == {f"mixed4a/{name}/c/{s}/0" for name in ("mean", "max") for s in range(3)}
    assert all(reads[key] == 1 for key in shards), reads
    files = sorted(p.name for p in (tmp_path / "disk").iterdir())
    assert len(files) >= 9 and files == sorted(p.name for p in (tmp_path / "url").iterdir())
    for name in files:
        assert (tmp_path / "disk" / name).read_bytes() == (tmp_path / "url" / name).read_bytes(), name
