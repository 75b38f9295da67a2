"""Parsing what users type: quantile bands, directions, channel numbers (numpy only).

Offers:
    DEFAULT_BANDS
    parse_bands("0.1%,1%,10%,zeros" | ["0.1%", "1%"] | [(label, fraction), ...]) -> [(label, upper Fraction | None), ...]
    parse_direction(text | .npy path | dict | array-like, channels) -> float64 vector
    whole_number(value, name) -> int, or QueryError (2.7 and "abc" are refused)
    check_channel(channel, channels) -> channel, or QueryError
    parse_channels("0-9,97" | 97 | [3, 97], channels) -> [0, ..., 9, 97]
    load_npy(path, what, error=QueryError, mmap=False) -> the one array of a .npy file, or ``error``
"""

from __future__ import annotations

import operator
import os
import re
import zipfile
from fractions import Fraction

import numpy as np

from .errors import QueryError

DEFAULT_BANDS = "0.1%,1%,10%,50%,zeros"


def parse_bands(spec) -> list[tuple[str, float | None]]:
    """"0.1%,1%,10%,zeros" -> nested top bands (label, upper fraction) and zeros.

    A list of such bands (["0.1%", "1%"]) is the same text; a list of (label, fraction or None)
    pairs, this function's own form, is checked and kept. Fractions of text are exact
    (``Fraction("7") / 100``): as floats, n * 0.07 rounds above 7 for n = 100, and a band's
    edge would move by one image.
    """
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(b, str) for b in spec):
        spec = ",".join(spec)
    if not isinstance(spec, str):
        return _band_pairs(spec)
    text = spec
    bands, previous = [], Fraction(0)
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part in ("zeros", "zero", "0"):
            if any(fraction is None for _, fraction in bands):  # a second one would draw the same images again
                raise QueryError(f"the zeros band is given twice in {text!r}")
            bands.append(("zeros", None))
            continue
        try:
            if "/" in part:  # Fraction would read "1/3" as a third: not a percentage people type
                raise ValueError(part)
            number = float(part.rstrip("%"))  # quick: "1e9999999" is inf here, before Fraction's big integers
            if number != number:
                raise ValueError(part)  # nan
            fraction = Fraction(part.rstrip("%")) / 100 if 0 < number <= 100 else Fraction(-1)
        except (ValueError, ZeroDivisionError):
            raise QueryError(f"unknown band {part!r}; use percentages such as 0.1%,1%,10% or 'zeros'") from None
        if not previous < fraction <= 1:
            order = " (bands go from the top down, each wider than the one before)" if previous else ""
            raise QueryError(f"band {part!r} must be above {float(previous * 100):g}% and at most 100%{order}")
        label = f"top {part if part.endswith('%') else part + '%'}"
        if previous:
            label = f"top {float(previous * 100):g}-{float(fraction * 100):g}%"
        bands.append((label, fraction))
        previous = fraction
    if not bands:
        raise QueryError("no bands given; for instance 0.1%,1%,10%,zeros")
    return bands


def _band_pairs(bands) -> list:
    """``parse_bands``' own form, as the API may pass it: (label, fraction in (0, 1] or None) pairs,
    the fractions rising (nested bands, as the text's must), the labels each once, one zeros band (None)."""
    ok = isinstance(bands, (list, tuple)) and bands and all(
        isinstance(b, (list, tuple)) and len(b) == 2 and isinstance(b[0], str)
        and (b[1] is None or (isinstance(b[1], (int, float, Fraction, np.floating)) and not isinstance(b[1], bool)
                              and 0 < b[1] <= 1))
        for b in bands)
    if not ok:
        raise QueryError(f"bands must be text such as {DEFAULT_BANDS!r}, a list of such bands, "
                         "or (label, fraction) pairs")
    fractions = [b[1] for b in bands if b[1] is not None]
    if any(lo >= hi for lo, hi in zip(fractions, fractions[1:])) or len({b[0] for b in bands}) < len(bands) \
            or len(bands) - len(fractions) > 1:
        raise QueryError("bands given as (label, fraction) pairs need rising fractions, a label each "
                         "and at most one zeros band (None)")
    return list(bands)


