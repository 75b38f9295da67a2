"""Phase one: one pass of the model writes every channel of every image to the store.

Offers:
    extract(data_dir, store, ...) -> Summary

How the store is made, resumed or found finished is ``pipeline.opening``. The loop
is separate from the math (``forward.py``: the network and ``reduce``) and from the
shards (``shards.py``: batching and writing each shard exactly once).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np

from . import images as imgs
from . import places
from . import store as st
from .decode import collate, finish_batch, make_dataset
from .devices import check_options, checked_device
from .errors import OutputError, PipelineError, first_line
from .forward import forward_pass, reduce, to_host
from .hardware import precision_note
from .lanes import in_lanes, lanes_for, one_thread_each
from .loading import check_shared_memory, decoding, local_ranks, make_loader, prefetched, rank_cores
from .model import check_layers, cut, layer_shapes, load_model
from .opening import finished_already, open_for_writing, pending_shards, root_meta
from .progress import bar as progress_bar, say
from .shards import ShardBatches, ShardWriter, mark_non_finite, rows_in


@dataclass
class Summary:
    store: str
    layers: list[str]
    images: int
    computed: int
    seconds: float
    invalid: list[tuple[str, str]] = field(default_factory=list)
    store_bytes: int = 0
    weights: dict = field(default_factory=dict)
    leader: bool = True  # under torchrun only rank 0 reports
    usable: int = -1  # valid rows in the whole store after the run (-1: not counted, off the leader)

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        if self.computed == 0:
            return f"{self.store}: already complete for {', '.join(self.layers)} ({self.images} images); nothing to do"
        random = " [RANDOM WEIGHTS]" if self.weights.get("kind") == "random" else ""
        return (f"{', '.join(self.layers)}: {self.computed} images ({len(self.invalid)} invalid) in "
                f"{self.seconds:.1f} s, {self.images_per_second:.1f} images/s, store "
                f"{self.store_bytes / 1e6:.1f} MB at {self.store}{random}")


def _current_shard(group, layers, mine: list[int]):
    """The first of this rank's shards not yet marked done: the one it was computing."""
    left = set(pending_shards(group, layers))
    return next((s for s in mine if s in left), None)


def _compute(group, images, layers, shapes, results, bar) -> list[tuple[str, str]]:
    """Store each batch's results once the next batch has been computed (or launched, on CUDA).

    ``results`` yields ``(rows, result, ok, errors)`` per batch, where ``result()`` gives
    the statistics: on CUDA their copy to the host is waited for only then, so the GPU
    computes while this process fetches the next batch instead of idling (``to_host``).
    """
    import torch

    writer, invalid, waiting = ShardWriter(group, layers, shapes, len(images)), [], None

    def settle(rows, result, ok, errors):
        ok, stats = ok.numpy(), result()
        mark_non_finite(stats, ok, errors)
        writer.add(rows, stats, ok, errors)
        invalid.extend((images.paths[r], e) for r, good, e in zip(rows, ok, errors) if not good)
        bar.update(len(rows))

    with torch.inference_mode(), bar:
        results = iter(results)
        while True:
            try:
                item = next(results)
            except StopIteration:
                break
            except Exception:
                if waiting is not None:  # it may finish a shard: a later batch's failure must not lose that
                    settle(*waiting)
                raise
            if waiting is not None:
                settle(*waiting)
            waiting = item
        if waiting is not None:
            settle(*waiting)
    return invalid


def _statistics(out: dict, layers):
    import torch

    return torch.cat([reduce(out[layer]) for layer in layers], dim=2)


def _one_lane(loader, forward, layers, dev):
    """Batches from the loader through the network, one at a time (``_compute`` holds inference mode)."""
    for index, batch, ok, errors in loader:
        batch, failed = finish_batch(batch, dev)
        for i, error in failed.items():
            ok[i], errors[i] = False, error
        yield index.tolist(), to_host(_statistics(forward(batch), layers)), ok, list(errors)


def _lanes(images, sampler, decoder, forward, layers, lanes: int):
    """Each lane decodes its batch in its own thread and runs it through the network (CPU)."""
    import torch

    dataset = make_dataset(images.root, images.paths, decoder)

    def work(rows):
        with torch.inference_mode():
            index, batch, ok, errors = collate(dataset.__getitems__(rows))
            stats = _statistics(forward(batch), layers)
        return index.tolist(), to_host(stats), ok, list(errors)

    return in_lanes(work, sampler, lanes)


