"""The on-disk format: one zarr v3 group per dataset, one subgroup per layer.

This module owns the format (the README's FORMAT section documents it) and
imports no torch. Offers:

    FORMAT_NAME, FORMAT_VERSION, DEFAULT_SHARD_ROWS, STATS ("mean", "max", "argmax")
    n_shards(n, shard_rows) -> int
    create_store(path, meta, images, shard_rows, overwrite) -> zarr.Group
    open_group(path, mode)        open and validate an existing store
    images_whole(group)           whether a store's image arrays were all made
    check_compatible(group, meta) refuse a store made with other settings (``pipeline.settings``)
    add_layer(group, name, channels, spatial_shape, layer_meta, stats=STATS) -> the layer group
    layer_whole(sub)              whether a layer's arrays and attributes were all made
    write_shard(group, layers, shard, blocks, valid, errors)
    merged_validity(group, layers, shard, valid, errors)   AND-ed with other layers' of the shard
    finished_elsewhere(group, layers, shard) -> the other layers that finished it
    done_shards(group, layer) -> bool array, one per shard
    shard_bounds(shard, shard_rows, n) -> (start, stop)
    every_shard(n, shard_rows) -> [(start, stop), ...]
    dataset_fingerprint(paths, sizes, mtimes) -> str   what identifies a dataset
    refresh_completeness(group, layer)

Where a store lives (folders, URLs) is ``pipeline.places``; a store from a matrix
computed elsewhere is ``pipeline.importing``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import zarr

from . import __version__
from .errors import DamagedStoreError, StoreError
from .places import FORMAT_NAME, entries, only_lock, filesystem, is_store, is_url, rebuilding, unreachable
from .settings import check_compatible
from .writers import remove_store

FORMAT_VERSION = 1
DEFAULT_SHARD_ROWS = 65536
LOOKUP_ROWS = 1024  # chunk of images/path
STATS = ("mean", "max", "argmax")
# Labels are -1 (no class) or a class index. With 0 (stores before 2026-11-28) zarr wrote no chunk of
# class 0 alone, so a lost chunk, read as class 0, could not be told from one; with -2 every chunk is
# written and a lost one is missing from the listing (``pipeline.lost``).
LABEL_FILL = -2

# Variable-length strings are not yet in the zarr v3 core spec; zarr says so
# on every write. The format documents the choice, so the warning is noise.
warnings.filterwarnings("ignore", message=".*not part of the Zarr format 3.*")
# zarr warns about every file or folder in a store that is no node of it: the writer lock, a file
# zarr was writing when its writer was killed, a NAS's @eaDir. Damage is pipeline/damage.py's to say.
warnings.filterwarnings("ignore", message=".*is not recognized as a component of a Zarr hierarchy.*")


def shard_bounds(shard: int, shard_rows: int, n: int) -> tuple[int, int]:
    start = shard * shard_rows
    return start, min(start + shard_rows, n)


def n_shards(n: int, shard_rows: int) -> int:
    return -(-n // shard_rows)


def every_shard(n: int, shard_rows: int) -> list[tuple[int, int]]:
    """``shard_bounds`` of each shard of ``n`` rows, in order."""
    return [shard_bounds(s, shard_rows, n) for s in range(n_shards(n, shard_rows))]


def store_name(group) -> str:
    """Where ``group``'s store is, as a user would write it (a path, or protocol://bucket/key)."""
    store = group.store
    fs = getattr(store, "fs", None)
    if fs is not None:  # an fsspec store: its repr is an object's
        protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
        return f"{protocol}://{store.path}"
    return str(store).removeprefix("file://")


def create_store(path, meta: dict, images: dict, shard_rows: int, overwrite: bool):
    """Open the store at ``path`` for writing, creating it if needed.

    ``meta`` holds the root attributes this run would write; an existing store
    must agree on the ``COMPARED`` fields unless ``overwrite``. ``images`` maps
    ``path``, ``label``, ``size``, ``mtime_ns`` to arrays and ``classes`` to a list.
    """
    if overwrite or rebuilding(path):  # the second: an --overwrite cut short, finished now
        remove_store(path)
    if is_store(path):
        group = open_group(path, mode="r+")
        check_compatible(group, dict(meta, shard_rows=shard_rows), images)
        if not images_whole(group):  # killed while making them: no layer exists yet, nothing is lost
            _make_images(group, images, shard_rows)
        return group
    if entries(path):
        raise StoreError(f"{path} exists and is not an exemplars store; choose another --store")
    # Attributes first, so that even a half-made store is recognised (and
    # --overwrite may clear it); mode "w" would wipe the lock file too.
    try:
        group = zarr.create_group(str(path), overwrite=False, attributes=dict(
            meta, format=FORMAT_NAME, format_version=FORMAT_VERSION, tool_version=__version__,
            shard_rows=shard_rows, n_images=len(images["path"])))
        _make_images(group, images, shard_rows)
    except Exception as exc:
        if not is_url(path):
            raise
        raise unreachable(path, exc) from None  # a missing bucket, a denied write: one sentence
    return group


