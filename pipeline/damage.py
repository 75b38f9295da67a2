"""Damage to a written store: found, said in one sentence, and repaired by phase one (no torch).

A store can be damaged after it was written (a disk error, a copy cut short, a file deleted by
hand); zarr then fails deep in a codec with a traceback, or, for a missing shard file, reads the
fill value (NaN) as if it were data. Offers:

    DECODE_ERRORS                       what zarr and its codecs raise on undecodable bytes
    out_of_bounds(exc) -> bool          zarr's selection-out-of-bounds error among them (no damage)
    span(lo, hi, unit="row") -> str     "rows 8-15" (``hi`` excluded), "row 8": where damage lies, in words
    stray_folders(group, prefix="")     folders zarr does not take as nodes: their ``zarr.json`` is lost
    layer_fault(group, layer) -> str | None   a layer's own or one of its arrays' ``zarr.json`` lost or
                                        not zarr metadata, its attributes or shapes wrong (``pipeline.metadata``),
                                        or an array it was made with gone (``lost.missing_arrays``)
    done_markers(group, layer) -> (done, {shard: reason})   done markers, those that do not decode as False
    damaged_shards(group, layer, full=False) -> {shard: reason}   done shards whose files are missing,
                                        truncated (the shard index: size and crc32c) or, ``full``,
                                        undecodable (every inner chunk read and checksummed)
    missing_shards(group, layer, done, valid) -> {shard: reason}   the listing check alone
    lost_image_chunks(group, layer, done, files) -> {shard: reason}   lost images/valid chunks
    shard_files(group, layer) -> {array: set of keys}   one listing of each sharded array's files
    layer_fix(layer_attrs) -> str       what a user does about a damaged layer (IMAGES_FIX: about ``images/``)
    remove_layer(group, layer)          delete a layer's folder, node or not (the writer, remaking it)
    remove_shard(group, layer, shard)   delete a shard's files (zarr reads a shard it writes into, and a
                                        damaged one fails that read)

Reads that name the damage they meet are ``checked.Checked``'s.
"""

from __future__ import annotations


import numpy as np

from .errors import first_line
from .metadata import children, layer_shape_fault

# A codec's complaint about its input: zstd's RuntimeError, zarr's crc32c ValueError, a reshape
# of too few bytes (ValueError), an index past the buffer (IndexError), a short read (EOFError).
DECODE_ERRORS = (ValueError, RuntimeError, TypeError, IndexError, EOFError)
SHARDED = ("mean", "max", "argmax")  # the layer arrays sharded by rows (``done`` is not)
MAX_UINT_64 = 2 ** 64 - 1  # an empty inner chunk in a shard index


def out_of_bounds(exc: BaseException) -> bool:
    """Whether ``exc`` is zarr's complaint about a selection out of bounds (an IndexError, so among
    ``DECODE_ERRORS``): the caller's mistake, whatever the data, never damage."""
    return isinstance(exc, IndexError) and type(exc).__module__.startswith("zarr")


def _sync(coroutine):
    from zarr.core.sync import sync

    return sync(coroutine)


async def _collect(iterator) -> list[str]:
    return [key async for key in iterator]


def _listing(store, prefix: str, recursive: bool = True) -> list[str]:
    """Keys under ``prefix`` (``recursive``), or the names of its children, through zarr's store
    API: a folder's listing, or one listing request on an object store."""
    return _sync(_collect(store.list_prefix(prefix) if recursive else store.list_dir(prefix)))


def stray_folders(group, prefix: str = "", nodes: tuple | None = None) -> list[str]:
    """Children of ``prefix`` that are no zarr node but hold a node's contents (an array's chunks
    under ``c/``, or nodes of their own): their ``zarr.json`` was lost (a writer makes a node's
    ``zarr.json`` before anything in it). Anything else is not ours to call damaged: a NAS's
    ``@eaDir``, a user's folder, a node whose ``zarr.json`` a killed writer left half-written.
    ``nodes``: ``metadata.children(group, prefix)``, where the caller has it; a child whose
    ``zarr.json`` does not parse is that listing's to name, not a stray folder."""
    found, unreadable = nodes if nodes is not None else children(group, prefix)
    base = f"{prefix}/" if prefix else ""
    names = _listing(group.store, base, recursive=False)
    candidates = [n for n in names if n not in found and n not in unreadable and n != "zarr.json"
                  and not n.startswith(".") and not n.endswith(".partial")]
    return sorted(n for n in candidates if _node_contents(_listing(group.store, f"{base}{n}/"), f"{base}{n}/"))


def _node_contents(keys: list[str], prefix: str) -> bool:
    return any(k.startswith(f"{prefix}c/") or k.endswith("/zarr.json") for k in keys)


