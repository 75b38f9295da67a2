"""The store commands: `exemplars info` (facts, damage, --verify, --json) and `exemplars import` (its options)."""

from __future__ import annotations

import json
import shutil

import numpy as np

import pipeline
from conftest import exemplars_here as exemplars
from pipeline.store import open_group


def test_import_uses_every_option_it_is_given(tmp_path, monkeypatch, capsys):
    n = 7
    rng = np.random.default_rng(1)
    mean, peaks = rng.random((n, 3)), rng.random((n, 3)) + 1
    labels = np.array([0, 1, 2, 0, 1, 2, -1])
    np.save(tmp_path / "m.npy", mean)
    np.save(tmp_path / "max.npy", peaks)
    np.save(tmp_path / "labels.npy", labels)
    (tmp_path / "paths.txt").write_text("".join(f"c{i % 3}/{i}.jpg\n" for i in range(n)))  # relative to --root
    (tmp_path / "classes.txt").write_text("ant\nbee\ncat\n")
    store = tmp_path / "s.zarr"
    code, out, err = exemplars(monkeypatch, capsys, "import", tmp_path / "m.npy", "--store", store, "--layer", "probe",
                               "--paths", tmp_path / "paths.txt", "--labels", tmp_path / "labels.npy",
                               "--classes", tmp_path / "classes.txt", "--max", tmp_path / "max.npy",
                               "--root", "/data", "--shard-rows", 3)
    assert code == 0 and f"imported {n} x 3 into {store} (layer probe)" in out, err
    s = pipeline.open_store(store)
    assert s.paths(range(n)) == [f"c{i % 3}/{i}.jpg" for i in range(n)] and s.root == "/data"
    assert s.labels(range(n)).tolist() == labels.tolist() and s.classes == ["ant", "bee", "cat"]
    assert s.shard_rows == 3 and s["probe"].available == ["mean", "max"]
    np.testing.assert_array_equal(s["probe"].column(2), mean[:, 2].astype(np.float32))
    assert s["probe"].topk(1, k=1, by="max").rows.tolist() == [int(np.argmax(peaks[:, 1]))]
    # --overwrite: the store made again from other paths, its old layer gone
    (tmp_path / "other.txt").write_text("".join(f"o/{i}.jpg\n" for i in range(n)))
    code, out, err = exemplars(monkeypatch, capsys, "import", tmp_path / "m.npy", "--store", store, "--layer", "again",
                               "--paths", tmp_path / "other.txt", "--overwrite")
    assert code == 0, err
    s = pipeline.open_store(store)
    assert s.layers == ["again"] and s.paths([0]) == ["o/0.jpg"] and s.root is None and s.shard_rows == 65536


def test_import_refuses_a_store_that_would_vanish(tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "m.npy", np.ones((1, 2), np.float32))
    (tmp_path / "p.txt").write_text("a.jpg\n")
    code, out, err = exemplars(monkeypatch, capsys, "import", tmp_path / "m.npy", "--store", "memory://gone.zarr",
                               "--layer", "f", "--paths", tmp_path / "p.txt")
    assert code == 2 and "would vanish when this command ends" in err


def test_the_import_warning_blames_the_max_and_values_past_float32(tmp_path, monkeypatch, capsys):
    mean = np.ones((4, 2))
    mean[0, 1] = 1e300  # finite, but not in float32
    peaks = np.ones((4, 2))
    peaks[2, 0] = np.inf  # the mean finite, the max not
    np.save(tmp_path / "m.npy", mean)
    np.save(tmp_path / "max.npy", peaks)
    (tmp_path / "p.txt").write_text("a\nb\nc\nd\n")
    code, out, err = exemplars(monkeypatch, capsys, "import", tmp_path / "m.npy", "--store", tmp_path / "s.zarr",
                               "--layer", "f", "--paths", tmp_path / "p.txt", "--max", tmp_path / "max.npy")
    assert code == 0
    assert "warning: 2 of 4 rows are invalid (a value not finite, or past float32's range): queries leave them out" in err


