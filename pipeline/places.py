"""Where a store lives: a folder, or an fsspec URL (s3://...), and what is there.

Offers:
    location(path) -> str          a user's store name: file:// and local:// URLs as plain paths, ~ expanded, "" refused
    home_argument(arg) -> str      a command-line argument with ~ expanded, "--out=~/x" too
    is_url(path), filesystem(url)  fsspec URLs and their file systems
    is_store(path) -> bool         whether an exemplars store is there
    ours(path) -> bool             a store, or what an --overwrite left of one: what a writer may take over
    rebuilding(path) -> bool       whether an --overwrite began removing the store there
    mark_rebuilding(path, on)      set or clear that mark (written before the first removal)
    entries(path) -> names         what the folder holds, the writer's lock file aside
    only_lock(path) -> bool        a folder holding a writer's lock and nothing of a store yet
    store_bytes(path) -> int
    unreachable(path, exc) -> StoreError   an object store client's failure, in one sentence
    forget_listings(group)         the next listing of an object store asks it again (fsspec caches them)
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from .errors import StoreError, first_line

FORMAT_NAME = "exemplars-activations"
LOCK_NAME = ".writer.lock"
REBUILD_NAME = ".overwriting"  # beside the lock; present while --overwrite removes a store
# zarr writes each file as NAME.<uuid>.partial and then renames it: a writer killed in between
# leaves one. Only the store's own zarr.json's (the first file a new store gets, after its lock
# file) is taken for such debris: a user's file of another name is never ignored or removed.
PARTIAL = re.compile(r"zarr\.[0-9a-f]{32}\.partial")


def location(path) -> str:
    """A store's place as given by a user: ``file://`` and ``local://`` URLs become plain paths
    (fsspec's local file system would not make the store's folders, and only a path takes the
    writer's lock); "~" is expanded; an empty name is refused."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    local = text.startswith("local://")  # fsspec's: a path as it stands, relative to here or absolute
    if local:
        text = text[len("local://"):]
    if not text.strip():
        raise StoreError("the store's name is empty; give a folder or a URL such as s3://bucket/x.zarr")
    if local:
        return os.path.expanduser(text)
    if not text.startswith("file://"):
        return text if is_url(text) else os.path.expanduser(text)  # "~/x.zarr" from Python
    from urllib.parse import unquote, urlparse

    url = urlparse(text)
    if url.netloc not in ("", "localhost"):
        raise StoreError(f"{text} names another host; a file:// store is a folder of this machine")
    if not url.path:
        raise StoreError(f"{text} names no folder; give one, e.g. file:///data/activations.zarr")
    return unquote(url.path)


def only_lock(path) -> bool:
    """A local folder that holds a writer's lock and nothing of a store yet: between --overwrite's
    removal and the new store's first file, or a run stopped there."""
    if is_url(path) or not Path(path).is_dir():
        return False
    names = {p.name for p in Path(path).iterdir()}
    return LOCK_NAME in names and names <= {LOCK_NAME, REBUILD_NAME}


def home_argument(arg: str) -> str:
    """"~/x" and "--out=~/x" with the home folder, as the shell does for a bare ~/x: it leaves
    the "=" form and quoted names alone, and a folder named "~" would be made in their place."""
    name, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    return f"{name}{eq}{os.path.expanduser(value)}" if value.startswith("~") else arg


def is_url(path) -> bool:
    return "://" in str(path)


def filesystem(path):
    import fsspec

    try:
        return fsspec.core.url_to_fs(str(path))
    except ImportError as exc:  # fsspec names the package the protocol needs
        raise StoreError(f"{path}: {exc}") from None
    except Exception as exc:  # a protocol that needs other arguments (zip://) fails in its own way
        raise StoreError(f"{path} is not a URL that fsspec can open ({exc.__class__.__name__}: {exc})") from None


@contextlib.contextmanager
def _asking(path):
    """An object store client's own failures (no credentials, no endpoint, denied) in one sentence."""
    try:
        yield
    except Exception as exc:
        raise unreachable(path, exc) from None


def _has_format(path) -> bool:
    """Whether ``path``'s root metadata names this format."""
    if is_url(path):
        fs, root = filesystem(path)
        with _asking(path):
            try:
                text = fs.cat_file(f"{root.rstrip('/')}/zarr.json").decode(errors="replace")
            except FileNotFoundError:
                return False
    else:
        meta = Path(path) / "zarr.json"
        text = meta.read_text(errors="replace") if meta.is_file() else ""
    return FORMAT_NAME in text


def is_store(path) -> bool:
    """Whether ``path`` (a folder or an fsspec URL such as s3://...) holds an exemplars store
    (one that an --overwrite began removing does not count)."""
    return not rebuilding(path) and _has_format(path)


def ours(path) -> bool:
    """A store, or what an --overwrite cut short left of one: what a writer may lock and remove."""
    return rebuilding(path) or _has_format(path)


def rebuilding(path) -> bool:
    if is_url(path):
        fs, root = filesystem(path)
        with _asking(path):
            return fs.exists(f"{root.rstrip('/')}/{REBUILD_NAME}")
    return (Path(path) / REBUILD_NAME).is_file()


def mark_rebuilding(path, on: bool) -> None:
    """The mark says that a store is partly removed, so a run cut short there is finished
    by the next one and never read as a store."""
    if is_url(path):
        fs, root = filesystem(path)
        target = f"{root.rstrip('/')}/{REBUILD_NAME}"
        if on:
            fs.pipe_file(target, b"")
        elif fs.exists(target):
            fs.rm(target)
    elif on:
        (Path(path) / REBUILD_NAME).touch()
    else:
        (Path(path) / REBUILD_NAME).unlink(missing_ok=True)


def entries(path) -> list[str]:
    """What the store's folder holds, the lock file and zarr's half-written files aside."""
    if is_url(path):
        fs, root = filesystem(path)
        with _asking(path):
            names = [n.rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(root, detail=False)] if fs.exists(root) else []
    else:
        names = [p.name for p in Path(path).iterdir()] if Path(path).is_dir() else []
    return [n for n in names if n != LOCK_NAME and not PARTIAL.fullmatch(n)]


def store_bytes(path) -> int:
    if is_url(path):
        fs, root = filesystem(path)
        with _asking(path):
            return int(fs.du(root))
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def unreachable(path, exc: Exception) -> StoreError:
    reason = first_line(exc)
    return StoreError(f"cannot open {path}: {exc.__class__.__name__}"
                      + (f": {reason}" if reason != exc.__class__.__name__ else ""))


def forget_listings(group) -> None:
    """Drop the listings fsspec keeps of an object store, so that the next one asks the store.

    s3fs answers ``ls`` from a cache filled at the first listing: a notebook's open store never
    saw a layer another process imported after it was opened. Local folders keep no such cache.
    """
    fs = getattr(group.store, "fs", None)
    if fs is not None and hasattr(fs, "invalidate_cache"):
        fs.invalidate_cache()