def extract(data_dir, store_path, layers=("mixed4a",), weights="pretrained", seed=0,
            batch_size=None, workers=None, device="auto", shard_rows=None,
            overwrite=False, progress=True, precision="fp32", compile=False, decoder="pil",
            lanes=None, verify=False) -> Summary:
    """Run phase one; resumable, and a no-op on a finished store.

    The defaults reproduce the notebook (to float32 round-off); ``precision``
    (bf16, fp16), ``decoder`` (fast, gpu) and ``compile`` trade exactness or
    start-up time for speed (see the README's figures). Under torchrun each
    rank computes whole shards of its own; the leader alone writes metadata. Done shards whose
    files are missing or cut short are recomputed (``verify``: also those that fail to decode).
    """
    from .distributed import Ranks

    failure = None  # under torchrun, every rank checks its arguments, then they agree (stop_together)
    try:
        check_options(precision, decoder, device)
        store_path = places.location(store_path)
        layers = list(dict.fromkeys(layers))
        images = imgs.scan(data_dir)
        model, weights_info = load_model(weights, seed)
        check_layers(model, layers)
        shapes = {layer: layer_shapes(model)[layer] for layer in layers}
    except PipelineError as exc:
        failure = exc
    ranks = Ranks.from_environment()
    if failure is None:
        try:
            dev = checked_device(device, decoder, compile, ranks)
            workers, threads = decoding(dev, workers, ranks.world)
            batch_size = batch_size or (256 if dev.type == "cuda" else 8)
            check_shared_memory(workers, batch_size, ranks_here=local_ranks(ranks.world))
        except PipelineError as exc:
            failure = exc
    ranks.stop_together(failure)
    cores = rank_cores(ranks.world)
    lanes = lanes_for(dev.type, workers, compile, cores, lanes)
    for note in (images.note, precision_note(precision, dev.type)):
        if note and ranks.leader:
            say(note)
    meta = root_meta(images, weights_info, precision, decoder) if ranks.leader else None  # the leader's to check
    # Under torchrun the ranks go the locked way together: they would have to agree on this check too.
    if ranks.world == 1 and not overwrite and not verify and (group := finished_already(
            store_path, meta, images, layers, shard_rows)) is not None:
        return Summary(str(store_path), layers, len(images), 0, 0.0, [], places.store_bytes(store_path),
                       weights_info, True, int(np.count_nonzero(group["images"]["valid"][:])))
    traced = cut(model, layers)
    with contextlib.ExitStack() as stack:
        group = ranks.writable_store(stack, store_path, lambda: open_for_writing(
            store_path, meta, images, layers, shapes, model, traced, shard_rows, overwrite, verify))
        shard_rows = group.attrs["shard_rows"]
        # The leader's list: a rank reading the done markers itself, after the leader had finished
        # a shard, split a shorter list, and another shard was computed by no rank (seen on S3).
        pending = ranks.share(pending_shards(group, layers) if ranks.leader else None)
        mine = ranks.mine(pending)
        if ranks.world > 1:
            say(f"rank {ranks.rank}/{ranks.world}: shards {mine}")
        # On the CPU 8 measured faster end to end than 32 (97.6 against 83.5 images/s, README);
        # the GPU's figures were measured at 256.
        sampler = ShardBatches(mine, shard_rows, len(images), batch_size)
        forward = forward_pass(traced, dev, precision, compile, batch_size)
        started = time.perf_counter()
        # Under torchrun the leader's bar counts the leader's own shards, and says so.
        desc = ",".join(layers) + (f" (rank 0 of {ranks.world}: its shards)" if ranks.world > 1 else "")
        bar = progress_bar(total=sampler.rows_total(), unit="img", desc=desc,
                           disable=not progress or not mine or not ranks.leader)
        if lanes > 1:
            results = _lanes(images, sampler, decoder, forward, layers, lanes)
        else:
            loader = make_loader(images, sampler, workers, threads, dev.type == "cuda", decoder)
            if dev.type == "cuda" and workers == 0:
                loader = prefetched(loader)  # decode in threads while the GPU computes
            results = _one_lane(loader, forward, layers, dev)
        with _said_where_it_stopped(group, layers, mine, ranks), one_thread_each(lanes, cores):
            invalid = _compute(group, images, layers, shapes, results, bar)
        seconds = time.perf_counter() - started
        invalid = [item for part in ranks.gather(invalid) for item in part]
        ranks.barrier()
        usable = -1
        if ranks.leader:
            for layer in layers:
                st.refresh_completeness(group, layer)
            usable = int(np.count_nonzero(group["images"]["valid"][:]))
    ranks.close()
    computed = rows_in(pending, shard_rows, len(images))  # the whole job's, every rank's shards
    return Summary(str(store_path), layers, len(images), computed, seconds, sorted(invalid),
                   places.store_bytes(store_path), weights_info, ranks.leader, usable)


@contextlib.contextmanager
def _said_where_it_stopped(group, layers, mine, ranks):
    """A failure or Ctrl-C names the shard it stopped in; the finished shards stay.

    An OSError (a full disk, a store made read-only, a dataset unmounted) is the machine's,
    not a bug: one sentence; anything else keeps its traceback.
    """
    who = f"rank {ranks.rank}/{ranks.world} " if ranks.world > 1 else ""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, PipelineError):
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        raise OutputError(f"{who}stopped in shard {_current_shard(group, layers, mine)}: "
                          f"{exc.strerror or first_line(exc)}{where}; finished shards are kept, rerun the "
                          "same command once that is fixed") from None
    except Exception as exc:
        say(f"{who}failed in shard {_current_shard(group, layers, mine)}: "
            f"{exc.__class__.__name__}: {exc}; finished shards are kept, rerun the same command to complete")
        raise
    except KeyboardInterrupt:
        say(f"\ninterrupted in shard {_current_shard(group, layers, mine)}; finished shards are kept, "
            "rerun the same command to complete")
        raise
