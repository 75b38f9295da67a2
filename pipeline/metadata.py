"""A store's zarr nodes as zarr reads them, and the metadata it cannot take (no torch).

A ``zarr.json`` cut short, emptied or edited by hand fails zarr's parse with a JSONDecodeError,
a MetadataValidationError or a TypeError (for ``null``), deep in whatever opened the node; one
such file among a group's children fails zarr's whole listing of the group (``members()``), so
every layer of the store was lost to a traceback. Offers:

    METADATA_ERRORS                     what zarr raises on a ``zarr.json`` that is not its metadata
    unreadable(exc, path) -> str        that said in a few words, naming the file
    node_fault(group, path) -> str | None   why ``group[path]``'s ``zarr.json`` does not parse, or None
    first_fault(group, paths) -> str | None  the first of those faults
    children(group, prefix="") -> ({name: node}, {name: fault})   the nodes below ``prefix``, and those
                                        whose ``zarr.json`` does not parse (one listing, opened at once)
    layer_shape_fault(group, layer, sub, nodes) -> str | None   attributes of the wrong type, or arrays
                                        whose shape is not the layer's images x channels

``pipeline.damage`` says which layers these faults damage; ``pipeline.store.images_whole`` those of ``images/``.
"""

from __future__ import annotations

import numbers

# JSONDecodeError and zarr's MetadataValidationError are ValueErrors; ``null`` or a list where an
# object belongs fails as a TypeError or AttributeError.
METADATA_ERRORS = (ValueError, TypeError, AttributeError)
NOT_NODES = ("zarr.json",)  # a group's own metadata among its listed children


def unreadable(exc: BaseException, path: str) -> str:
    from .errors import first_line

    return f"its {path}/zarr.json is not zarr metadata ({exc.__class__.__name__}: {first_line(exc)})"


def node_fault(group, path: str) -> str | None:
    """Why ``group[path]`` cannot be opened for its ``zarr.json``, or None (opened, or no node there)."""
    try:
        group[path]
    except KeyError:
        return None
    except METADATA_ERRORS as exc:
        return unreadable(exc, path)
    return None


def first_fault(group, paths) -> str | None:
    """``node_fault`` of the first of ``paths`` that has one (a group before its arrays: its own
    ``zarr.json`` fails theirs too)."""
    return next((fault for fault in map(lambda path: node_fault(group, path), paths) if fault), None)


def children(group, prefix: str = "") -> tuple[dict, dict[str, str]]:
    """``{name: zarr Array or Group}`` below ``prefix``, and ``{name: fault}`` for those whose
    ``zarr.json`` does not parse: one listing, the children opened concurrently (a request each on
    an object store), as zarr's ``members()`` does; but each child's failure is its own, where
    ``members()`` failed whole on one (with a KeyError of another child's name) and left its other
    tasks' errors printed at exit, even by a command that then succeeded. Threads over zarr's public,
    thread-safe API: its async one is reached only through a Group's private attribute."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from .damage import _listing

    node = group[prefix] if prefix else group
    names = [n for n in _listing(group.store, f"{prefix}/" if prefix else "", recursive=False) if n not in NOT_NODES]

    def opened(name):
        try:
            return node[name]
        except KeyError:  # no node: a file, a folder without zarr.json (``damage.stray_folders``)
            return None
        except METADATA_ERRORS as exc:
            return exc

    with warnings.catch_warnings():  # zarr warns about each folder that is no node as it opens it
        warnings.simplefilter("ignore")
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(names)))) as pool:
            got = list(pool.map(opened, names))
    nodes = {name: child for name, child in zip(names, got) if child is not None and not isinstance(child, Exception)}
    faults = {name: unreadable(child, f"{prefix}/{name}" if prefix else name)
              for name, child in zip(names, got) if isinstance(child, Exception)}
    return nodes, faults


def _whole_number(value, least: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= least


def layer_shape_fault(group, layer: str, sub, nodes: dict) -> str | None:
    """What in ``layer``'s attributes, or its arrays' shapes (``nodes``: ``children(group, layer)``'s),
    disagrees with the store: a hand-edited ``channels`` read as a number failed with a ValueError,
    and a ``mean`` of other columns answered queries with too few channels. Attributes not yet
    written are no fault here (the layer is still being created: ``store.layer_whole``)."""
    import zarr

    from .store import STATS, n_shards

    attrs = sub.attrs
    channels = attrs.get("channels")
    if "channels" in attrs and not _whole_number(channels, 1):
        return f"its attribute channels is {channels!r}, where a whole number of at least 1 belongs"
    spatial = attrs.get("spatial_shape")
    if "spatial_shape" in attrs and not (isinstance(spatial, list) and len(spatial) == 2
                                         and all(_whole_number(s, 1) for s in spatial)):
        return f"its attribute spatial_shape is {spatial!r}, where [height, width] belongs"
    stats = attrs.get("stats")
    if "stats" in attrs and not (isinstance(stats, list) and stats and set(map(str, stats)) <= set(STATS)
                                 and all(isinstance(s, str) for s in stats)):
        return f"its attribute stats is {stats!r}, where a list of {', '.join(STATS)} belongs"
    n, rows = group.attrs["n_images"], group.attrs["shard_rows"]
    expected = {"done": (n_shards(n, rows),)}
    if "channels" in attrs:
        expected.update({stat: (n, channels) for stat in ("mean", "max", "argmax")}, featureviz_done=(channels,))
    for name, shape in expected.items():
        arr = nodes.get(name)
        if isinstance(arr, zarr.Group):
            return f"its {layer}/{name} is a group, where an array belongs"
        if arr is not None and tuple(arr.shape) != shape:
            what = f"{n} images x {channels} channels" if len(shape) == 2 else (
                f"{channels} channels" if name == "featureviz_done" else f"{shape[0]} shards")
            return f"its {layer}/{name} has shape {list(arr.shape)}, where the layer's {what} make {list(shape)}"
    viz = nodes.get("featureviz")
    if "channels" in attrs and viz is not None and (isinstance(viz, zarr.Group) or viz.shape[:1] != (channels,)):
        return f"its {layer}/featureviz is not one picture a channel for its {channels} channels"
    return None