def layer_fault(group, layer: str, top: tuple | None = None) -> str | None:
    """Why ``layer`` cannot be read as a whole layer, or None (also where there is no such layer): its
    ``zarr.json``, or an array's, lost or not zarr metadata, or attributes and arrays' shapes that
    disagree with the store (``metadata.layer_shape_fault``). ``top``: ``metadata.children(group)``,
    where the caller has it (a listing of the root, and each of its nodes opened)."""
    top = top if top is not None else children(group)
    if layer in top[1]:
        return top[1][layer]
    if layer in stray_folders(group, nodes=top):
        return f"its {layer}/zarr.json is missing"
    if layer not in top[0]:
        return None
    below = children(group, layer)
    if below[1]:
        return "; ".join(below[1].values())
    stray = stray_folders(group, layer, nodes=below)
    if stray:
        return f"its {', '.join(f'{layer}/{name}/zarr.json' for name in stray)} {'is' if len(stray) == 1 else 'are'} missing"
    from .lost import missing_arrays  # it reads this module's listings

    # a whole array folder gone: zarr would read it as never made
    sub = top[0][layer]
    return layer_shape_fault(group, layer, sub, below[0]) or missing_arrays(layer, sub.attrs, below[0])


# What to do about damaged ``images/`` arrays: written once, when the store was made.
IMAGES_FIX = "rebuild the store (the same command with --overwrite) or restore it from a copy"


def layer_fix(attrs: dict) -> str:
    """What to do about a damaged layer, in the words of the command that made it."""
    if attrs.get("model") == "imported":
        return "import the layer again (`exemplars import ... --overwrite` remakes the store) or restore the store from a copy"
    return ("rerun `exemplars activations` with the same settings and --verify to recompute it, "
            "or restore the store from a copy")


def remove_layer(group, layer: str) -> None:
    """Delete everything under ``layer/`` through the store (zarr's ``del`` needs the lost node)."""
    _sync(group.store.delete_dir(layer))


def remove_shard(group, layer: str, shard: int) -> None:
    """Delete ``shard``'s file of each of ``layer``'s sharded arrays (missing ones are no error)."""
    sub = group[layer]
    for stat in (s for s in SHARDED if s in sub):
        _sync(group.store.delete(_shard_key(sub[stat], shard)))


def _shard_key(arr, shard: int) -> str:
    coords = (shard,) + (0,) * (arr.ndim - 1)
    return f"{arr.path}/{arr.metadata.encode_chunk_key(coords)}"


def span(lo: int, hi: int, unit: str = "row") -> str:
    """Rows ``lo`` to ``hi`` (excluded) in words, as a user finds them in ``info`` and the answers."""
    return f"{unit}s {lo}-{hi - 1}" if hi - 1 > lo else f"{unit} {lo}"


def _rows(group, shard: int) -> str:
    """The rows of ``shard``."""
    from .store import shard_bounds

    return span(*shard_bounds(shard, group.attrs["shard_rows"], group.attrs["n_images"]))


def _with_valid_row(done, valid, shard_rows: int) -> list[int]:
    """Done shards with a valid row: their files must exist (zarr writes no file for a shard all of
    fill values, which only a shard of invalid rows is: NaN means and maxima, -1 argmax)."""
    return [int(j) for j in np.flatnonzero(done) if valid[j * shard_rows:(j + 1) * shard_rows].any()]


def shard_files(group, layer: str) -> dict[str, set[str]]:
    """The keys of each sharded array's files: one listing an array."""
    sub = group[layer]
    return {stat: set(_listing(group.store, f"{sub[stat].path}/c/")) for stat in SHARDED if stat in sub}


def missing_shards(group, layer: str, done, valid, files: dict | None = None) -> dict[int, str]:
    """Done shards with a valid row whose file of some array is missing (``files``: ``shard_files``'
    listing, made here where not given), and done shards whose ``images/`` chunk is lost
    (``lost_image_chunks``)."""
    sub, rows = group[layer], group.attrs["shard_rows"]
    files = files if files is not None else shard_files(group, layer)
    expected, found = _with_valid_row(done, valid, rows), lost_image_chunks(group, layer, done, files)
    for stat, keys in files.items():
        arr = sub[stat]
        for shard in expected:
            if _shard_key(arr, shard) not in keys:
                found.setdefault(shard, f"{layer}/{stat} shard {shard} ({_rows(group, shard)}) is missing its file")
    return dict(sorted(found.items()))


