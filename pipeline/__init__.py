"""exemplars: which real images make each channel of a vision network fire.

Phase one (``pipeline.extract``, needs torch) stores every channel's spatial
mean, max and argmax for every image in a zarr store; phase two answers any
channel's questions from that store, without the model and without torch.

Offers:
    __version__
    open_store(path, cache_paths=True, root=None) -> Store   phase two's entry point (``pipeline.catalog``)
    PipelineError    the base of every error a user can fix (its children: ``pipeline.errors``)
"""

__version__ = "0.1.0"

from .errors import PipelineError  # noqa: E402


def open_store(path, cache_paths: bool = True, root=None):
    """Open a store read-only for queries: ``open_store(p)["mixed4a"].topk(97)``.

    With ``cache_paths`` the first query reads every image path once (about
    0.8 s for 1.28M images) and later queries look them up in memory. ``root``
    is where the images are now, when they moved since phase one (pictures only).
    """
    from .catalog import Store

    return Store(path, cache_paths=cache_paths, root=root)


__all__ = ["__version__", "open_store", "PipelineError"]
