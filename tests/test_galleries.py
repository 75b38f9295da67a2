"""Several layers' galleries: a subfolder each, an index linking them, and none built over another's."""

from __future__ import annotations

import re
import shutil

import numpy as np

from conftest import run_cli


def test_several_layers_get_a_folder_each_and_an_index_and_none_replaces_another(tmp_path):
    from pipeline.importing import import_matrix

    paths = [f"d/{i}.jpg" for i in range(8)]
    import_matrix(tmp_path / "s.zarr", np.random.default_rng(0).random((8, 3)), "one", paths)
    import_matrix(tmp_path / "s.zarr", np.random.default_rng(1).random((8, 2)), "two", paths)
    store, out = tmp_path / "s.zarr", tmp_path / "site"
    proc = run_cli("gallery", "--store", store, "--layer", "one", "--layer", "two", "-o", out, "-k", "2")
    assert (out / "one" / "channels" / "0002.html").exists() and (out / "two" / "channels" / "0001.html").exists()
    index = (out / "index.html").read_text()
    assert re.findall(r'<a href="(\w+)/index.html">', index) == ["one", "two"] and "index of 2 layers" in proc.stdout
    run_cli("gallery", "--store", store, "--layer", "one", "--layer", "two", "-o", out, "-k", "2")  # a rebuild
    refused = run_cli("gallery", "--store", store, "--layer", "two", "-o", out / "one", check=False)
    assert refused.returncode == 2 and "holds the gallery of layer one" in refused.stderr
    assert len(list((out / "one" / "channels").glob("*.html"))) == 3  # layer one's site is still whole
    refused = run_cli("gallery", "--store", store, "--layer", "two", "-o", out, check=False)
    assert refused.returncode == 2 and "galleries of several layers" in refused.stderr
    run_cli("gallery", "--store", store, "--layer", "one", "-o", tmp_path / "single", "-k", "2")
    refused = run_cli("gallery", "--store", store, "-l", "one", "-l", "two", "-o", tmp_path / "single", check=False)
    assert refused.returncode == 2 and "no build of several layers made" in refused.stderr
    assert not (tmp_path / "single" / "one").exists()  # refused before anything was built


def test_a_folder_of_other_files_is_refused_before_anything_is_built(tmp_path):
    from pipeline.importing import import_matrix

    paths = [f"d/{i}.jpg" for i in range(4)]
    for name in ("one", "two"):
        import_matrix(tmp_path / "s.zarr", np.random.default_rng(0).random((4, 2)), name, paths)
    out = tmp_path / "site"
    (out / "one").mkdir(parents=True)  # a first build of several layers, cut short: ours
    (out / "notes.txt").write_text("mine")
    refused = run_cli("gallery", "--store", tmp_path / "s.zarr", "-l", "one", "-l", "two", "-o", out, check=False)
    assert refused.returncode == 2 and "holds notes.txt, which no gallery build made" in refused.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "one"]
    (out / "notes.txt").unlink()
    run_cli("gallery", "--store", tmp_path / "s.zarr", "-l", "one", "-l", "two", "-o", out, "-k", "1")
    assert (out / "two" / "index.html").exists() and (out / "index.html").exists()
    cut = tmp_path / "cut"  # a build of one and two stopped before its index, run again for one and three
    import_matrix(tmp_path / "s.zarr", np.random.default_rng(2).random((4, 2)), "three", paths)
    shutil.copytree(out / "two", cut / "two")
    run_cli("gallery", "--store", tmp_path / "s.zarr", "-l", "one", "-l", "three", "-o", cut, "-k", "1")
    assert (cut / "three" / "index.html").exists() and (cut / "index.html").exists()


def test_a_layer_named_as_the_index_file_is_refused_before_anything_is_built(tmp_path):
    from pipeline.importing import import_matrix

    paths = [f"d/{i}.jpg" for i in range(4)]
    for name in ("index.html", "img"):
        import_matrix(tmp_path / "s.zarr", np.random.default_rng(0).random((4, 2)), name, paths)
    refused = run_cli("gallery", "--store", tmp_path / "s.zarr", "-l", "index.html", "-l", "img", "-o",
                      tmp_path / "site", check=False)
    assert refused.returncode == 2 and "named as the index's own file" in refused.stderr
    assert not (tmp_path / "site").exists()