def test_info_shows_every_invalid_example_and_an_unknown_root(tmp_path, monkeypatch, capsys):
    m = np.ones((6, 2), np.float32)
    m[[1, 3, 4]] = np.nan
    from pipeline.importing import import_matrix

    import_matrix(tmp_path / "s.zarr", m, "feat", [f"x{i}.jpg" for i in range(6)])
    code, out, err = exemplars(monkeypatch, capsys, "info", "--store", tmp_path / "s.zarr")
    assert code == 0, err
    shown = [line.split()[2] for line in out.splitlines() if line.startswith("  invalid    row ")]
    assert shown == ["1", "3", "4"] and "invalid: 3" in out
    assert "root: not recorded;" in out and "RANDOM WEIGHTS" not in out
    assert "feat         2 channels, no spatial maps, shards 1/1, 3 images usable, stats mean" in out


def test_info_of_a_phase_one_store_shows_its_grid_and_random_weights(small_store, monkeypatch, capsys):
    code, out, err = exemplars(monkeypatch, capsys, "info", "--store", small_store)
    assert code == 0, err
    weights = next(line for line in out.splitlines() if line.startswith("weights"))
    assert weights.endswith("<- RANDOM WEIGHTS") and "precision    fp32\n" in out
    assert "layer mixed4a      508 channels, 14x14, shards 3/3, 24 images usable" in out


def test_info_json_of_a_damaged_store_prints_its_facts_then_refuses(small_store, tmp_path, monkeypatch, capsys):
    from conftest import damage_store

    store = tmp_path / "damaged.zarr"
    shutil.copytree(small_store, store)
    damage_store(store, "deleted")
    code, out, err = exemplars(monkeypatch, capsys, "info", "--store", store, "--json")
    facts = json.loads(out)
    assert "missing its file" in facts["layers"]["mixed4a"]["damaged"]
    assert code == 2 and "damaged" in err and "Traceback" not in err
    code, out, err = exemplars(monkeypatch, capsys, "info", "--store", store)
    assert code == 2 and "layer mixed4a      DAMAGED (see below)" in out


def test_info_verify_says_each_layer_verified_or_not(small_store, tmp_path, monkeypatch, capsys):
    from conftest import damage_store

    store = tmp_path / "flipped.zarr"
    shutil.copytree(small_store, store)
    code, out, err = exemplars(monkeypatch, capsys, "info", "--store", store, "--verify", "--json")
    assert code == 0 and json.loads(out)["layers"]["mixed4a"]["verified"] is True, err
    damage_store(store, "flipped")
    code, out, err = exemplars(monkeypatch, capsys, "info", "--store", store, "--verify", "--json")
    assert code == 2 and json.loads(out)["layers"]["mixed4a"]["verified"] is False


def test_info_verify_of_a_layer_that_lost_its_metadata_is_one_sentence(small_store, tmp_path, monkeypatch, capsys):
    from conftest import damage_store

    store = tmp_path / "lost.zarr"
    shutil.copytree(small_store, store)
    damage_store(store, "layer_json")
    code, out, err = exemplars(monkeypatch, capsys, "info", "--store", store, "--verify")
    assert code == 2 and "mixed4a/zarr.json is missing" in err and "Traceback" not in err


def test_info_says_a_layer_being_created(tmp_path, monkeypatch, capsys):
    from pipeline.importing import import_matrix

    import_matrix(tmp_path / "s.zarr", np.ones((2, 2), np.float32), "feat", ["a", "b"])
    group = open_group(tmp_path / "s.zarr", mode="r+")
    group.create_group("half")  # a layer whose creation was cut short: no channels yet
    code, out, err = exemplars(monkeypatch, capsys, "info", "--store", tmp_path / "s.zarr")
    assert code == 0, err
    assert "layer half         being created (or its creation was interrupted)" in out and "invalid: unknown" in out


def test_info_says_values_computed_below_fp32_are_approximate(tmp_path, monkeypatch, capsys):
    from pipeline.store import create_store

    images = {"path": ["a.jpg"], "label": [0], "classes": ["x"], "size": [1], "mtime_ns": [1]}
    for precision, said in (("bf16", "precision    bf16  (approximate)\n"), ("fp32", "precision    fp32\n")):
        create_store(tmp_path / f"{precision}.zarr", {"model": {"name": "inception", "precision": precision,
                                                                "weights": {"kind": "torchvision"}}},
                     images, shard_rows=1, overwrite=False)
        code, out, err = exemplars(monkeypatch, capsys, "info", "--store", tmp_path / f"{precision}.zarr")
        assert code == 0 and said in out, err
