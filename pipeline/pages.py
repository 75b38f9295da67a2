"""HTML of the gallery: one page per channel and an index (all text escaped).

Offers:
    Site(layer, out, per_channel, missing, table, corr, near, chosen, crops)
    Site.write_channel(c), Site.write_index()
    histogram_svg(counts, edges, marks) -> str   an inline SVG bar chart
    esc(text) -> str                             HTML-escaped, quotes included
    thumb_name(row), crop_name(row, c), viz_name(c), page_name(c)   the site's file names
    IMAGE_FILE, PAGE_FILE                        patterns of every name those give (img/, channels/)
"""

from __future__ import annotations

import html
import re

import numpy as np

from .display import unshown
from .render import distinct
from .selectivity import share_text
from .stats import branches

CSS = """
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222;background:#fafafa}
a{color:#1f5fa8;text-decoration:none} h1{font-size:1.4em} h2{font-size:1.1em;margin-top:1.4em}
.warn{background:#b00020;color:#fff;padding:.4em .8em;font-weight:bold;border-radius:4px}
.note{color:#555;font-style:italic} p,h1{overflow-wrap:anywhere}
.row{display:flex;flex-wrap:wrap;gap:8px} .tile{width:132px;font-size:11px;overflow-wrap:break-word}
.pair{display:flex;gap:4px;padding:3px;background:#fff;border:1px solid #e4e4e4}
.tile img{display:block;width:128px;height:128px;border:1px solid #ccc}
.small .tile{width:100px} .small .tile img,.small .missing{width:96px;height:96px}
.missing{width:128px;height:128px;background:#ddd;display:flex;align-items:center;justify-content:center;
 text-align:center;font-size:10px;border:1px solid #ccc}
.card{display:inline-block;margin:4px;padding:4px;background:#fff;border:1px solid #ddd;vertical-align:top}
.card img,.card .gone{width:48px;height:48px;margin:1px} .card .gone{display:inline-block;background:#ddd}
.card .flat{display:inline-block;height:48px;margin:1px;color:#777;font-size:11px;line-height:48px;text-align:center}
table{border-collapse:collapse} td,th{padding:2px 8px;text-align:right} th{font-weight:normal;color:#444}
svg{max-width:100%;height:auto}
"""


# The channel page's facts about the spatial mean: (key of the stats table, what the page calls it).
FACTS = (("mean", "mean"), ("std", "std (population)"), ("max", "max"), ("q50", "median (q50)"), ("q90", "q90"),
         ("q99", "q99"), ("q99.9", "q99.9"), ("active", "active (share of images > 0)"),
         ("kurtosis", "excess kurtosis"))


def thumb_name(row: int) -> str:
    return f"{row}.jpg"


def crop_name(row: int, channel: int) -> str:
    return f"{row}_c{channel}.jpg"


def viz_name(channel: int) -> str:
    return f"viz_{channel}.png"


def page_name(channel: int) -> str:
    return f"{channel:04d}.html"


# Only files these patterns match are ever removed from a gallery: a user's own files stay.
IMAGE_FILE = re.compile(r"(\d+(_c\d+)?\.jpg|viz_\d+\.png)")
PAGE_FILE = re.compile(r"(\d{4,})\.html")


def _number(value) -> str:
    return f"{value:.4g}" if np.isfinite(value) else "–"  # a constant channel has no kurtosis


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def histogram_svg(counts, edges, marks: dict, width=420, height=150, constant=None) -> str:
    """Log-count bars with the quantiles ``marks`` as dashed lines, each labelled beside its own
    line (on its left near the right edge); a constant channel (``constant``, its value) has no
    distribution to draw and says so."""
    if constant is not None:
        return f'<p class="note">Every image has the value {_number(constant)}: no distribution to draw.</p>'
    tallest = int(np.max(counts))
    counts = np.log1p(np.asarray(counts, dtype=float))
    top = counts.max() or 1.0
    margin = 14  # the caption's line, above the bars rather than on them
    lo, hi = float(edges[0]), float(edges[-1])
    ends = distinct([lo, hi])
    span = (hi - lo) or 1.0
    bar = width / len(counts)
    full = height + margin + 20
    # viewBox: a phone's narrow page shrinks the chart rather than scrolling sideways.
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{full}" viewBox="0 0 {width} {full}" '
             f'role="img" aria-label="histogram of the spatial mean, log counts">']
    for i, c in enumerate(counts):
        h = height * c / top
        parts.append(f'<rect x="{i * bar:.1f}" y="{margin + height - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" '
                     'fill="#4c72b0"/>')
    for j, (name, value) in enumerate(marks.items()):
        x = width * (float(value) - lo) / span
        # Beside its own line: after it, or before it (anchored at its end) near the right edge.
        anchor, at = ("end", x - 2) if x > width - 50 else ("start", x + 2)
        # A white halo keeps a label readable where it crosses a tall bar.
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{margin}" y2="{margin + height}" stroke="#c44e52" '
                     f'stroke-dasharray="3,2"/><text x="{at:.1f}" y="{margin + 12 + 11 * j}" font-size="10" '
                     f'text-anchor="{anchor}" stroke="#fff" stroke-width="3" paint-order="stroke">{esc(name)}</text>')
    parts.append(f'<text x="{width / 2:.0f}" y="10" font-size="10" text-anchor="middle" fill="#555">'
                 f"images per bin, log scale (tallest: {tallest:,})</text>"
                 f'<text x="0" y="{margin + height + 14}" font-size="10">{ends[0]}</text>'
                 f'<text x="{width}" y="{margin + height + 14}" font-size="10" text-anchor="end">{ends[1]}</text></svg>')
    return "".join(parts)


