"""Whole files lost from a store that zarr would read as fill values: image arrays' chunks and a
layer's arrays (no torch).

zarr reads a missing chunk as the array's fill value and a missing array as no array at all, so a
deleted file gave queries empty paths, class 0's name, or a layer that "has no spatial max". Each is
found here from listings (and, only where a fill value could be real data, a little more). Offers:

    IMAGE_DATA                      the image arrays written once, at creation, from the image list
    lost_image_data(group) -> [(array, chunk, reason)]   chunks of ``IMAGE_DATA`` lost
    image_damage(group) -> str | None   the one sentence a reader refuses them with
    image_fix(group, verify=False) -> str   what a user does about either
    unmade_images(group, where) -> StoreError   image arrays missing: a store being made, or damage
    altered_image_data(group) -> str | None   paths, sizes, times or labels whose bytes decode but changed
                                    (no checksum guards them): ``--verify``'s, reading them whole
    every_chunk(group) -> [(array, chunk, reason)]   every chunk of ``IMAGE_DATA``, for a whole rewrite
    rewrite_image_data(group, arrays, found)   the writer's repair: the lost chunks written again
    expected_arrays(layer_attrs) -> tuple   the arrays a whole layer has
    missing_arrays(layer, attrs, present) -> str | None   a whole layer's arrays that are gone
"""

from __future__ import annotations

import numpy as np

from .damage import _listing, _shard_key, span
from .store import LAYER_KEYS, STATS, dataset_fingerprint

IMAGE_DATA = ("path", "label", "size", "mtime_ns")


