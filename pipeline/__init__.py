"""exemplars: which real images make each channel of a vision network fire.

Phase one (``pipeline.extract``, needs torch) stores every channel's spatial
mean, max and argmax for every image in a zarr store; phase two answers any
channel's questions from that store, without the model and without torch.

Offers:
    __version__
    open_store(path) -> Store     phase two's entry point (see ``pipeline.query``)
    PipelineError and its children (``pipeline.errors``)
"""

__version__ = "0.1.0"

from .errors import PipelineError  # noqa: E402


def open_store(path):
    """Open a store read-only for queries: ``open_store(p)["mixed4a"].topk(97)``."""
    from .query import Store

    return Store(path)


__all__ = ["__version__", "open_store", "PipelineError"]
