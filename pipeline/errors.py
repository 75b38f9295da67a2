"""The errors the library raises for mistakes a user can fix.

Offers:
    PipelineError       base class; ``cli`` turns it into one sentence and exit 2
    DatasetError        the image folder is missing, empty or changed
    LayerError          an unknown layer name (also a ``KeyError``)
    WeightsError        weights cannot be fetched or read
    StoreError          a path that is not a readable store
    DamagedStoreError   a store whose data or metadata was damaged after it was written (a StoreError)
    StoreMismatchError  a store made with other settings than this run's
    StoreLockedError    another writer holds the store
    QueryError          a malformed query (channel, k, band, direction)
    InputError          an option or input file that cannot be used (--device, --lanes, a matrix to import)
    OutputError         an output path that cannot be written (a file for a folder, a bad suffix)
    FollowerStopped     a torchrun rank stopping because rank 0 refused the run (and said why)
    unknown_layer(name, known) -> LayerError   listing the valid names
    first_line(exc) -> str   an exception's message in one line (for a sentence of our own)

Each subclass also inherits the matching built-in, as zarr's errors do, so
callers can catch ``FileNotFoundError`` or ``ValueError`` as they are used to.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: a mistake the user can fix; the message says how."""

    exit_code = 2


class DatasetError(PipelineError, FileNotFoundError):
    pass


class LayerError(PipelineError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(PipelineError, OSError):
    pass


class StoreError(PipelineError, FileNotFoundError):
    pass


class DamagedStoreError(StoreError):
    """Stored bytes that are missing or do not decode: the message names the array, the shard and the fix."""


class StoreMismatchError(PipelineError, ValueError):
    pass


class StoreLockedError(PipelineError, BlockingIOError):
    pass


class QueryError(PipelineError, ValueError):
    pass


class OutputError(PipelineError, OSError):
    pass


class InputError(PipelineError, ValueError):
    pass


class FollowerStopped(PipelineError):
    """Rank 0 refused the run and said why; the other ranks stop with its exit code, silently."""

    def __str__(self) -> str:
        return ""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, at most 200 characters; its class name when it has none."""
    text = str(exc).strip()
    # zarr's crc32c mismatch goes on with both checksums as raw bytes (b'%>\xd6\xb3'): nothing to act on
    text = text.split(" Stored: b")[0]
    return text.splitlines()[0][:200] if text else exc.__class__.__name__


def unknown_layer(name: str, known: list[str] | tuple[str, ...], lister: str = "`exemplars layers`") -> LayerError:
    """A LayerError naming the missing layer and listing the valid ones."""
    import difflib

    if not known:
        return LayerError(f"unknown layer {name!r}: the store has no layer yet; `exemplars activations` adds them")
    if len(known) <= 20:
        return LayerError(f"unknown layer {name!r}; known layers: {', '.join(known)}")
    # The network's 138 names made a 3 KB line: its blocks (names without "_"), close matches, and where the rest are.
    close = difflib.get_close_matches(name, known, n=3)
    blocks = [k for k in known if "_" not in k]
    return LayerError(f"unknown layer {name!r}; " + (f"did you mean {', '.join(close)}? " if close else "")
                      + (f"the blocks are {', '.join(blocks)}; " if 0 < len(blocks) <= 20 else "")
                      + f"{lister} lists all {len(known)}")
