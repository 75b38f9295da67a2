"""What an opened store holds: its images (paths, labels, classes, validity) and layers.

Offers:
    Store(path, cache_paths=True, root=None)   open read-only; ``store[layer]`` -> ``query.Layer``
    Store.paths(rows), .recorded(rows), .labels(rows), .row_of(image), .check_rows(rows), .info(), .layers, .classes,
    .image_damage (lost chunks of paths, labels, sizes or times: refused by every read of them),
    .root, .weights; ``layer in store``, ``for name in store``, ``len(store)``, keys/values/items/get

Read-only and torch-free, like every query.
"""

from __future__ import annotations

import os
import re
from functools import cached_property

import numpy as np
import zarr

from .classes import human_names
from . import damage, lost
from .checked import Checked
from .metadata import children
from .errors import DamagedStoreError, InputError, QueryError, StoreError, unknown_layer
from .places import forget_listings, location
from .settings import stored_setting
from .store import images_whole, open_group


class Store:
    """A read-only store; ``store["mixed4a"]`` gives a Layer."""

    def __init__(self, path, cache_paths: bool = True, root=None):
        self.path = location(path)
        if root is not None and not isinstance(root, (str, os.PathLike)):  # os.fspath's TypeError otherwise
            raise InputError(f"root must be the images' folder, a str or a path, not {type(root).__name__} {root!r}")
        self._root = None if root is None else os.path.abspath(os.path.expanduser(os.fspath(root)))
        # A session (notebook) reads every path once and then looks them up in
        # memory; a one-shot command decodes only the chunks its rows touch.
        self.cache_paths = cache_paths
        self.group = open_group(self.path, mode="r")
        if not images_whole(self.group):
            raise lost.unmade_images(self.group, self.path)
        self.attrs = dict(self.group.attrs)
        self.n = int(self.attrs["n_images"])
        self.shard_rows = int(self.attrs["shard_rows"])

    @cached_property
    def _children(self) -> tuple[dict, dict[str, str]]:
        """The root's nodes, and those whose ``zarr.json`` does not parse (``metadata.children``: one
        listing; zarr's own failed whole on one such file)."""
        return children(self.group)

    @cached_property
    def layers(self) -> list[str]:
        return sorted(name for name, node in self._children[0].items()
                      if name != "images" and isinstance(node, zarr.Group))

    @cached_property
    def layer_faults(self) -> dict[str, str]:
        """{layer: why} for layer folders zarr cannot open: a ``zarr.json`` lost (zarr no longer lists
        them) or not zarr metadata."""
        lost = {name: f"its {name}/zarr.json is missing" for name in damage.stray_folders(self.group, nodes=self._children)}
        faults = {**lost, **self._children[1]}
        return {name: faults[name] for name in sorted(faults) if name != "images"}

    @property
    def damaged_layers(self) -> list[str]:
        return list(self.layer_faults)

    def damaged_layer(self, layer: str) -> DamagedStoreError:
        # Its own attributes unread: a store made by ``exemplars import`` holds imported layers alone.
        imported = (self.attrs.get("model") or {}).get("name") == "imported"
        return DamagedStoreError(f"layer {layer} of {self.path} is damaged: {self.layer_faults[layer]}; "
                                 f"{damage.layer_fix({'model': 'imported'} if imported else {})}")

    def _listed(self, layer) -> bool:
        """Whether ``layer`` is a layer of the store, listing it again on a miss: a layer imported or
        computed since the store was opened was "unknown" to a notebook's open store."""
        try:
            if layer in self.layers:
                return True
        except (TypeError, ValueError):  # an array compared by elements: no layer's name
            return False
        for name in ("_children", "layers", "layer_faults"):
            self.__dict__.pop(name, None)
        forget_listings(self.group)
        return layer in self.layers

    def __getitem__(self, layer: str):
        """The layer's ``pipeline.query.Layer`` (which imports this module, hence imported here)."""
        if not self._listed(layer) and layer in self.damaged_layers:
            raise self.damaged_layer(layer)
        if layer not in self.layers:
            raise unknown_layer(layer, self.layers, f"`exemplars info --store {self.path}`")
        # One Layer per name, so its masks and caches serve every later query.
        opened = self.__dict__.setdefault("_layers", {})
        if layer not in opened:
            from .query import Layer

            opened[layer] = Layer(self, layer)
        return opened[layer]

    def __contains__(self, layer) -> bool:
        return self._listed(layer)

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def keys(self) -> list[str]:
        """The layers' names, sorted."""
        return list(self.layers)

    def values(self) -> list:
        """Every layer, opened (``pipeline.query.Layer``)."""
        return [self[name] for name in self.layers]

    def items(self) -> list[tuple]:
        """(name, Layer) for every layer."""
        return [(name, self[name]) for name in self.layers]

    def get(self, layer, default=None):
        """The layer, or ``default`` where the store has none of that name."""
        return self[layer] if self._listed(layer) else default

    def __repr__(self) -> str:
        return f"<exemplars store {self.path}: {self.n} images, layers {', '.join(self.layers)}>"

    @cached_property
    def image_damage(self) -> str | None:
        """Why the paths, labels, sizes or times cannot be read, or None: a lost chunk, which zarr
        reads as "" or 0 (one listing of ``images/``, once a session)."""
        return lost.image_damage(self.group, self.path, {name: self._node(name) for name in lost.IMAGE_DATA})

    def _node(self, name: str):
        """``images/name``, opened once (an open reads its metadata: a request on an object store)."""
        nodes = self.__dict__.setdefault("_nodes", {})
        if name not in nodes:
            nodes[name] = self.group[f"images/{name}"]
        return nodes[name]

    def _images(self, name: str):
        """``images/name``, its reads of damaged data said in one sentence (written once, at creation)."""
        if name in lost.IMAGE_DATA and self.image_damage:
            raise DamagedStoreError(self.image_damage)
        return Checked(self._node(name), f"images/{name} of {self.path}", damage.IMAGES_FIX)

    @cached_property
    def valid(self) -> np.ndarray:
        valid = np.asarray(self._images("valid")[:], dtype=bool)
        valid.flags.writeable = False  # shared by every layer's ``usable``
        return valid

    @cached_property
    def classes(self) -> list[str]:
        return list(self.group["images"].attrs.get("classes", []))

    @cached_property
    def class_names(self) -> list[str]:
        """Class names for display: ImageNet WordNet ids become words."""
        return human_names(self.classes)

    @property
    def weights(self) -> dict:
        return self.attrs.get("model", {}).get("weights", {})

    @property
    def random_weights(self) -> bool:
        return self.weights.get("kind") == "random"

    @property
    def root(self) -> str | None:
        """Where the images are read from: the recorded dataset root, unless opened with another."""
        return self._root or self.attrs.get("dataset", {}).get("root")

    @cached_property
    def all_paths(self) -> np.ndarray:
        return self._images("path")[:]

    def _out_of_range(self, row: int) -> QueryError:
        return QueryError(f"row {row} is out of range; the store has rows 0-{self.n - 1}" if self.n
                          else f"row {row} is out of range; the store has no images")

    def check_rows(self, rows) -> np.ndarray:
        """``rows`` (a list, or one row) as int64 row numbers of this store, or a QueryError
        (-1 is no row, not the last)."""
        rows = np.atleast_1d(np.asarray(rows))
        if rows.ndim > 1:
            raise QueryError(f"rows must be a list of row numbers, not an array of shape {rows.shape}")
        if rows.size and rows.dtype.kind not in "iu":
            raise QueryError(f"rows must be whole numbers, not {rows.dtype} values")
        if rows.size and (rows.min() < 0 or rows.max() >= self.n):  # in their own type: 2**63 must not wrap
            raise self._out_of_range(int(rows[(rows < 0) | (rows >= self.n)][0]))
        return rows.astype(np.int64, copy=False)

    def paths(self, rows) -> list[str]:
        """Each row's image path, relative to the dataset root (``rows``: a row number or a list of them)."""
        rows = self.check_rows(rows)
        if rows.size == 0:
            return []
        if self.cache_paths or "all_paths" in self.__dict__:
            return [str(p) for p in self.all_paths[rows]]
        return [str(p) for p in self._images("path").get_coordinate_selection(rows)]

    @cached_property
    def all_stats(self) -> np.ndarray:
        """Every row's (size, mtime_ns) as phase one found its file, read once per session."""
        return np.stack([self._images("size")[:], self._images("mtime_ns")[:]], axis=1)

    def recorded(self, rows) -> list:
        """Each row's (size, mtime_ns) as phase one found its file, for ``images.changed``: None where
        nothing was recorded (an imported store's zeros), the mtime None where the images are read
        from another folder than the recorded root. A dataset moved with ``mv`` or ``cp -p`` keeps
        its times, but one copied without them (``cp -r``, a sync without times) has every mtime
        new: comparing them would blank every picture. A copy keeps every size, and a replaced file
        almost never has its original's size to the byte, so there the size alone is compared."""
        rows = self.check_rows(rows)
        if rows.size == 0:
            return []
        if self.cache_paths or "all_stats" in self.__dict__:
            stats = self.all_stats[rows]
        else:
            stats = np.stack([self._images(name).get_coordinate_selection(rows) for name in ("size", "mtime_ns")],
                             axis=1)
        given = self.attrs.get("dataset", {}).get("root")
        # Compared as written, not resolved: a recorded root that is a link may now lead to a copy.
        moved = self._root is not None and (not given or os.path.abspath(self._root) != os.path.abspath(given))
        return [None if size == 0 and mtime == 0 else (size, None if moved else mtime)
                for size, mtime in stats.tolist()]

    @cached_property
    def all_labels(self) -> np.ndarray:
        """Every row's label, read once per session (4 bytes an image)."""
        return np.asarray(self._images("label")[:])

    def errors(self, rows) -> list[str]:
        """Why each row is invalid ("" for a valid row, or where no reason was recorded)."""
        rows = self.check_rows(rows)
        return [str(e) for e in self._images("error").get_coordinate_selection(rows)] if rows.size else []

    def labels(self, rows) -> np.ndarray:
        """Each row's class index (int, -1 without a class); ``store.class_names[label]`` names it."""
        return self.all_labels[self.check_rows(rows)]

    def row_of(self, image) -> int:
        """A row number, or the row of a path (relative to the dataset root, or absolute)."""
        if isinstance(image, (float, np.floating)) and float(image).is_integer():
            image = int(image)  # 3.0, as topk takes it for a channel; the text "3.0" stays a file name
        text = str(image).strip()
        if re.fullmatch(r"-?[0-9]+", text):  # ASCII digits only: str.isdigit() takes "²"
            row = int(text)
            if not 0 <= row < self.n:
                raise self._out_of_range(row)
            return row
        if self.root and os.path.isabs(text):
            text = os.path.relpath(text, self.root)
        # "./cat/x.jpg" and "cat//x.jpg" name the stored "cat/x.jpg".
        found = np.flatnonzero(self.all_paths == os.path.normpath(text).replace(os.sep, "/"))
        if not found.size:
            where = f"relative to {self.root}" if self.root else f"as imported, e.g. {self.paths([0])[0]!r}"
            raise QueryError(f"{str(image)!r} is not an image of this store (paths are {where})")
        return int(found[0])

    def info(self) -> dict:
        """What ``exemplars info --json`` prints: images, invalid rows, dataset, weights and each layer."""
        layers = {name: {"damaged": str(self.damaged_layer(name))} for name in self.damaged_layers}
        for name in self.layers:
            try:
                layer = self[name]
            except DamagedStoreError as exc:
                layers[name] = {"damaged": str(exc)}
                continue
            except StoreError:  # a writer is making it right now, or was killed doing so
                layers[name] = {"being_created": True}
                continue
            try:
                layer.usable  # a done shard's file missing: said, and the rest still shown
            except DamagedStoreError as exc:
                layers[name] = {"damaged": str(exc)}
                continue
            layers[name] = {"channels": layer.channels, "spatial_shape": layer.spatial_shape,
                            "imported": layer.attrs.get("model") == "imported",
                            "shards_done": int(layer.done.sum()), "shards": int(layer.done.size),
                            "images_covered": int(layer.usable.sum()), "stats": layer.available}
        complete = layers and all(v.get("shards_done", -1) == v.get("shards") for v in layers.values())
        layers = dict(sorted(layers.items()))
        invalid = np.flatnonzero(~self.valid)[:5] if complete and not self.image_damage else np.zeros(0, dtype=np.int64)
        return {"store": self.path, "format_version": self.attrs.get("format_version"),
                "images": self.n, "invalid": int(self.n - self.valid.sum()) if complete else None,
                "invalid_examples": [{"row": int(r), "path": p, "error": e} for r, p, e in zip(
                    invalid.tolist(), self.paths(invalid), self.errors(invalid))],
                "classes": len(self.classes), "dataset": self.attrs.get("dataset"),
                "weights": self.weights, "precision": (stored_setting(self.attrs, "model") or {}).get("precision"),
                "preprocessing": stored_setting(self.attrs, "preprocessing"), "layers": layers,
                **({"damaged": self.image_damage} if self.image_damage else {})}
