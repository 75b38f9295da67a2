"""The ``exemplars`` command: parses arguments, calls the library, maps errors.

Offers:
    app     the typer application (one command per function below, grid, featureviz, gallery
            and stats from ``pipeline.cli_pictures``, info and import from ``pipeline.cli_store``)
    main()  entry point: a PipelineError becomes one sentence on stderr and exit 2
    DEFAULT_LAYER, in_store(store, layer)   the default --layer; a store's layer, naming --layer if absent

Phase-two commands never import torch; ``activations`` and ``layers`` do, lazily.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import DatasetError, InputError, LayerError, PipelineError, first_line
from .places import home_argument
from .progress import interrupted_said, say

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Dataset exemplars for every channel: phase one stores, phase two answers.")

StoreOpt = typer.Option(..., "--store", "-s", help="Path of the activation store (zarr).")


@app.command()
def activations(
    data_dir: Path = typer.Argument(..., help="ImageFolder tree or flat folder of images."),
    store: str = typer.Option("activations.zarr", "--store", "-s",
                              help="Where to write the store: a folder, or an fsspec URL such as s3://bucket/x.zarr."),
    layer: List[str] = typer.Option(["mixed4a"], "--layer", "-l", help="Layer to store; repeat for several."),
    weights: str = typer.Option("pretrained", help="pretrained | random | PATH.pth"),
    seed: int = typer.Option(0, help="Seed for --weights random."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Images per batch (default 8 on CPU, 256 on CUDA)."),
    workers: Optional[int] = typer.Option(None, min=0, help="Decoding processes (default: on CPU none, the batch decodes in threads; on CUDA cores - 1, at most 32)."),
    lanes: Optional[int] = typer.Option(None, min=1, help="CPU: batches computed at once, each by one core that decodes it and runs the network (default: one per core; 1 with --compile or --workers)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    shard_rows: Optional[int] = typer.Option(None, min=1, help="Rows per shard (default 65536)."),
    overwrite: bool = typer.Option(False, help="Rebuild a store made with other settings."),
    precision: str = typer.Option("fp32", help="fp32 (exact) | bf16 | fp16: approximate; bf16 is the fast one on CPUs with AMX-BF16, fp16 on GPUs."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the network (slow start, fast run)."),
    decoder: str = typer.Option("pil", help="pil (the notebook's, exact) | fast (torchvision) | gpu (CUDA)."),
    verify: bool = typer.Option(False, "--verify", help="Read every finished shard whole and recompute those that fail "
                                "their checksums (every run recomputes shards whose files are missing or cut short)."),
):
    """Phase one: run the model once and store every channel's mean, max and argmax."""
    from .extract import extract

    _lasting(store)
    summary = extract(data_dir, store, layer, weights=weights, seed=seed, batch_size=batch_size,
                      workers=workers, device=device, shard_rows=shard_rows, overwrite=overwrite,
                      precision=precision, compile=compile, decoder=decoder, lanes=lanes, verify=verify)
    if not summary.leader:
        return
    from .results import printable

    for path, error in summary.invalid[:20]:
        say(printable(f"invalid: {path}: {error}"))
    if len(summary.invalid) > 20:
        say(f"invalid: ... and {len(summary.invalid) - 20} more (see images/error in the store)")
    _closing(summary.line())
    if summary.images and not summary.usable:  # also on a rerun, which computes nothing
        raise DatasetError(f"none of the {summary.images} images of {data_dir} could be decoded, so the store "
                           "has nothing to rank; fix or replace them, then rerun with --overwrite")


@app.command()
def layers(weights: str = typer.Option("random", help="Weights to probe with (shapes do not depend on them).")):
    """List every hookable layer of InceptionV1 with its channels and spatial size."""
    from .model import layer_shapes, load_model

    model, _ = load_model(weights)
    shapes = layer_shapes(model)
    typer.echo(f"{'layer':40s} {'channels':>8s}  spatial")
    for name, (c, h, w) in shapes.items():
        what = {"softmax2_pre_activation_matmul": "  (the logits)", "softmax2": "  (their softmax)"}.get(name, "")
        typer.echo(f"{name:40s} {c:8d}  {h}x{w}{what}")


DEFAULT_LAYER = "mixed4a"
LayerOpt = typer.Option(DEFAULT_LAYER, "--layer", "-l", help="Layer of the store.")


