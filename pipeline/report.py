"""``exemplars stats``: a layer's statistics written as tables, JSON and figures.

Offers:
    write_stats(layer, out_dir, channel=None, progress=True) -> list[str] summary lines

Files in ``out_dir``: channels.csv / channels.json (per channel, for the spatial
mean and max), neighbours.csv, selectivity_channels.csv, selectivity_classes.csv
(labelled images only), pca.json, histograms_<by>.png, correlation.png and,
with ``channel``, histogram_<by>_ch<channel>.png.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from . import outputs, render, stats
from .selectivity import share_text

COLUMNS = ["mean", "std", "max", "q50", "q90", "q99", "q99.9", "active", "kurtosis", "dead"]


def _bar(iterable, total, desc):
    from .progress import bar

    return bar(iterable, total=total, desc=desc, unit="step", leave=False)


def _channel_rows(tables: dict) -> list[dict]:
    channels = len(next(iter(tables.values()))["mean"])
    rows = []
    for c in range(channels):
        row = {"channel": c}
        for by, table in tables.items():
            for name in COLUMNS:
                value = table[name][c]
                # JSON has no NaN (a dead channel's kurtosis): null there, an empty CSV cell
                row[f"{by}_{name}"] = (bool(value) if name == "dead" else
                                       _digits(value) if np.isfinite(value) else None)
        rows.append(row)
    return rows


def _digits(value, significant: int = 7) -> float:
    """``value`` to float32's precision in significant digits (not decimal places, which would
    write a channel of means near 1e-8 as 0.0)."""
    return float(f"{float(value):.{significant}g}")


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _pca_summary(cov, groups) -> dict:
    out = {"layer": stats.pca(cov)}
    for name, (lo, hi) in groups.items():
        out[name] = stats.pca(cov[lo:hi, lo:hi])
    for value in out.values():
        value["explained_variance_ratio"] = [_digits(v) for v in value["explained_variance_ratio"][:50]]
    return out


def write_stats(layer, out_dir, channel: int | None = None, progress: bool = True) -> list[str]:
    """Every statistic's file and figure in ``out_dir``; returns the summary lines to print."""
    layer.check_usable()  # before any file is written
    out = outputs.folder(out_dir)
    written = []  # named at the end: only this run's files, not what else the folder holds

    def to(name: str) -> Path:
        written.append(name)
        return out / name
    warning = layer.note()
    title = f"{layer.name} ({int(layer.usable.sum())} images)"
    bar = _bar if progress else None
    tables = {by: layer.table(by, progress=bar and (lambda it, n, by=by: bar(it, n, f"{by} columns")))
              for by in ("mean", "max") if by in layer.available}
    rows = _channel_rows(tables)
    _write_csv(to("channels.csv"), rows)
    to("channels.json").write_text(json.dumps(rows), encoding="utf-8")
    groups = stats.branches(layer)
    for by, table in tables.items():
        render.save(render.small_multiples(table["hist_counts"],
                                           f"{title}: spatial {by} per channel (log counts)", warning, groups),
                    to(f"histograms_{by}.png"))
        if channel is not None:
            render.save(layer.histogram_figure(channel, by), to(f"histogram_{by}_ch{channel}.png"))
    moments = layer.moments(progress=bar and (lambda it, n: bar(it, n, "shards")))
    corr = layer.correlations()
    _write_csv(to("neighbours.csv"), _neighbour_rows(corr))
    render.save(layer.correlation_figure(), to("correlation.png"))
    pca = _pca_summary(moments.cov, groups)
    to("pca.json").write_text(json.dumps(pca, indent=1), encoding="utf-8")
    lines = _summary(title, tables["mean"], pca, groups)
    chosen = layer.selectivity()
    if chosen is None:
        lines.append(f"selectivity skipped: {layer.no_selectivity()}")
    else:
        lines.append(_write_selectivity(chosen, layer.channels, to))
    lines.append(f"wrote {', '.join(sorted(written))} to {out}")
    return ([warning] if warning else []) + lines


def _neighbour_rows(corr) -> list[dict]:
    near = stats.neighbours(corr, 5)  # -1: no neighbour there, an empty cell
    return [{"channel": c, **{f"n{i + 1}": (int(near[c, i]) if near[c, i] >= 0 else "") for i in range(near.shape[1])},
             **{f"r{i + 1}": (_cell(corr[c, near[c, i]]) if near[c, i] >= 0 else "")
                for i in range(near.shape[1])}}
            for c in range(corr.shape[0])]


def _summary(title: str, table: dict, pca: dict, groups: dict) -> list[str]:
    signed = stats.has_negative(table)  # no ReLU at the end: "never > 0" is no death
    dead = int((table["max"] <= 0).sum())
    s = "s" * (dead != 1)
    lines = [f"{title}: {dead} channel{s} never > 0 on the spatial mean (the layer has negative values: "
             "not a sign of dead units)" if signed else
             f"{title}: {dead} dead channel{s} (never > 0 on the spatial mean)",
             f"effective dimensionality: participation ratio {pca['layer']['participation_ratio']:.1f}, "
             f"{pca['layer']['components_90']} components for 90% of variance, "
             f"{pca['layer']['components_99']} for 99%"]
    return lines + [f"  branch {name} ({lo}-{hi - 1}): participation ratio {pca[name]['participation_ratio']:.1f}, "
                    f"90% in {pca[name]['components_90']}" for name, (lo, hi) in groups.items()]


def _write_selectivity(chosen: dict, channels: int, to) -> str:
    """The two selectivity tables; returns the line naming the channel whose share is furthest above chance."""
    names = dict(zip(chosen["classes"].tolist(), chosen["class_names"]))
    _write_csv(to("selectivity_channels.csv"), [
        {"channel": c, "selectivity": _cell(chosen["index"][c]), "share": _cell(chosen["share"][c]),
         "shuffled": _cell(chosen["shuffled"][c]),
         **{f"class{i + 1}": names[int(k)] for i, k in enumerate(chosen["top_classes"][c])}}
        for c in range(channels)])
    _write_csv(to("selectivity_classes.csv"), [
        {"class": chosen["class_names"][i], **{f"channel{j + 1}": int(ch) for j, ch in enumerate(row)},
         **{f"excess{j + 1}": _cell(chosen["class_excess"][i, ch]) for j, ch in enumerate(row)}}
        for i, row in enumerate(chosen["channels_per_class"])])
    most = chosen["most"]
    if most is None:
        return "top class share: no channel's is above its value with the labels shuffled"
    return (f"top class share furthest above chance: channel {most} (its top class, "
            f"{names[int(chosen['top_classes'][most][0])]}, "
            f"holds {share_text(chosen['share'][most])} of the sum of its class means, "
            f"{share_text(chosen['shuffled'][most])} with the labels shuffled; index {chosen['index'][most]:.3f})")


def _cell(value) -> float | str:
    """A CSV cell: 7 significant digits, as every file here (5 decimals wrote a share of 0.0018041,
    1,000 classes' scale, as 0.0018), empty where there is no number."""
    return _digits(value) if np.isfinite(value) else ""