# What a direction written out looks like ("97:0.7,301:-3e-1", "5"): never read as a file name.
_DIRECTION_TEXT = re.compile(r"[0-9\s:,.+\-eE]+")


def parse_direction(spec, channels: int) -> np.ndarray:
    """A direction from "97:0.7,301:0.3", a .npy path, or an array of length ``channels``."""
    if isinstance(spec, (np.ndarray, list, tuple, range)) or hasattr(spec, "__array__"):  # a pandas Series too
        if np.ma.isMaskedArray(spec) and np.ma.getmaskarray(spec).any():
            raise QueryError("a direction given as a masked array has masked weights; fill them first")
        try:
            vector = np.asarray(spec)
            # Not complex (the imaginary parts would be dropped), not text: '1' and b'1' are no weights.
            if vector.dtype.kind not in "biufO" or (
                    vector.dtype.kind == "O" and any(isinstance(v, (str, bytes)) for v in vector.flat)):
                raise TypeError(vector.dtype)
            vector = vector.astype(np.float64)
        except (TypeError, ValueError):
            raise QueryError(f"a direction given as an array needs {channels} real numbers") from None
        vector = _one_dimension(vector, channels, "a direction given as an array")
    elif isinstance(spec, dict):
        pairs = []
        for c, w in spec.items():
            try:
                weight = float(w)
            except (TypeError, ValueError):
                raise QueryError(f"the weight of channel {c} must be a number, not {w!r}") from None
            pairs.append((check_channel(c, channels), weight))
        vector = _from_pairs(pairs, channels, "the direction")
    elif str(spec).endswith(".npy") or (os.path.isfile(str(spec)) and not _DIRECTION_TEXT.fullmatch(str(spec))):
        # "5" is channel 5 even where a file of that name happens to be; "./5" is the file
        vector = load_npy(str(spec), "direction file")
        if not np.issubdtype(vector.dtype, np.number) or np.iscomplexobj(vector):
            raise QueryError(f"direction file {spec} must hold one numeric array (.npy), not {vector.dtype}")
        vector = _one_dimension(vector, channels, f"direction file {spec}")
    elif isinstance(spec, (str, os.PathLike)):
        vector = _from_text(str(spec), channels)
    else:
        raise QueryError(f"a direction is text such as '97:0.7,301:0.3', a .npy file, a dict of channel: weight "
                         f"or an array of {channels} weights, not a {type(spec).__name__}")
    vector = np.asarray(vector, dtype=np.float64)
    if vector.size != channels:
        raise QueryError(f"a direction needs {channels} weights, not {vector.size}")
    if not np.isfinite(vector).all():
        raise QueryError(f"a direction's weights must be finite numbers (channel {int(np.flatnonzero(~np.isfinite(vector))[0])} "
                         f"has {vector[~np.isfinite(vector)][0]})")
    if not vector.any():
        raise QueryError("a direction needs a weight that is not 0" + (f" (got {spec!r})" if isinstance(spec, str) else ""))
    return vector


