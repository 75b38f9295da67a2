"""The ``exemplars`` command: parses arguments, calls the library, maps errors.

Offers:
    app     the typer application (one command per function below)
    main()  entry point: a PipelineError becomes one sentence on stderr and exit 2

Phase-two commands never import torch; ``activations`` and ``layers`` do, lazily.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import PipelineError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Dataset exemplars for every channel: phase one stores, phase two answers.")

StoreOpt = typer.Option(..., "--store", "-s", help="Path of the activation store (zarr).")


@app.command()
def activations(
    data_dir: Path = typer.Argument(..., help="ImageFolder tree or flat folder of images."),
    store: Path = typer.Option(Path("activations.zarr"), "--store", "-s", help="Where to write the store."),
    layer: List[str] = typer.Option(["mixed4a"], "--layer", "-l", help="Layer to store; repeat for several."),
    weights: str = typer.Option("pretrained", help="pretrained | random | PATH.pth"),
    seed: int = typer.Option(0, help="Seed for --weights random."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Images per batch (default 32 on CPU, 128 on CUDA)."),
    workers: Optional[int] = typer.Option(None, min=0, help="Decoding processes (default: cores, at most 4)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    shard_rows: Optional[int] = typer.Option(None, min=1, help="Rows per shard (default 65536)."),
    overwrite: bool = typer.Option(False, help="Rebuild a store made with other settings."),
):
    """Phase one: run the model once and store every channel's mean, max and argmax."""
    from .extract import extract

    summary = extract(data_dir, store, layer, weights=weights, seed=seed, batch_size=batch_size,
                      workers=workers, device=device, shard_rows=shard_rows, overwrite=overwrite)
    for path, error in summary.invalid[:20]:
        typer.echo(f"invalid: {path}: {error}", err=True)
    if len(summary.invalid) > 20:
        typer.echo(f"invalid: ... and {len(summary.invalid) - 20} more (see images/error in the store)", err=True)
    typer.echo(summary.line())


@app.command()
def layers(weights: str = typer.Option("random", help="Weights to probe with (shapes do not depend on them).")):
    """List every hookable layer of InceptionV1 with its channels and spatial size."""
    from .model import layer_shapes, load_model

    model, _ = load_model(weights)
    for name, (c, h, w) in layer_shapes(model).items():
        typer.echo(f"{name:40s} {c:6d}  {h}x{w}")


def main() -> None:
    try:
        app()
    except PipelineError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
