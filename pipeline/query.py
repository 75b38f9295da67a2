"""Phase two: any channel's exemplars from the store, without the model or torch.

Offers:
    Store                        ``pipeline.catalog.Store``, here too: ``store[layer]`` -> Layer
    Layer.hold(names, budget) -> context   arrays read whole into memory, for reading every channel
    Layer.column(channel, by)    one channel for every image (reads ~4N bytes; read-only, every row)
    Layer.usable                 (N,) bool: valid rows of finished shards, the rows queries rank
    Layer.array(by)              the zarr array (N, C) of the spatial mean or max (reads of damaged data
                                 raise ``DamagedStoreError``; ``Layer.stored(name)`` any of its arrays so)
    Layer.check_k(k, name)       a count a query may take (a whole number of at least 1)
    Layer.topk(channel, k, by, bottom, diverse, per_class) -> Results
    Layer.samples(channel, bands, per_band, seed, by) -> Results   ranks: each image's in the channel
    Layer.projection(vector) -> (N,) float64           spatial means @ vector
    Layer.direction(direction, k, bottom) -> Results   any vector in channel space
    Layer.similar(image, k) -> Results                 cosine on activation vectors
    Layer.notes() / .note()      what to know about any answer from this layer
    Layer.table(by), .stats(by), .histograms(by), .correlations(), .selectivity(), .pca()   ``pipeline.stats``
    Layer.grid(...), .histogram_figure(c), .correlation_figure()   matplotlib Figures
(what users type is parsed in ``pipeline.parsing``; rankings are ``pipeline.ranking``'s)

Rows that are invalid or not yet written never appear; ties go to the lower row.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from . import damage, ranking, scans
from .analysis import Analysis, read_only as _read_only
from .checked import Checked
from .errors import DamagedStoreError, QueryError, StoreError
from .parsing import DEFAULT_BANDS, check_channel as _channel, parse_bands, parse_direction, whole_number
from .results import Results
from .catalog import Store  # a Layer's store; ``pipeline.query.Store`` still names it
from .store import STATS, layer_whole

def _flag(value, name: str) -> bool:
    """``value`` if it is a bool: ``bottom="no"`` would otherwise rank the bottom."""
    if not isinstance(value, (bool, np.bool_)):
        raise QueryError(f"{name} must be True or False, not {value!r}")
    return bool(value)


def _progress(progress):
    """``progress`` as the scans take it: None, or a function (iterable, total) -> iterable. True is the
    command line's bar (as ``build_gallery(progress=True)``): it was called, a raw TypeError."""
    if progress is None or progress is False or (callable(progress) and not isinstance(progress, (bool, np.bool_))):
        return progress or None
    if progress is True or progress is np.True_:
        from .progress import bar

        return lambda iterable, total: bar(iterable, total=total, desc="reading the store", leave=False, delay=0.5)
    raise QueryError(f"progress must be True, False or a function (iterable, total) -> iterable, not {progress!r}")


def _weights_text(vector: np.ndarray, shown: int = 4) -> str:
    """A direction as "97:0.7,301:0.3", or its largest weights where it has many."""
    used = np.flatnonzero(vector)
    if used.size > shown:
        used = np.sort(used[np.argsort(-np.abs(vector[used]), kind="stable")[:shown]])
        return f"of {np.count_nonzero(vector)} weights, largest {','.join(f'{c}:{vector[c]:.3g}' for c in used)}"
    return ",".join(f"{c}:{vector[c]:.3g}" for c in used)


