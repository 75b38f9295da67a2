"""One writer per store: the lock (also against forked children and this process's threads),
--overwrite's marked removal, and read-only folders."""

from __future__ import annotations

import pytest

import pipeline
from pipeline.errors import StoreError
from pipeline.store import add_layer, create_store
from pipeline.writers import writer_lock


def test_an_overwrite_cut_short_is_never_read_and_is_finished_by_the_next_run(tmp_path, monkeypatch):
    import shutil

    from pipeline import writers

    path = tmp_path / "s.zarr"
    images = {"path": ["a.jpg", "b.jpg"], "label": [0, 0], "classes": ["c"], "size": [1, 1], "mtime_ns": [0, 0]}
    group = create_store(path, {"model": {}}, images, shard_rows=2, overwrite=False)
    add_layer(group, "conv", 3, (1, 1), {})
    group["conv/done"][:] = True

    def killed(target, *args, **kwargs):  # the removal stops after its first folder
        real_rmtree(target, *args, **kwargs)
        raise KeyboardInterrupt

    real_rmtree = shutil.rmtree
    monkeypatch.setattr(writers.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        create_store(path, {"model": {"other": 1}}, images, shard_rows=2, overwrite=True)
    monkeypatch.undo()
    with pytest.raises(StoreError, match="is being rebuilt"):
        pipeline.open_store(path)
    # The next writer, even without --overwrite, finishes the removal and starts afresh.
    group = create_store(path, {"model": {"other": 1}}, images, shard_rows=2, overwrite=False)
    assert list(group.group_keys()) == ["images"] and group.attrs["model"] == {"other": 1}
    assert pipeline.open_store(path).n == 2 and not (path / ".overwriting").exists()


def test_the_lock_is_not_left_in_a_folder_that_is_no_store(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="not an exemplars store"):
        with writer_lock(folder):
            pass
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_a_forked_child_does_not_keep_the_lock_after_its_parent_dies(tmp_path):
    import subprocess
    import sys
    import time

    store = tmp_path / "s.zarr"
    # The parent takes the lock, forks a child that lives on (as DataLoader workers do), and dies.
    code = f"""
import os, time
from pipeline.writers import writer_lock
with writer_lock({str(store)!r}):
    if os.fork() == 0:
        time.sleep(6)
        os._exit(0)
    os._exit(0)
"""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with writer_lock(store):  # free at once, while the orphan still lives
        assert time.monotonic() - started < 5


def test_another_process_holding_the_lock_is_named_and_a_group_may_share_it(tmp_path):
    import os
    import subprocess
    import sys

    from pipeline.errors import StoreLockedError

    store = tmp_path / "s.zarr"
    code = f"""
import sys
from pipeline.writers import writer_lock
with writer_lock({str(store)!r}):
    print("held", flush=True)
    sys.stdin.read()
"""
    old = os.umask(0o002)
    try:
        holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(StoreLockedError, match=rf"by another process \(pid {holder.pid}\); wait"):
                with writer_lock(store):
                    pass
        finally:
            holder.communicate("", timeout=30)
    finally:
        os.umask(old)
    assert (store / ".writer.lock").stat().st_mode & 0o777 == 0o664  # group-writable as zarr's files are


def test_one_process_cannot_take_its_own_lock_twice(tmp_path):
    from pipeline.errors import StoreLockedError

    with writer_lock(tmp_path / "s.zarr"):
        with pytest.raises(StoreLockedError, match="by this process already"):
            with writer_lock(tmp_path / "s.zarr"):
                pass
    with writer_lock(tmp_path / "s.zarr"):  # released, and taken again
        pass


def test_a_store_on_a_read_only_file_system_says_so(small_store, monkeypatch):
    import errno
    import os

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(StoreError, match="cannot be written here .*its writer takes a lock there"):
        with writer_lock(small_store):
            pass


_NO_POSIX_LOCKS = """
import sys
sys.modules["fcntl"] = None  # as on Windows: importing it raises ImportError
import pipeline
from pipeline.errors import StoreError
from pipeline import open_store
from pipeline.writers import writer_lock

results = open_store(sys.argv[1])["mixed4a"].topk(3, k=2)
print("topk", len(results.rows))
try:
    with writer_lock(sys.argv[2]):
        print("wrote")
except StoreError as exc:
    print("refused:", exc)
"""


def test_a_system_without_posix_locks_reads_stores_and_refuses_to_write_them(small_store, tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _NO_POSIX_LOCKS, str(small_store), str(tmp_path / "new.zarr")],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "topk 2", out
    assert out[1].startswith("refused: cannot write store") and "POSIX file locks" in out[1], out
    assert not (tmp_path / "new.zarr").exists()  # refused before anything was made


def test_a_file_system_without_locks_is_named(tmp_path, monkeypatch):
    import errno
    import os

    from pipeline import writers

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(writers.fcntl, "lockf", no_locks)
    with pytest.raises(StoreError, match="file system that takes no POSIX locks [(]No locks available[)]"):
        with writer_lock(tmp_path / "s.zarr"):
            pass
    assert writers._HELD == set()  # nothing kept held


def test_a_writer_killed_in_its_first_write_leaves_a_store_the_same_command_makes(image_folder, tmp_path):
    """Killed between zarr's write of the first zarr.json and its rename: the lock and a .partial file
    made the folder "not an exemplars store", refused by the same command and by --overwrite."""
    import warnings

    from pipeline.extract import extract

    store = tmp_path / "s.zarr"
    store.mkdir()
    (store / ".writer.lock").write_text("4242\n")
    stray = store / f"zarr.{'5f' * 16}.partial"
    stray.write_text('{"zarr_format": 3, "node_ty')
    extract(image_folder, store, weights="random", workers=0, shard_rows=8, progress=False)
    assert not stray.exists()  # the new writer cleared it
    stray.write_text("")  # another, left by a later writer: reading the store says nothing of it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pipeline.open_store(store)["mixed4a"].topk(3, k=2).rows.size == 2


def test_only_zarrs_own_debris_is_ignored_or_removed(image_folder, tmp_path):
    from pipeline.extract import extract

    folder = tmp_path / "mine"
    folder.mkdir()
    precious = folder / f"thesis.{'0f' * 16}.partial"
    precious.write_text("years of work")
    with pytest.raises(StoreError, match="not an exemplars store"):
        extract(image_folder, folder, weights="random", workers=0, progress=False)
    assert precious.read_text() == "years of work"