def _missing_chunks(arr, n: int, keys: set) -> list[int]:
    step = arr.chunks[0]
    return [c for c in range(-(-n // step)) if _shard_key(arr, c) not in keys]


def _labels_could_be_fill(group, images, lo: int, hi: int, fill) -> bool:
    """Whether rows lo..hi may all really hold ``fill`` (a store made before ``store.LABEL_FILL``): a flat
    folder's labels are all -1; an image folder's are its paths' class folders, read here; an
    import's labels are its own, and cannot be told (a documented limitation)."""
    layout = (group.attrs.get("dataset") or {}).get("layout")
    if fill < -1:
        return False
    if layout == "flat":
        return fill == -1
    if layout != "imagefolder":
        return True
    classes = list(images.attrs.get("classes", []))
    if not 0 <= fill < len(classes):
        return False
    paths = [str(p) for p in images["path"][lo:hi]]
    # a path read as "" is a lost path chunk: its labels are written again with it, not vouched for
    return all(p and p.split("/", 1)[0] == classes[fill] for p in paths)


def _fingerprint_holds(group, images) -> bool:
    """Whether the stored paths, sizes and times hash to the recorded fingerprint (reads all three;
    a store without one, which no command makes, cannot be told damaged)."""
    recorded = group.attrs.get("dataset_fingerprint")
    return recorded is None or dataset_fingerprint(images["path"][:], images["size"][:], images["mtime_ns"][:]) == recorded


def lost_image_data(group, arrays: dict | None = None) -> list[tuple[str, int, str]]:
    """(array, chunk, reason) for each lost chunk of ``IMAGE_DATA`` (``arrays``: those arrays, where
    the caller has them open), from one listing of ``images/``. A path is
    never "" (the fill value), so every chunk of paths exists; labels since ``LABEL_FILL`` likewise.
    A missing chunk of sizes or times (or of an older store's labels) may be real zeros: sizes and
    times are then checked against the dataset fingerprint (read whole, only then), labels against
    the paths' class folders. An imported store's sizes and times are all 0: no chunk to lose."""
    images, n = group["images"], group.attrs["n_images"]
    layout = (group.attrs.get("dataset") or {}).get("layout")
    arrays = arrays or {name: images[name] for name in IMAGE_DATA}
    keys = set(_listing(group.store, "images/"))
    found, unsure = [], []
    for name in IMAGE_DATA:
        arr = arrays[name]
        step = arr.chunks[0]
        for chunk in _missing_chunks(arr, n, keys):
            lo, hi = chunk * step, min(n, (chunk + 1) * step)
            lost = (name, chunk, f"images/{name} chunk {chunk} ({span(lo, hi)}) is missing its file")
            if name == "path":
                found.append(lost)
            elif name == "label":
                fill = int(arr.metadata.fill_value)
                if not _labels_could_be_fill(group, images, lo, hi, fill):
                    found.append(lost)
            elif layout != "imported":
                unsure.append(lost)
    # Lost paths leave the fingerprint nothing to vouch with: the unsure chunks go with them, written
    # again from the folder in the same rerun (one rerun repaired the paths alone, the rest a second).
    if unsure and (any(name == "path" for name, _, _ in found) or not _fingerprint_holds(group, images)):
        found.extend(unsure)
    return found


def unmade_images(group, where: str):
    """The error for image arrays missing: a store still being made (a StoreError), or, where a
    layer exists (layers are made after every image array), a damaged one whose ``zarr.json`` (or
    folder) was lost: it was called a store still being created."""
    from .errors import DamagedStoreError, StoreError
    from .metadata import children
    from .store import IMAGE_ARRAYS

    nodes, _ = children(group)
    if not any(name != "images" for name in nodes):
        return StoreError(f"{where} is still being created (or its creation was interrupted: "
                          "rerun the command that makes it)")
    below = children(group, "images")[0] if "images" in nodes else {}
    what = "images" if "images" not in nodes else ", ".join(f"images/{n}" for n in IMAGE_ARRAYS if n not in below)
    fix = ("import its layers again with --overwrite" if (group.attrs.get("dataset") or {}).get("layout") == "imported"
           else "rerun `exemplars activations` with the same settings (it computes the layers again)")
    return DamagedStoreError(f"store {where} is damaged: its {what}/zarr.json is missing (or its folder); "
                             f"{fix}, or restore the store from a copy")


def image_fix(group, verify: bool = False) -> str:
    """What a user does about damaged paths, labels, sizes or times (``verify``: found only by reading them)."""
    if (group.attrs.get("dataset") or {}).get("layout") == "imported":
        return ("import the store's layers again (`exemplars import ... --overwrite` remakes it) "
                "or restore the store from a copy")
    return (f"rerun `exemplars activations` with the same settings{' and --verify' if verify else ''} to write "
            f"{'them' if verify else 'it'} again from the image folder, or restore the store from a copy")


def image_damage(group, where: str, arrays: dict | None = None) -> str | None:
    """The sentence a reader refuses lost image chunks with, or None."""
    found = lost_image_data(group, arrays)
    if not found:
        return None
    more = f" (and {len(found) - 1} more chunk{'s' * (len(found) > 2)})" if len(found) > 1 else ""
    return f"store {where} is damaged: {found[0][2]}{more}; {image_fix(group)}"


def altered_image_data(group) -> str | None:
    """Why the paths, sizes and times (or labels) read whole are not those the store was made with,
    or None. They have no checksum, so a flipped byte that still decodes is read as another path or
    class: the paths, sizes and times must hash to the recorded fingerprint, and an image folder's
    labels name each path's class folder (a flat folder's are -1)."""
    images = group["images"]
    if not _fingerprint_holds(group, images):
        return "images/path, size or mtime_ns no longer hash to the store's dataset fingerprint"
    layout = (group.attrs.get("dataset") or {}).get("layout")
    if layout not in ("imagefolder", "flat"):
        return None  # an import's labels are its own
    labels, paths = np.asarray(images["label"][:]), [str(p) for p in images["path"][:]]
    classes = {name: index for index, name in enumerate(images.attrs.get("classes", []))}
    expected = np.array([classes.get(p.split("/", 1)[0], -3) if layout == "imagefolder" and "/" in p else -1
                         for p in paths], dtype=np.int64)
    wrong = np.flatnonzero(labels != expected)
    if wrong.size:
        row = int(wrong[0])
        return (f"images/label of row {row} is {int(labels[row])}, where its class folder makes it {int(expected[row])}"
                + (f" ({wrong.size - 1} more rows)" if wrong.size > 1 else ""))
    return None


def every_chunk(group) -> list[tuple[str, int, str]]:
    """(array, chunk, "") for every chunk of ``IMAGE_DATA``: what ``rewrite_image_data`` writes whole."""
    images, n = group["images"], group.attrs["n_images"]
    return [(name, chunk, "") for name in IMAGE_DATA for chunk in range(-(-n // images[name].chunks[0]))]


def rewrite_image_data(group, arrays: dict, found) -> None:
    """Write each lost chunk again from ``arrays`` (``opening.image_arrays``' of this run, whose
    fingerprint matched the store's: the same files in the same order)."""
    images, n = group["images"], group.attrs["n_images"]
    for name, chunk, _ in found:
        arr = images[name]
        lo, hi = chunk * arr.chunks[0], min(n, (chunk + 1) * arr.chunks[0])
        values = np.asarray(arrays[name][lo:hi], dtype=str if name == "path" else arr.dtype)
        arr[lo:hi] = values


def expected_arrays(attrs) -> tuple[str, ...]:
    """The arrays a whole layer has: its ``stats`` attribute's (since 2026-11-28), else phase one's
    three, or an import's ``mean`` (whether an older import was given a ``max`` is not recorded)."""
    stats = attrs.get("stats")
    if stats is None:
        stats = ("mean",) if attrs.get("model") == "imported" else STATS
    return (*stats, "done")


def missing_arrays(layer: str, attrs, present) -> str | None:
    """Why a layer whose attributes were written (they come last, after every array) lacks an
    array it was made with, or None; a layer still being made is not damaged. ``present``: the
    names of its nodes (``metadata.children``'; a folder without its zarr.json is
    ``damage.stray_folders``', found before)."""
    if not all(key in attrs for key in LAYER_KEYS):
        return None
    lost = [f"{layer}/{name}" for name in expected_arrays(attrs) if name not in present]
    if not lost:
        return None
    return f"its {', '.join(lost)} array{'s' * (len(lost) > 1)} {'is' if len(lost) == 1 else 'are'} missing"