def lost_image_chunks(group, layer: str, done, files: dict) -> dict[int, str]:
    """Done shards whose ``images/valid`` chunk is lost: zarr would read every row as invalid,
    silently. zarr writes no chunk of fill values alone, so a shard has a ``valid`` chunk where a
    row is valid, and a file of means then (a valid row's values are finite). Without the ``valid``
    chunk, the means' file alone says nothing, since an invalid row keeps the finite values it has
    (an imported row with one NaN, a row invalid through another layer); the ``error`` chunk
    decides: a row whose reason there is "" was valid, and a lost ``error`` chunk beside a file of
    means is a loss too (an invalid row always has its reason). A lost ``error`` chunk alone costs
    only the reasons (its rows stay invalid, as they read), and imports before 2026-11-27 wrote
    none: not refused. ``files``: ``shard_files``' listing. Each array is opened once: an open is a
    metadata read, a request on an object store."""
    images, rows, found = group["images"], group.attrs["shard_rows"], {}
    valid_arr, error_arr = images["valid"], images["error"]
    mean = group[layer]["mean"] if "mean" in files else None
    listed = {name: set(_listing(group.store, f"{arr.path}/c/")) for name, arr in (("valid", valid_arr),
                                                                                  ("error", error_arr))}
    for shard in map(int, np.flatnonzero(done)):
        valid_lost = _shard_key(valid_arr, shard) not in listed["valid"]
        error_lost = _shard_key(error_arr, shard) not in listed["error"]
        if valid_lost and error_lost:
            if mean is not None and _shard_key(mean, shard) in files["mean"]:
                found[shard] = f"images/valid chunk {shard} ({_rows(group, shard)}) is missing its file"
        elif valid_lost:
            try:
                reasons = error_arr[shard * rows:(shard + 1) * rows]
            except DECODE_ERRORS as exc:
                found[shard] = f"images/error chunk {shard} ({_rows(group, shard)}) does not decode: {first_line(exc)}"
                continue
            if any(str(reason) == "" for reason in reasons):
                found[shard] = f"images/valid chunk {shard} ({_rows(group, shard)}) is missing its file"
    return found


def _index_fault(arr, key: str) -> str | None:
    """What is wrong with a shard file's index (size, crc32c, chunks past the end), or None."""
    import google_crc32c
    from zarr.abc.store import SuffixByteRequest
    from zarr.core.buffer import default_buffer_prototype

    if arr.shards is None:
        return None
    entries = int(np.prod([-(-s // c) for s, c in zip(arr.shards, arr.chunks)]))
    index_bytes = entries * 16 + 4
    size = _sync(arr.store.getsize(key))
    if size < index_bytes:
        return f"{size} bytes, shorter than its index"
    raw = _sync(arr.store.get(key, prototype=default_buffer_prototype(), byte_range=SuffixByteRequest(index_bytes)))
    raw = raw.to_bytes()
    if np.uint32(google_crc32c.value(raw[:-4])).tobytes() != raw[-4:]:
        return "its index fails its checksum (truncated or overwritten)"
    index = np.frombuffer(raw[:-4], dtype="<u8").reshape(-1, 2)
    index = index[index[:, 0] != MAX_UINT_64]
    if len(index) and int((index[:, 0] + index[:, 1]).max()) > size - index_bytes:
        return "its index names bytes past the end of the file (truncated)"
    return None


def done_markers(group, layer: str) -> tuple[np.ndarray, dict[int, str]]:
    """``layer``'s done markers, those that do not decode read as not done, and why (one chunk a
    marker: a damaged one says nothing of the others)."""
    arr = group[layer]["done"]
    try:
        return np.asarray(arr[:], dtype=bool), {}
    except DECODE_ERRORS:
        pass
    done, bad, step = np.zeros(arr.shape, dtype=bool), {}, arr.chunks[0]
    for lo in range(0, arr.shape[0], step):
        try:
            done[lo:lo + step] = arr[lo:lo + step]
        except DECODE_ERRORS as exc:
            bad.update({shard: f"{layer}/done chunk {lo // step} does not decode: {first_line(exc)}"
                        for shard in range(lo, min(arr.shape[0], lo + step))})
    return done, bad


def damaged_shards(group, layer: str, full: bool = False) -> dict[int, str]:
    """Shards of ``layer`` done whose data is missing or damaged, or whose done marker does not
    decode, with the reason: the listing check, each file's index (size and crc32c: a few KB
    read a shard), and, ``full``, every inner chunk decoded (with checksums, a store's whole size read)."""
    sub, rows, n = group[layer], group.attrs["shard_rows"], group.attrs["n_images"]
    done, bad_markers = done_markers(group, layer)
    valid = np.asarray(group["images/valid"][:], dtype=bool)
    files = shard_files(group, layer)  # listed once, for both checks
    found = {**missing_shards(group, layer, done, valid, files), **bad_markers}
    for stat, keys in files.items():
        arr = sub[stat]
        for shard in map(int, np.flatnonzero(done)):
            if shard in found or _shard_key(arr, shard) not in keys:
                continue
            fault = _index_fault(arr, _shard_key(arr, shard))
            if fault is None and full:
                try:
                    np.asarray(arr[shard * rows:min(n, (shard + 1) * rows)])
                except DECODE_ERRORS as exc:
                    fault = first_line(exc)
            if fault:
                found[shard] = f"{layer}/{stat} shard {shard} ({_rows(group, shard)}): {fault}"
    return dict(sorted(found.items()))
