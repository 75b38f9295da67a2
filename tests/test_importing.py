"""Imported stores: a matrix computed elsewhere, checked before writing, one layer after another."""

from __future__ import annotations

import re

import numpy as np
import pytest

import pipeline
from pipeline.errors import InputError, StoreError, StoreMismatchError
from pipeline.importing import import_matrix
from pipeline.store import open_group


def test_import_matrix_layout(tmp_path):
    m = np.arange(30, dtype=np.float32).reshape(10, 3)
    m[4] = np.nan
    group = import_matrix(tmp_path / "s.zarr", m, "feat", [f"{i}.jpg" for i in range(10)], shard_rows=4)
    assert group["images/valid"][:].tolist() == [True] * 4 + [False] + [True] * 5
    assert group["feat/done"][:].all() and group["feat"].attrs["complete"]
    np.testing.assert_array_equal(group["feat/mean"][:][~np.isnan(m).any(1)], m[~np.isnan(m).any(1)])
    with pytest.raises(InputError, match="10 rows but 3 paths"):
        import_matrix(tmp_path / "t.zarr", m, "feat", ["a", "b", "c"])


def test_a_second_import_never_mixes_with_the_first(tmp_path):
    store, m = tmp_path / "s.zarr", np.ones((6, 2), dtype=np.float32)
    import_matrix(store, m, "feat", [f"a/{i}.jpg" for i in range(6)])
    with pytest.raises(StoreMismatchError, match="images changed.*3 added: b/0.jpg, b/1.jpg, b/2.jpg; 6 removed: a/0.jpg, a/1.jpg, a/2.jpg, ..."):
        import_matrix(store, m[:3] * 2, "feat", [f"b/{i}.jpg" for i in range(3)])
    with pytest.raises(StoreMismatchError, match="already has layer feat"):  # same images, same layer
        import_matrix(store, m * 2, "feat", [f"a/{i}.jpg" for i in range(6)])
    assert open_group(store)["feat/mean"][:].tolist() == m.tolist()  # untouched
    fresh = import_matrix(store, m * 2, "feat", [f"b/{i}.jpg" for i in range(6)], overwrite=True)
    assert fresh["feat/mean"][:].tolist() == (m * 2).tolist()
    assert fresh["images/path"][:].tolist() == [f"b/{i}.jpg" for i in range(6)]


@pytest.mark.parametrize("name", ["images", "", "a/b", "..", ".", "zarr.json", ".writer.lock", "a\\b", "-x"])
def test_import_refuses_layer_names_the_format_reserves(tmp_path, name):
    with pytest.raises(InputError, match="cannot name a layer"):
        import_matrix(tmp_path / "s.zarr", np.ones((2, 2), dtype=np.float32), name, ["x", "y"])
    assert not (tmp_path / "s.zarr").exists()  # refused before anything is written


def test_values_past_float32_make_their_rows_invalid_and_say_why(tmp_path):
    m = np.ones((3, 2))
    m[1, 0] = 1e300  # finite in float64, inf in float32
    m[2, 1] = np.nan
    import_matrix(tmp_path / "s.zarr", m, "feat", ["a", "b", "c"])
    group = open_group(tmp_path / "s.zarr")
    assert group["images/valid"][:].tolist() == [True, False, False]
    assert [str(e) for e in group["images/error"][:]] == ["", "a value past float32's range (3.4e38) in an imported "
                                                          "matrix", "non-finite values in an imported matrix"]


def test_a_layer_imports_into_a_phase_one_store_with_its_paths(small_store, tmp_path):
    import shutil

    store = tmp_path / "p1.zarr"
    shutil.copytree(small_store, store)
    opened = pipeline.open_store(store)
    paths = opened.paths(range(opened.n))
    m = np.random.default_rng(0).random((opened.n, 3)).astype(np.float32)
    import_matrix(store, m, "probe", paths)
    layer = pipeline.open_store(store)["probe"]
    np.testing.assert_array_equal(layer.column(1), m[:, 1])
    assert pipeline.open_store(store).info()["layers"]["probe"]["imported"]
    with pytest.raises(StoreMismatchError, match=r"holds other images \(24 paths; row 0 is"):
        import_matrix(store, m, "probe2", paths[::-1])
    group = open_group(store, mode="r+")
    group["mixed4a"].attrs["complete"] = False  # as a killed phase one leaves it: still not the import's to redo
    with pytest.raises(StoreMismatchError, match="has layer mixed4a from `exemplars activations`"):
        import_matrix(store, m, "mixed4a", paths)
    assert "mean" in open_group(store)["mixed4a"] and "argmax" in open_group(store)["mixed4a"]


