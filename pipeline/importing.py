"""A store from an (N, C) matrix computed elsewhere (another network, a probe), so every
phase-two query, statistic and picture works on it.

Offers:
    import_matrix(path, matrix, layer, paths, labels=None, classes=(), root=None, ...)
        make the store, or add a layer to one made from the same paths
    read_lines(path), read_array(path, mmap)   the command's input files, refused in one sentence
    invalid_rows(group) -> int
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

import numpy as np

from .errors import DamagedStoreError, InputError, StoreMismatchError
from .lost import image_damage
from .metadata import node_fault
from .parsing import load_npy
from .places import is_store, location
from .store import (DEFAULT_SHARD_ROWS, add_layer, create_store, dataset_fingerprint, finished_elsewhere, images_whole,
                    merged_validity, n_shards, open_group, refresh_completeness, shard_bounds)
from .writers import writer_lock


def read_lines(path) -> list[str]:
    """A text file's lines: paths or class names, in UTF-8 (a byte-order mark is no path)."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
        while lines and not lines[-1].strip():  # an editor's blank last line is no image
            lines.pop()
        return lines
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte {exc.start}); "
                         "give one path or class name per line, encoded in UTF-8") from None


def read_array(path, mmap: bool = False) -> np.ndarray:
    """A .npy file (memory-mapped when asked: a matrix is read one shard at a time)."""
    return load_npy(path, "array file", InputError, mmap)


def invalid_rows(group) -> int:
    return int((~np.asarray(group["images"]["valid"][:], dtype=bool)).sum())


def _numbers(name: str, array, ndim: int):
    """Refuse, before anything is written, an array that is not real numbers of the right rank."""
    if not isinstance(array, np.ndarray) or array.ndim != ndim:
        shape = getattr(array, "shape", None)
        raise InputError(f"the {name} must be a {ndim}-dimensional array, not shape {shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InputError(f"the {name} must hold real numbers, not {array.dtype}")


def _import_labels(labels, n: int) -> np.ndarray:
    if labels is None:
        return np.full(n, -1, dtype=np.int32)
    labels = np.asarray(labels)
    _numbers("labels", labels, 1)
    if labels.shape != (n,):
        raise InputError(f"the labels have shape {labels.shape}, expected ({n},)")
    if labels.size and (not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))
                        or labels.min() < -1 or labels.max() >= 2**31):
        raise InputError("the labels must be whole numbers from -1 (no label) up to 2**31 - 1")
    return labels.astype(np.int32)


NON_FINITE = "non-finite values in an imported matrix"
TOO_LARGE = "a value past float32's range (3.4e38) in an imported matrix"


def _finite_in_other_layers(group, layer: str, shard: int, start: int, stop: int):
    """Rows finite in every other layer finished for this shard (None when there is none): an
    imported row is invalid exactly when one of its stored values is not finite."""
    valid = None
    for name in finished_elsewhere(group, [layer], shard):
        for stat in ("mean", "max"):
            if stat in group[name]:
                finite = np.isfinite(np.asarray(group[name][stat][start:stop])).all(axis=1)
                valid = finite if valid is None else valid & finite
    return valid


def _relative_paths(paths, root):
    """Paths normalised ("./cat/x.jpg" as "cat/x.jpg") and relative to the root; absolute ones
    are made relative to ``root`` or, without one, to their common folder, which becomes it."""
    blank = next((row for row, p in enumerate(paths) if not str(p).strip()), None)
    if blank is not None:  # normpath makes it ".", which the user never wrote
        raise InputError(f"path {blank} (line {blank + 1} of a paths file) is blank; give one image path a line")
    paths = [posixpath.normpath(str(p).strip().replace(os.sep, "/")) for p in paths]
    root = None if root is None else os.path.abspath(root).replace(os.sep, "/")  # one spelling: "/d/" is "/d"
    absolute = [p.startswith("/") for p in paths]
    if any(absolute) and not all(absolute):
        raise InputError("the paths mix absolute and relative ones; give all relative to --root")
    if paths and all(absolute):
        base = root if root is not None else posixpath.commonpath([posixpath.dirname(p) for p in paths])
        outside = next((p for p in paths if posixpath.commonpath([base, p]) != base), None)
        if outside is not None:
            raise InputError(f"path {outside} is not under the root {root}")
        paths, root = [posixpath.relpath(p, base) for p in paths], base
    for p in paths:
        if p in ("", ".") or p == ".." or p.startswith("../"):
            raise InputError(f"path {p!r} does not name a file under the dataset root")
    seen = {}
    for row, p in enumerate(paths):
        if seen.setdefault(p, row) != row:
            raise InputError(f"path {p} is given twice (rows {seen[p]} and {row}); a path names one image")
    return paths, root


