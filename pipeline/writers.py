"""One writer per store: the writer's lock, and --overwrite's removal of a store.

Offers:
    writer_lock(path)     context manager: the one writer of a store folder (none for URLs)
    remove_store(path)    remove a store, marked first, so that a removal cut short is finished
                          by the next writer and never read as a store

The lock is a POSIX record lock on ``.writer.lock`` inside the store folder; the mark is
``.overwriting`` beside it (``pipeline.places``). Where there are no POSIX locks (Windows),
this module still imports, so that stores made elsewhere can be read and queried there;
only writing one is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: a store is read there, not written
    fcntl = None

from .errors import StoreError, StoreLockedError
from .places import LOCK_NAME, PARTIAL, REBUILD_NAME, entries, filesystem, is_store, is_url, mark_rebuilding, ours

_HELD: set[str] = set()  # stores whose writer lock this process holds


@contextlib.contextmanager
def writer_lock(path: str | Path):
    """Hold the store's writer lock; the OS frees it even on SIGKILL.

    An object store (a URL) has no such lock: one job per store is the user's rule there.
    """
    if is_url(path):
        yield
        return
    path = Path(path)
    if fcntl is None:
        raise StoreError(f"cannot write store {path}: its writer's lock needs POSIX file locks, which this "
                         "system lacks; run phase one on Linux or macOS (queries, figures and galleries work here)")
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is a file; a store is a folder, choose another --store")
    key = os.path.realpath(path)
    if key in _HELD:  # POSIX locks do not exclude their own process, and closing a second one frees the first
        raise StoreLockedError(f"store {path} is being written by this process already (another thread)")
    if entries(path) and not ours(path):  # said before a lock file is left in someone's folder
        raise StoreError(f"{path} exists and is not an exemplars store; refusing to overwrite it or write "
                         "into it, choose another --store")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # 0o666 less the umask, as zarr makes its own files: a group sharing the store can resume it.
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES) and is_store(path):
            raise StoreError(f"store {path} cannot be written here ({exc.strerror}), and this run would write "
                             "to it (its writer takes a lock there): queries read it as it is") from None
        raise StoreError(f"cannot make store {path}: {exc.strerror}") from None
    _HELD.add(key)
    try:
        try:
            # A POSIX record lock, not flock(): forked DataLoader workers do not inherit it, so a
            # killed run's orphaned workers cannot hold the store for the seconds they take to exit.
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # NFS without its lock service, FUSE
                raise StoreError(f"store {path} is on a file system that takes no POSIX locks ({exc.strerror}), "
                                 "and its one writer needs one: write it on a local disk, or on NFS with its lock "
                                 "service running") from None
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise StoreLockedError(
                f"store {path} is being written by another process{who}; "
                "wait for it to finish or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        for name in os.listdir(path):  # a killed writer's half-written files: no writer finishes them now
            if PARTIAL.fullmatch(name):
                with contextlib.suppress(OSError):
                    os.unlink(path / name)
        yield
    finally:
        os.close(fd)
        _HELD.discard(key)


def remove_store(path) -> None:
    """Remove a store, marked first: killed half-way, it is never read as a store (whose
    done markers might survive its data), and the next writer finishes the removal."""
    if not entries(path):
        return
    if not ours(path):
        raise StoreError(f"{path} exists and is not an exemplars store; refusing to overwrite it")
    mark_rebuilding(path, True)
    for name in entries(path):  # the lock aside
        if name == REBUILD_NAME:
            continue
        if is_url(path):
            fs, root = filesystem(path)
            fs.rm(f"{root.rstrip('/')}/{name}", recursive=True)
        else:
            child = Path(path) / name
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    mark_rebuilding(path, False)