def test_a_file_is_not_a_store_to_write(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        import_matrix(tmp_path / "file", np.ones((2, 2), dtype=np.float32), "feat", ["x", "y"])


@pytest.mark.parametrize("matrix, labels, fragment", [
    (np.array([["a", "b"], ["c", "d"]]), None, "real numbers, not <U1"),
    (np.ones(2, dtype=np.float32), None, "2-dimensional array, not shape (2,)"),
    (np.ones((2, 0), dtype=np.float32), None, "no channels"),
    (np.ones((2, 2), dtype=np.complex64), None, "real numbers"),
    (np.ones((2, 2), dtype=np.float32), np.array([0.5, 1.0]), "whole numbers"),
    (np.ones((2, 2), dtype=np.float32), np.array([0, 2**31]), "whole numbers"),
])
def test_import_refuses_what_it_cannot_store_before_writing(tmp_path, matrix, labels, fragment):
    with pytest.raises(InputError, match=re.escape(fragment)):
        import_matrix(tmp_path / "s.zarr", matrix, "feat", ["x", "y"][: len(matrix)], labels)
    assert not (tmp_path / "s.zarr").exists()  # refused before anything was made


def test_layers_import_one_after_another_and_non_finite_rows_are_invalid(tmp_path):
    store = tmp_path / "s.zarr"
    a = np.arange(8, dtype=np.float32).reshape(4, 2)
    peaks = a + 1
    peaks[1, 0] = np.inf  # a finite mean with an infinite max: no ranking by max could place it
    import_matrix(store, a, "A", ["./x/0.jpg", "x//1.jpg", "x/2.jpg", "x/3.jpg"], max_matrix=peaks)
    b = a * 2
    b[3, 1] = np.nan
    import_matrix(store, b, "B", ["x/0.jpg", "x/1.jpg", "x/2.jpg", "x/3.jpg"])  # the same images, normalised
    s = pipeline.open_store(store)
    assert s.layers == ["A", "B"] and s.valid.tolist() == [True, False, True, False]
    assert s.row_of("./x/0.jpg") == 0 and s.all_paths[1] == "x/1.jpg"
    assert s["A"].topk(0, k=4, by="max").rows.tolist() == [2, 0]
    assert s["B"].topk(1, k=4, bottom=True).rows.tolist() == [0, 2]


def test_an_import_cut_short_is_imported_again_in_the_stores_shards(tmp_path):
    store, paths = tmp_path / "s.zarr", [f"{i}.jpg" for i in range(6)]
    m = np.arange(12, dtype=np.float32).reshape(6, 2)
    import_matrix(store, m, "A", paths, shard_rows=4)
    group = open_group(store, mode="r+")
    group["A"].attrs["complete"] = False  # as if killed before it finished
    group["A/done"][1] = False
    import_matrix(store, m * 3, "A", paths)  # no --shard-rows: the store's 4, not 65536
    s = pipeline.open_store(store)
    assert s.shard_rows == 4 and s["A"].column(1).tolist() == (m[:, 1] * 3).tolist()
    import_matrix(store, m, "B", paths)
    with pytest.raises(StoreMismatchError, match="other labels"):
        import_matrix(store, m, "C", paths, labels=np.arange(6))


def test_a_redone_import_forgets_the_rows_its_cut_short_attempt_found_invalid(tmp_path):
    store, paths = tmp_path / "s.zarr", [f"{i}.jpg" for i in range(8)]
    a = np.ones((8, 2), dtype=np.float32)
    a[5] = np.nan  # invalid in layer A, for good
    import_matrix(store, a, "A", paths, shard_rows=4)
    bad = np.ones((8, 2), dtype=np.float32)
    bad[1] = np.inf  # the attempt that was cut short had a broken row
    import_matrix(store, bad, "B", paths)
    group = open_group(store, mode="r+")
    group["B"].attrs["complete"] = False
    group["B/done"][1] = False
    group["images/error"][5:6] = np.asarray(["A's own reason"], dtype=str)
    import_matrix(store, np.ones((8, 2), dtype=np.float32), "B", paths)  # redone with a clean matrix
    s = pipeline.open_store(store)
    assert s.valid.tolist() == [True] * 5 + [False] + [True] * 2
    assert str(open_group(store)["images/error"][5]) == "A's own reason"  # invalid through A: A's reason stays
    with pytest.raises(StoreMismatchError, match="other class names"):
        import_matrix(store, a, "C", paths, np.full(8, -1), classes=["x"])
    import_matrix(store, a, "C", paths, root="/data/")  # the store had no root: now it has
    assert pipeline.open_store(store).root == "/data"
    with pytest.raises(StoreMismatchError, match="records the dataset root /data, this import /elsewhere"):
        import_matrix(store, a, "D", paths, root="/elsewhere")
    import_matrix(store, a, "D", [f"/data/{p}" for p in paths])  # absolute, under the store's root
    import_matrix(store, a, "E", paths, root="/data")  # relative, with the same root spelled another way
    with pytest.raises(StoreMismatchError, match="other class names"):
        import_matrix(store, a, "F", paths, classes=["x"])  # the store's labels index class names


def test_paths_are_relative_unique_and_inside_the_root(tmp_path):
    m = np.ones((2, 2), dtype=np.float32)
    group = import_matrix(tmp_path / "a.zarr", m, "feat", ["/data/cat/1.jpg", "/data/dog/2.jpg"])
    assert group["images/path"][:].tolist() == ["cat/1.jpg", "dog/2.jpg"] and group.attrs["dataset"]["root"] == "/data"
    for paths, fragment in [(["a.jpg", "./a.jpg"], "given twice"), (["../a.jpg", "b.jpg"], "does not name a file"),
                            (["/data/a.jpg", "b.jpg"], "mix absolute and relative")]:
        with pytest.raises(InputError, match=fragment):
            import_matrix(tmp_path / "b.zarr", m, "feat", paths)
    with pytest.raises(InputError, match="not under the root"):
        import_matrix(tmp_path / "b.zarr", m, "feat", ["/data/a.jpg", "/elsewhere/b.jpg"], root="/data")
    with pytest.raises(InputError, match="class names need labels"):
        import_matrix(tmp_path / "b.zarr", m, "feat", ["a.jpg", "b.jpg"], classes=["x"])
    with pytest.raises(InputError, match="label 3 has no class name: 2 were given"):
        import_matrix(tmp_path / "b.zarr", m, "feat", ["a.jpg", "b.jpg"], np.array([0, 3]), ["x", "y"])
    assert not (tmp_path / "b.zarr").exists()  # refused before anything was written


def test_input_files_that_cannot_be_read_are_one_sentence(tmp_path):
    from conftest import run_cli

    np.save(tmp_path / "m.npy", np.ones((1, 2), dtype=np.float32))
    (tmp_path / "bom.txt").write_bytes("\ufeffcafé.jpg".encode("utf-8"))  # Notepad's UTF-8
    run_cli("import", tmp_path / "m.npy", "--store", tmp_path / "b.zarr", "--layer", "f", "--paths", tmp_path / "bom.txt")
    assert pipeline.open_store(tmp_path / "b.zarr").paths([0]) == ["café.jpg"]
    for name, fragment in [("empty.npy", "is not a .npy file"), ("pair.npy", "archive of several arrays"),
                           ("photo.jpg", "is not a .npy file; give one array saved with numpy.save"),
                           ("objects.npy", "it holds Python objects, not numbers")]:
        if name in ("empty.npy", "photo.jpg"):
            (tmp_path / name).write_bytes(b"\xff\xd8\xff\xe0" * (name == "photo.jpg"))
        elif name == "objects.npy":
            np.save(tmp_path / name, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        else:
            with open(tmp_path / name, "wb") as f:
                np.savez(f, a=np.ones(2), b=np.ones(2))
        proc = run_cli("import", tmp_path / name, "--store", tmp_path / "e.zarr", "--layer", "f",
                       "--paths", tmp_path / "bom.txt", check=False)
        assert proc.returncode == 2 and fragment in proc.stderr and "interrupted" not in proc.stderr, proc.stderr
        assert "allow_pickle" not in proc.stderr  # numpy's advice to unpickle what one does not trust
    (tmp_path / "p.txt").write_bytes("café.jpg".encode("latin-1"))
    proc = run_cli("import", tmp_path / "m.npy", "--store", tmp_path / "s.zarr", "--layer", "f",
                   "--paths", tmp_path / "p.txt", check=False)
    assert proc.returncode == 2 and "is not UTF-8 text" in proc.stderr and "Traceback" not in proc.stderr


def test_absolute_paths_keep_their_rows_order(tmp_path):
    m = np.array([[3.0, 0.0], [1.0, 5.0], [2.0, 1.0]], dtype=np.float32)
    import_matrix(tmp_path / "s.zarr", m, "feat", ["/d/zebra.jpg", "/d/ant.jpg", "/d/sub/moth.jpg"])
    s = pipeline.open_store(tmp_path / "s.zarr")
    assert [str(p) for p in s.all_paths] == ["zebra.jpg", "ant.jpg", "sub/moth.jpg"]
    assert s.paths(s["feat"].topk(1, k=1).rows) == ["ant.jpg"] and s.row_of("sub/moth.jpg") == 2


@pytest.mark.parametrize("labels, classes", [([0, 2], ["x", "y"]), ([0, -2], ["x", "y"])])
def test_a_label_outside_the_class_names_is_refused(tmp_path, labels, classes):
    with pytest.raises(InputError, match="has no class name|whole numbers from -1"):
        import_matrix(tmp_path / "s.zarr", np.ones((2, 2), np.float32), "feat", ["a", "b"], np.array(labels), classes)
    assert not (tmp_path / "s.zarr").exists()
    import_matrix(tmp_path / "s.zarr", np.ones((2, 2), np.float32), "feat", ["a", "b"], np.array([1, -1]), classes)


def test_import_warning_does_not_blame_the_matrix_for_undecodable_images(small_store, tmp_path):
    """A finite matrix imported into a phase-one store with an undecodable image was warned about as
    'rows are invalid (a value not finite, or past float32's range)': the rows were the images'."""
    import shutil

    from conftest import run_cli

    store = tmp_path / "p1.zarr"
    shutil.copytree(small_store, store)
    group = open_group(store, mode="r+")
    valid = group["images"]["valid"][:]
    valid[2] = False  # as phase one leaves an image it could not decode
    group["images"]["valid"][:] = valid
    errors = group["images"]["error"][:]
    errors[2] = "UnidentifiedImageError: cannot identify image file 'x.jpg'"
    group["images"]["error"][:] = errors
    n = len(valid)
    paths = pipeline.open_store(store).paths(range(n))
    (tmp_path / "paths.txt").write_text("\n".join(paths) + "\n")
    m = np.random.default_rng(0).random((n, 3))
    np.save(tmp_path / "m.npy", m)
    proc = run_cli("import", tmp_path / "m.npy", "--store", store, "--layer", "probe", "--paths", tmp_path / "paths.txt")
    assert "a value not finite" not in proc.stderr
    assert f"1 of {n} rows is invalid" in proc.stderr and "could not be decoded" in proc.stderr
    m[5, 1] = np.nan
    np.save(tmp_path / "m.npy", m)
    proc = run_cli("import", tmp_path / "m.npy", "--store", store, "--layer", "probe2", "--paths", tmp_path / "paths.txt")
    assert f"2 of {n} rows are invalid: 1 with a value not finite, or past float32's range; 1 " in proc.stderr


def test_import_warning_does_not_blame_the_matrix_for_another_imports_rows(tmp_path):
    """A finite matrix imported beside a layer whose matrix had a NaN was warned about as 'a value not
    finite' of its own: the row was invalid through the other layer."""
    from conftest import run_cli

    (tmp_path / "paths.txt").write_text("".join(f"x{i}.jpg\n" for i in range(4)))
    nan = np.ones((4, 2), np.float32)
    nan[1, 0] = np.nan
    np.save(tmp_path / "a.npy", nan)
    np.save(tmp_path / "b.npy", np.ones((4, 2), np.float32))
    store = tmp_path / "s.zarr"
    said = [run_cli("import", tmp_path / f"{m}.npy", "--store", store, "--layer", m, "--paths", tmp_path / "paths.txt").stderr
            for m in ("a", "b")]
    assert "1 of 4 rows is invalid (a value not finite" in said[0]
    assert "1 of 4 rows is invalid (in the store already" in said[1] and "a value not finite" not in said[1]


@pytest.mark.parametrize("labels", [np.zeros(3, dtype=np.int64), np.zeros(1, dtype=np.int64)])
def test_labels_of_another_length_than_the_paths_are_refused(tmp_path, labels):
    with pytest.raises(InputError, match=re.escape(f"the labels have shape {labels.shape}, expected (2,)")):
        import_matrix(tmp_path / "s.zarr", np.ones((2, 2), np.float32), "feat", ["a", "b"], labels)
    assert not (tmp_path / "s.zarr").exists()


def test_a_redone_import_keeps_every_row_another_layers_mean_or_max_made_invalid(tmp_path):
    store, paths = tmp_path / "s.zarr", [f"{i}.jpg" for i in range(8)]
    mean, peaks = np.ones((8, 2), np.float32), np.ones((8, 2), np.float32)
    peaks[1, 0] = np.inf  # A's max alone is not finite
    mean[2, 1] = np.nan  # A's mean alone is not finite
    import_matrix(store, mean, "A", paths, shard_rows=4, max_matrix=peaks)
    other = np.ones((8, 2), np.float32)
    other[3, 0] = np.nan  # a second layer's own invalid row
    import_matrix(store, other, "A2", paths)
    import_matrix(store, np.ones((8, 2), np.float32), "B", paths)
    group = open_group(store, mode="r+")
    group["B"].attrs["complete"] = False  # B cut short in its first shard: imported again
    group["B/done"][0] = False
    import_matrix(store, np.ones((8, 2), np.float32), "B", paths)
    expected = [True, False, False, False, True, True, True, True]
    assert pipeline.open_store(store).valid.tolist() == expected
    assert pipeline.open_store(store)["A"].topk(0, k=8, by="max").rows.tolist() == [0, 4, 5, 6, 7]


def test_an_import_cut_short_is_redone_with_the_shape_and_statistics_of_the_new_matrix(tmp_path):
    store, paths = tmp_path / "s.zarr", [f"{i}.jpg" for i in range(6)]
    wide = np.full((6, 3), 9, dtype=np.float32)
    import_matrix(store, wide, "A", paths, shard_rows=4, max_matrix=wide + 1)
    group = open_group(store, mode="r+")
    group["A"].attrs["complete"] = False  # killed before it finished: redone from the start
    group["A/done"][1] = False
    m = np.arange(12, dtype=np.float32).reshape(6, 2)
    import_matrix(store, m, "A", paths)  # another matrix this time: two channels, no max
    layer = pipeline.open_store(store)["A"]
    assert layer.channels == 2 and layer.available == ["mean"]
    np.testing.assert_array_equal(layer.column(1), m[:, 1])
    from pipeline.errors import QueryError

    with pytest.raises(QueryError, match="no spatial max"):
        layer.topk(0, by="max")  # not the cut-short attempt's maxima


@pytest.mark.parametrize("blank, said", [("", r"path 1 \(line 2 of a paths file\) is blank"), ("  ", "is blank"),
                                         (".", "does not name a file"), ("./", "does not name a file"),
                                         ("x/..", "does not name a file under the dataset root")])
def test_a_path_that_names_no_file_is_refused(tmp_path, blank, said):
    """A blank line was called "path '.'", which the user never wrote."""
    with pytest.raises(InputError, match=said):
        import_matrix(tmp_path / "s.zarr", np.ones((2, 2), np.float32), "feat", ["a.jpg", blank])
    assert not (tmp_path / "s.zarr").exists()


def _phase_one_like(path, paths):
    """A store as `exemplars activations` makes it (its own layout, recorded sizes), shards of 2 rows."""
    from pipeline.store import add_layer, create_store

    images = {"path": paths, "label": [0, 1, 0], "classes": ["x", "y"], "size": [5, 6, 7], "mtime_ns": [1, 2, 3]}
    group = create_store(path, {"model": {"name": "inception"}, "dataset": {"root": "/d", "layout": "folder"}},
                         images, shard_rows=2, overwrite=False)
    add_layer(group, "conv", 2, (3, 3), {})


def test_overwrite_rebuilds_a_phase_one_store_as_an_import(tmp_path):
    paths = ["a.jpg", "b.jpg", "c.jpg"]
    _phase_one_like(tmp_path / "s.zarr", paths)
    m = np.arange(6, dtype=np.float32).reshape(3, 2)
    import_matrix(tmp_path / "s.zarr", m, "feat", paths, overwrite=True)
    s = pipeline.open_store(tmp_path / "s.zarr")
    assert s.layers == ["feat"] and s.attrs["dataset"]["layout"] == "imported" and s.classes == []
    assert s.recorded([0, 1, 2]) == [None] * 3 and s.shard_rows == 65536
    np.testing.assert_array_equal(s["feat"].column(0), m[:, 0])


def test_an_import_into_a_phase_one_store_keeps_its_shards(tmp_path):
    paths = ["a.jpg", "b.jpg", "c.jpg"]
    _phase_one_like(tmp_path / "s.zarr", paths)
    m = np.arange(6, dtype=np.float32).reshape(3, 2)
    with pytest.raises(StoreMismatchError, match="has shards of 2 rows, not 1"):
        import_matrix(tmp_path / "s.zarr", m, "feat", paths, shard_rows=1)
    assert "feat" not in open_group(tmp_path / "s.zarr")
    import_matrix(tmp_path / "s.zarr", m, "feat", paths)  # the store's own 2
    layer = pipeline.open_store(tmp_path / "s.zarr")["feat"]
    assert layer.done.tolist() == [True, True] and layer.column(1).tolist() == m[:, 1].tolist()


@pytest.mark.parametrize("shape", [(2, 1), (3, 2), (2, 3)])
def test_a_max_matrix_of_another_shape_than_the_mean_is_refused(tmp_path, shape):
    with pytest.raises(InputError, match=re.escape(f"the max matrix has shape {shape}, the mean (2, 2)")):
        import_matrix(tmp_path / "s.zarr", np.ones((2, 2), np.float32), "feat", ["a", "b"],
                      max_matrix=np.ones(shape, np.float32))  # (2, 1) would broadcast into every channel
    assert not (tmp_path / "s.zarr").exists()


def test_each_invalid_row_says_whether_its_max_was_not_finite_or_too_large(tmp_path):
    mean, peaks = np.ones((3, 2)), np.ones((3, 2))
    peaks[1, 1] = np.nan
    peaks[2, 0] = 1e300  # finite in float64, past float32
    import_matrix(tmp_path / "s.zarr", mean, "feat", ["a", "b", "c"], max_matrix=peaks)
    group = open_group(tmp_path / "s.zarr")
    assert group["images/valid"][:].tolist() == [True, False, False]
    assert [str(e) for e in group["images/error"][:]] == ["", "non-finite values in an imported matrix",
                                                          "a value past float32's range (3.4e38) in an imported matrix"]


def test_an_import_beside_or_into_a_layer_whose_zarr_json_is_not_metadata(tmp_path):
    """Into it: zarr's JSONDecodeError as a traceback. Beside it: the import succeeded with zarr's failed
    tasks printed after it ("Task exception was never retrieved", KeyError '.writer.lock')."""
    import shutil

    from conftest import run_cli, spoil_json

    paths = [f"d/{i}.jpg" for i in range(4)]
    import_matrix(tmp_path / "s.zarr", np.ones((4, 2), np.float32), "one", paths)
    import_matrix(tmp_path / "s.zarr", np.ones((4, 2), np.float32), "two", paths)
    spoil_json(tmp_path / "s.zarr", "one")
    (tmp_path / "paths.txt").write_text("\n".join(paths))
    np.save(tmp_path / "m.npy", np.ones((4, 3), np.float32))
    shutil.copytree(tmp_path / "s.zarr", tmp_path / "t.zarr")
    into = run_cli("import", tmp_path / "m.npy", "--store", tmp_path / "s.zarr", "--layer", "one",
                   "--paths", tmp_path / "paths.txt", check=False)
    assert into.returncode == 2 and into.stderr.count("\n") == 1, into.stderr
    assert "is damaged: its one/zarr.json is not zarr metadata" in into.stderr
    beside = run_cli("import", tmp_path / "m.npy", "--store", tmp_path / "t.zarr", "--layer", "three",
                     "--paths", tmp_path / "paths.txt")
    assert "Traceback" not in beside.stderr and "never retrieved" not in beside.stderr, beside.stderr
    assert pipeline.open_store(tmp_path / "t.zarr")["three"].channels == 3


def test_a_blank_last_line_of_a_paths_file_is_no_image(tmp_path):
    """An editor's final blank line made "the matrix has 2 rows but 3 paths were given"."""
    from pipeline.importing import read_lines

    (tmp_path / "paths.txt").write_text("a.jpg\nb.jpg\n\n  \n")
    assert read_lines(tmp_path / "paths.txt") == ["a.jpg", "b.jpg"]
