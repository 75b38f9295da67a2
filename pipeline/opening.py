"""The store as phase one opens it: made, resumed, or found finished (no torch).

Offers:
    image_arrays(images) -> dict     what the store keeps of each image (``store.create_store``'s input)
    root_meta(images, weights_info, precision, decoder) -> dict   the root attributes a run would write
    pending_shards(group, layers) -> list[int]   the shards some asked-for layer has not finished
    open_for_writing(store_path, meta, images, ...) -> zarr.Group   made or reopened, with its layers (the writer);
        damaged layers remade, damaged shards unmarked (``repair``), lost chunks of paths, labels, sizes
        and times written again from the image list (``lost``)
    repair(group, layer, verify) -> bool        the writer's: a damaged layer removed (remade by ``add_layer``),
        or its damaged done shards unmarked, so that the run recomputes them; said in one line
    finished_already(store_path, meta, images, ...) -> zarr.Group | None   finished for this run, and whole
        (``pipeline.damage``'s cheap checks): nothing to do
"""

from __future__ import annotations

import numpy as np
import zarr

from . import damage, lost, metadata, places
from . import images as imgs
from . import store as st
from .errors import DamagedStoreError, PipelineError
from .geometry import as_dict, receptive_field
from .model import MODEL_NAME, inception_branches
from .progress import say


def image_arrays(images) -> dict:
    """What the store keeps of each image, as ``store.create_store`` takes it."""
    return {"path": images.paths, "label": images.labels, "classes": images.classes,
            "size": images.sizes, "mtime_ns": images.mtimes}


def root_meta(images, weights_info, precision="fp32", decoder="pil") -> dict:
    return {
        "dataset": {"root": images.root, "layout": images.layout, "n_images": len(images)},
        "dataset_fingerprint": imgs.fingerprint(images),
        "preprocessing": dict(imgs.PREPROCESSING, decoder=decoder),
        "model": {"name": MODEL_NAME, "weights": weights_info, "precision": precision},
    }


def pending_shards(group, layers) -> list[int]:
    done = np.ones(st.n_shards(group.attrs["n_images"], group.attrs["shard_rows"]), dtype=bool)
    for layer in layers:
        done &= st.done_shards(group, layer)
    return [int(s) for s in np.flatnonzero(~done)]


def repair(group, layer: str, verify: bool = False) -> None:
    """Make a damaged layer recomputable: a lost ``zarr.json`` (the layer's or an array's) removes the
    layer, which ``add_layer`` then makes afresh; damaged done shards (``verify``: every chunk decoded)
    lose their done markers. Each said in one line; the run recomputes what it removed."""
    where = st.store_name(group)
    fault = damage.layer_fault(group, layer)  # None where there is no such layer yet
    if fault:
        say(f"layer {layer} of {where} is damaged ({fault}): removing it and computing it again")
        damage.remove_layer(group, layer)
        return
    if layer not in group or not st.layer_whole(group[layer]):
        return
    found = damage.damaged_shards(group, layer, full=verify)
    if found:
        say(f"{where}: {len(found)} done shard{'s' * (len(found) > 1)} of {layer} damaged "
            f"({'; '.join(found.values())}): computing {'them' if len(found) > 1 else 'it'} again")
        for shard in found:
            group[layer]["done"][shard] = False  # first: a run killed after it recomputes the shard
            damage.remove_shard(group, layer, shard)
        st.refresh_completeness(group, layer)


def _repair_image_data(group, images, verify: bool = False) -> None:
    """Write lost chunks of paths, labels, sizes and times again from this run's image list (``verify``:
    all of them, where their bytes changed): its fingerprint matched the store's (``create_store``), so
    they are the same files in the same order, labelled alike where the class names agree (a class
    folder added empty since would shift them)."""
    if not st.images_whole(group):
        return
    found = lost.lost_image_data(group)
    altered = lost.altered_image_data(group) if verify and not found else None
    if altered:
        found = [(name, chunk, altered) for name, chunk, _ in lost.every_chunk(group)]
    if not found:
        return
    where = st.store_name(group)
    if any(name == "label" for name, _, _ in found) and list(group["images"].attrs.get("classes", [])) != list(images.classes):
        raise DamagedStoreError(f"store {where} is damaged: {next(w for n, _, w in found if n == 'label')}, and the image "
                                "folder's classes are no longer the store's to label it again: restore the store from a copy")
    said = altered or "; ".join(why for _, _, why in found)
    say(f"{where}: {said}: writing {'them' if altered or len(found) > 1 else 'it'} again from the image folder")
    lost.rewrite_image_data(group, image_arrays(images), found)