IMAGE_ARRAYS = ("path", "label", "size", "mtime_ns", "valid", "error")


def images_whole(group) -> bool:
    """Whether every ``images/`` array exists (the last, ``error``, is made after the others); one whose
    ``zarr.json`` does not parse is damage (``DamagedStoreError``, naming it), not a store being made."""
    from .metadata import METADATA_ERRORS, first_fault

    try:
        return "images" in group and all(name in group["images"] for name in IMAGE_ARRAYS)
    except METADATA_ERRORS as exc:  # looked for only where zarr failed: the normal open reads nothing more
        from .damage import IMAGES_FIX

        fault = first_fault(group, ["images", *(f"images/{name}" for name in IMAGE_ARRAYS)]) or repr(exc)
        raise DamagedStoreError(f"store {store_name(group)} is damaged: {fault}; {IMAGES_FIX}") from None


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
                              fill_value=LABEL_FILL if name == "label" else None, dimension_names=("image",))
        arr[:] = values
    im.create_array("valid", shape=(n,), dtype=bool, chunks=chunks,
                    fill_value=False, dimension_names=("image",))
    im.create_array("error", shape=(n,), dtype=str, chunks=chunks, dimension_names=("image",))


def open_group(path, mode: str = "r"):
    """Open an existing store, refusing non-stores and newer format versions."""
    path_str = str(path)
    if is_url(path_str):
        filesystem(path_str)  # an unknown protocol or a missing fsspec package, said in one line
    elif not Path(path_str).exists():
        raise StoreError(f"no store at {path_str}; run `exemplars activations` first")
    if rebuilding(path_str):
        raise StoreError(f"store {path_str} is being rebuilt (--overwrite): wait for that run, or, if it was "
                         "stopped, rerun it to finish")
    try:
        # A folder by its absolute path: zarr keeps a relative one as given, and a notebook that
        # changed directory (os.chdir) afterwards read every array from the new one (a raw KeyError).
        group = zarr.open_group(path_str if is_url(path_str) else os.path.abspath(path_str), mode=mode)
    except (FileNotFoundError, NotADirectoryError, zarr.errors.GroupNotFoundError,
            zarr.errors.NodeTypeValidationError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # ValueError covers a zarr.json that is not JSON (a damaged or foreign folder); AttributeError
        # one that is JSON but no object (``null``: zarr calls its .pop).
        if only_lock(path_str):
            raise StoreError(f"{path_str} holds no store yet, only a writer's lock: a run is making it "
                             "(wait for it), or was stopped before it began (rerun it)") from None
        if is_url(path_str) and not _anything_at(path_str):  # as a missing folder is said
            raise StoreError(f"no store at {path_str}; run `exemplars activations` first") from None
        raise StoreError(f"{path_str} is not an exemplars store ({exc.__class__.__name__})") from None
    except Exception as exc:
        if not is_url(path_str):
            raise
        raise unreachable(path_str, exc) from None  # an object store's client fails in its own ways
    attrs = group.attrs
    if attrs.get("format") != FORMAT_NAME:
        raise StoreError(f"{path_str} is a zarr group but not an exemplars store")
    for key, least in (("format_version", 0), ("n_images", 0), ("shard_rows", 1)):
        if not isinstance(attrs.get(key), int) or isinstance(attrs.get(key), bool) or attrs[key] < least:
            raise StoreError(f"{path_str} is a damaged exemplars store: its attribute {key} is "
                             f"{'missing' if key not in attrs else repr(attrs[key])}, where a whole number "
                             f"of at least {least} belongs")
    version = attrs["format_version"]
    if version > FORMAT_VERSION:
        raise StoreError(
            f"{path_str} has format version {version}, newer than this tool's "
            f"{FORMAT_VERSION}; upgrade exemplars to read it"
        )
    return group


def _anything_at(url: str) -> bool:
    try:
        fs, path = filesystem(url)
        return bool(fs.exists(path))
    except Exception:  # no answer: say what zarr said
        return True


def dataset_fingerprint(paths, sizes, mtimes) -> str:
    """sha256 over "path\\0size\\0mtime_ns\\n" of every image, in store order."""
    digest = hashlib.sha256()
    for p, s, m in zip(paths, np.asarray(sizes).tolist(), np.asarray(mtimes).tolist()):
        digest.update(f"{p}\0{s}\0{m}\n".encode())
    return digest.hexdigest()


def add_layer(group, name: str, channels: int, spatial_shape, layer_meta: dict, stats=STATS):
    """Create a layer's arrays, or return the existing subgroup unchanged."""
    if name in group:
        if layer_whole(group[name]):
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
        # zstd's content checksum on each inner chunk: zarr's shard index has a crc32c, its chunks
        # none, so flipped bytes read as other numbers; with it they fail to decode (``pipeline.damage``).
        sub.create_array(stat, shape=shape, dtype=dtype, chunks=inner, shards=shards,
                         compressors=zarr.codecs.ZstdCodec(level=0, checksum=True),
                         fill_value=fill, dimension_names=("image", "channel"))
    # One chunk per marker, so marking a shard done never rewrites another's.
    sub.create_array("done", shape=(n_shards(n, rows),), dtype=bool, chunks=(1,),
                     fill_value=False, dimension_names=("shard",))
    # One write: zarr's attrs.update() writes the layer's zarr.json once per key, and a run
    # killed between two of them left a layer with channels but no spatial_shape, taken as whole.
    # ``stats`` names the arrays made: an import may have no max, and a lost one must not read as that.
    return sub.update_attributes(dict(layer_meta, channels=channels, spatial_shape=list(spatial_shape),
                                      stats=list(stats), complete=False, shards_done=0))


LAYER_KEYS = ("channels", "spatial_shape", "complete", "shards_done")


def layer_whole(sub) -> bool:
    """Whether a layer's arrays and attributes were all made (its attributes come last, in one write)."""
    return "done" in sub and all(key in sub.attrs for key in LAYER_KEYS)


def done_shards(group, layer: str) -> np.ndarray:
    return np.asarray(group[layer]["done"][:], dtype=bool)


def write_shard(group, layers, shard: int, blocks: dict, valid, errors) -> None:
    """Write one whole shard of every layer, then its done markers.

    ``blocks[layer]`` is ``(mean, max, argmax)`` for the shard's rows. The
    markers come last, so a run killed mid-write recomputes this shard.
    """
    start, stop = shard_bounds(shard, group.attrs["shard_rows"], group.attrs["n_images"])
    valid, errors = merged_validity(group, layers, shard, valid, errors)
    images = group["images"]
    images["valid"][start:stop] = valid
    images["error"][start:stop] = np.asarray(errors, dtype=str)
    for layer in layers:
        for stat, block in zip(STATS, blocks[layer]):
            group[layer][stat][start:stop] = block
    for layer in layers:
        group[layer]["done"][shard] = True


def finished_elsewhere(group, layers, shard: int) -> list[str]:
    """The layers other than ``layers`` that have finished ``shard``; a done marker that does not
    decode is read as not done, as that layer's own rerun reads it (it was a traceback mid-run), and
    a layer whose ``zarr.json`` does not parse is passed over, as zarr passes over one that is lost."""
    from .metadata import children

    nodes, _ = children(group)
    return [name for name, sub in nodes.items() if name != "images" and name not in layers
            and isinstance(sub, zarr.Group) and _marked(sub, shard)]


def _marked(sub, shard: int) -> bool:
    from .damage import DECODE_ERRORS, out_of_bounds

    try:  # DECODE_ERRORS hold zarr's complaints about a done/zarr.json that does not parse
        return "done" in sub and bool(sub["done"][shard])
    except DECODE_ERRORS as exc:
        if out_of_bounds(exc):
            raise
        return False


def merged_validity(group, layers, shard: int, valid, errors):
    """This shard's validity, AND-ed with what other layers already wrote of it: validity is the
    image's, and a row one layer found non-finite must not turn valid when another is added."""
    valid, errors = np.asarray(valid, dtype=bool), list(errors)
    if not finished_elsewhere(group, layers, shard):
        return valid, errors
    start, stop = shard_bounds(shard, group.attrs["shard_rows"], group.attrs["n_images"])
    before = np.asarray(group["images"]["valid"][start:stop], dtype=bool)
    said = group["images"]["error"][start:stop]
    return valid & before, [new or str(old) for new, old in zip(errors, said)]


def refresh_completeness(group, layer: str) -> dict:
    done = done_shards(group, layer)
    sub = group[layer]
    state = {"complete": bool(done.all()), "shards_done": int(done.sum())}
    if any(sub.attrs.get(k) != v for k, v in state.items()):  # a no-op run writes nothing
        sub = sub.update_attributes(state)  # one write, not one per key
    return dict(sub.attrs)
