"""Query results: a small ranked table that prints, renders in Jupyter and converts.

Offers:
    Results    rows, activations, paths, labels, class names, optional bands and peaks;
               ``ranks`` (the place in the list, or for samples in the channel); ``==`` by contents;
               ``to_list()`` -> list of dicts, ``to_dict()`` for ``--json``,
               ``__repr__`` a text table, ``_repr_html_`` an HTML table
    value_text(value) -> str      a value as the text table shows it
    printable(text) -> str       control characters (a newline in a file name) as escapes
    columns(text) -> int          terminal columns of a text (CJK two a character)
    pad(text, width, left) -> str  padded to that many columns
"""

from __future__ import annotations

import html
import unicodedata
from dataclasses import dataclass, field

import numpy as np


HTML_ROWS = 200  # rows of Jupyter's table; the text table (the command line's) shows every one


@dataclass(eq=False)
class Results:
    """A ranked answer, best first. Arrays and lists run in parallel, one item per image:

    ``rows`` (int64 row numbers of the store), ``activations`` (float64: the channel's
    spatial ``by``, or the direction's projection, or ``similar``'s cosine), ``paths``
    (relative to the dataset root), ``labels`` (class indices, -1 without), ``classes``
    (class names), ``ranks`` (1 = the best: the place in this list, or for ``samples`` the
    image's place in the whole channel), ``peaks`` ((y, x) on the layer's grid for
    ``by="max"``, None for a flat map) and ``bands`` (``samples``' band of each image).
    ``notes`` says what to know (random weights, an incomplete store, ties); ``ties`` is
    "constant" or "ties" when the answer is no exemplars. Iterating gives dicts
    (``pandas.DataFrame(results)`` makes a table); ``==`` compares contents.
    """

    layer: str
    query: str  # what was asked, e.g. "channel 97" or "direction 97:0.7,301:0.3"
    by: str
    rows: np.ndarray
    activations: np.ndarray
    paths: list[str]
    labels: list[int]
    classes: list[str]
    channel: int | None = None
    peaks: list[tuple[int, int] | None] | None = None  # (y, x) on the layer's grid, for by="max"; None: a flat map
    bands: list[str] | None = None
    notes: list[str] = field(default_factory=list)  # e.g. random weights, or an incomplete store
    ranks: np.ndarray | None = None  # 1 = the best; None: the place in this list (filled in)
    # Answers that are no exemplars: "constant", the channel is the same on every image; "ties", these
    # are the first rows of more images that tie with them; ``ties_note`` says so (in ``notes`` too).
    ties: str = ""
    ties_note: str = ""

    def __post_init__(self) -> None:
        if self.ranks is None:
            self.ranks = np.arange(1, len(self.rows) + 1)

    def add_ties(self, kind: str, text: str) -> None:
        """Mark the answer as no exemplars (``kind``: "constant" or "ties"), with ``text`` as a note."""
        self.ties, self.ties_note = kind, text
        self.add_note(text)

    @property
    def note(self) -> str:
        """Every note in one line."""
        return "; ".join(self.notes)

    def add_note(self, text: str) -> None:
        """Another thing to know about these results, after the store's own notes."""
        self.notes.append(text)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Results):
            return NotImplemented
        return self._key() == other._key() and np.array_equal(self.rows, other.rows) \
            and np.array_equal(self.ranks, other.ranks) \
            and np.array_equal(self.activations, other.activations, equal_nan=True)

    def _key(self) -> tuple:
        """What ``==`` compares besides the arrays."""
        return (self.layer, self.query, self.by, self.channel, self.paths, list(self.labels), self.classes,
                self.peaks, self.bands, self.notes, self.ties)

    __hash__ = None  # mutable (notes are added), like a list

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.to_list())

    def to_list(self) -> list[dict]:
        """One dict an image: rank, row, path, label, class, activation (peak, band where there are)."""
        return self._items(len(self.rows))

    def _items(self, stop: int) -> list[dict]:
        """``to_list()``'s first ``stop`` items."""
        out = []
        for i in range(min(stop, len(self.rows))):
            item = {"rank": int(self.ranks[i]), "row": int(self.rows[i]),
                    "path": self.paths[i],
                    "label": int(self.labels[i]), "class": self.classes[i],
                    "activation": float(self.activations[i])}
            if self.peaks is not None:
                item["peak"] = None if self.peaks[i] is None else list(self.peaks[i])
            if self.bands is not None:
                item["band"] = self.bands[i]
            out.append(item)
        return out

    def to_dict(self) -> dict:
        """What ``--json`` prints: layer, channel, by (and query for a direction or ``similar``), results."""
        head = {"layer": self.layer, "channel": self.channel, "by": self.by}
        if self.channel is None:
            head["query"] = self.query
        return dict(head, results=self.to_list())

    @property
    def measure(self) -> str:
        """What ``activations`` hold, as the text table heads the column (JSON keeps "activation")."""
        return next((name for start, name in (("direction", "projection"), ("similar", "cosine"))
                     if self.query.startswith(start)), "activation")

    def _columns(self, stop: int | None = None):
        names = ["rank", self.measure, "path", "class"]
        if self.peaks is not None:
            names.append("peak (y, x)")
        if self.bands is not None:
            names.insert(1, "band")
        rows = []
        for item in self._items(len(self.rows) if stop is None else stop):
            row = {"rank": str(item["rank"]), self.measure: value_text(item["activation"]),
                   "path": printable(item["path"]), "class": printable(item["class"])}
            if "peak" in item:
                row["peak (y, x)"] = "no peak" if item["peak"] is None else f"({item['peak'][0]}, {item['peak'][1]})"
            if "band" in item:
                row["band"] = item["band"]
            rows.append([row[n] for n in names])
        return names, rows

    def title(self) -> str:
        """The table's first line: layer, query and statistic."""
        return printable(f"{self.layer} {self.query}, by spatial {self.by}")

    def __repr__(self) -> str:
        names, rows = self._columns()
        widths = [max(map(columns, [n, *(r[i] for r in rows)])) for i, n in enumerate(names)]
        left = [n in ("path", "class", "band") for n in names]

        def line(cells):
            return "  ".join(pad(c, w, lft) for c, w, lft in zip(cells, widths, left)).rstrip()

        return "\n".join([self.title(), *self.notes, line(names), *map(line, rows)])  # notes: a line each

    def _repr_html_(self) -> str:
        """Jupyter's table: its first ``HTML_ROWS`` rows (all of a 300,000-image answer made 22 MB of
        HTML that stalled the browser), then how many more there are."""
        names, rows = self._columns(HTML_ROWS)
        head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        note = "".join(f"<p><b>{html.escape(n)}</b></p>" for n in self.notes)
        more = len(self) - len(rows)
        rest = (f"<p>... and {more:,} more row{'s' * (more != 1)} (print() shows them all; to_list() "
                "or pandas.DataFrame(results) has them)</p>") if more > 0 else ""
        return f"<p>{html.escape(self.title())}</p>{note}<table><tr>{head}</tr>{body}</table>{rest}"


def value_text(value: float) -> str:
    """A value as the text table shows it: 4 decimals in activations' usual range (and for 0), else 4
    significant digits, so a small nonzero value is no "0.0000" (a zeros band's) and 3e38 no 39 digits."""
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e7 else f"{value:.4g}"


def printable(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``): a file name holding a newline
    would otherwise split its row of a table in two."""
    return "".join(ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) == "Cc" else ch
                   for ch in text)


def columns(text: str) -> int:
    """Terminal columns ``text`` takes, as wcwidth counts them: two for a wide character (CJK), none for
    a mark drawn over another (accents, Thai and Devanagari vowel signs), a format character (zero-width
    space) or a Hangul vowel or final consonant of a decomposed syllable (macOS writes file names so)."""
    return sum(_char_columns(ch) for ch in text)


def _char_columns(ch: str) -> int:
    if unicodedata.category(ch) in ("Mn", "Me", "Cf") or "\u1160" <= ch <= "\u11ff":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def pad(text: str, width: int, left: bool) -> str:
    """``text`` padded with spaces to ``width`` terminal columns, on the right (``left``-aligned) or the left."""
    fill = " " * max(width - columns(text), 0)
    return text + fill if left else fill + text
