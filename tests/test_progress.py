"""Progress output on a terminal, in a log file and into a pipe whose reader has gone."""

from __future__ import annotations

import errno
import io
import subprocess

import pytest
import zarr

from pipeline import progress
from conftest import EXEMPLARS, ROOT, make_folder


class _Stream(io.StringIO):
    def __init__(self, terminal: bool):
        super().__init__()
        self.terminal = terminal

    @property
    def encoding(self):
        return "utf-8"

    def isatty(self) -> bool:
        return self.terminal


class _Gone:
    """stderr whose reader has exited: every write fails as a closed pipe does."""

    def __init__(self, error: OSError):
        self.error, self.writes = error, 0

    def write(self, text):
        self.writes += 1
        raise self.error

    def flush(self):
        raise self.error

    def isatty(self) -> bool:
        return False


@pytest.fixture(autouse=True)
def _open_again(monkeypatch):
    monkeypatch.setattr(progress, "_closed", False)


def test_a_log_gets_plain_lines_not_frames(monkeypatch):
    err = _Stream(terminal=False)
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0)  # every update a line, to see each one's form
    for _ in progress.bar(range(3), desc="work", dynamic_ncols=True):
        pass
    text = err.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert lines[0].startswith("work:   0%") and lines[-1].startswith("work: 100%")
    assert all(line == line.rstrip() and line for line in lines)


def test_a_log_gets_a_line_every_interval_not_every_update(monkeypatch):
    err = _Stream(terminal=False)
    monkeypatch.setattr("sys.stderr", err)
    for _ in progress.bar(range(10_000), desc="work"):
        pass
    assert len(err.getvalue().splitlines()) <= 3  # the start, perhaps one more, the end


def test_a_terminal_gets_a_redrawn_bar(monkeypatch):
    err = _Stream(terminal=True)
    monkeypatch.setattr("sys.stderr", err)
    for _ in progress.bar(range(3), desc="work", mininterval=0, ncols=60):
        pass
    text = err.getvalue()
    assert text.count("\r") >= 3 and "█" in text  # redrawn in place, Unicode blocks as stderr's encoding allows


def test_a_terminal_bar_fits_the_terminal(monkeypatch):
    """Without tqdm's own measuring (it measures only sys.stderr itself), bars were 60 columns whatever the width."""
    import fcntl
    import os
    import struct
    import termios

    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 10, 41, 0, 0))  # a terminal 41 columns wide
    err = _Stream(terminal=True)
    err.fileno = lambda: follower  # where tqdm asks the width
    monkeypatch.setattr("sys.stderr", err)
    try:
        for _ in progress.bar(range(3), desc="work", mininterval=0):
            pass
    finally:
        os.close(leader)
        os.close(follower)
    frames = [frame for frame in err.getvalue().replace("\n", "\r").split("\r") if frame]
    assert frames and max(map(len, frames)) <= 40


def test_log_lines_come_by_the_interval_alone(monkeypatch):
    """tqdm's adaptive update count wakes its monitor thread, which drew a stale line 10 s after each one."""
    monkeypatch.setattr("sys.stderr", _Stream(terminal=False))
    logged = progress.bar(range(3))
    assert logged.miniters == 1 and not logged.dynamic_miniters and logged.mininterval == progress.LOG_INTERVAL
    logged.close()


def test_a_closed_stderr_is_no_failure(monkeypatch):
    """Started with stderr closed (2>&-), Python has sys.stderr None."""
    monkeypatch.setattr("sys.stderr", None)
    assert list(progress.bar(range(5), desc="work", mininterval=0)) == list(range(5))
    progress.say("a note")


def test_a_cleared_bar_leaves_nothing_in_a_log(monkeypatch):
    err = _Stream(terminal=False)
    monkeypatch.setattr("sys.stderr", err)
    for _ in progress.bar(range(3), desc="step", leave=False, delay=60):
        pass
    assert err.getvalue() == ""


@pytest.mark.parametrize("error", [BrokenPipeError(errno.EPIPE, "Broken pipe"), OSError(errno.EPIPE, "Broken pipe"),
                                   ValueError("I/O operation on closed file.")])
def test_a_reader_gone_ends_the_output_not_the_work(monkeypatch, error):
    gone = _Gone(error)
    monkeypatch.setattr("sys.stderr", gone)
    done = [i for i in progress.bar(range(50), desc="work", mininterval=0)]
    progress.say("a note")
    assert done == list(range(50))
    assert gone.writes == 1  # tried once, then nothing more is written


def test_other_errors_of_stderr_are_not_hidden(monkeypatch):
    monkeypatch.setattr("sys.stderr", _Gone(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError):
        progress.say("a note")


def test_phase_one_finishes_when_its_stderr_reader_exits(tmp_path):
    """`exemplars activations ... 2>&1 | head -1`: head exits after its line; the run goes on to the end."""
    data = make_folder(tmp_path / "data", classes=("a",), per_class=8)
    store = tmp_path / "s.zarr"
    proc = subprocess.Popen([*EXEMPLARS, "activations", str(data), "--store", str(store), "--weights", "random",
                             "--batch-size", "2", "--shard-rows", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr.read(1)  # the bar has started
    proc.stderr.close()
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0  # a batch job reads the exit status: the run succeeded
    group = zarr.open_group(str(store), mode="r")
    assert group["mixed4a/done"][:].all() and group["mixed4a"].attrs["complete"] is True


def test_a_line_saying_where_a_run_was_interrupted_is_remembered_past_later_lines(monkeypatch):
    monkeypatch.setattr(progress, "_interrupted", False)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    progress.say("note: 3 images could not be read")
    assert not progress.interrupted_said()
    progress.say("  interrupted at shard 4 of 9; rerun the same command to go on")
    progress.say("wrote 4 shards")  # a later line: the command line must still not say "interrupted" again
    assert progress.interrupted_said()
