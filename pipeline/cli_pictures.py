"""The picture commands of ``exemplars``: grid, featureviz, gallery and stats.

Offers:
    grid, featureviz, gallery, stats   typer commands, registered on ``pipeline.cli.app``

``pipeline.cli`` imports this module where these commands belong in ``exemplars --help``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .cli import DEFAULT_LAYER, LayerOpt, RootOpt, StoreOpt, _layer, app, in_store


@app.command()
def grid(
    store: str = StoreOpt,
    layer: str = LayerOpt,
    channels: str = typer.Option("0-9", "--channels", help="Rows: e.g. 0-9 or 3,97,301."),
    k: int = typer.Option(10, "-k", help="Columns: images per row."),
    by: str = typer.Option("mean", help="mean | max"),
    crop: bool = typer.Option(False, help="Show the receptive field around each image's peak."),
    heatmap: bool = typer.Option(False, help="Overlay the channel's map (reruns the model on the shown images)."),
    bottom: bool = typer.Option(False, help="Add a row of the least activating images per channel."),
    samples: bool = typer.Option(False, help="Add a row of quantile-band samples per channel."),
    featureviz: bool = typer.Option(False, help="Start each row with the channel's cached feature visualisation."),
    out: Path = typer.Option(Path("grid.png"), "--out", "-o", help="The figure: .png, .pdf or .svg."),
    # 150: a tile (1.7 inches) gets 255 pixels, the 224 of the image it shows with no loss;
    # 200 made a 10 x 10 grid a 12 MB PNG.
    dpi: int = typer.Option(150, min=50, max=1200, help="Resolution of a .png (and of the images in a .pdf)."),
    root: Optional[Path] = RootOpt,
):
    """The notebook's figure from the store: top images per channel, as a PNG."""
    from .outputs import figure_file
    from .render import save

    figure_file(out)
    target, shown = _layer(store, layer, root), []
    figure = target.grid(channels, k=k, by=by, crop=crop, heatmap=heatmap, bottom=bottom, samples=samples,
                         featureviz=featureviz, shown=shown)
    save(figure, out, dpi)
    typer.echo(f"wrote {out}")
    from .pictures import missing_warning

    for line in missing_warning(shown, target.store.root, given=root is not None).splitlines():
        typer.echo(f"warning: {line}", err=True)


@app.command()
def featureviz(
    store: str = StoreOpt,
    layer: str = LayerOpt,
    channel: int = typer.Option(..., "--channel", "-c", help="Channel to visualise."),
    size: int = typer.Option(128, min=16, max=1024, help="Side of the optimised image in pixels."),
    steps: int = typer.Option(128, min=1, help="Optimisation steps."),
    seed: int = typer.Option(0, min=0, help="Seed of the starting image and of lucent's jitter, scale and rotation."),
    redo: bool = typer.Option(False, help="Optimise again and replace the cached picture "
                              "(with other settings: every cached picture)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also save it as a PNG."),
):
    """lucent's activation maximisation for a channel, cached in the store (reruns the model once)."""
    import time

    from . import open_store
    from .featureviz import featureviz as optimise
    from .featureviz import marked

    if out is not None:
        from .outputs import image_file

        image_file(out)  # before the optimisation, not after it
    note = in_store(open_store(store), layer).note()  # of the weights the picture is made with
    started = time.perf_counter()
    not_cached = []
    picture = optimise(store, layer, channel, size=size, steps=steps, seed=seed, redo=redo, not_cached=not_cached)
    if out is not None:
        marked(picture, note, f"{layer} channel {channel}").save(out)
    kept = f"not cached: {not_cached[0]}" if not_cached else f"cached in {store}"
    typer.echo(f"{layer} channel {channel}: {size}x{size}, {steps} steps, {kept} "
               f"({time.perf_counter() - started:.1f} s)" + (f"; wrote {out}" if out else ""))
    if note:
        typer.echo(f"note: {note}", err=True)


@app.command()
def gallery(
    store: str = StoreOpt,
    layers: List[str] = typer.Option([DEFAULT_LAYER], "--layer", "-l",
                                     help="Layer of the store; repeat for several (each in OUT/LAYER, with an index of them)."),
    out: Path = typer.Option(Path("site"), "--out", "-o", help="Folder of the static site."),
    k: int = typer.Option(10, "-k", help="Top images per channel."),
    crops: bool = typer.Option(True, help="Receptive-field crops around each top image's peak."),
    root: Optional[Path] = RootOpt,
):
    """A static, offline HTML site of every channel of a layer (open OUT/index.html)."""
    from .gallery import build_gallery
    from .galleries import layers_folder, layers_index

    layers = list(dict.fromkeys(layers))  # a layer named twice is built once
    targets = [_layer(store, name, root, cache_paths=True) for name in layers]  # all checked before any is built
    for target in targets:
        target.check_k(k)
    if len(targets) > 1:
        layers_folder(out, layers)
    built = {}
    for target in targets:
        summary = build_gallery(target, out if len(targets) == 1 else out / target.name, k=k, crops=crops)
        built[target.name] = summary
        typer.echo(summary.line())
        for line in summary.missing_line(target.store.root, given=root is not None).splitlines():
            typer.echo(f"warning: {line}", err=True)
    if len(targets) > 1:
        typer.echo(f"index of {len(targets)} layers' galleries at {layers_index(out, store, built, targets[0].note())}")


@app.command()
def stats(
    store: str = StoreOpt,
    layer: str = LayerOpt,
    out: Path = typer.Option(Path("stats"), "--out", "-o", help="Folder for tables and figures."),
    channel: Optional[int] = typer.Option(None, "--channel", "-c", help="Also draw this channel's histogram."),
):
    """Per-channel statistics, histograms, correlations, class selectivity and PCA of a layer."""
    from .report import write_stats

    import contextlib

    from .places import is_url

    target = _layer(store, layer)
    if channel is not None:
        target.column(channel)  # validates the channel before the long part
    # On an object store each block of columns read is a request a shard (3,393 for 24 images): the
    # arrays are read whole once there. Not on a disk, where it gained nothing for much more memory
    # (56.1 against 55.8 s and 3.3 against 0.9 GB at 1.28M images x 508, the means alone).
    held = target.hold(["mean", "max"], progress=True) if is_url(target.store.path) else contextlib.nullcontext()
    with held:
        lines = write_stats(target, out, channel)
    for line in lines:
        typer.echo(line)
