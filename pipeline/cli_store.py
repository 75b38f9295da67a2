"""The store commands of ``exemplars``: what a store holds, and one made from a matrix.

Offers:
    info, import_ ("import")   typer commands, registered on ``pipeline.cli.app``

``pipeline.cli`` imports this module where these commands belong in ``exemplars --help``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli import StoreOpt, _lasting, app


@app.command()
def info(store: str = StoreOpt, as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
         verify: bool = typer.Option(False, "--verify", help="Read every finished shard whole, checking its checksums "
                                     "(the store's size read: seconds a GB).")):
    """What a store holds: layers, images, invalid rows, completeness, weights."""
    import json

    from . import open_store

    opened = open_store(store)
    facts = opened.info()
    _verify(opened, facts, verify)
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        _refuse_damaged(facts)
        return
    weights = facts["weights"]
    typer.echo(f"store        {facts['store']} (format {facts['format_version']})")
    typer.echo(f"images       {facts['images']} ({facts['classes']} classes), invalid: "
               f"{'unknown until complete' if facts['invalid'] is None else facts['invalid']}")
    if facts.get("damaged"):
        typer.echo("images       DAMAGED (see below)")
    for example in facts["invalid_examples"]:
        typer.echo(f"  invalid    row {example['row']} {example['path']}: {example['error']}")
    typer.echo(f"dataset      {_pairs(facts['dataset'])}")
    typer.echo(f"weights      {_pairs(weights)}" + ("  <- RANDOM WEIGHTS" if weights.get("kind") == "random" else ""))
    if facts["precision"] is not None:  # imported stores say nothing of how they were computed
        typer.echo(f"precision    {facts['precision']}" + ("" if facts["precision"] == "fp32" else "  (approximate)"))
    if facts["preprocessing"]:
        typer.echo(f"preprocess   {_pairs(facts['preprocessing'])}")
    width = max([12, *map(len, facts["layers"])])
    for name, layer in facts["layers"].items():
        if layer.get("damaged"):
            typer.echo(f"layer {name:{width}s} DAMAGED (see below)")
            continue
        if layer.get("being_created"):
            typer.echo(f"layer {name:{width}s} being created (or its creation was interrupted)")
            continue
        grid = "no spatial maps" if layer.get("imported") else "x".join(map(str, layer["spatial_shape"]))
        typer.echo(f"layer {name:{width}s} {layer['channels']} channels, {grid}, shards {layer['shards_done']}/{layer['shards']}, "
                   f"{layer['images_covered']} images usable, stats {','.join(layer['stats'])}")
    _refuse_damaged(facts)


def _verify(opened, facts, full: bool) -> None:
    """Each done shard's files listed and their indexes checked (a few KB a shard); ``full``: every
    shard read whole and checksummed. What fails marks its layer damaged."""
    from .damage import damaged_shards, layer_fix
    from .lost import altered_image_data, image_fix

    altered = altered_image_data(opened.group) if full and "damaged" not in facts else None
    if altered:
        facts["damaged"] = f"store {opened.path} is damaged: {altered}; {image_fix(opened.group, verify=True)}"
    for name, layer in facts["layers"].items():
        if layer.get("damaged") or layer.get("being_created"):
            continue
        found = damaged_shards(opened.group, name, full=full)
        if full:
            layer["verified"] = not found
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            layer["damaged"] = (f"store {opened.path} is damaged: {next(iter(found.values()))}{more}; "
                                f"{layer_fix(opened[name].attrs)}")


def _refuse_damaged(facts) -> None:
    """After the facts, the first damage found, as the one sentence of an error (exit 2)."""
    from .errors import DamagedStoreError

    damaged = [facts["damaged"]] if "damaged" in facts else []  # the images' arrays: every layer's rows
    damaged += [layer["damaged"] for layer in facts["layers"].values() if layer.get("damaged")]
    if damaged:
        raise DamagedStoreError(damaged[0] + (f" ({len(damaged) - 1} more layer{'s' * (len(damaged) > 2)} damaged too)"
                                              if len(damaged) > 1 else ""))


def _pairs(facts) -> str:
    """A metadata dict as ``key: value; key: value`` (a dict's repr is for programmers)."""
    if not isinstance(facts, dict):
        return str(facts)
    return "; ".join(f"{key}: {'(' + _pairs(value) + ')' if isinstance(value, dict) else _value(value)}"
                     for key, value in facts.items())


def _value(value) -> str:
    return "not recorded" if value is None else str(value)  # an imported store's root: not "None"


@app.command("import")
def import_(
    matrix: Path = typer.Argument(..., help="An (N, C) .npy of spatial means."),
    store: str = StoreOpt,
    layer: str = typer.Option(..., "--layer", "-l", help="Name of the layer to make (or add to the store)."),
    paths: Path = typer.Option(..., help="A text file: one image path per line, N lines."),
    labels: Optional[Path] = typer.Option(None, help="An (N,) .npy of integer labels."),
    max_matrix: Optional[Path] = typer.Option(None, "--max", help="An (N, C) .npy of spatial maxima."),
    classes: Optional[Path] = typer.Option(None, help="A text file of class names, one per line."),
    root: Optional[str] = typer.Option(None, help="Dataset root the paths are relative to."),
    shard_rows: Optional[int] = typer.Option(None, min=1, help="Rows per shard (default 65536, or the store's)."),
    overwrite: bool = typer.Option(False, help="Remove the store first (every layer in it), then import."),
):
    """Make a store from a matrix computed elsewhere, so every query works on it."""
    from .progress import bar

    _lasting(store)
    from .importing import import_matrix, invalid_rows, read_array, read_lines

    data = read_array(matrix, mmap=True)
    peaks = max_matrix and read_array(max_matrix, mmap=True)
    group = import_matrix(store, data, layer, read_lines(paths), labels and read_array(labels),
                          read_lines(classes) if classes else (), root, shard_rows, overwrite,
                          progress=lambda it: bar(it, unit="shard", desc=f"import {layer}"),
                          max_matrix=peaks)
    typer.echo(f"imported {data.shape[0]} x {data.shape[1]} into {store} (layer {layer})")
    invalid = invalid_rows(group)
    if invalid:
        typer.echo(f"warning: {invalid} of {data.shape[0]} rows {'is' if invalid == 1 else 'are'} invalid"
                   f"{_invalid_reasons(group, [m for m in (data, peaks) if m is not None])}: queries leave them out", err=True)


def _invalid_reasons(group, matrices) -> str:
    """Why the store's invalid rows are: this import's values (``matrices``: its mean and max), or what
    the store held already (a phase-one image that could not be decoded, another import's values, were
    said to be "a value not finite" of this matrix)."""
    import numpy as np

    rows = np.flatnonzero(~np.asarray(group["images"]["valid"][:], dtype=bool))
    finite = np.ones(rows.size, dtype=bool)
    with np.errstate(over="ignore"):
        for matrix in matrices:  # only the invalid rows read (the matrices are memory maps)
            finite &= np.isfinite(np.asarray(matrix[rows]).astype(np.float32)).all(axis=1)
    values = int((~finite).sum())
    values_text, others_text = ("a value not finite, or past float32's range",
                                "in the store already: an image that could not be decoded, or non-finite "
                                "activations or imported values of another layer; exemplars info shows why")
    if not values:
        return f" ({others_text})"
    if values == rows.size:
        return f" ({values_text})"
    return f": {values} with {values_text}; {rows.size - values} {others_text.replace(': ', ' (', 1)})"
