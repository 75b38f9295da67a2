"""pipeline/outputs.py: output paths are checked, in one sentence, before any work."""

from __future__ import annotations

import pytest

from conftest import run_cli
from pipeline.errors import OutputError
from pipeline.outputs import figure_file, folder, image_file


def test_folder_is_made_and_a_file_refused(tmp_path):
    assert folder(tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        folder(tmp_path / "f")
    with pytest.raises(OutputError, match="cannot make folder"):
        folder(tmp_path / "f" / "below")


def test_files_need_a_writable_format_and_get_their_folder(tmp_path):
    assert figure_file(tmp_path / "new" / "g.pdf").parent.is_dir()
    assert image_file(tmp_path / "x.webp").name == "x.webp"
    for check, name in ((figure_file, "g.txt"), (image_file, "x.doc"), (figure_file, "noext")):
        with pytest.raises(OutputError, match="must end in one of"):
            check(tmp_path / name)
    (tmp_path / "d.png").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        figure_file(tmp_path / "d.png")


def test_bad_outputs_fail_before_the_work(small_store, tmp_path):
    proc = run_cli("grid", "--store", small_store, "-o", tmp_path / "g.txt", check=False)
    assert proc.returncode == 2 and "must end in one of" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("featureviz", "--store", small_store, "-c", "3", "-o", tmp_path / "v.txt", check=False)
    assert proc.returncode == 2 and "must end in one of" in proc.stderr
    import zarr

    assert "featureviz_done" not in zarr.open_group(str(small_store), mode="r")["mixed4a"]  # nothing ran
    made = run_cli("grid", "--store", small_store, "--channels", "0-1", "-k", "2", "-o", tmp_path / "new" / "g.png")
    assert (tmp_path / "new" / "g.png").stat().st_size > 0 and "wrote" in made.stdout
    proc = run_cli("samples", "--store", small_store, "-c", "1", "--seed", "-1", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_an_unwritable_place_or_a_format_without_its_writer_fails_before_the_work(tmp_path):
    with pytest.raises(OutputError, match="cannot write into folder /proc"):  # even as root
        figure_file("/proc/exemplars-test.png")
    with pytest.raises(OutputError, match="must end in one of"):
        figure_file(tmp_path / "g.pgf")  # matplotlib lists it, but it needs LaTeX
    for name in ("v.xbm", "v.h5"):  # PIL lists them, but their writers refuse RGB or need a plugin
        with pytest.raises(OutputError, match="must end in one of"):
            image_file(tmp_path / name)
    assert not list(tmp_path.iterdir())  # the probes leave nothing behind
    (tmp_path / "kept.png").write_bytes(b"mine")
    figure_file(tmp_path / "kept.png")
    assert (tmp_path / "kept.png").read_bytes() == b"mine"  # probed by appending nothing


def test_a_probe_of_a_new_file_leaves_nothing_behind(tmp_path):
    figure_file(tmp_path / "g.png")
    image_file(tmp_path / "v.jpg")
    assert not list(tmp_path.iterdir())  # a run that fails later leaves no empty figure
