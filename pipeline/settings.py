"""Whether a store was made with this run's settings (the store's half of resuming; no torch).

Offers:
    COMPARED                      the root attributes a store and a run must agree on
    IMPLIED                       what stores older than a setting's recording were computed with
    stored_setting(attrs, field)  a root setting, with what older stores imply
    check_compatible(group, meta, images=None)   refuse, naming the field (or the files), a store made otherwise
"""

from __future__ import annotations

import numpy as np

from .errors import StoreMismatchError

# Fields of the root metadata that must match for a run to continue a store.
COMPARED = ("dataset_fingerprint", "preprocessing", "model", "shard_rows")


def _describe(value) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


# Settings recorded since 2026-11-26 (ab04b9e): stores written before hold neither, and were all
# computed so. Compared as absent, they made a week's store impossible to resume or extend.
IMPLIED = {"preprocessing": {"decoder": "pil"}, "model": {"precision": "fp32"}}


def stored_setting(attrs, field: str):
    """The store's ``field`` (root attribute; or a run's, alike), with what older stores imply but
    did not record; an imported store's model says nothing of how it was computed, and keeps saying nothing."""
    value = attrs.get(field)
    imported = isinstance(value, dict) and (value.get("weights") or {}).get("kind") == "imported"
    if isinstance(value, dict) and field in IMPLIED and not imported:
        value = {**IMPLIED[field], **value}
    return value


def _identity(value):
    """What identifies a setting: a weights file's sha256 counts, not where it lies."""
    if isinstance(value, dict) and isinstance(value.get("weights"), dict):
        weights = {k: v for k, v in value["weights"].items() if k != "path"}
        return dict(value, weights=weights)
    return value


def check_compatible(group, meta: dict, images: dict | None = None) -> None:
    """Refuse, naming the field, when ``meta`` differs from the store's (and, for the dataset,
    the files that differ, when this run's ``images`` are given)."""
    from .store import images_whole, store_name  # the store module uses this one: imported when called

    stored = group.attrs
    where = store_name(group)
    for field in COMPARED:
        if field not in meta:
            continue
        old, new = _identity(stored_setting(stored, field)), _identity(stored_setting(meta, field))
        if old == new:
            continue
        if field == "dataset_fingerprint" and images is not None and images_whole(group):
            raise StoreMismatchError(f"the images changed since store {where} was made: "
                                     f"{_dataset_difference(group['images'], images)}; a store holds one fixed "
                                     "set of files: pass --overwrite to rebuild it (every layer) or choose another --store")
        name, old, new = _first_difference(field, old, new)
        raise StoreMismatchError(
            f"store {where} was made with {name}={_describe(old)}, "
            f"this run has {name}={_describe(new)}; "
            "pass --overwrite to rebuild it or choose another --store"
        )


def _dataset_difference(stored, images: dict) -> str:
    """Which files were added, removed or changed (size or modification time), a few named."""
    def listed(paths, sizes, mtimes):
        return {str(p): (int(s), int(m)) for p, s, m in zip(paths, np.asarray(sizes).tolist(), np.asarray(mtimes).tolist())}

    old = listed(stored["path"][:], stored["size"][:], stored["mtime_ns"][:])
    new = listed(images["path"], images["size"], images["mtime_ns"])
    parts = []
    for what, names in (("added", sorted(new.keys() - old.keys())), ("removed", sorted(old.keys() - new.keys())),
                        ("changed in size or modification time (a copy that does not keep times changes them)",
                         sorted(p for p in old.keys() & new.keys() if old[p] != new[p]))):
        if names:
            parts.append(f"{len(names)} {what}: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}")
    return "; ".join(parts) or "the same files in another order"


def _first_difference(name: str, old, new):
    """The dotted name and values of the first setting that differs inside nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key) != new.get(key):
                return _first_difference(f"{name}.{key}", old.get(key), new.get(key))
    return name, old, new
