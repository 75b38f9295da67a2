"""Whole files lost from a store (image arrays' chunks, a layer's arrays): refused in one sentence,
never read as fill values, and written again (or recomputed) by phase one's rerun."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr

import pipeline
from conftest import exemplars_here
from pipeline.errors import DamagedStoreError
from pipeline.importing import import_matrix

N, C, ROWS = 12, 3, 4


@pytest.fixture
def copied(small_store, tmp_path):
    """A fresh copy of the 24-image store (3 classes of 8, shards of 8 rows) to damage."""
    store = tmp_path / "s.zarr"
    shutil.copytree(small_store, store)
    return store


def _lost_image_data(group):
    from pipeline.lost import lost_image_data  # imported here: each test fails on its own without the module

    return lost_image_data(group)


def _missing_arrays(group, layer):
    from pipeline.lost import missing_arrays
    from pipeline.metadata import children

    return missing_arrays(layer, group[layer].attrs, children(group, layer)[0])


def _group(store):
    return zarr.open_group(str(store), mode="r")


def _as_before_label_fill(store) -> None:
    """Make ``images/label`` as stores before 2026-11-28 had it: fill value 0."""
    meta = store / "images" / "label" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["fill_value"] = 0
    meta.write_text(json.dumps(doc))


def test_a_lost_path_chunk_is_refused_not_shown_as_empty_paths(copied, monkeypatch, capsys):
    (copied / "images" / "path" / "c" / "1").unlink()
    said = r"images/path chunk 1 \(rows 8-15\) is missing its file; rerun `exemplars activations`"
    with pytest.raises(DamagedStoreError, match=said):
        pipeline.open_store(copied)["mixed4a"].topk(1, k=30)
    assert "images/path chunk 1 (rows 8-15)" in pipeline.open_store(copied).info()["damaged"]
    code, out, err = exemplars_here(monkeypatch, capsys, "info", "--store", copied)
    assert code == 2 and "images       DAMAGED" in out and "images/path chunk 1 (rows 8-15)" in err
    code, _, err = exemplars_here(monkeypatch, capsys, "topk", "--store", copied, "-c", "1", "-k", "30")
    assert code == 2 and err.count("\n") == 1


def test_every_label_chunk_is_written_and_a_lost_one_refused(copied):
    """Class 0 is a label: with fill value 0 a chunk of class 0 alone was never written."""
    assert sorted(p.name for p in (copied / "images" / "label" / "c").iterdir()) == ["0", "1", "2"]
    assert _group(copied)["images/label"].metadata.fill_value == -2
    (copied / "images" / "label" / "c" / "0").unlink()  # class 0 alone: read as -2 now, not as class 0
    with pytest.raises(DamagedStoreError, match=r"images/label chunk 0 \(rows 0-7\) is missing its file"):
        pipeline.open_store(copied)["mixed4a"].topk(1)


def test_an_older_stores_lost_labels_are_told_from_class_0_by_the_paths(copied):
    _as_before_label_fill(copied)
    (copied / "images" / "label" / "c" / "0").unlink()  # apple (class 0) alone: reads right, as 0
    assert _lost_image_data(_group(copied)) == []
    assert len(pipeline.open_store(copied)["mixed4a"].topk(1, k=24).rows) == 24
    (copied / "images" / "label" / "c" / "1").unlink()  # bear: would read as apple
    with pytest.raises(DamagedStoreError, match=r"images/label chunk 1 \(rows 8-15\) is missing its file"):
        pipeline.open_store(copied).labels([8])


def test_lost_sizes_or_times_are_found_by_the_fingerprint(copied):
    (copied / "images" / "mtime_ns" / "c" / "2").unlink()
    found = _lost_image_data(_group(copied))
    assert [(name, chunk) for name, chunk, _ in found] == [("mtime_ns", 2)]


def test_an_imported_store_has_no_size_or_time_chunks_to_lose(tmp_path):
    store = tmp_path / "s.zarr"
    labels = np.zeros(N, dtype=np.int64)
    import_matrix(store, np.ones((N, C), np.float32), "probe", [f"x{i}.jpg" for i in range(N)], labels=labels,
                  classes=["only"], shard_rows=ROWS)
    assert not (store / "images" / "size" / "c").exists()
    assert sorted(p.name for p in (store / "images" / "label" / "c").iterdir()) == ["0", "1", "2"]
    assert _lost_image_data(_group(store)) == []
    (store / "images" / "path" / "c" / "0").unlink()
    with pytest.raises(DamagedStoreError, match=r"images/path chunk 0 \(rows 0-3\) .*import the store's layers again"):
        import_matrix(store, np.ones((N, C), np.float32), "probe2", [f"x{i}.jpg" for i in range(N)], shard_rows=ROWS)


def test_a_lost_array_is_damage_not_a_statistic_never_stored(copied, monkeypatch, capsys):
    shutil.rmtree(copied / "mixed4a" / "max")
    with pytest.raises(DamagedStoreError, match="layer mixed4a of .* is damaged: its mixed4a/max array is missing"):
        pipeline.open_store(copied)["mixed4a"].topk(1, by="max")
    code, out, err = exemplars_here(monkeypatch, capsys, "info", "--store", copied)
    assert code == 2 and "DAMAGED" in out and "mixed4a/max array is missing" in err


def test_a_layer_records_its_arrays_so_an_imports_lost_max_is_damage(tmp_path):
    store = tmp_path / "s.zarr"
    paths = [f"x{i}.jpg" for i in range(N)]
    import_matrix(store, np.ones((N, C), np.float32), "probe", paths, shard_rows=ROWS)
    import_matrix(store, np.ones((N, C), np.float32), "peaks", paths, max_matrix=np.ones((N, C), np.float32))
    assert _group(store)["probe"].attrs["stats"] == ["mean"]
    assert pipeline.open_store(store)["probe"].available == ["mean"]  # never given: no damage
    shutil.rmtree(store / "peaks" / "max")
    with pytest.raises(DamagedStoreError, match="its peaks/max array is missing; import the layer again"):
        pipeline.open_store(store)["peaks"]


@pytest.mark.parametrize("array", ["mean", "done"])
def test_a_layer_before_the_stats_attribute_has_phase_ones_three_arrays(copied, array):
    meta = copied / "mixed4a" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"].pop("stats")
    meta.write_text(json.dumps(doc))
    assert _missing_arrays(_group(copied), "mixed4a") is None
    shutil.rmtree(copied / "mixed4a" / array)
    assert _missing_arrays(_group(copied), "mixed4a") == f"its mixed4a/{array} array is missing"


def test_phase_ones_rerun_writes_lost_image_chunks_again_and_recomputes_a_lost_array(copied, image_folder, capsys):
    from pipeline.extract import extract

    before = pipeline.open_store(copied)["mixed4a"].topk(1, k=24)
    (copied / "images" / "path" / "c" / "1").unlink()
    (copied / "images" / "label" / "c" / "2").unlink()
    shutil.rmtree(copied / "mixed4a" / "max")
    extract(image_folder, copied, ["mixed4a"], weights="random", batch_size=4, workers=0, progress=False)
    err = capsys.readouterr().err
    assert "images/path chunk 1 (rows 8-15) is missing its file; images/label chunk 2 (rows 16-23)" in err
    assert "its mixed4a/max array is missing): removing it and computing it again" in err
    after = pipeline.open_store(copied)["mixed4a"].topk(1, k=24)
    assert after.rows.tolist() == before.rows.tolist() and after.paths == before.paths
    assert list(after.labels) == list(before.labels)
    assert _lost_image_data(_group(copied)) == []


@pytest.mark.parametrize("edit", ["path", "label", "mtime_ns"])
def test_altered_image_data_is_found_by_verify_and_written_again_by_a_verify_rerun(copied, image_folder, monkeypatch,
                                                                                  capsys, edit):
    """No checksum guards paths, labels, sizes or times: a changed byte that still decodes was read as
    another path or class by every command, ``--verify`` included."""
    from pipeline.extract import extract

    before = pipeline.open_store(copied)["mixed4a"].topk(1, k=24)
    arr = zarr.open_group(str(copied), mode="r+")[f"images/{edit}"]
    arr[5] = "a/b.jpg" if edit == "path" else (int(arr[5]) + 1) % 3 if edit == "label" else int(arr[5]) + 1
    code, _, _ = exemplars_here(monkeypatch, capsys, "info", "--store", copied)
    assert code == 0  # listings alone cannot see it
    code, _, err = exemplars_here(monkeypatch, capsys, "info", "--store", copied, "--verify")
    said = "images/label of row 5 is" if edit == "label" else "images/path, size or mtime_ns no longer hash"
    assert code == 2 and said in err and "with the same settings and --verify to write them again" in err, err
    extract(image_folder, copied, ["mixed4a"], weights="random", batch_size=4, workers=0, progress=False, verify=True)
    assert "writing them again from the image folder" in capsys.readouterr().err
    code, _, err = exemplars_here(monkeypatch, capsys, "info", "--store", copied, "--verify")
    assert code == 0, err
    after = pipeline.open_store(copied)["mixed4a"].topk(1, k=24)
    assert after.paths == before.paths and list(after.labels) == list(before.labels)


@pytest.mark.parametrize("lost", ["images/path/zarr.json", "images/valid/zarr.json", "images"])
def test_lost_image_metadata_beside_a_layer_is_damage_not_a_store_being_made(copied, tmp_path, lost):
    """It was "still being created (or its creation was interrupted)": layers are made after every image array."""
    from pipeline.errors import StoreError

    target = copied / lost
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    named = "images" if lost == "images" else lost.rsplit("/", 1)[0]
    with pytest.raises(DamagedStoreError, match=f"is damaged: its {named}/zarr.json is missing .*computes the layers again"):
        pipeline.open_store(copied)
    making = tmp_path / "making.zarr"
    shutil.copytree(copied, making)
    shutil.rmtree(making / "mixed4a")  # no layer yet: killed while making the image arrays
    with pytest.raises(StoreError, match="is still being created") as made:
        pipeline.open_store(making)
    assert not isinstance(made.value, DamagedStoreError)


@pytest.mark.parametrize("old_labels", [False, True])
def test_one_rerun_writes_every_lost_chunk_beside_lost_paths(copied, image_folder, capsys, old_labels):
    """Lost paths left the fingerprint nothing to vouch with, and an old store's labels beside paths
    read as "" were vouched for: the rerun wrote the paths alone, and a second rerun the rest."""
    from pipeline.extract import extract

    if old_labels:
        _as_before_label_fill(copied)
    before = pipeline.open_store(copied)["mixed4a"].topk(1, k=24)
    (copied / "images" / "path" / "c" / "0").unlink()
    (copied / "images" / "mtime_ns" / "c" / "2").unlink()
    (copied / "images" / "label" / "c" / "0").unlink()
    lost = {(name, chunk) for name, chunk, _ in _lost_image_data(_group(copied))}
    assert lost == {("path", 0), ("mtime_ns", 2), ("label", 0)}
    extract(image_folder, copied, ["mixed4a"], weights="random", batch_size=4, workers=0, progress=False)
    assert "writing them again" in capsys.readouterr().err
    assert _lost_image_data(_group(copied)) == []
    after = pipeline.open_store(copied)["mixed4a"].topk(1, k=24)
    assert after.paths == before.paths and list(after.labels) == list(before.labels)
