"""Spatial activation maps for a few shown images: the model reruns on those alone.

Offers:
    weights_spec(store) -> (spec, seed)  what ``load_model`` needs for the store's weights, or
                                         WeightsError (before torch is imported)
    model_for(store) -> model      the store's own weights (pretrained, file or seeded random)
    channel_maps(layer, rows, channel) -> (k, H, W) float32

Imports torch (lazily, through ``pipeline.model``), as feature visualisation does; the
other phase-two paths never do.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import WeightsError

_MODELS: dict = {}


def weights_spec(store) -> tuple[str, int]:
    """The ``load_model`` arguments that give the store's weights again; torch-free, so a store
    whose weights cannot be had is refused before torch's seconds of import."""
    weights = store.weights
    kind = weights.get("kind")
    if kind == "pretrained":
        spec, seed = "pretrained", 0
    elif kind == "random":
        spec, seed = "random", int(weights.get("seed", 0))
    elif kind == "file" and weights.get("path"):
        spec, seed = weights["path"], 0
    else:
        raise WeightsError(f"heatmaps and feature visualisations rerun the model, and this store's weights "
                           f"({kind or 'unrecorded'}) cannot be loaded again; none can be made from this store")
    return spec, seed


def model_for(store):
    """Load (once per process) the weights the store was made with."""
    from .model import load_model

    key = spec, seed = weights_spec(store)
    if key not in _MODELS:
        model, info = load_model(spec, seed)
        if store.weights.get("kind") == "file" and info["sha256"] != store.weights.get("sha256"):
            raise WeightsError(f"weights file {spec} changed since the store was made (sha256 differs)")
        _MODELS[key] = model
    return _MODELS[key]


def channel_maps(layer, rows, channel: int) -> np.ndarray:
    weights_spec(layer.store)  # refused before torch's import
    import torch

    from .display import changed
    from .images import ImageDataset, to_model_input
    from .model import cut

    store = layer.store
    rows = [int(r) for r in rows]
    if not rows:
        return np.zeros((0, *layer.spatial_shape), dtype=np.float32)
    data = ImageDataset(store.root, store.paths(rows))
    items = [data[i] for i in range(len(rows))]
    batch = torch.stack([item[1] for item in items])
    net = cut(model_for(store), [layer.name])
    with torch.inference_mode():
        maps = net(to_model_input(batch))[layer.name][:, channel]
    # (k, H, W) whatever the layer: the logits come out of their matmul as (k,), a 1x1 map each
    maps = maps.float().numpy().reshape(len(rows), *layer.spatial_shape)
    for i, (item, path, recorded) in enumerate(zip(items, data.paths, store.recorded(rows))):
        # the file is gone or broken now, or replaced since phase one (its map would be another
        # image's, and could set the channel's colour scale): no map to show
        if not item[2] or changed(os.path.join(store.root, path), recorded):
            maps[i] = np.nan
    return maps