def import_matrix(path, matrix, layer: str, paths, labels=None, classes=(), root=None,
                  shard_rows: int | None = None, overwrite: bool = False, progress=None,
                  max_matrix=None):
    """Make a store from an (N, C) matrix of spatial means computed elsewhere, or add a layer to one.

    ``matrix`` (and ``max_matrix``, the spatial max, if given) may be memory
    maps: they are read and written one shard at a time. A row with a non-finite
    mean or max is marked invalid (in every layer: validity is the image's). The
    layer has ``mean`` (and ``max``), never ``argmax``. Further layers need the same
    paths (and labels, if given); paths are stored normalised ("./cat/x.jpg" as
    "cat/x.jpg"). ``shard_rows`` defaults to the store's, or 65536 for a new one. A layer
    whose import was cut short is imported again; a finished one is refused.
    """
    path = location(path)
    matrix = matrix if isinstance(matrix, np.ndarray) else np.asarray(matrix)
    max_matrix = max_matrix if max_matrix is None or isinstance(max_matrix, np.ndarray) else np.asarray(max_matrix)
    _check_matrices(matrix, max_matrix, len(paths))
    paths, root = _relative_paths(paths, root)
    if classes and labels is None and (overwrite or not is_store(path)):  # a store's own labels index them
        raise InputError("class names need labels (--labels) that index them")
    given_labels, labels = labels is not None, _import_labels(labels, matrix.shape[0])
    if len(classes) and labels.size and labels.max() >= len(classes):
        raise InputError(f"label {int(labels.max())} has no class name: {len(classes)} were given")
    # A layer is a folder of the store: '..', 'zarr.json' or 'a\\b' would not be one it can find again.
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", layer or "") or layer in ("images", "zarr.json"):
        raise InputError(f"{layer!r} cannot name a layer: use letters, digits, '_', '.' and '-', not first '.' "
                         "or '-', and not 'images'")
    with writer_lock(path):
        if shard_rows is None:
            shard_rows = open_group(path).attrs["shard_rows"] if is_store(path) and not overwrite else DEFAULT_SHARD_ROWS
        zeros = np.zeros(len(paths), dtype=np.int64)  # no files to stat: the paths alone identify the dataset
        meta = {"dataset": {"root": root, "layout": "imported", "n_images": len(paths)},
                "dataset_fingerprint": dataset_fingerprint(paths, zeros, zeros), "preprocessing": None,
                "model": {"name": "imported", "weights": {"kind": "imported"}}}
        group = None if overwrite else _phase_one_store(path)  # its fingerprint has the files' sizes and times
        if group is not None:
            _check_same_images(group, path, paths, shard_rows)
        else:
            group = create_store(path, meta, {"path": paths, "label": labels, "classes": list(classes),
                                              "size": zeros, "mtime_ns": zeros}, shard_rows, overwrite)
            _refuse_lost_images(group, path)
        group = _agree_with_store(group, path, labels if given_labels else None, classes, root, layer)
        redo = layer in group
        if redo:  # an import cut short: made again from the start
            del group[layer]
        sub = add_layer(group, layer, matrix.shape[1], (1, 1), {"model": "imported", "weights": meta["model"]["weights"]},
                        stats=("mean",) if max_matrix is None else ("mean", "max"))
        shards = range(n_shards(len(paths), shard_rows))
        for shard in progress(shards) if progress else shards:
            _write_shard(group, sub, layer, shard, shard_bounds(shard, shard_rows, len(paths)), matrix, max_matrix, redo)
        refresh_completeness(group, layer)
    return group


def _phase_one_store(path):
    """The store at ``path``, opened for writing, if ``exemplars activations`` made it (else None)."""
    if not is_store(path):
        return None
    group = open_group(path, mode="r+")
    made_here = images_whole(group) and (group.attrs.get("dataset") or {}).get("layout") != "imported"
    return group if made_here else None


def _refuse_lost_images(group, path) -> None:
    """A lost chunk of paths or labels reads as "" or 0: said as damage, not as other images or labels."""
    damaged = image_damage(group, path)
    if damaged:
        raise DamagedStoreError(damaged)


