"""The command line: listings, and one sentence with exit 2 for user mistakes."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli


def test_layers_lists_every_layer_with_channels():
    proc = run_cli("layers")
    lines = proc.stdout.splitlines()
    assert len(lines) > 100 and lines[0].split() == ["layer", "channels", "spatial"]
    assert [line.split()[0] for line in lines if line.endswith("(the logits)")] == ["softmax2_pre_activation_matmul"]
    row = next(line.split() for line in lines if line.split()[0] == "mixed4a")
    assert row[1:] == ["508", "14x14"]


def _assert_one_sentence(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def test_missing_folder(tmp_path):
    proc = run_cli("activations", tmp_path / "absent", "--store", tmp_path / "s.zarr",
                   "--weights", "random", check=False)
    _assert_one_sentence(proc, "does not exist")


def test_unknown_layer(image_folder, tmp_path):
    proc = run_cli("activations", image_folder, "--store", tmp_path / "s.zarr", "--weights", "random",
                   "--layer", "mixed9z", check=False)
    _assert_one_sentence(proc, "unknown layer 'mixed9z'", "mixed4a")


def test_a_store_without_the_default_layer_says_that_layer_picks_one(tmp_path):
    from pipeline.importing import import_matrix

    import_matrix(tmp_path / "s.zarr", np.ones((2, 3), np.float32), "conv2d0", ["a.jpg", "b.jpg"])
    for command in (["topk", "--channel", "0"], ["stats", "-o", tmp_path / "o"], ["featureviz", "--channel", "0"]):
        proc = run_cli(*command, "--store", tmp_path / "s.zarr", check=False)
        _assert_one_sentence(proc, "unknown layer 'mixed4a'; known layers: conv2d0 (--layer picks one; mixed4a is the default)")
    proc = run_cli("topk", "--channel", "0", "--store", tmp_path / "s.zarr", "--layer", "mixed5b", check=False)
    _assert_one_sentence(proc, "unknown layer 'mixed5b'; known layers: conv2d0")
    assert "default" not in proc.stderr


def test_a_folder_where_no_image_decodes_ends_in_an_error(tmp_path):
    data = tmp_path / "bad"
    data.mkdir()
    (data / "a.jpg").write_bytes(b"not a jpeg")
    (data / "b.png").write_bytes(b"")
    for _ in range(2):  # the rerun finds the store complete, and says the same
        proc = run_cli("activations", data, "--store", tmp_path / "s.zarr", "--weights", "random", check=False)
        _assert_one_sentence(proc, "none of the 2 images of", "could be decoded")
    assert "invalid: a.jpg" in proc.stderr or "already complete" in proc.stdout


def test_a_store_that_would_vanish_is_refused(tmp_path):
    proc = run_cli("activations", tmp_path, "--store", "memory://x.zarr", "--weights", "random", check=False)
    _assert_one_sentence(proc, "memory://x.zarr would vanish when this command ends")


def test_unreadable_weights_file(image_folder, tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_text("garbage")
    proc = run_cli("activations", image_folder, "--store", tmp_path / "s.zarr", "--weights", bad, check=False)
    _assert_one_sentence(proc, "cannot read weights file")


def test_pretrained_without_network(image_folder, tmp_path):
    # No network here: lucent's download fails, and the message gives the two ways out.
    proc = run_cli("activations", image_folder, "--store", tmp_path / "s.zarr",
                   env={"TORCH_HOME": str(tmp_path / "hub"), "https_proxy": "http://127.0.0.1:9",
                        "HTTPS_PROXY": "http://127.0.0.1:9"}, check=False)
    _assert_one_sentence(proc, "--weights /path/to/inception5h.pth", "--weights random", "inception5h.pth")


def test_store_path_that_is_not_a_store(image_folder, tmp_path):
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "thesis.tex").write_text("precious")
    proc = run_cli("activations", image_folder, "--store", tmp_path / "occupied", "--weights", "random",
                   check=False)
    _assert_one_sentence(proc, "not an exemplars store")
    proc = run_cli("activations", image_folder, "--store", tmp_path / "occupied", "--weights", "random",
                   "--overwrite", check=False)
    _assert_one_sentence(proc, "refusing to overwrite")
    assert (tmp_path / "occupied" / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("args, fragment", [
    (["topk", "--store", "s", "-c", "abc"], "Invalid value for '--channel'"),
    (["samples", "--store", "s"], "Missing option '--channel'"),
    (["topk", "--store", "s", "-c", "1", "--per-class", "0"], "'--per-class'"),
    (["nosuch"], "No such command 'nosuch'"),
])
def test_what_typer_refuses_is_one_sentence_too(args, fragment):
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_command_alone_shows_its_help():
    proc = run_cli(check=False)
    assert proc.returncode == 0 and "activations" in proc.stdout and "topk" in proc.stdout
    assert proc.stdout.count("Usage:") == 1  # once, though click and rich both offer to print it


def _info_raising(error: BaseException, tmp_path, monkeypatch, capsys) -> tuple[int, str]:
    """``exemplars info`` run in this process on a small imported store, its reading raising ``error``:
    (exit code, stderr)."""
    import pipeline.cli as cli
    import pipeline.query as query

    def failing(self):
        if callable(error):
            return error(self)
        raise error

    np.save(tmp_path / "m.npy", np.ones((2, 2), dtype=np.float32))
    (tmp_path / "p.txt").write_text("a.jpg\nb.jpg\n")
    run_cli("import", tmp_path / "m.npy", "--store", tmp_path / "s.zarr", "--layer", "f", "--paths", tmp_path / "p.txt")
    monkeypatch.setattr(query.Store, "info", failing)
    monkeypatch.setattr("sys.argv", ["exemplars", "info", "--store", str(tmp_path / "s.zarr")])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    return stopped.value.code, capsys.readouterr().err


def test_an_end_of_file_inside_a_command_is_no_interruption(tmp_path, monkeypatch, capsys):
    """click turns an EOFError into the Abort of Ctrl-D; here it is said as what it is."""
    code, err = _info_raising(EOFError("truncated"), tmp_path, monkeypatch, capsys)
    assert code == 1 and "a file ended before its data did (truncated)" in err


def test_ctrl_c_anywhere_says_interrupted(tmp_path, monkeypatch, capsys):
    """Before phase one's first shard (scanning, loading the model) or in any other command,
    Ctrl-C ended with exit 130 and nothing on stderr."""
    code, err = _info_raising(KeyboardInterrupt(), tmp_path, monkeypatch, capsys)
    assert code == 130 and err.strip() == "interrupted"


def test_coroutines_cut_short_by_ctrl_c_say_nothing_after_the_line():
    """zarr's coroutines stopped by Ctrl-C were said at exit as a RuntimeWarning with a tracemalloc
    hint, after "interrupted in shard 0" (seen once in a run interrupted at 7 s)."""
    import subprocess
    import sys

    script = ("from pipeline.cli import _quiet_exit\n_quiet_exit()\nasync def run(): pass\n"
              "pending = run()\ndel pending\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stderr == ""


def test_sigterm_ends_a_command_as_ctrl_c_does(tmp_path, monkeypatch, capsys):
    """A batch scheduler's SIGTERM killed the process silently, before its lock or a line was left."""
    import os
    import signal
    import time

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    try:
        def terminated(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises in this sleep
            raise AssertionError("SIGTERM was not handled")

        code, err = _info_raising(terminated, tmp_path, monkeypatch, capsys)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 130 and err.strip() == "interrupted"


def test_a_home_folder_written_after_an_equals_sign_is_the_home_folder(small_store, tmp_path, monkeypatch):
    import shutil

    from pipeline.places import home_argument as _home

    monkeypatch.setenv("HOME", "/h")
    assert [_home(a) for a in ("--out=~/g.png", "~/x", "--store=~/s.zarr", "-o=~/x", "a=~/b", "--bands=1%",
                               "97:0.7", "--out=a=~/b")] == \
        ["--out=/h/g.png", "/h/x", "--store=/h/s.zarr", "-o=~/x", "a=~/b", "--bands=1%", "97:0.7", "--out=a=~/b"]
    home = tmp_path / "home"
    shutil.copytree(small_store, home / "s.zarr")
    run_cli("grid", "--store", "~/s.zarr", "--channels", "1", "-k", "1", "--out=~/g.png",
            env={"HOME": str(home)}, cwd=tmp_path)
    assert (home / "g.png").exists() and not (tmp_path / "~").exists()


@pytest.mark.parametrize("command, args, fragment", [
    ("gallery", ("-k", "0"), "k must be at least 1"),
    ("stats", ("-c", "9999"), "channel 9999 is out of range"),
])
def test_a_bad_argument_is_refused_before_anything_is_written(small_store, tmp_path, command, args, fragment):
    proc = run_cli(command, "--store", small_store, "-o", tmp_path / "out", *args, check=False)
    _assert_one_sentence(proc, fragment)
    assert not (tmp_path / "out").exists()  # no folder, no half a site or half a report


def test_a_machines_refusal_is_one_sentence_naming_the_file(tmp_path, monkeypatch, capsys):
    """A full disk, a file the user may not read: no traceback, the file named, exit 2."""
    import errno
    import os

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/somewhere/out.png")
    code, err = _info_raising(full, tmp_path, monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: No space left on device: /somewhere/out.png; fix that"), err


def test_a_locale_without_utf8_file_names_is_refused(monkeypatch, capsys):
    import pipeline.cli as cli

    monkeypatch.setattr("sys.getfilesystemencoding", lambda: "iso8859-1")
    monkeypatch.setattr("sys.argv", ["exemplars", "layers"])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "needs UTF-8 file names" in err and "PYTHONUTF8=1" in err, err


def test_help_is_shown_under_any_locale(monkeypatch, capsys):
    import pipeline.cli as cli

    monkeypatch.setattr("sys.getfilesystemencoding", lambda: "iso8859-1")
    monkeypatch.setattr("sys.argv", ["exemplars", "topk", "--help"])
    cli.main()
    assert "--channel" in capsys.readouterr().out


@pytest.mark.parametrize("how", ["truncated", "deleted", "layer_json", "array_json", "done"])
def test_every_reader_says_a_damaged_store_in_one_sentence(small_store, tmp_path, how):
    import shutil

    from conftest import damage_store

    store = tmp_path / "damaged.zarr"
    shutil.copytree(small_store, store)
    damage_store(store, how)
    for args in (["topk", "--channel", "3"], ["topk", "--channel", "3", "--by", "max"], ["stats"], ["info"],
                 ["samples", "--channel", "3"]):
        proc = run_cli(*args, "--store", store, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert "damaged" in lines[0] and "rerun `exemplars activations` with the same settings" in lines[0]


def test_info_verify_finds_flipped_bytes_that_a_plain_info_cannot(small_store, tmp_path):
    import shutil

    from conftest import damage_store

    store = tmp_path / "damaged.zarr"
    shutil.copytree(small_store, store)
    damage_store(store, "flipped")
    assert run_cli("info", "--store", store).returncode == 0
    proc = run_cli("info", "--store", store, "--verify", check=False)
    assert proc.returncode == 2 and "mixed4a/mean shard 1" in proc.stderr and "checksum" in proc.stderr


def _spoiled_copy(small_store, tmp_path, node, how):
    import shutil

    from conftest import spoil_json

    store = tmp_path / "spoiled.zarr"
    shutil.copytree(small_store, store)
    spoil_json(store, node, how)
    return store


@pytest.mark.parametrize("node, how", [("mixed4a", "invalid"), ("mixed4a", "empty"), ("mixed4a", "no_metadata"),
                                       ("mixed4a/mean", "null"), ("mixed4a/done", "invalid"),
                                       ("images", "empty"), ("images/path", "no_metadata"), ("images/valid", "invalid")])
def test_every_reader_says_a_zarr_json_that_is_not_metadata_in_one_sentence(small_store, tmp_path, monkeypatch,
                                                                           capsys, node, how):
    """They were tracebacks: zarr's JSONDecodeError, or its listing's KeyError of the writer's lock."""
    from conftest import exemplars_here

    store = _spoiled_copy(small_store, tmp_path, node, how)
    fix = ("rebuild the store (the same command with --overwrite)" if node.startswith("images")
           else "rerun `exemplars activations` with the same settings")
    for args in (["topk", "--channel", "3"], ["info"], ["stats"], ["similar", "--image", "0"],
                 ["gallery", "--out", tmp_path / "site"]):
        code, _, err = exemplars_here(monkeypatch, capsys, *args, "--store", store)
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, (args, err)
        assert f"its {node}/zarr.json is not zarr metadata" in lines[0] and fix in lines[0], (args, err)


def test_a_layer_zarr_json_that_is_not_metadata_leaves_no_trace_on_stderr(small_store, tmp_path):
    """zarr's failed listing left its other tasks' KeyErrors printed at the process's exit."""
    store = _spoiled_copy(small_store, tmp_path, "mixed4a", "no_metadata")
    proc = run_cli("topk", "--channel", "1", "--store", store, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "mixed4a/zarr.json" in proc.stderr, proc.stderr


@pytest.mark.parametrize("edit", ["channels", "shape"])
def test_hand_edited_layer_metadata_is_one_sentence(small_store, tmp_path, monkeypatch, capsys, edit):
    """``"channels": "abc"`` was int()'s ValueError; a mean of 10 columns zarr's BoundsCheckError past them
    (and ``similar`` answered with 10-channel vectors)."""
    import json
    import shutil

    from conftest import exemplars_here

    store = tmp_path / "edited.zarr"
    shutil.copytree(small_store, store)
    path = store / "mixed4a" / ("zarr.json" if edit == "channels" else "mean/zarr.json")
    meta = json.loads(path.read_text())
    if edit == "channels":
        meta["attributes"]["channels"] = "abc"
    else:
        meta["shape"] = [24, 10]
    path.write_text(json.dumps(meta))
    for args in (["topk", "--channel", "100"], ["info"], ["similar", "--image", "0"]):
        code, _, err = exemplars_here(monkeypatch, capsys, *args, "--store", store)
        assert code == 2 and "Traceback" not in err and "layer mixed4a of" in err and "is damaged" in err, (args, err)