class Site:
    def __init__(self, layer, out, per_channel, missing, table, corr, near, chosen, crops):
        self.layer, self.out, self.per_channel, self.missing = layer, out, per_channel, missing
        self.table, self.corr, self.near, self.chosen, self.crops = table, corr, near, chosen, crops
        self.warning = layer.note()
        self.no_selectivity = layer.no_selectivity() if chosen is None else ""
        self.branches = branches(layer)
        self.groups = self.branches or {"channels": (0, layer.channels)}
        self.store_notes = len(layer.notes())  # the first notes of every answer: the banner shows them

    def _page(self, title: str, body: str, prefix: str) -> str:
        warn = f'<p class="warn">{esc(self.warning)}</p>' if self.warning else ""
        return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
                f'<link rel="stylesheet" href="{prefix}style.css"></head><body>{warn}{body}</body></html>')

    def _image(self, row: int, name: str, caption: str, alt: str) -> str:
        if row in self.missing:
            return (f'<div class="tile"><div class="missing">{unshown(self.missing[row])} image<br>'
                    f'{esc(self.missing[row])}</div>'
                    f'{caption}</div>')
        return f'<div class="tile"><img src="../img/{name}" alt="{esc(alt)}" loading="lazy">{caption}</div>'

    def _tiles(self, results, with_crops: bool, css: str = "", peaks=()) -> str:
        items = []
        for i, item in enumerate(results.to_list()):
            row = item["row"]
            # A long path breaks after its slashes, not inside a name.
            path = "/<wbr>".join(esc(part) for part in item["path"].split("/"))
            caption = (f'<b>{item["activation"]:.4g}</b>' + (f' {esc(item["band"])} (#{item["rank"]})' if "band" in item else "")
                       + f'<br>{path}<br><i>{esc(item["class"])}</i>')
            name = item["path"].rsplit("/", 1)[-1]
            tile = self._image(row, thumb_name(row), caption, f"{name}, {item['class']}" if item["class"] else name)
            if with_crops:  # the image and its crop wrap to the next line together
                crop = ('<div class="tile"><div class="missing">no peak: the map is flat</div></div>' if peaks[i] is None
                        else self._image(row, crop_name(row, results.channel), "receptive field at the peak",
                                         f"{name}: the receptive field at the channel's peak"))
                tile = f'<div class="pair">{tile}{crop}</div>'
            items.append(tile)
        return f'<div class="row {css}">{"".join(items)}</div>'

    def _branch(self, c: int) -> str:
        return next((name for name, (lo, hi) in self.branches.items() if lo <= c < hi), "")

    def _notes(self, results, skip: str = "") -> str:
        """The answer's own notes (ties, fewer images than asked, empty bands), as the API gives them."""
        return "".join(f'<p class="note">{esc(note)}.</p>' for note in results.notes[self.store_notes:]
                       if note != skip)

    def write_channel(self, c: int) -> None:
        layer, t = self.layer, self.table
        top, bottom, samples, peaks = self.per_channel[c]
        nav = ('<p><a href="../index.html">index</a>'
               + (f' · <a href="{page_name(c - 1)}">← {c - 1}</a>' if c > 0 else "")
               + (f' · <a href="{page_name(c + 1)}">{c + 1} →</a>' if c + 1 < layer.channels else "") + "</p>")
        quantiles = {k: t[k][c] for k in ("q50", "q90", "q99", "q99.9")}
        facts = "".join(f"<tr><th>{esc(label)}</th><td>{_number(t[k][c])}</td></tr>" for k, label in FACTS)
        neighbours = ", ".join(f'<a href="{page_name(int(n))}">{int(n)}</a> (r = {self.corr[c, n]:.2f})'
                               for n in self.near[c] if n >= 0)
        constant = not t["std"][c] > 0
        if constant:  # a constant channel correlates with nothing
            neighbours = "none: the channel is constant over the dataset"
        elif not neighbours:
            neighbours = ("none: the layer has no other channel" if layer.channels == 1 else
                          "none: every other channel is constant over the dataset")
        else:
            neighbours = f"Pearson r of the spatial means over the images: {neighbours}"
        classes = f"<p>No class selectivity: {esc(self.no_selectivity)}.</p>"
        if constant:
            classes = "<p>None: the channel is the same on every image.</p>"
        elif self.chosen is not None and np.isnan(self.chosen["share"][c]):  # a signed channel
            classes = "<p>No class selectivity: the channel has negative values, and it assumes activations &ge; 0.</p>"
        elif self.chosen is not None:
            names = dict(zip(self.chosen["classes"].tolist(), self.chosen["class_names"]))
            classes = (f'<p>top class share {share_text(self.chosen["share"][c])} '
                       f'({share_text(self.chosen["shuffled"][c])} with the labels shuffled), selectivity index {self.chosen["index"][c]:.3f}; top classes: '
                       + ", ".join(esc(names[int(k)]) for k in self.chosen["top_classes"][c]) + "</p>")
        viz = ""
        if (self.out / "img" / viz_name(c)).exists():
            viz = f'<h2>Feature visualisation</h2><img src="../img/{viz_name(c)}" alt="feature visualisation" width="192">'
        same = top.ties_note if constant else ""  # said once, above the top images
        body = (f"<h1>{esc(layer.name)} channel {c} <small>{esc(self._branch(c))}</small></h1>{nav}{viz}"
                f"<h2>Top {len(top)} by spatial mean</h2>"
                '<p class="note">The bold number under each image is its spatial mean.</p>'
                + (f'<p class="note">The channel is {_number(t["max"][c])} on every image: these tie, '
                   "and are the first rows, not exemplars.</p>" if constant else "")
                + f"{self._notes(top, same)}{self._tiles(top, self.crops, peaks=peaks)}"
                f"<h2>Quantile-band samples</h2>{self._notes(samples, samples.ties_note if constant else '')}"
                f"{self._tiles(samples, False, 'small')}"
                f"<h2>Bottom {len(bottom)}</h2>{self._notes(bottom, bottom.ties_note if constant else '')}"
                f"{self._tiles(bottom, False, 'small')}"
                f"<h2>Distribution of the spatial mean</h2>"
                f"{histogram_svg(t['hist_counts'][c], t['hist_edges'][c], quantiles, constant=t['max'][c] if constant else None)}"
                f"<table><caption>over {int(layer.usable.sum()):,} images</caption>{facts}</table>"
                f"<h2>Most correlated channels</h2><p>{neighbours}</p>"
                f"<h2>Classes</h2>{classes}")
        (self.out / "channels" / page_name(c)).write_text(
            self._page(f"{layer.name} channel {c}", body, "../"), encoding="utf-8")

    def write_index(self) -> None:
        layer = self.layer
        shown = max(1, min(5, max(len(top) for top, *_ in self.per_channel.values())))  # thumbnails a card
        sections = []
        for name, (lo, hi) in self.groups.items():
            cards = []
            for c in range(lo, hi):
                top = self.per_channel[c][0]
                # Decorative: the link says which channel; its page names the images.
                thumbs = "".join(f'<span class="gone" title="{unshown(self.missing[r])} image"></span>' if r in self.missing else
                                 f'<img src="img/{thumb_name(r)}" alt="" loading="lazy">'
                                 for r in top.rows[:5].tolist())
                if not self.table["std"][c] > 0:  # every image ties: its first rows are no exemplars
                    thumbs = (f'<span class="flat" style="width:{50 * shown}px">constant: '
                              f'{_number(self.table["max"][c])} on every image</span>')
                cards.append(f'<a class="card" href="channels/{page_name(c)}" aria-label="channel {c}">{c}<br>{thumbs}</a>')
            sections.append(f"<h2>{esc(name)} ({lo}-{hi - 1})</h2>{''.join(cards)}")
        gone = (f'<p class="note">{len(self.missing)} of the images shown could not be read or changed since the '
                'store was made: grey here, and named on the channel pages.</p>' if self.missing else "")
        body = (f"<h1>{esc(layer.name)}: {layer.channels} channels, {int(layer.usable.sum())} images</h1>"
                f'<p class="note">Each card is a channel with its top {shown} images by spatial mean; '
                f"a channel with the same value on every image says so instead.</p>{gone}"
                + "".join(sections))
        (self.out / "index.html").write_text(self._page(f"{layer.name} gallery", body, ""), encoding="utf-8")
        (self.out / "style.css").write_text(CSS, encoding="utf-8")