def _image_chunks_repairable(group, layers) -> None:
    """Refuse a run that would recompute a shard whose ``images/valid`` chunk is lost while a layer
    it does not name keeps that shard done: the shard's validity is AND-ed with that layer's, which
    reads as lost (every row invalid), so the repair would write it wrong. An imported layer done
    there cannot be recomputed by this command at all."""
    if not st.images_whole(group):
        return
    top = metadata.children(group)  # a layer whose zarr.json does not parse: ``repair``'s, or passed over
    for name in (n for n, sub in top[0].items() if n != "images" and isinstance(sub, zarr.Group)
                 and not damage.layer_fault(group, n, top) and st.layer_whole(sub)):
        done, _ = damage.done_markers(group, name)
        for shard, why in damage.lost_image_chunks(group, name, done, damage.shard_files(group, name)).items():
            others = st.finished_elsewhere(group, layers, shard)
            imported = sorted(n for n in set(others) | {name} if group[n].attrs.get("model") == "imported")
            where = f"store {st.store_name(group)} is damaged: {why}"
            if imported:
                raise DamagedStoreError(f"{where}; layer {', '.join(imported)}, done there, was imported and cannot "
                                        "be recomputed: restore the store from a copy, or make it again")
            if others:
                flags = " ".join(f"--layer {n}" for n in sorted(set(others) | set(layers)))
                raise DamagedStoreError(f"{where}; rerun with every layer done there ({flags}) to recompute it, "
                                        "or restore the store from a copy")


def open_for_writing(store_path, meta, images, layers, shapes, model, traced, shard_rows, overwrite, verify=False):
    """Create or reopen the store and its layers (the leader rank alone does this); ``meta`` is
    ``root_meta``'s, made once a run (its fingerprint hashes every path: 0.7 s at 1.28M files)."""
    weights_info = meta["model"]["weights"]
    if shard_rows is None and not overwrite and places.is_store(store_path):
        shard_rows = st.open_group(store_path).attrs.get("shard_rows")
    shard_rows = int(shard_rows or st.DEFAULT_SHARD_ROWS)
    group = st.create_store(store_path, meta, image_arrays(images), shard_rows, overwrite)
    if group.attrs["dataset"].get("root") != images.root:
        # The same files (the fingerprint says so) found elsewhere: pictures read them from here now.
        group = group.update_attributes({"dataset": dict(group.attrs["dataset"], root=images.root)})
    _repair_image_data(group, images, verify)
    _image_chunks_repairable(group, layers)
    for layer in layers:
        repair(group, layer, verify)
        layer_meta = {"model": MODEL_NAME, "weights": weights_info, "input_size": imgs.PREPROCESSING["center_crop"],
                      "branches": inception_branches(model, layer),
                      "receptive_field": as_dict(receptive_field(traced, layer))}
        st.add_layer(group, layer, shapes[layer][0], shapes[layer][1:], layer_meta)
    return group


def finished_already(store_path, meta, images, layers, shard_rows):
    """The store, opened to read, where it holds every asked-for layer finished for these images and
    settings; None where there is work left (the locked path resumes it).

    Checked before the writer's lock, so that a store one may only read (a colleague's, a read-only
    mount) answers a rerun with "nothing to do" rather than a refusal to write. Other settings or
    files are refused here as the locked path would (``StoreMismatchError``), not as a store that
    cannot be written.
    """
    if not places.is_store(store_path):
        return None
    try:
        group = st.open_group(store_path, mode="r")
    except PipelineError:  # half made, say: the locked path completes it
        return None
    st.check_compatible(group, dict(meta, shard_rows=int(shard_rows or group.attrs["shard_rows"])),
                        image_arrays(images))
    top = metadata.children(group)
    finished = (group.attrs["dataset"].get("root") == images.root and st.images_whole(group)
                and not lost.lost_image_data(group)  # chunks of paths or labels lost: written again there
                # A layer's metadata damaged (lost, not zarr's, at odds with the store): the locked path remakes it.
                and not any(damage.layer_fault(group, layer, top) for layer in layers)
                and all(layer in group and st.layer_whole(group[layer]) and group[layer].attrs["complete"] is True
                        and damage.done_markers(group, layer)[0].all() for layer in layers)
                # Files lost or cut short since: the locked path unmarks those shards and recomputes them.
                and not any(damage.damaged_shards(group, layer) for layer in layers))
    return group if finished else None
