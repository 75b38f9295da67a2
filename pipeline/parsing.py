"""Parsing what users type: quantile bands, directions, channel numbers (numpy only).

Offers:
    DEFAULT_BANDS
    parse_bands("0.1%,1%,10%,zeros") -> [(label, upper fraction | None), ...]
    parse_direction(text | .npy path | dict | array, channels) -> float64 vector
    check_channel(channel, channels) -> channel, or QueryError
"""

from __future__ import annotations

import os

import numpy as np

from .errors import QueryError

DEFAULT_BANDS = "0.1%,1%,10%,50%,zeros"


def parse_bands(text: str) -> list[tuple[str, float | None]]:
    """"0.1%,1%,10%,zeros" -> nested top bands (label, upper fraction) and zeros."""
    bands, previous = [], 0.0
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part in ("zeros", "zero", "0"):
            bands.append(("zeros", None))
            continue
        try:
            fraction = float(part.rstrip("%")) / 100
        except ValueError:
            raise QueryError(f"unknown band {part!r}; use percentages such as 0.1%,1%,10% or 'zeros'") from None
        if not previous < fraction <= 1:
            raise QueryError(f"band {part!r} must be above {previous * 100:g}% and at most 100%")
        label = f"top {part if part.endswith('%') else part + '%'}"
        if previous:
            label = f"top {previous * 100:g}-{fraction * 100:g}%"
        bands.append((label, fraction))
        previous = fraction
    if not bands:
        raise QueryError("no bands given; for instance --bands 0.1%,1%,10%,zeros")
    return bands


def parse_direction(spec, channels: int) -> np.ndarray:
    """A direction from "97:0.7,301:0.3", a .npy path, or an array of length ``channels``."""
    if isinstance(spec, np.ndarray):
        vector = spec
    elif isinstance(spec, dict):
        vector = np.zeros(channels)
        for c, w in spec.items():
            vector[check_channel(int(c), channels)] += float(w)
    elif str(spec).endswith(".npy") or os.path.isfile(str(spec)):
        try:
            vector = np.load(str(spec), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise QueryError(f"cannot read direction file {spec}: {exc}") from None
        if not isinstance(vector, np.ndarray):  # an .npz archive of several arrays
            vector.close()
            raise QueryError(f"direction file {spec} must hold one numeric array (.npy), not an archive")
        if not np.issubdtype(vector.dtype, np.number):
            raise QueryError(f"direction file {spec} must hold one numeric array (.npy), not {vector.dtype}")
    else:
        vector = np.zeros(channels)
        for part in str(spec).split(","):
            try:
                c, w = part.split(":") if ":" in part else (part, "1")
                vector[check_channel(int(c), channels)] += float(w)
            except QueryError:
                raise  # a channel out of range says so itself
            except ValueError:
                raise QueryError(f"malformed direction {spec!r}; write CHANNEL:WEIGHT,... e.g. 97:0.7,301:0.3") from None
    vector = np.asarray(vector, dtype=np.float64).ravel()
    if vector.size != channels or not np.isfinite(vector).all() or not vector.any():
        raise QueryError(f"a direction needs {channels} finite weights, not all zero (got {vector.size})")
    return vector


def check_channel(channel: int, channels: int) -> int:
    if not 0 <= channel < channels:
        raise QueryError(f"channel {channel} is out of range; this layer has channels 0-{channels - 1}")
    return channel
