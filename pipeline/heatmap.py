"""Spatial activation maps for a few shown images: the model reruns on those alone.

Offers:
    model_for(store) -> model      the store's own weights (pretrained, file or seeded random)
    channel_maps(layer, rows, channel) -> (k, H, W) float32

Imports torch (lazily, through ``pipeline.model``); nothing else in phase two does.
"""

from __future__ import annotations

import numpy as np

from .errors import QueryError

_MODELS: dict = {}


def model_for(store):
    """Load (once per process) the weights the store was made with."""
    from .model import load_model

    weights = store.weights
    kind = weights.get("kind")
    if kind == "pretrained":
        spec, seed = "pretrained", 0
    elif kind == "random":
        spec, seed = "random", int(weights.get("seed", 0))
    elif kind == "file" and weights.get("path"):
        spec, seed = weights["path"], 0
    else:
        raise QueryError(f"heatmaps and feature visualisations rerun the model, and this store's weights "
                         f"({kind or 'unrecorded'}) cannot be loaded again; none can be made from this store")
    key = (spec, seed)
    if key not in _MODELS:
        model, info = load_model(spec, seed)
        if kind == "file" and info["sha256"] != weights.get("sha256"):
            raise QueryError(f"weights file {spec} changed since the store was made (sha256 differs)")
        _MODELS[key] = model
    return _MODELS[key]


def channel_maps(layer, rows, channel: int) -> np.ndarray:
    import torch

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
    maps = maps.float().numpy()
    for i, item in enumerate(items):
        if not item[2]:
            maps[i] = np.nan  # the file is gone or broken now: no map to show
    return maps
