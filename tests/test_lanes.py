"""pipeline/lanes.py: results in order, failures where they happened, threads given back."""

import threading
import time

import pytest

from pipeline.errors import PipelineError
from pipeline.lanes import in_lanes, lanes_for, one_thread_each


def test_results_come_in_order_however_long_each_takes():
    seen = set()

    def work(i):
        seen.add(threading.current_thread().name)
        time.sleep(0.02 if i % 3 == 0 else 0.001)  # every third item finishes after the next ones
        return i * i

    assert list(in_lanes(work, range(20), 2)) == [i * i for i in range(20)]
    assert len(seen) == 2 and all(name.startswith("lane") for name in seen)


def test_a_failure_is_raised_at_its_item_and_the_rest_is_dropped():
    started = []

    def work(i):
        started.append(i)
        if i == 3:
            raise ValueError("item 3 is broken")
        time.sleep(0.01)
        return i

    got = []
    with pytest.raises(ValueError, match="item 3"):
        for result in in_lanes(work, range(100), 2):
            got.append(result)
    assert got == [0, 1, 2]  # everything before the failure arrived
    assert len(started) < 20  # at most two items a lane ran ahead; the others never started


def test_lanes_by_default_and_when_asked():
    assert lanes_for("cpu", 0, False, 4) == 4
    assert lanes_for("cpu", 0, True, 4) == 1  # --compile: measured slower in lanes
    assert lanes_for("cpu", 2, False, 4) == 1  # decoding processes feed one lane
    assert lanes_for("cuda", 0, False, 4) == 1
    assert lanes_for("cpu", 0, True, 4, asked=2) == 2
    for device, workers, asked, fragment in (("cuda", 0, 2, "CPU"), ("cpu", 1, 2, "--workers"), ("cpu", 0, 0, "1 or more")):
        with pytest.raises(PipelineError, match=fragment):
            lanes_for(device, workers, False, 4, asked=asked)


def test_threads_are_split_between_lanes_and_given_back():
    import torch

    before = torch.get_num_threads()
    with one_thread_each(2, 4):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with one_thread_each(1, 4):
        assert torch.get_num_threads() == before
