"""The on-disk format: one zarr v3 group per dataset, one subgroup per layer.

This module owns the format (the README's FORMAT section documents it) and
imports no torch. Offers:

    FORMAT_NAME, FORMAT_VERSION, DEFAULT_SHARD_ROWS
    create_store(path, meta, images, shard_rows, overwrite) -> zarr.Group
    open_group(path, mode)        open and validate an existing store
    images_whole(group)           whether a store's image arrays were all made
    check_compatible(group, meta) refuse a store made with other settings
    add_layer(group, name, channels, spatial_shape, layer_meta, stats=STATS)
    write_shard(group, layers, shard, blocks, valid, errors)
    done_shards(group, layer) -> bool array, one per shard
    shard_bounds(shard, shard_rows, n) -> (start, stop)
    dataset_fingerprint(paths, sizes, mtimes) -> str   what identifies a dataset
    location(path) -> str          a user's store name, file:// URLs as plain paths
    is_store(path), is_url(path), store_bytes(path)   folders and fsspec URLs (s3://...) alike
    refresh_completeness(group, layer)
    import_matrix(path, matrix, layer, paths, ...)  a store from a matrix computed elsewhere
    writer_lock(path)             context manager: one writer per store
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import posixpath
import shutil
import warnings
from pathlib import Path

import numpy as np
import zarr

from . import __version__
from .errors import StoreError, StoreLockedError, StoreMismatchError

FORMAT_NAME = "exemplars-activations"
FORMAT_VERSION = 1
DEFAULT_SHARD_ROWS = 65536
LOCK_NAME = ".writer.lock"
LOOKUP_ROWS = 1024  # chunk of images/path
STATS = ("mean", "max", "argmax")
# Fields of the root metadata that must match for a run to continue a store.
COMPARED = ("dataset_fingerprint", "preprocessing", "model", "shard_rows")

# Variable-length strings are not yet in the zarr v3 core spec; zarr says so
# on every write. The format documents the choice, so the warning is noise.
warnings.filterwarnings("ignore", message=".*not part of the Zarr format 3.*")
warnings.filterwarnings("ignore", category=UserWarning, module="zarr.*")
# The writer lock lives inside the store folder; zarr notices it when listing.
warnings.filterwarnings("ignore", message=".*writer.lock is not recognized.*")


def location(path) -> str:
    """A store's place as given by a user: ``file://`` URLs become plain paths (fsspec's local
    file system would not make the store's folders); an empty name is refused."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    if not text.strip():
        raise StoreError("the store's name is empty; give a folder or a URL such as s3://bucket/x.zarr")
    return text[len("file://"):] if text.startswith("file://") else text


def is_url(path) -> bool:
    return "://" in str(path)


def _fs(path):
    import fsspec

    try:
        return fsspec.core.url_to_fs(str(path))
    except ImportError as exc:  # fsspec names the package the protocol needs
        raise StoreError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise StoreError(f"{path} is not a URL that fsspec can open ({exc})") from None


def is_store(path) -> bool:
    """Whether ``path`` (a folder or an fsspec URL such as s3://...) holds an exemplars store."""
    if is_url(path):
        fs, root = _fs(path)
        try:
            text = fs.cat_file(f"{root.rstrip('/')}/zarr.json").decode(errors="replace")
        except FileNotFoundError:
            return False
        except Exception as exc:  # the client's own failures: no credentials, no endpoint, denied
            raise _unreachable(path, exc) from None
    else:
        meta = Path(path) / "zarr.json"
        text = meta.read_text(errors="replace") if meta.is_file() else ""
    return FORMAT_NAME in text


def _entries(path) -> list[str]:
    """What the store's folder holds, the lock file aside."""
    if is_url(path):
        fs, root = _fs(path)
        names = [n.rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(root, detail=False)] if fs.exists(root) else []
    else:
        names = [p.name for p in Path(path).iterdir()] if Path(path).is_dir() else []
    return [n for n in names if n != LOCK_NAME]


def store_bytes(path) -> int:
    if is_url(path):
        fs, root = _fs(path)
        return int(fs.du(root))
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def shard_bounds(shard: int, shard_rows: int, n: int) -> tuple[int, int]:
    start = shard * shard_rows
    return start, min(start + shard_rows, n)