class Layer(Analysis):
    """One layer of a store: queries per channel, direction or image (statistics and
    pictures come from ``Analysis``)."""

    def __init__(self, store: Store, name: str):
        self.store, self.name = store, name
        self.group = store.group[name]
        self.attrs = dict(self.group.attrs)
        fault = damage.layer_fault(store.group, name, store._children)  # an array's zarr.json lost: one listing of the layer
        if fault:
            raise DamagedStoreError(f"layer {name} of {store.path} is damaged: {fault}; {damage.layer_fix(self.attrs)}")
        if not layer_whole(self.group):
            raise StoreError(f"layer {name} of {store.path} is still being created (or its creation was "
                             "interrupted: rerun the command that makes it)")
        self.channels = int(self.attrs["channels"])
        self.spatial_shape = list(self.attrs.get("spatial_shape", [1, 1]))
        self.available = [s for s in STATS if s in self.group]  # stored statistics

    def __repr__(self) -> str:
        try:
            images = f"{int(self.usable.sum())} images"
        except DamagedStoreError:  # a repr that raised hid the object (Jupyter, store.values()); queries say why
            images = "damaged: a query says how"
        return f"<layer {self.name}: {self.channels} channels, {images}>"

    @cached_property
    def done(self) -> np.ndarray:
        return _read_only(np.asarray(self.stored("done")[:], dtype=bool))

    @cached_property
    def usable(self) -> np.ndarray:
        """Rows that are valid and in a finished shard of this layer; a finished shard whose file is
        missing is refused here (zarr would read its rows as NaN, ranked as if they were data)."""
        finished = np.repeat(self.done, self.store.shard_rows)[: self.store.n]
        missing = damage.missing_shards(self.store.group, self.name, self.done, self.store.valid)
        if missing:
            shard, why = next(iter(missing.items()))
            more = f" (and {len(missing) - 1} more shard{'s' * (len(missing) > 2)})" if len(missing) > 1 else ""
            raise DamagedStoreError(f"store {self.store.path} is damaged: {why}{more}, though marked done; "
                                    f"{damage.layer_fix(self.attrs)}")
        # Read-only, as column() is: `mask = layer.usable; mask &= ...` changed what every later query ranked.
        return _read_only(self.store.valid & finished)

    def stored(self, name: str):
        """The layer's zarr array ``name``, its reads of damaged data said in one sentence (within
        ``hold``, the array read into memory)."""
        held = self.held_arrays()
        if name in held:
            return held[name]
        # Opened once: each opening parses the array's metadata, and a gallery of mixed4a opened
        # them 2,064 times (31 now; no time was measurable either way, locally or on S3).
        arrays = self.__dict__.setdefault("_arrays", {})
        if name not in arrays:
            arrays[name] = Checked(self.group[name], f"{self.name}/{name} of {self.store.path}",
                                          damage.layer_fix(self.attrs), unit="shard" if name == "done" else "row")
        return arrays[name]

    def hold(self, names=("mean", "argmax", "max"), budget=None, progress=False):
        """A context in which ``names`` are read from memory, each read whole once (one request a shard)
        where it fits ``budget`` bytes (half the memory free if None); it gives the names held. For
        what reads every channel, as a gallery does: each channel's reads were a request a shard."""
        from .held import hold

        return hold(self, names, budget, progress)

    def held_arrays(self) -> dict:
        """The arrays read from memory now, {name: array} (a copy; ``{}`` outside ``hold``)."""
        return dict(self.__dict__.get("_held", {}))

    def hold_arrays(self, held: dict) -> None:
        """Reads of the arrays in ``held`` {name: array} come from it; ``{}``: from the store again."""
        self._held = dict(held)

    def _unusable(self, image, row: int) -> str:
        """Why ``row`` has no activations to compare, in a sentence: invalid (and why), or not yet computed."""
        shard = row // self.store.shard_rows
        if self.done[shard]:  # before it is done, a row reads as invalid: validity is written with the shard
            why = self.store.errors([row])[0]
            return f"image {image} (row {row}) is invalid in this store ({why or 'no reason recorded'})"
        return (f"image {image} (row {row}) is not yet computed in layer {self.name}: its shard {shard} is "
                "unfinished (rerun exemplars activations with the same settings to finish it)")

    def note(self) -> str:
        """What to know about any answer from this layer, in one line ("" if nothing)."""
        return "; ".join(self.notes())

    def notes(self) -> list[str]:
        """What to know about any answer from this layer, a line each (random weights, an incomplete store)."""
        notes = []
        if self.store.random_weights:
            notes.append("RANDOM WEIGHTS: these activations come from an untrained network")
        if not self.done.all():
            notes.append(f"incomplete store: answering from {int(self.done.sum())} of {self.done.size} "
                         f"shards ({int(self.usable.sum())} of {self.store.n} images)")
        elif not self.usable.any():
            notes.append(f"no valid image: every one of the {self.store.n} rows is invalid "
                         "(exemplars info shows their errors)")
        return notes

    def array(self, by: str):
        """The zarr array (N, C) of the spatial ``by`` ("mean" or "max"), checked to exist."""
        if by not in ("mean", "max"):
            raise QueryError(f"by must be mean or max, not {by!r}")
        if by not in self.available:
            raise QueryError(f"layer {self.name} has no spatial {by} in this store (it has {', '.join(self.available)})")
        return self.stored(by)

    def column(self, channel: int, by: str = "mean") -> np.ndarray:
        """One channel for every image; the last one read is kept, since a channel's
        top-k, bottom-k and samples (a grid row, a gallery page) all start from it."""
        key = (_channel(channel, self.channels), by)
        if self.__dict__.get("_column", (None,))[0] != key:
            values = _read_only(np.asarray(self.array(by)[:, key[0]]))  # shared by the queries that follow
            self._column = (key, values)
        return self._column[1]

    def _results(self, query, by, rows, values, channel=None, bands=None, k=None, column=None,
                 others=0) -> Results:
        """The table of ``rows``; ``k``: how many were asked for, ``column``: the channel's values,
        ``others``: usable rows that could not be answers (the image ``similar`` starts from)."""
        store = self.store
        labels = store.labels(rows)
        names = [store.class_names[l] if 0 <= l < len(store.classes) else "" for l in labels]
        peaks = None
        if by == "max" and channel is not None and "argmax" in self.available and len(rows):
            peaks = self.crop_peaks(rows, channel)  # None for a flat map: its argmax marks no peak
        results = Results(self.name, query, by, np.asarray(rows), np.asarray(values, dtype=np.float64),
                          store.paths(rows), labels.tolist(), names, channel=channel, peaks=peaks,
                          bands=bands, notes=self.notes())
        usable = int(self.usable.sum()) - others
        if k is not None and len(rows) < k and len(rows) == usable:
            results.add_note(f"{len(rows)} image{'s' * (len(rows) != 1)}, not {k}: the store has no more to rank")
        # Ties all through the answer are rare (but for the zeros of a bottom-k, and a single answer); only
        # then is the whole column looked at (about 2 ms at 1.28M images).
        if column is not None and len(rows) and np.ptp(values) == 0:
            tied = int(np.count_nonzero(column[self.usable] == values[0]))
            if tied == usable:
                results.add_ties("constant", f"channel {channel} is {values[0]:g} on every image: no image "
                                 "stands out, so these are not exemplars")
            elif tied > len(rows) and bands is None:
                first = f"these are the first {len(rows)}" if len(rows) > 1 else "this is the first"
                results.add_ties("ties", f"{tied} images tie at {values[0]:g}: {first} of them by row, "
                                 f"not {'exemplars' if len(rows) > 1 else 'an exemplar'}")
        return results

    def check_k(self, k: int, name: str = "k") -> int:
        """``k`` as a whole number of at least 1, or a QueryError naming ``name``."""
        k = whole_number(k, name)
        if k <= 0:
            raise QueryError(f"{name} must be at least 1, not {k}")
        return k

    def topk(self, channel: int, k: int = 10, by: str = "mean", bottom: bool = False,
             diverse: bool = False, per_class: int = 2) -> Results:
        """The ``k`` images on which ``channel``'s spatial ``by`` ("mean", the notebook's, or "max")
        is highest (``bottom``: lowest); ties go to the lower row. ``diverse`` takes at most
        ``per_class`` images of a class and skips near-duplicates of images already taken."""
        k, channel = self.check_k(k), _channel(channel, self.channels)
        bottom, diverse = _flag(bottom, "bottom"), _flag(diverse, "diverse")
        per_class = self.check_k(per_class, "per_class")
        values = self.column(channel, by)
        skipped = {}
        if diverse:
            rows = ranking.diverse(values, self.usable, k, bottom, self.store.all_labels,
                                   self._fingerprints, per_class, skipped)
        else:
            rows = ranking.top_rows(values, self.usable, k, bottom)
        word = "bottom" if bottom else "top"
        results = self._results(f"channel {channel} ({word} {k}{', diverse' if diverse else ''})",
                                by, rows, values[rows], channel=int(channel), k=k, column=values)
        if diverse and len(rows) < min(k, int(self.usable.sum())):
            rules = [f"{skipped['class']} over {per_class} a class (a larger --per-class allows more)"
                     if skipped.get("class") else "", f"{skipped['duplicate']} near-duplicate{'s' * (skipped['duplicate'] != 1)} of an image shown"
                     if skipped.get("duplicate") else ""]
            results.add_note(f"only {len(rows)} image{'s' * (len(rows) != 1)} pass{'es' * (len(rows) == 1)} the "
                             f"diversity rules; left out: {', '.join(filter(None, rules))}")
        return results

    @cached_property
    def _fingerprints(self) -> np.ndarray:
        """A few runs of channels' means for every image, read once: enough to tell near-duplicates apart."""
        return scans.fingerprints(self)

    def samples(self, channel: int, bands=DEFAULT_BANDS, per_band: int = 5, seed: int = 0,
                by: str = "mean") -> Results:
        """``per_band`` images drawn (by ``seed``) from each quantile band of ``channel``: "0.1%,1%,10%"
        are the top 0.1%, then 0.1-1%, then 1-10%; "zeros" draws from the images exactly 0.
        ``bands`` is that text, a list such as ["0.1%", "1%", "zeros"], or ``parse_bands``' form
        [(label, upper fraction or None for zeros), ...]. ``ranks`` holds each image's place in the
        whole channel, ``bands`` its band."""
        parsed = parse_bands(bands)
        per_band, channel = self.check_k(per_band, "per_band"), _channel(channel, self.channels)
        seed = whole_number(seed, "seed")
        if seed < 0:
            raise QueryError(f"seed must be 0 or more, not {seed}")
        values = self.column(channel, by)
        zero_only = []
        chosen, labels, empty, ranks = ranking.band_samples(values, self.usable, parsed, per_band, seed, zero_only)
        asked = bands if isinstance(bands, str) else ",".join(b if isinstance(b, str) else b[0] for b in bands)
        results = self._results(f"channel {channel} (samples from {asked})", by, chosen, values[chosen],
                                channel=int(channel), bands=labels, column=values)
        results.ranks = ranks + 1  # each image's place in the channel's ranking, not in this list
        narrow = [label for label in empty if label not in zero_only]
        if narrow:
            results.add_note(f"no image in {', '.join(narrow)} (of {int(self.usable.sum())} usable images)")
        if zero_only:
            results.add_note(f"{', '.join(zero_only)}: only images exactly 0, shown under zeros")
        return results

    def projection(self, vector, progress=None) -> np.ndarray:
        """mean @ vector for every image (``pipeline.scans.projection``); ``vector`` as ``direction`` takes it.

        Every row is there: those not ``usable`` (invalid, or not yet computed) hold NaN or
        whatever an import gave them, so mask with ``layer.usable``."""
        return scans.projection(self, parse_direction(vector, self.channels), _progress(progress))

    def direction(self, direction, k: int = 10, bottom: bool = False, progress=None) -> Results:
        """The ``k`` images whose spatial means project highest on ``direction`` (``bottom``: lowest):
        "97:0.7,301:0.3", a .npy file, a dict {channel: weight} or an array of one weight a channel."""
        k, bottom = self.check_k(k), _flag(bottom, "bottom")
        vector = parse_direction(direction, self.channels)
        values = self.projection(vector, progress)
        if not np.isfinite(values[self.usable]).all():  # usable rows are finite: the products overflowed
            raise QueryError("the direction's projections overflow float64; scale its weights down "
                             "(a positive scale does not change the ranking)")
        rows = ranking.top_rows(values, self.usable, k, bottom)
        label = direction if isinstance(direction, str) else _weights_text(vector)
        return self._results(f"direction {label} ({'bottom' if bottom else 'top'} {k})", "mean", rows, values[rows],
                             k=k)

    def similar(self, image, k: int = 10, progress=None) -> Results:
        """The ``k`` images whose mean-activation vectors are nearest in cosine."""
        k = self.check_k(k)
        row = self.store.row_of(image)
        if not self.usable[row]:
            raise QueryError(self._unusable(image, row))
        _, cosine = scans.cosine_to_row(self, row, _progress(progress))
        if cosine is None:
            raise QueryError(f"image {image} (row {row}) has no activation in layer {self.name} "
                             "(every channel 0): every image is equally far from it in cosine")
        usable = self.usable.copy()
        usable[row] = False
        rows = ranking.top_rows(cosine, usable, k)
        return self._results(f"similar to {self.store.paths([row])[0]} (row {row})", "mean",
                             rows, cosine[rows], k=k, others=1)