def _emit(results, as_json: bool) -> None:
    import json

    for note in results.notes if as_json else []:  # a table says them in its own lines
        typer.echo(f"note: {note}", err=True)
    if as_json:
        typer.echo(json.dumps(results.to_dict()))
    else:
        typer.echo(repr(results))


def _reading_bar(iterable, total: int):
    """For the queries that read many columns or every shard: seconds at ImageNet-train size.
    Shown only once a read has taken half a second, so quick queries print nothing."""
    from .progress import bar

    return bar(iterable, total=total, desc="reading the store", leave=False, delay=0.5)


def _lasting(store: str) -> None:
    """Refuse a store that would vanish with this process (fsspec's memory://)."""
    if store.startswith("memory://"):
        raise InputError(f"{store} would vanish when this command ends; give a folder or an object-store URL")


def _layer(store: str, layer: str, root: Optional[Path] = None, cache_paths: bool = False):
    """The layer, its store opened for one command: paths read per query (``cache_paths``: all at once)."""
    from . import open_store

    if root is not None and not root.is_dir():
        raise InputError(f"--root {root} is not a folder")
    return in_store(open_store(store, cache_paths=cache_paths, root=root), layer)


def in_store(opened, layer: str):
    """``opened[layer]``; a store without the default layer says that --layer picks another."""
    try:
        return opened[layer]
    except LayerError as exc:
        if layer != DEFAULT_LAYER:
            raise
        raise LayerError(f"{exc} (--layer picks one; {DEFAULT_LAYER} is the default)") from None


RootOpt = typer.Option(None, "--root", help="Where the images are now, if they moved since phase one.")