def _check_same_images(group, path, paths: list[str], shard_rows: int) -> None:
    """Refuse an import into a phase-one store unless its paths are the store's, in its order."""
    _refuse_lost_images(group, path)
    stored = [str(p) for p in group["images"]["path"][:]]
    if stored != list(paths):
        where = next((i for i, (a, b) in enumerate(zip(stored, paths)) if a != b), min(len(stored), len(paths)))
        raise StoreMismatchError(
            f"store {path} holds other images ({len(stored)} paths; row {where} is "
            f"{stored[where] if where < len(stored) else 'past its end'!r} there, "
            f"{paths[where] if where < len(paths) else 'past the end'!r} here): import its paths, in its order "
            "(`exemplars info` names its root), or choose another --store")
    if shard_rows != group.attrs["shard_rows"]:
        raise StoreMismatchError(f"store {path} has shards of {group.attrs['shard_rows']} rows, not {shard_rows}")


def _check_matrices(matrix, max_matrix, n_paths: int) -> None:
    _numbers("matrix", matrix, 2)
    if matrix.shape[1] < 1:
        raise InputError("the matrix has no channels (shape (N, 0))")
    if max_matrix is not None:
        _numbers("max matrix", max_matrix, 2)
        if max_matrix.shape != matrix.shape:
            raise InputError(f"the max matrix has shape {max_matrix.shape}, the mean {matrix.shape}")
    if n_paths != matrix.shape[0]:
        raise InputError(f"the matrix has {matrix.shape[0]} rows but {n_paths} paths were given")


def _agree_with_store(group, path, labels, classes, root, layer: str):
    """Refuse an import that disagrees with the store it adds to; record a root it lacked."""
    fault = node_fault(group, layer)
    if fault:  # ``layer in group`` would fail on it with zarr's JSONDecodeError
        raise DamagedStoreError(f"store {path} is damaged: {fault}; import under another --layer, or pass "
                                "--overwrite to rebuild the store")
    if labels is not None and not np.array_equal(group["images"]["label"][:], labels):
        raise StoreMismatchError(f"store {path} has other labels for these images; import without --labels "
                                 "or pass --overwrite to rebuild the store")
    stored_root = group.attrs.get("dataset", {}).get("root")
    if root is not None and stored_root is not None and stored_root != root:
        raise StoreMismatchError(f"store {path} records the dataset root {stored_root}, this import {root}; "
                                 "give paths relative to it, or pass --overwrite to rebuild the store")
    if classes and list(group["images"].attrs.get("classes", [])) != list(classes):
        raise StoreMismatchError(f"store {path} has other class names; import without --classes "
                                 "or pass --overwrite to rebuild the store")
    if layer in group and group[layer].attrs.get("model", "imported") != "imported":
        raise StoreMismatchError(f"store {path} has layer {layer} from `exemplars activations`; "
                                 "import under another --layer")
    if layer in group and group[layer].attrs.get("complete"):  # rewriting it would mix two imports' rows
        raise StoreMismatchError(f"store {path} already has layer {layer}; import under another --layer "
                                 "or pass --overwrite to rebuild the store")
    if root is not None and stored_root is None:  # the same paths, now with the folder they are in
        group = group.update_attributes({"dataset": dict(group.attrs["dataset"], root=root)})
    return group


def _as_float32(rows) -> tuple[np.ndarray, np.ndarray]:
    """(rows as float32, whether each row was finite as given): a finite float64 past float32's
    range becomes inf, and its row invalid, with its own reason."""
    rows = np.asarray(rows)
    with np.errstate(over="ignore"):
        return rows.astype(np.float32), np.isfinite(rows).all(axis=1)


def _write_shard(group, sub, layer: str, shard: int, bounds, matrix, max_matrix, redo: bool) -> None:
    """One shard of the import: its rows, their validity (the image's, over every layer), its marker."""
    start, stop = bounds
    block, finite = _as_float32(matrix[start:stop])
    valid = np.isfinite(block).all(axis=1)
    if max_matrix is not None:
        peaks, finite_max = _as_float32(max_matrix[start:stop])
        valid &= np.isfinite(peaks).all(axis=1)
        finite &= finite_max
        sub["max"][start:stop] = peaks
    errors = ["" if ok else TOO_LARGE if fin else NON_FINITE for ok, fin in zip(valid, finite)]
    if redo:  # the images' validity holds what the attempt cut short wrote: read it anew
        others = _finite_in_other_layers(group, layer, shard, start, stop)
        if others is not None:  # a row invalid through another layer keeps that layer's reason
            said = group["images"]["error"][start:stop]
            errors = [str(said[i]) if ok and not other else e
                      for i, (ok, other, e) in enumerate(zip(valid, others, errors))]
            valid = valid & others
    if not redo:
        valid, errors = merged_validity(group, [layer], shard, valid, errors)
    group["images"]["valid"][start:stop] = valid
    group["images"]["error"][start:stop] = np.asarray(errors, dtype=str)
    sub["mean"][start:stop] = block
    sub["done"][shard] = True