def n_shards(n: int, shard_rows: int) -> int:
    return -(-n // shard_rows)


@contextlib.contextmanager
def writer_lock(path: str | Path):
    """Hold the store's writer lock; the OS frees it even on SIGKILL.

    An object store (a URL) has no such lock: one job per store is the user's rule there.
    """
    if is_url(path):
        yield
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is a file; a store is a folder, choose another --store")
    if _entries(path) and not is_store(path):  # said before a lock file is left in someone's folder
        raise StoreError(f"{path} exists and is not an exemplars store; refusing to overwrite it or write "
                         "into it, choose another --store")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot make store {path}: {exc.strerror}") from None
    try:
        try:
            # A POSIX record lock, not flock(): forked DataLoader workers do not inherit it, so a
            # killed run's orphaned workers cannot hold the store for the seconds they take to exit.
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise StoreLockedError(
                f"store {path} is being written by another process; "
                "wait for it to finish or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _remove_store(path) -> None:
    if not _entries(path):
        return
    if not is_store(path):
        raise StoreError(f"{path} exists and is not an exemplars store; refusing to overwrite it")
    if is_url(path):
        fs, root = _fs(path)
        fs.rm(root, recursive=True)
        return
    for child in Path(path).iterdir():
        if child.name != LOCK_NAME:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def create_store(path, meta: dict, images: dict, shard_rows: int, overwrite: bool):
    """Open the store at ``path`` for writing, creating it if needed.

    ``meta`` holds the root attributes this run would write; an existing store
    must agree on the ``COMPARED`` fields unless ``overwrite``. ``images`` maps
    ``path``, ``label``, ``size``, ``mtime_ns`` to arrays and ``classes`` to a list.
    """
    if overwrite:
        _remove_store(path)
    if is_store(path):
        group = open_group(path, mode="r+")
        check_compatible(group, dict(meta, shard_rows=shard_rows))
        if not images_whole(group):  # killed while making them: no layer exists yet, nothing is lost
            _make_images(group, images, shard_rows)
        return group
    if _entries(path):
        raise StoreError(f"{path} exists and is not an exemplars store; choose another --store")
    # Attributes first, so that even a half-made store is recognised (and
    # --overwrite may clear it); mode "w" would wipe the lock file too.
    group = zarr.create_group(str(path), overwrite=False, attributes=dict(
        meta, format=FORMAT_NAME, format_version=FORMAT_VERSION, tool_version=__version__,
        shard_rows=shard_rows, n_images=len(images["path"])))
    _make_images(group, images, shard_rows)
    return group


IMAGE_ARRAYS = ("path", "label", "size", "mtime_ns", "valid", "error")


def images_whole(group) -> bool:
    """Whether every ``images/`` array exists (the last, ``error``, is made after the others)."""
    return "images" in group and all(name in group["images"] for name in IMAGE_ARRAYS)


def _make_images(group, images: dict, shard_rows: int) -> None:
    if "images" in group:
        del group["images"]
    n = len(images["path"])
    im = group.create_group("images")
    im.attrs["classes"] = list(images["classes"])
    chunks = (min(shard_rows, max(n, 1)),)
    for name, values in (("path", images["path"]), ("label", images["label"]),
                         ("size", images["size"]), ("mtime_ns", images["mtime_ns"])):
        values = np.asarray(values, dtype=str if name == "path" else None)
        # Paths are written once, here, so small chunks are safe: a query then
        # decodes its ten paths without a whole shard's worth of strings.
        arr = im.create_array(name, shape=(n,), dtype=values.dtype if name != "path" else str,
                              chunks=(min(LOOKUP_ROWS, chunks[0]),) if name == "path" else chunks,
                              dimension_names=("image",))
        arr[:] = values
    im.create_array("valid", shape=(n,), dtype=bool, chunks=chunks,
                    fill_value=False, dimension_names=("image",))
    im.create_array("error", shape=(n,), dtype=str, chunks=chunks, dimension_names=("image",))


def open_group(path, mode: str = "r"):
    """Open an existing store, refusing non-stores and newer format versions."""
    path_str = str(path)
    if is_url(path_str):
        _fs(path_str)  # an unknown protocol or a missing fsspec package, said in one line
    elif not Path(path_str).exists():
        raise StoreError(f"no store at {path_str}; run `exemplars activations` first")
    try:
        group = zarr.open_group(path_str, mode=mode)
    except (FileNotFoundError, NotADirectoryError, zarr.errors.GroupNotFoundError,
            zarr.errors.NodeTypeValidationError, ValueError, KeyError, TypeError) as exc:
        # ValueError covers a zarr.json that is not JSON (a damaged or foreign folder).
        raise StoreError(f"{path_str} is not an exemplars store ({exc.__class__.__name__})") from None
    except Exception as exc:
        if not is_url(path_str):
            raise
        raise _unreachable(path_str, exc) from None  # an object store's client fails in its own ways
    attrs = group.attrs
    if attrs.get("format") != FORMAT_NAME:
        raise StoreError(f"{path_str} is a zarr group but not an exemplars store")
    version = attrs.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise StoreError(
            f"{path_str} has format version {version}, newer than this tool's "
            f"{FORMAT_VERSION}; upgrade exemplars to read it"
        )
    return group


def _unreachable(path, exc: Exception) -> StoreError:
    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return StoreError(f"cannot open {path}: {exc.__class__.__name__}" + (f": {reason}" if reason else ""))


def _describe(value) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


def _identity(value):
    """What identifies a setting: a weights file's sha256 counts, not where it lies."""
    if isinstance(value, dict) and isinstance(value.get("weights"), dict):
        weights = {k: v for k, v in value["weights"].items() if k != "path"}
        return dict(value, weights=weights)
    return value


def check_compatible(group, meta: dict) -> None:
    """Refuse, naming the field, when ``meta`` differs from the store's."""
    stored = group.attrs
    for field in COMPARED:
        if field not in meta:
            continue
        old, new = _identity(stored.get(field)), _identity(meta[field])
        if old != new:
            name, old, new = _first_difference(field, old, new)
            raise StoreMismatchError(
                f"store {group.store} was made with {name}={_describe(old)}, "
                f"this run has {name}={_describe(new)}; "
                "pass --overwrite to rebuild it or choose another --store"
            )


def dataset_fingerprint(paths, sizes, mtimes) -> str:
    """sha256 over "path\\0size\\0mtime_ns\\n" of every image, in store order."""
    digest = hashlib.sha256()
    for p, s, m in zip(paths, np.asarray(sizes).tolist(), np.asarray(mtimes).tolist()):
        digest.update(f"{p}\0{s}\0{m}\n".encode())
    return digest.hexdigest()


def _first_difference(name: str, old, new):
    """The dotted name and values of the first setting that differs inside nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key) != new.get(key):
                return _first_difference(f"{name}.{key}", old.get(key), new.get(key))
    return name, old, new


def add_layer(group, name: str, channels: int, spatial_shape, layer_meta: dict, stats=STATS):
    """Create a layer's arrays, or return the existing subgroup unchanged."""
    if name in group:
        if "done" in group[name] and "channels" in group[name].attrs:
            return group[name]
        del group[name]  # a creation cut short (the writer holds the lock): nothing in it was computed
    n = group.attrs["n_images"]
    rows = group.attrs["shard_rows"]
    sub = group.create_group(name)
    shape = (n, channels)
    shards = (min(rows, max(n, 1)), channels)
    inner = (shards[0], 1)  # one column per inner chunk: a channel read is ~4N bytes
    for stat in stats:
        dtype, fill = ("int32", -1) if stat == "argmax" else ("float32", np.nan)
        sub.create_array(stat, shape=shape, dtype=dtype, chunks=inner, shards=shards,
                         fill_value=fill, dimension_names=("image", "channel"))
    # One chunk per marker, so marking a shard done never rewrites another's.
    sub.create_array("done", shape=(n_shards(n, rows),), dtype=bool, chunks=(1,),
                     fill_value=False, dimension_names=("shard",))
    sub.attrs.update(dict(layer_meta, channels=channels, spatial_shape=list(spatial_shape),
                          complete=False, shards_done=0))
    return sub


def done_shards(group, layer: str) -> np.ndarray:
    return np.asarray(group[layer]["done"][:], dtype=bool)


def write_shard(group, layers, shard: int, blocks: dict, valid, errors) -> None:
    """Write one whole shard of every layer, then its done markers.

    ``blocks[layer]`` is ``(mean, max, argmax)`` for the shard's rows. The
    markers come last, so a run killed mid-write recomputes this shard.
    """
    start, stop = shard_bounds(shard, group.attrs["shard_rows"], group.attrs["n_images"])
    images = group["images"]
    images["valid"][start:stop] = np.asarray(valid, dtype=bool)
    images["error"][start:stop] = np.asarray(errors, dtype=str)
    for layer in layers:
        for stat, block in zip(STATS, blocks[layer]):
            group[layer][stat][start:stop] = block
    for layer in layers:
        group[layer]["done"][shard] = True


def refresh_completeness(group, layer: str) -> dict:
    done = done_shards(group, layer)
    sub = group[layer]
    state = {"complete": bool(done.all()), "shards_done": int(done.sum())}
    if any(sub.attrs.get(k) != v for k, v in state.items()):  # a no-op run writes nothing
        sub.attrs.update(state)
    return dict(sub.attrs)


def _numbers(name: str, array, ndim: int):
    """Refuse, before anything is written, an array that is not real numbers of the right rank."""
    if not isinstance(array, np.ndarray) or array.ndim != ndim:
        shape = getattr(array, "shape", None)
        raise StoreMismatchError(f"the {name} must be a {ndim}-dimensional array, not shape {shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise StoreMismatchError(f"the {name} must hold real numbers, not {array.dtype}")


def _import_labels(labels, n: int) -> np.ndarray:
    if labels is None:
        return np.full(n, -1, dtype=np.int32)
    labels = np.asarray(labels)
    _numbers("labels", labels, 1)
    if labels.shape != (n,):
        raise StoreMismatchError(f"the labels have shape {labels.shape}, expected ({n},)")
    if labels.size and (not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))
                        or labels.min() < -1 or labels.max() >= 2**31):
        raise StoreMismatchError("the labels must be whole numbers from -1 (no label) up to 2**31 - 1")
    return labels.astype(np.int32)


def import_matrix(path, matrix, layer: str, paths, labels=None, classes=(), root=None,
                  shard_rows: int = DEFAULT_SHARD_ROWS, overwrite: bool = False, progress=None,
                  max_matrix=None):
    """Make a store from an (N, C) matrix of spatial means computed elsewhere, or add a layer to one.

    ``matrix`` (and ``max_matrix``, the spatial max, if given) may be memory
    maps: they are read and written one shard at a time. A row with a non-finite
    mean or max is marked invalid (in every layer: validity is the image's). The
    layer has ``mean`` (and ``max``), never ``argmax``. Further layers need the same
    paths; paths are stored normalised ("./cat/x.jpg" as "cat/x.jpg").
    """
    path = location(path)
    matrix = matrix if isinstance(matrix, np.ndarray) else np.asarray(matrix)
    max_matrix = max_matrix if max_matrix is None or isinstance(max_matrix, np.ndarray) else np.asarray(max_matrix)
    _numbers("matrix", matrix, 2)
    n, channels = matrix.shape
    if channels < 1:
        raise StoreMismatchError("the matrix has no channels (shape (N, 0))")
    if max_matrix is not None:
        _numbers("max matrix", max_matrix, 2)
        if max_matrix.shape != matrix.shape:
            raise StoreMismatchError(f"the max matrix has shape {max_matrix.shape}, the mean {matrix.shape}")
    if len(paths) != n:
        raise StoreMismatchError(f"the matrix has {n} rows but {len(paths)} paths were given")
    paths = [posixpath.normpath(str(p).strip().replace(os.sep, "/")) for p in paths]
    labels = _import_labels(labels, n)
    if not layer or "/" in layer or layer == "images":
        raise StoreError(f"{layer!r} cannot name a layer (it must be non-empty, without '/', and not 'images')")
    with writer_lock(path):
        zeros = np.zeros(n, dtype=np.int64)  # no files to stat: the paths alone identify the dataset
        meta = {"dataset": {"root": root, "layout": "imported", "n_images": n},
                "dataset_fingerprint": dataset_fingerprint(paths, zeros, zeros), "preprocessing": None,
                "model": {"name": "imported", "weights": {"kind": "imported"}}}
        group = create_store(path, meta, {"path": paths, "label": labels, "classes": list(classes),
                                          "size": zeros, "mtime_ns": zeros}, shard_rows, overwrite)
        if layer in group:  # rewriting it would mix two imports' rows
            raise StoreMismatchError(f"store {path} already has layer {layer}; import under another --layer "
                                     "or pass --overwrite to rebuild the store")
        first = not any(name != "images" for name in group.group_keys())
        sub = add_layer(group, layer, channels, (1, 1), {"model": "imported", "weights": meta["model"]["weights"]},
                        stats=("mean",) if max_matrix is None else ("mean", "max"))
        shards = range(n_shards(n, shard_rows))
        for shard in progress(shards) if progress else shards:
            start, stop = shard_bounds(shard, shard_rows, n)
            block = np.asarray(matrix[start:stop], dtype=np.float32)
            valid = np.isfinite(block).all(axis=1)
            if max_matrix is not None:
                peaks = np.asarray(max_matrix[start:stop], dtype=np.float32)
                valid &= np.isfinite(peaks).all(axis=1)
                sub["max"][start:stop] = peaks
            if not first:
                valid &= np.asarray(group["images"]["valid"][start:stop], dtype=bool)
            group["images"]["valid"][start:stop] = valid
            sub["mean"][start:stop] = block
            sub["done"][shard] = True
        refresh_completeness(group, layer)
    return group