@app.command()
def topk(
    store: str = StoreOpt,
    layer: str = LayerOpt,
    channel: Optional[int] = typer.Option(None, "--channel", "-c", help="Channel to rank by."),
    direction: Optional[str] = typer.Option(None, help="Rank along CH:W,CH:W,... or a .npy vector instead."),
    k: int = typer.Option(10, "-k", help="How many images."),
    by: str = typer.Option("mean", help="mean (the notebook's statistic) | max"),
    bottom: bool = typer.Option(False, help="The least activating images instead."),
    diverse: bool = typer.Option(False, help="Skip near-duplicates; at most --per-class per class."),
    per_class: Optional[int] = typer.Option(None, min=1, help="With --diverse: images per class at most (default 2)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
):
    """The k most (or least) activating images of a channel or a direction."""
    from .errors import QueryError

    if (channel is None) == (direction is None):
        raise QueryError("give exactly one of --channel or --direction")
    if per_class is not None and not diverse:
        raise QueryError("--per-class limits --diverse; add --diverse")
    target = _layer(store, layer)
    if direction is not None:
        if by != "mean":
            raise QueryError("--direction ranks by the spatial mean only (the mean is linear; the max is not)")
        if diverse:
            raise QueryError("--diverse is for --channel; a direction ranks every image as it is")
        results = target.direction(direction, k=k, bottom=bottom, progress=_reading_bar)
    else:
        results = target.topk(channel, k=k, by=by, bottom=bottom, diverse=diverse, per_class=per_class or 2)
    _emit(results, as_json)


@app.command()
def samples(
    store: str = StoreOpt,
    layer: str = LayerOpt,
    channel: int = typer.Option(..., "--channel", "-c", help="Channel to sample."),
    bands: str = typer.Option("0.1%,1%,10%,50%,zeros", help="Nested top bands by rank, and 'zeros'."),
    per_band: int = typer.Option(5, min=1, help="Images drawn from each band."),
    seed: int = typer.Option(0, min=0, help="Seed of the draw: the same seed, the same images."),
    by: str = typer.Option("mean", help="mean (the notebook's statistic) | max"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
):
    """Random images from bands of a channel's activation quantiles."""
    _emit(_layer(store, layer).samples(channel, bands=bands, per_band=per_band, seed=seed, by=by), as_json)


@app.command()
def similar(
    store: str = StoreOpt,
    layer: str = LayerOpt,
    image: str = typer.Option(..., "--image", "-i", help="A row number or an image path."),
    k: int = typer.Option(10, "-k", help="How many images."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
):
    """The images whose activation vectors are nearest (cosine) to one image's."""
    _emit(_layer(store, layer).similar(image, k=k, progress=_reading_bar), as_json)


# Their own modules (cli.py was past 380 lines, then 330); imported here, so that `exemplars --help`
# lists the picture commands after the queries, then info and import.
importlib.import_module(".cli_pictures", __package__)
importlib.import_module(".cli_store", __package__)


def _closing(line: str) -> None:
    """Phase one's last line, on stdout. The store is complete by now: a reader that has gone
    (``exemplars activations ... 2>&1 | head -1``) costs the line, not the run's exit status."""
    try:
        typer.echo(line)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that exit's flush cannot fail again


def _on_sigterm(signum, frame) -> None:
    """A batch scheduler's stop (SIGTERM, before its SIGKILL) ends the run as Ctrl-C does: the lock
    released, finished shards kept, and said, instead of a silent death."""
    raise KeyboardInterrupt


def _quiet_exit() -> None:
    """Leave out what Python reports at exit about work cut short: an object store's failed
    requests, or zarr's writes stopped by Ctrl-C, leave coroutines and tasks that it would
    print as hundreds of lines of tracebacks; the line before the exit said it all."""
    import logging
    import warnings

    sys.unraisablehook = lambda unraisable: None
    logging.getLogger("asyncio").disabled = True
    # zarr's coroutines cut short by Ctrl-C, said as a warning (with a tracemalloc hint) after the line
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)


def _click_class(name: str):
    """click's exception class of that name, from the click that typer uses (newer typers carry
    their own copy, so ``import click`` would not name the class that is raised)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


def main() -> None:
    # The commands write files: no window toolkit, unless the user's environment names a backend.
    # (The library keeps whatever backend its caller has.)
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.argv[1:] = [home_argument(arg) for arg in sys.argv[1:]]
    if sys.getfilesystemencoding().lower().replace("-", "") != "utf8" and "--help" not in sys.argv[2:]:
        # Stores keep paths as UTF-8 text: under another encoding non-ASCII names are stored garbled,
        # and read back they name files that are not there.
        typer.echo(f"error: exemplars needs UTF-8 file names and this locale's are "
                   f"{sys.getfilesystemencoding()}; set PYTHONUTF8=1 (or LC_ALL=C.UTF-8) and run it again", err=True)
        sys.exit(2)
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:  # under torchrun the launcher stops its ranks itself
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        # Not standalone: click's own mistakes (a missing option, "abc" for a number) come
        # here and are said in one sentence too, instead of a framed usage box.
        code = app(standalone_mode=False)
    except _click_class("UsageError") as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `exemplars` alone: the help (rich has printed it)
            if exc.format_message():
                typer.echo(exc.format_message())
            sys.exit(0)
        hint = f"; see {exc.ctx.command_path} --help" if exc.ctx is not None else ""
        typer.echo(f"error: {exc.format_message().rstrip('.')}{hint}", err=True)
        sys.exit(exc.exit_code)
    except _click_class("ClickException") as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except PipelineError as exc:
        if str(exc):  # a torchrun follower's stop is silent: rank 0 said why
            typer.echo(f"error: {exc}", err=True)
        _quiet_exit()
        sys.exit(exc.exit_code)
    except BrokenPipeError:  # `exemplars topk ... | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that exit's flush cannot fail again
        sys.exit(1)
    except OSError as exc:  # the machine refused a read or write: a full disk, permissions, a file system
        where = f": {exc.filename}" if exc.filename else ""
        typer.echo(f"error: {exc.strerror or first_line(exc)}{where}; fix that and run the same command again",
                   err=True)
        _quiet_exit()
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt) as exc:
        if isinstance(exc.__cause__, EOFError):  # click turns an EOFError into Abort, as if Ctrl-D
            typer.echo(f"error: a file ended before its data did ({exc.__cause__ or 'EOFError'})", err=True)
            sys.exit(1)
        typer.echo("interrupted", err=True)
        _quiet_exit()
        sys.exit(130)
    if isinstance(code, int) and code:  # typer turns Ctrl-C into exit 130 itself
        if code == 130 and not interrupted_said():  # before phase one's first shard, or in any other command
            typer.echo("interrupted", err=True)
        _quiet_exit()
        sys.exit(code)
