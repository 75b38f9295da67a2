"""Progress bars and notes on stderr, for a terminal, a log file or a pipe (tqdm).

Offers:
    LOG_INTERVAL                    seconds between a bar's lines where stderr is not a terminal
    bar(iterable=None, **kwargs)    a tqdm bar on stderr; in a file or a pipe, one plain line per update
    say(text)                       a line on stderr
    interrupted_said() -> bool      whether a line has said where a run was interrupted
Both keep going when stderr's reader has gone (``exemplars activations ... 2>&1 | head``):
the output is cosmetic, the run is not, so a closed pipe ends the output, never the work.
"""

from __future__ import annotations

import errno
import sys

# A batch job's log gets a line every half minute: enough to see it move, not a line a batch.
LOG_INTERVAL = 30.0


class _Stderr:
    """``sys.stderr`` as the bars and notes write to it.

    ``lines``: tqdm redraws its bar with ``\\r``, which a log file keeps as one ever-growing
    line of frames; there each frame becomes a line of its own, trailing padding dropped.
    """

    def __init__(self, lines: bool):
        self.lines = lines

    def write(self, text: str) -> None:
        if self.lines:
            text = text.replace("\r", "").rstrip()
            if not text:
                return  # a cleared bar, or the newline tqdm ends a kept bar with
            text += "\n"
        _guarded(lambda: sys.stderr.write(text))

    def flush(self) -> None:
        _guarded(lambda: sys.stderr.flush())  # looked up under the guard: stderr may be None

    # What tqdm asks of its file: the encoding picks Unicode or ASCII bars, the descriptor the width.
    @property
    def encoding(self):
        return getattr(sys.stderr, "encoding", None)

    def fileno(self) -> int:
        return sys.stderr.fileno()

    def isatty(self) -> bool:
        return not self.lines


_closed = False  # stderr's reader has gone: nothing more is written to it


def _guarded(write) -> None:
    global _closed
    if _closed or sys.stderr is None:  # None: started with stderr closed (2>&-)
        return
    try:
        write()
    except BrokenPipeError:
        _closed = True
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        _closed = True
    except ValueError:  # stderr closed by the caller
        _closed = True


def _on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def bar(iterable=None, **kwargs):
    """``tqdm(iterable, **kwargs)`` writing through ``_Stderr``; in a file or pipe, at most a line every ``LOG_INTERVAL`` s."""
    from tqdm import tqdm

    terminal = _on_terminal()
    if terminal:
        kwargs.setdefault("dynamic_ncols", True)  # tqdm measures only sys.stderr itself otherwise: a 10-cell bar
    else:
        kwargs.setdefault("mininterval", LOG_INTERVAL)
        # Fixed, not tqdm's adaptive count: that wakes its monitor thread, which redraws 10 s after a line.
        kwargs.setdefault("miniters", 1)
        kwargs.pop("dynamic_ncols", None)  # no width to follow
    return tqdm(iterable, file=_Stderr(lines=not terminal), **kwargs)


_interrupted = False  # a line has said where a run was interrupted: the command line's "interrupted" would repeat it


def say(text: str) -> None:
    """``text`` and a newline on stderr, flushed."""
    global _interrupted
    _interrupted = _interrupted or text.lstrip().startswith("interrupted")
    _guarded(lambda: (sys.stderr.write(text + "\n"), sys.stderr.flush()))


def interrupted_said() -> bool:
    return _interrupted