def load_npy(path, what: str, error=QueryError, mmap: bool = False) -> np.ndarray:
    """The array of the .npy file ``path`` (memory-mapped where asked), or ``error`` saying in one
    sentence why not. numpy reads any other file as a pickle, refused by allow_pickle=False with
    advice to unpickle what it does not trust: a JPEG passed by mistake got that advice."""
    try:
        with open(path, "rb") as file:
            magic = file.read(6)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    if magic != b"\x93NUMPY" and magic[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):  # .npy, or a zip (.npz)
        raise error(f"{what} {path} is not a .npy file; give one array saved with numpy.save")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        objects = "allow_pickle" in str(exc) or "Python objects" in str(exc)  # np.load, and its memory map
        why = "it holds Python objects, not numbers" if objects else str(exc)
        raise error(f"cannot read {what} {path}: {why}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:  # a header, or an .npz, cut short
        raise error(f"cannot read {what} {path} ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive, whatever its name
        array.close()
        raise error(f"{what} {path} is an archive of several arrays (.npz); give one array saved with numpy.save")
    return array


def _from_text(spec: str, channels: int) -> np.ndarray:
    """"97:0.7,301:0.3" (a bare "97" weighs 1)."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise QueryError("an empty direction; write CHANNEL:WEIGHT,... e.g. 97:0.7,301:0.3")
    pairs = []
    for part in parts:
        try:
            c, w = part.split(":") if ":" in part else (part, "1")
            pairs.append((check_channel(int(c), channels), float(w)))
        except QueryError:
            raise  # a channel out of range says so itself
        except ValueError:
            raise QueryError(f"malformed direction {spec!r}; write CHANNEL:WEIGHT,... e.g. 97:0.7,301:0.3") from None
    return _from_pairs(pairs, channels, f"direction {spec!r}")


def _from_pairs(pairs, channels: int, what: str) -> np.ndarray:
    """(channel, weight) pairs as a vector; a channel named twice is refused, not summed."""
    vector, seen = np.zeros(channels), set()
    for channel, weight in pairs:
        if channel in seen:
            raise QueryError(f"channel {channel} is given twice in {what}; give each channel once")
        seen.add(channel)
        vector[channel] = weight
    return vector


def _one_dimension(vector: np.ndarray, channels: int, what: str) -> np.ndarray:
    """A (C,) vector; a (1, C) or (C, 1) one is the same vector, any other shape is refused."""
    if sum(size != 1 for size in vector.shape) > 1 or vector.ndim == 0:
        raise QueryError(f"{what} must hold {channels} weights in one dimension, not shape {vector.shape}")
    return vector.reshape(-1)


def whole_number(value, name: str = "channel") -> int:
    """``value`` as an int, refusing 2.7 (which ``int`` would quietly make 2) and text that is no number."""
    if isinstance(value, (bool, np.bool_)):
        raise QueryError(f"{name} must be a whole number, not {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise QueryError(f"{name} must be a whole number, not {value!r}") from None
        if not number.is_integer():
            raise QueryError(f"{name} must be a whole number, not {value!r}")
        number = int(number)
    return number


def check_channel(channel, channels: int) -> int:
    channel = whole_number(channel)
    if not 0 <= channel < channels:
        raise QueryError(f"channel {channel} is out of range; this layer has channels 0-{channels - 1}")
    return channel


def parse_channels(spec, channels: int) -> list[int]:
    """"0-9,97" -> [0, ..., 9, 97]; a range runs upwards ("5-2" is refused, not empty).

    A channel number, or a list of them, is taken as it is (each checked).
    """
    if isinstance(spec, (bytes, bytearray)):
        raise QueryError(f"channels must be numbers or text such as '0-9,97', not {type(spec).__name__}")
    if not isinstance(spec, str):
        try:
            out = [check_channel(c, channels) for c in spec]
        except TypeError:  # not iterable: one channel
            out = [check_channel(spec, channels)]
        if not out:
            raise QueryError("no channels given; for instance [0, 1, 2] or '0-9'")
        return out
    text, out = spec, []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            lo, _, hi = part.partition("-")
            lo, hi = int(lo), int(hi or lo)
        except ValueError:
            raise QueryError(f"malformed channel list {text!r}; write e.g. 0-9 or 3,97,301") from None
        lo, hi = check_channel(lo, channels), check_channel(hi, channels)
        if hi < lo:
            raise QueryError(f"channel range {part!r} runs backwards; write {hi}-{lo}")
        out.extend(range(lo, hi + 1))
    if not out:
        raise QueryError("no channels given; for instance 0-9 or 3,97")
    return out
