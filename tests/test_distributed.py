"""Phase one under torchrun (gloo, 2 CPU processes), and into an S3-compatible object store.

Single-process references run with OMP_NUM_THREADS=1, as torchrun's ranks do,
so that every store is compared bit for bit.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import zarr
from numpy.testing import assert_array_equal

from conftest import ROOT, free_port, run_cli

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
NAMES = ["images/path", "images/label", "images/valid", "images/error",
         "mixed4a/mean", "mixed4a/max", "mixed4a/argmax", "mixed4a/done"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port"]


def _args(folder, store):
    return ["activations", str(folder), "--store", str(store), "--weights", "random", "--shard-rows", "8",
            "--batch-size", "4", "--workers", "0"]


def _same(a, b):
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    for name in NAMES:
        assert_array_equal(ga[name][:], gb[name][:], err_msg=name)
    assert gb["mixed4a"].attrs["complete"] is True


@pytest.fixture(scope="module")
def reference(image_folder, tmp_path_factory):
    store = tmp_path_factory.mktemp("ref") / "one.zarr"
    run_cli(*_args(image_folder, store), env=ONE_THREAD)
    return store


def test_torchrun_equals_one_process(image_folder, reference, tmp_path):
    store = tmp_path / "two.zarr"
    proc = subprocess.run([*TORCHRUN, free_port(), "-m", "pipeline", *_args(image_folder, store)],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, **ONE_THREAD))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0/2: shards [0, 2]" in proc.stderr and "rank 1/2: shards [1]" in proc.stderr
    assert proc.stdout.count("24 images") == 1  # the leader alone reports
    _same(reference, store)


def test_a_refusal_under_torchrun_is_one_sentence_from_rank_0_alone(image_folder, reference, tmp_path):
    proc = subprocess.run([*TORCHRUN, free_port(), "-m", "pipeline", *_args(image_folder, reference),
                           "--precision", "bf16"], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, **ONE_THREAD), timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "precision" in errors[0]
    # Both ranks stop without a traceback of their own (torchrun's launcher still prints its summary):
    # rank 1 exits 2 too, unless the launcher, seeing rank 0 fail first, has stopped it (SIGTERM,
    # -15), which a busy machine makes likely (5 of 10 runs under load).
    assert "[rank1]" not in proc.stderr and "RuntimeError" not in proc.stderr, proc.stderr[-3000:]
    codes = sorted(re.findall(r"exitcode\s+:\s+(-?\d+)", proc.stderr))
    assert codes in (["2", "2"], ["-15", "2"]), proc.stderr[-3000:]


def test_an_argument_error_under_torchrun_is_said_once(tmp_path):
    proc = subprocess.run([*TORCHRUN, free_port(), "-m", "pipeline", *_args(tmp_path / "absent", tmp_path / "s.zarr")],
                          capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, **ONE_THREAD), timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "does not exist" in errors[0], proc.stderr[-3000:]
    assert "[rank1]" not in proc.stderr, proc.stderr[-3000:]  # (torchrun's launcher prints its own summary)
    codes = sorted(re.findall(r"exitcode\s+:\s+(-?\d+)", proc.stderr))
    assert codes in (["2", "2"], ["-15", "2"]), proc.stderr[-3000:]


def test_ranks_stop_together_and_the_leader_says_why(monkeypatch):
    from pipeline.distributed import Ranks
    from pipeline.errors import DatasetError, FollowerStopped, InputError

    alone = Ranks()  # one process: no group, its own failure raised as it is
    with pytest.raises(DatasetError, match="mine"):
        alone.stop_together(DatasetError("mine"))
    alone.stop_together(None)
    for rank, said, failure, expected in [
            (0, [None, "rank one's folder is missing"], None, (InputError, "rank 1: rank one's folder is missing")),
            (0, ["mine", None], DatasetError("mine"), (DatasetError, "mine")),
            (1, ["mine", "its own"], DatasetError("its own"), (FollowerStopped, "")),
            (1, [None, None], None, None)]:
        ranks = Ranks(rank, 2, rank, joined=True)
        monkeypatch.setattr(ranks, "gather", lambda value, said=said: said)
        monkeypatch.setattr(ranks, "close", lambda: None)
        if expected is None:
            ranks.stop_together(failure)  # nobody refused: on it goes
            continue
        with pytest.raises(expected[0]) as caught:
            ranks.stop_together(failure)
        assert str(caught.value) == expected[1]


def test_killed_torchrun_then_one_process_equals_one_process(image_folder, reference, tmp_path):
    store = tmp_path / "killed.zarr"
    proc = subprocess.Popen([*TORCHRUN, free_port(), "-m", "pipeline", *_args(image_folder, store)],
                            cwd=ROOT, env=dict(os.environ, **ONE_THREAD), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    markers = store / "mixed4a" / "done" / "c"
    deadline = time.time() + 180
    while proc.poll() is None and time.time() < deadline and not (markers.exists() and any(markers.iterdir())):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = zarr.open_group(str(store), mode="r")["mixed4a/done"][:]
    assert done.any() and not done.all(), f"kill came at a bad moment: {done}"
    run_cli(*_args(image_folder, store), env=ONE_THREAD)
    _same(reference, store)


def test_phase_one_and_topk_through_s3(image_folder, reference, s3_server, monkeypatch):
    url = "s3://exemplars-test/run.zarr"
    run_cli(*_args(image_folder, url), env={**ONE_THREAD, **s3_server})
    local = run_cli("topk", "--store", reference, "-c", "7", "-k", "5", "--json").stdout
    remote = run_cli("topk", "--store", url, "-c", "7", "-k", "5", "--json", env=s3_server).stdout
    assert remote == local
    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    _same(reference, url)
    again = run_cli(*_args(image_folder, url), env={**ONE_THREAD, **s3_server})
    assert "nothing to do" in again.stdout


def test_every_shard_has_one_owner_across_nodes():
    """Ranks own shards by their global rank: LOCAL_RANK repeats on every node."""
    from pipeline.distributed import Ranks

    shards = list(range(3, 14))
    for world in (1, 2, 3, 4, 6):
        ranks = [Ranks(rank, world, rank % 2) for rank in range(world)]  # two processes a node
        owned = [shard for r in ranks for shard in r.mine(shards)]
        assert sorted(owned) == shards, world  # none twice, none left out
        assert [r.leader for r in ranks] == [True] + [False] * (world - 1)


def test_ranks_are_read_from_torchruns_environment(monkeypatch):
    import torch.distributed as dist

    from pipeline.distributed import Ranks

    monkeypatch.setattr(dist, "is_initialized", lambda: True)  # no process group is made here
    for name, value in (("WORLD_SIZE", "4"), ("RANK", "3"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    assert Ranks.from_environment() == Ranks(3, 4, 1, joined=True)


SLOW_FOLLOWER = '''
import os
if os.environ.get("RANK") == "1":  # torchrun's second rank opens the store late, as over a slow link
    import time
    import pipeline.store as st

    opened = st.open_group

    def late(*args, **kwargs):
        time.sleep(float(os.environ["SLOW_FOLLOWER_S"]))
        return opened(*args, **kwargs)

    st.open_group = late
'''


def test_a_rank_that_opens_the_store_late_still_computes_its_shards(image_folder, reference, tmp_path):
    """A rank that read the done markers itself, after the leader had finished a shard, split a shorter
    list of pending shards: one shard was computed by no rank and the run exited 0 (seen on S3)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_FOLLOWER)
    store = tmp_path / "late.zarr"
    env = dict(os.environ, **ONE_THREAD, SLOW_FOLLOWER_S="12",
               PYTHONPATH=os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([*TORCHRUN, free_port(), "-m", "pipeline", *_args(image_folder, store)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _same(reference, store)
