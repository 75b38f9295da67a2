"""One writer per store: the lock (also against forked children and this process's threads),
--overwrite's marked removal, and read-only folders."""

from __future__ import annotations

import pytest

import pipeline
from pipeline.errors import StoreError
from pipeline.store import add_layer, create_store
from pipeline.writers import writer_lock


def _refused_while_another_process_holds(store) -> None:
    """``writer_lock(store)`` refused, naming the other process, while that process holds the lock."""
    import subprocess
    import sys

    from pipeline.errors import StoreLockedError

    code = f"""
import sys
from pipeline.writers import writer_lock
with writer_lock({str(store)!r}):
    print("held", flush=True)
    sys.stdin.read()
"""
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLockedError, match=rf"by another process \(pid {holder.pid}\); wait"):
            with writer_lock(store):
                pass
    finally:
        holder.communicate("", timeout=30)


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

    store = tmp_path / "s.zarr"
    old = os.umask(0o002)
    try:
        _refused_while_another_process_holds(store)
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


def test_the_lock_is_released_for_other_processes_when_the_writer_is_done(tmp_path):
    import subprocess
    import sys

    store = tmp_path / "s.zarr"
    with writer_lock(store):
        pass
    # A notebook that wrote a store and lives on must not keep other processes from writing it.
    code = f"from pipeline.writers import writer_lock\nwith writer_lock({str(store)!r}):\n    print('took it')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "took it", out.stderr


def test_one_store_spelled_two_ways_is_still_one_writer(tmp_path, monkeypatch):
    from pipeline.errors import StoreLockedError

    store = tmp_path / "s.zarr"
    (tmp_path / "link").symlink_to(store, target_is_directory=False)
    monkeypatch.chdir(tmp_path)
    with writer_lock(store):
        for other in ("s.zarr", "./s.zarr/", tmp_path / "link"):
            with pytest.raises(StoreLockedError, match="by this process already"):
                with writer_lock(other):
                    pass


def test_a_url_takes_no_lock_and_leaves_nothing_on_the_local_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with writer_lock("s3://no-such-bucket/s.zarr"):  # no client is even asked
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_new_store_is_made_with_its_parent_folders(tmp_path):
    import numpy as np

    from pipeline.importing import import_matrix

    store = tmp_path / "runs" / "today" / "s.zarr"
    import_matrix(store, np.ones((2, 2), np.float32), "feat", ["a", "b"])
    assert pipeline.open_store(store).layers == ["feat"]


def test_overwrite_of_a_store_that_is_not_there_yet_makes_it(tmp_path):
    import numpy as np

    from pipeline.importing import import_matrix

    for store in (tmp_path / "new.zarr", f"memory://{tmp_path.name}/new.zarr"):
        import_matrix(store, np.ones((2, 2), np.float32), "feat", ["a", "b"], overwrite=True)
        assert pipeline.open_store(store).layers == ["feat"]


def test_remove_store_removes_all_but_the_lock_and_follows_no_link(tmp_path):
    import numpy as np

    from pipeline.importing import import_matrix
    from pipeline.places import entries
    from pipeline.writers import remove_store

    store = tmp_path / "s.zarr"
    for layer in ("A", "B", "C"):
        import_matrix(store, np.ones((2, 2), np.float32), layer, ["a", "b"])
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.txt").write_text("keep")
    (store / "linked").symlink_to(outside, target_is_directory=True)  # a link in the store: removed, not followed
    (store / "note.txt").write_text("x")
    remove_store(store)
    assert entries(store) == [] and sorted(p.name for p in store.iterdir()) == [".writer.lock"]
    assert (outside / "data.txt").read_text() == "keep"


def test_remove_store_refuses_a_folder_that_is_no_store(tmp_path):
    from pipeline.writers import remove_store

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work")
    with pytest.raises(StoreError, match="not an exemplars store; refusing to overwrite it"):
        remove_store(folder)
    assert (folder / "thesis.txt").read_text() == "years of work"
    remove_store(tmp_path / "absent")  # nothing there: nothing to remove, nothing made
    assert not (tmp_path / "absent").exists()


def test_an_overwrite_on_an_object_store_removes_every_layer(tmp_path):
    import fsspec
    import numpy as np

    from pipeline.importing import import_matrix

    url = f"memory://{tmp_path.name}/overwritten.zarr"
    for layer in ("A", "B"):
        import_matrix(url, np.ones((2, 2), np.float32), layer, ["a", "b"])
    import_matrix(url, np.ones((2, 3), np.float32) * 2, "C", ["a", "b"], overwrite=True)
    assert pipeline.open_store(url).layers == ["C"]
    names = fsspec.filesystem("memory").find(f"/{tmp_path.name}/overwritten.zarr")
    assert [n for n in names if n.split("overwritten.zarr/")[1].startswith(("A/", "B/"))] == []
    assert ".overwriting" not in " ".join(names)


@pytest.mark.parametrize("code", ["EOPNOTSUPP", "ENOSYS"])
def test_file_systems_whose_locks_are_not_supported_are_named(tmp_path, monkeypatch, code):
    import errno
    import os

    from pipeline import writers

    def no_locks(fd, operation):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(writers.fcntl, "lockf", no_locks)
    with pytest.raises(StoreError, match="file system that takes no POSIX locks"):
        with writer_lock(tmp_path / "s.zarr"):
            pass
    assert writers._HELD == set()


def test_an_unexpected_lock_failure_is_not_said_to_be_another_writer(tmp_path, monkeypatch):
    import errno
    import os

    from pipeline import writers
    from pipeline.errors import StoreLockedError

    def failing(fd, operation):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(writers.fcntl, "lockf", failing)
    with pytest.raises(OSError) as caught:
        with writer_lock(tmp_path / "s.zarr"):
            pass
    assert caught.value.errno == errno.EIO and not isinstance(caught.value, StoreLockedError)
    assert writers._HELD == set()


@pytest.mark.parametrize("code", ["EROFS", "EACCES"])
def test_a_store_that_cannot_be_written_is_said_apart_from_a_new_one(small_store, tmp_path, monkeypatch, code):
    import errno
    import os

    def refused(path, *args, **kwargs):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), str(path))

    monkeypatch.setattr(os, "open", refused)
    with pytest.raises(StoreError, match="cannot be written here .*queries read it as it is"):
        with writer_lock(small_store):
            pass
    with pytest.raises(StoreError, match=f"^cannot make store {tmp_path / 'new.zarr'}: {os.strerror(getattr(errno, code))}$"):
        with writer_lock(tmp_path / "new.zarr"):  # no store yet: nothing to read either
            pass


def test_a_stale_longer_pid_in_the_lock_file_is_not_read_as_the_holders(tmp_path):
    store = tmp_path / "s.zarr"
    store.mkdir()
    (store / ".writer.lock").write_text("123456789012\n")  # a killed writer's, longer than any pid
    (store / "zarr.json").write_text('{"attributes": {"format": "exemplars-activations"}}')
    _refused_while_another_process_holds(store)
