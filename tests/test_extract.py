"""Phase one against the notebook's own computation, resume after SIGKILL, bad files."""

from __future__ import annotations

import heapq
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from numpy.testing import assert_array_equal
from PIL import Image

import pipeline
from conftest import EXEMPLARS, ROOT, make_folder, make_image, run_cli
from pipeline.errors import DamagedStoreError
from pipeline.extract import extract

NUM_CHANNELS, TOP_K = 10, 10


def notebook_top_images(root, model):
    """The notebook's loop, as written there (less the tqdm bar and the GPU)."""
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    preprocess = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
    dataset = datasets.ImageFolder(root, transform=preprocess)
    dataloader = DataLoader(dataset, batch_size=64, shuffle=False, num_workers=0)
    activation = {}
    handle = model.mixed4a.register_forward_hook(
        lambda module, input, output: activation.__setitem__("mixed4a", output.detach()))
    top_images = {ch: [] for ch in range(NUM_CHANNELS)}
    counter, seen = 0, 0
    try:
        with torch.no_grad():
            for images, _ in dataloader:
                model(images * 255 - 117)
                acts = activation["mixed4a"]
                for i in range(images.size(0)):
                    for ch in range(NUM_CHANNELS):
                        act_val = acts[i, ch].mean().item()
                        entry = (act_val, counter, seen + i)
                        if len(top_images[ch]) < TOP_K:
                            heapq.heappush(top_images[ch], entry)
                        elif act_val > top_images[ch][0][0]:
                            heapq.heapreplace(top_images[ch], entry)
                        counter += 1
                seen += images.size(0)
    finally:
        handle.remove()
    paths = [Path(p).relative_to(root).as_posix() for p, _ in dataset.samples]
    return {ch: [(v, paths[i]) for v, _, i in sorted(top_images[ch], reverse=True)]
            for ch in range(NUM_CHANNELS)}


def test_store_agrees_with_notebook(image_folder, small_store, random_model):
    reference = notebook_top_images(image_folder, random_model)
    group = zarr.open_group(str(small_store), mode="r")
    paths = group["images/path"][:]
    mean = group["mixed4a/mean"][:, :NUM_CHANNELS]
    for ch, expected in reference.items():
        order = np.argsort(-mean[:, ch], kind="stable")[:TOP_K]
        got = [(float(mean[r, ch]), str(paths[r])) for r in order]
        np.testing.assert_allclose([v for v, _ in got], [v for v, _ in expected], rtol=2e-5, atol=1e-5)
        # Rank order may swap only between values equal to round-off.
        assert {p for _, p in got} == {p for _, p in expected} or _near_tie(mean[:, ch])
        for (gv, gp), (ev, ep) in zip(got, expected):
            assert gp == ep or abs(gv - ev) < 1e-4


def _near_tie(column):
    top = np.sort(column)[::-1]
    return abs(top[TOP_K - 1] - top[TOP_K]) < 1e-4


def test_store_layout(small_store, image_folder):
    group = zarr.open_group(str(small_store), mode="r")
    attrs = group.attrs
    assert attrs["format"] == "exemplars-activations" and attrs["format_version"] == 1
    assert attrs["model"]["weights"] == {"kind": "random", "name": "random", "seed": 0}
    assert attrs["dataset"]["layout"] == "imagefolder"
    assert group["images"].attrs["classes"] == ["apple", "bear", "cloud"]
    assert group["images/label"][:].tolist() == [0] * 8 + [1] * 8 + [2] * 8
    assert group["images/valid"][:].all()
    layer = group["mixed4a"]
    assert layer.attrs["channels"] == 508 and layer.attrs["spatial_shape"] == [14, 14]
    assert layer.attrs["complete"] is True and layer.attrs["weights"]["kind"] == "random"
    for name in ("mean", "max", "argmax"):
        arr = layer[name]
        assert arr.shape == (24, 508) and arr.metadata.dimension_names == ("image", "channel")
        assert arr.shards == (8, 508) and arr.chunks == (8, 1)
    mean, peak, argmax = (layer[n][:] for n in ("mean", "max", "argmax"))
    assert (peak >= mean - 1e-6).all() and ((argmax >= 0) & (argmax < 196)).all()


def test_max_and_argmax_match_the_activation_map(image_folder, small_store, random_model):
    """Recompute two images' full maps and check the stored reductions."""
    import torch

    from pipeline.images import ImageDataset, to_model_input
    from pipeline.model import cut

    group = zarr.open_group(str(small_store), mode="r")
    data = ImageDataset(str(image_folder), [str(p) for p in group["images/path"][[3, 17]]])
    batch = torch.stack([data[0][1], data[1][1]])
    with torch.inference_mode():
        acts = cut(random_model, ["mixed4a"])(to_model_input(batch))["mixed4a"].flatten(2)
    np.testing.assert_allclose(group["mixed4a/max"][[3, 17]], acts.amax(2).numpy(), rtol=1e-5, atol=1e-6)
    stored = group["mixed4a/argmax"][[3, 17]]
    picked = np.take_along_axis(acts.numpy(), stored[..., None].astype(np.int64), 2)[..., 0]
    np.testing.assert_allclose(picked, acts.amax(2).numpy(), rtol=1e-5, atol=1e-6)


def test_multi_layer_run_equals_single_layer_runs(image_folder, small_store, tmp_path):
    both = tmp_path / "both.zarr"
    extract(image_folder, both, ["mixed3b", "mixed4a"], weights="random", batch_size=4,
            workers=0, shard_rows=8, progress=False)
    group, single = zarr.open_group(str(both), mode="r"), zarr.open_group(str(small_store), mode="r")
    assert group["mixed3b/mean"].shape == (24, 480)
    assert group["mixed3b"].attrs["spatial_shape"] == [28, 28]
    for name in ("mean", "max", "argmax"):
        np.testing.assert_allclose(group["mixed4a"][name][:], single["mixed4a"][name][:], rtol=1e-5, atol=1e-6)


def test_one_lane_and_several_store_the_same(image_folder, small_store, tmp_path):
    """small_store ran with the default lanes (one per core); here one lane, and more lanes than batches in a shard."""
    single = zarr.open_group(str(small_store), mode="r")
    for lanes in (1, 3):
        path = tmp_path / f"lanes{lanes}.zarr"
        extract(image_folder, path, ["mixed4a"], weights="random", batch_size=4, workers=0, shard_rows=8,
                progress=False, lanes=lanes)
        group = zarr.open_group(str(path), mode="r")
        np.testing.assert_array_equal(group["images/valid"][:], single["images/valid"][:])
        for name in ("mean", "max", "argmax"):
            np.testing.assert_allclose(group["mixed4a"][name][:], single["mixed4a"][name][:], rtol=1e-5, atol=1e-6)


def test_finished_store_is_a_no_op(image_folder, small_store):
    before = {p: p.stat().st_mtime_ns for p in small_store.rglob("*") if p.is_file() and p.name != ".writer.lock"}
    summary = extract(image_folder, small_store, ["mixed4a"], weights="random", workers=0, progress=False)
    assert summary.computed == 0 and "nothing to do" in summary.line()
    after = {p: p.stat().st_mtime_ns for p in small_store.rglob("*") if p.is_file() and p.name != ".writer.lock"}
    assert before == after


def test_a_finished_store_one_may_only_read_is_a_no_op(image_folder, small_store, tmp_path, monkeypatch):
    """A colleague's store, or one on a read-only mount: a rerun finds nothing to do without the writer's lock."""
    import errno
    import shutil

    from pipeline.errors import InputError, StoreError, StoreMismatchError

    store = tmp_path / "s.zarr"
    shutil.copytree(small_store, store)
    os_open = os.open

    def no_lock(path, *args, **kwargs):
        if str(path).endswith(".writer.lock"):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return os_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_lock)
    summary = extract(image_folder, store, ["mixed4a"], weights="random", workers=0, progress=False)
    assert summary.computed == 0 and "nothing to do" in summary.line() and summary.usable == 24
    # A layer to add needs the lock, and says so; other settings are refused for what they are.
    with pytest.raises(StoreError, match="cannot be written here"):
        extract(image_folder, store, ["mixed4a", "conv2d0"], weights="random", workers=0, progress=False)
    with pytest.raises(StoreMismatchError, match="made with model.weights.seed=0, this run has model.weights.seed=1"):
        extract(image_folder, store, ["mixed4a"], weights="random", seed=1, workers=0, progress=False)
    with pytest.raises(InputError, match="--lanes"):  # the options are checked as on any run
        extract(image_folder, store, ["mixed4a"], weights="random", workers=1, lanes=2, progress=False)
    group = zarr.open_group(str(store), mode="r+")
    group["mixed4a"].attrs["complete"] = False  # killed before it was marked: the locked run marks it
    with pytest.raises(StoreError, match="cannot be written here"):
        extract(image_folder, store, ["mixed4a"], weights="random", workers=0, progress=False)


def _arrays(path):
    group = zarr.open_group(str(path), mode="r")
    names = ["images/path", "images/label", "images/valid", "images/error",
             "mixed4a/mean", "mixed4a/max", "mixed4a/argmax", "mixed4a/done"]
    return {n: group[n][:] for n in names}


def test_sigkill_then_rerun_equals_uninterrupted_run(image_folder, small_store, tmp_path):
    store = tmp_path / "killed.zarr"
    args = ["activations", image_folder, "--store", store, "--weights", "random",
            "--shard-rows", "8", "--batch-size", "4", "--workers", "0"]
    proc = subprocess.Popen([*EXEMPLARS, *map(str, args)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_marker = store / "mixed4a" / "done" / "c" / "0"
    deadline = time.time() + 120
    while not first_marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first_marker.exists(), "the run ended before its first shard was written"
    done = zarr.open_group(str(store), mode="r")["mixed4a/done"][:]
    assert not done.all(), "killed too late to test resume"
    run_cli(*args)
    expected, got = _arrays(small_store), _arrays(store)
    for name in expected:
        assert_array_equal(got[name], expected[name], err_msg=name)


def test_second_writer_is_refused(image_folder, tmp_path):
    from pipeline.writers import writer_lock

    store = tmp_path / "locked.zarr"
    with writer_lock(store):
        proc = run_cli("activations", image_folder, "--store", store, "--weights", "random",
                       "--workers", "0", check=False)
    assert proc.returncode == 2
    assert "being written by another process" in proc.stderr and "Traceback" not in proc.stderr


def test_rerun_with_other_weights_refuses_unless_overwrite(image_folder, small_store, tmp_path, weights_file):
    store = tmp_path / "copy.zarr"
    extract(image_folder, store, weights="random", workers=0, shard_rows=8, progress=False)
    proc = run_cli("activations", image_folder, "--store", store, "--weights", weights_file,
                   "--workers", "0", check=False)
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert "model.weights.kind='random', this run has model.weights.kind='file'" in proc.stderr  # the differing leaf
    run_cli("activations", image_folder, "--store", store, "--weights", weights_file,
            "--workers", "0", "--overwrite")
    group = zarr.open_group(str(store), mode="r")
    assert group.attrs["model"]["weights"]["kind"] == "file" and group.attrs["model"]["weights"]["path"] == str(weights_file)
    # The .pth holds the seed-0 random weights, so the numbers are the same.
    np.testing.assert_array_equal(group["mixed4a/mean"][:], _arrays(small_store)["mixed4a/mean"])


def test_changed_dataset_refuses(tmp_path):
    data = make_folder(tmp_path / "data", classes=("a",), per_class=3)
    store = tmp_path / "s.zarr"
    extract(data, store, weights="random", workers=0, progress=False)
    make_image(np.random.default_rng(5), 200, 200).save(data / "a" / "new.jpg")
    old = sorted(p.name for p in (data / "a").iterdir() if p.name != "new.jpg")
    os.utime(data / "a" / old[0], ns=(0, 0))  # a copy that did not keep the time
    (data / "a" / old[1]).unlink()
    proc = run_cli("activations", data, "--store", store, "--weights", "random", "--workers", "0", check=False)
    assert proc.returncode == 2 and "the images changed since store" in proc.stderr
    assert "1 added: a/new.jpg; 1 removed: a/" + old[1] in proc.stderr
    assert f"1 changed in size or modification time (a copy that does not keep times changes them): a/{old[0]}" in proc.stderr


def test_the_same_files_found_elsewhere_move_the_recorded_root(tmp_path):
    import shutil

    data = make_folder(tmp_path / "data", classes=("a",), per_class=3)
    store = tmp_path / "s.zarr"
    extract(data, store, weights="random", workers=0, shard_rows=2, progress=False)
    shutil.copytree(data, tmp_path / "moved", copy_function=shutil.copy2)  # times kept: the same files
    extract(tmp_path / "moved", store, layers=["mixed3a"], weights="random", workers=0, progress=False)
    assert zarr.open_group(str(store), mode="r").attrs["dataset"]["root"] == str(tmp_path / "moved")


def _odd_images(root: Path) -> dict[str, bool]:
    """Files of every kind a real folder holds, and whether each should decode."""
    rng = np.random.default_rng(1)
    base = make_image(rng, 300, 240)
    root.mkdir(parents=True)
    base.convert("L").save(root / "gray.jpg")
    base.convert("RGBA").save(root / "rgba.png")
    base.convert("CMYK").save(root / "cmyk.jpg")
    base.convert("P").save(root / "palette.png")
    Image.fromarray((np.asarray(base.convert("L")).astype(np.uint16) * 257)).save(root / "deep16.png")
    base.resize((1, 1)).save(root / "tiny.png")
    make_image(rng, 4000, 3000).save(root / "huge.jpg", quality=60)
    base.save(root / "ok.jpg")
    full = (root / "ok.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 3])
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("this is not an image")
    (root / "readme.txt").write_text("skipped: not an image extension")
    (root / ".hidden.jpg").write_bytes(full)
    expected = {p.name: True for p in root.iterdir() if p.suffix != ".txt" and not p.name.startswith(".")}
    expected.update({"truncated.jpg": False, "empty.jpg": False, "notes.jpg": False})
    return expected


def test_bad_files_are_marked_invalid_and_named(tmp_path):
    data = tmp_path / "odd"
    expected = _odd_images(data)
    store = tmp_path / "odd.zarr"
    proc = run_cli("activations", data, "--store", store, "--weights", "random", "--workers", "2",
                   "--batch-size", "4")
    group = zarr.open_group(str(store), mode="r")
    paths = [str(p) for p in group["images/path"][:]]
    assert paths == sorted(expected)
    valid = dict(zip(paths, group["images/valid"][:].tolist()))
    assert valid == expected
    errors = dict(zip(paths, group["images/error"][:].tolist()))
    for name, ok in expected.items():
        assert (errors[name] == "") == ok
        assert f"invalid: {name}" in proc.stderr or ok
    mean = group["mixed4a/mean"][:]
    rows = np.array([valid[p] for p in paths])
    assert np.isnan(mean[~rows]).all() and np.isfinite(mean[rows]).all()
    assert (group["mixed4a/argmax"][:][~rows] == -1).all()
    assert "(3 invalid)" in proc.stdout


@pytest.mark.parametrize("options, overlap, error", [
    ({"compile": True}, 1.0, 1e-6),  # the same oneDNN convolutions, exact pools, our LRN: round-off at most
    ({"decoder": "fast"}, 0.8, 0.1),
    ({"precision": "bf16"}, 0.8, 0.1),
    ({"precision": "fp16"}, 0.8, 0.1),
])
def test_opt_in_modes_agree_within_their_tolerance(image_folder, small_store, tmp_path, options, overlap, error,
                                                   capsys):
    """The README states each mode's measured agreement; these are the bounds they must keep."""
    from pipeline.agreement import agreement
    from pipeline.hardware import precision_note

    store = tmp_path / "mode.zarr"
    extract(image_folder, store, weights="random", batch_size=4, workers=0, shard_rows=8, progress=False, **options)
    exact = zarr.open_group(str(small_store), mode="r")["mixed4a/mean"][:]
    other = zarr.open_group(str(store), mode="r")["mixed4a/mean"][:]
    result = agreement(exact, other)
    assert result["topk_overlap"] >= overlap and result["max_relative_error"] <= error, result
    attrs = zarr.open_group(str(store), mode="r").attrs
    assert attrs["model"]["precision"] == options.get("precision", "fp32")
    assert attrs["preprocessing"]["decoder"] == options.get("decoder", "pil")
    note = precision_note(options.get("precision", "fp32"), "cpu")
    assert (note in capsys.readouterr().err) if note else True  # fp16 without AMX-FP16 says it is slow


def test_compile_without_a_cpp_compiler_stops_before_the_store(image_folder, tmp_path):
    import torch._inductor.config as inductor

    from pipeline.errors import PipelineError

    # inductor's own patch: monkeypatch's undo deletes the entry, which hides cpp.cxx from later tests
    with inductor.patch({"cpp.cxx": ("/nonexistent/c++",)}), \
            pytest.raises(PipelineError, match="needs a C[+][+] compiler"):
        extract(image_folder, tmp_path / "s.zarr", weights="random", compile=True, device="cpu", progress=False)
    assert not (tmp_path / "s.zarr").exists()


def test_fast_decoders_without_torchvisions_jpeg_decoder_stop_before_the_store(image_folder, tmp_path, monkeypatch):
    import torchvision.io

    from pipeline.errors import InputError

    monkeypatch.delattr(torchvision.io, "decode_jpeg")  # as a torchvision after the move to TorchCodec
    with pytest.raises(InputError, match="--decoder fast needs torchvision.io.decode_jpeg, which torchvision .* "
                                         "no longer has; use --decoder pil"):
        extract(image_folder, tmp_path / "s.zarr", weights="random", decoder="fast", device="cpu", progress=False)
    assert not (tmp_path / "s.zarr").exists()


def test_bad_options_are_one_sentence(image_folder, tmp_path):
    for args, fragment in ((["--precision", "fp8"], "--precision"), (["--decoder", "magic"], "--decoder"),
                           (["--decoder", "gpu", "--device", "cpu"], "needs a CUDA device"),
                           (["--lanes", "2", "--workers", "1"], "--lanes"),
                           (["--device", "cuda:abc"], "cuda:N"), (["--seed", str(10**20)], "--seed")):
        proc = run_cli("activations", image_folder, "--store", tmp_path / "s.zarr", "--weights", "random",
                       *args, check=False)
        assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr


def test_a_batch_is_waited_for_only_after_the_next_has_arrived(image_folder, tmp_path, monkeypatch):
    """The overlap on CUDA (one lane): the loop fetches batch k+1 before it waits for batch k's results."""
    import pipeline.extract as ex

    events, real_loader, real_to_host = [], ex.make_loader, ex.to_host

    def loader(*args, **kwargs):
        for i, item in enumerate(real_loader(*args, **kwargs)):
            events.append(f"fetch {i}")
            yield item

    def to_host(tensor):
        wait, i = real_to_host(tensor), sum(e.startswith("fetch") for e in events) - 1
        return lambda: (events.append(f"wait {i}"), wait())[1]

    monkeypatch.setattr(ex, "make_loader", loader)
    monkeypatch.setattr(ex, "to_host", to_host)
    extract(image_folder, tmp_path / "s.zarr", weights="random", batch_size=8, workers=0, progress=False, lanes=1)
    from pipeline.images import scan

    n = -(-len(scan(image_folder)) // 8)
    assert events == ["fetch 0"] + [e for i in range(1, n) for e in (f"fetch {i}", f"wait {i - 1}")] + [f"wait {n - 1}"]


@pytest.mark.parametrize("lanes", [None, 1])  # with one lane the third batch is surely the one that fails
def test_a_failing_rank_names_itself_and_its_shard(image_folder, tmp_path, monkeypatch, capsys, lanes):
    import pipeline.extract as ex

    real = ex.forward_pass
    calls = []

    def breaking(*args, **kwargs):
        forward = real(*args, **kwargs)

        def step(batch):
            calls.append(len(batch))
            if len(calls) == 3:  # the first shard (two batches of 4) is written, then the next breaks
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return forward(batch)

        return step

    monkeypatch.setattr(ex, "forward_pass", breaking)
    store = tmp_path / "broken.zarr"
    with pytest.raises(RuntimeError, match="illegal memory access"):
        extract(image_folder, store, weights="random", batch_size=4, workers=0, shard_rows=8, progress=False,
                lanes=lanes)
    assert "\nfailed in shard 1: RuntimeError" in "\n" + capsys.readouterr().err  # "rank r/w" only under torchrun
    assert zarr.open_group(str(store), mode="r")["mixed4a/done"][:].tolist() == [True, False, False]
    monkeypatch.setattr(ex, "forward_pass", real)
    assert extract(image_folder, store, weights="random", batch_size=4, workers=0, progress=False).computed == 16


def test_a_full_disk_mid_run_is_one_sentence_and_the_finished_shards_stay(image_folder, tmp_path, monkeypatch):
    from pipeline import store as st
    from pipeline.errors import OutputError

    real, written = st.write_shard, []

    def filling(group, layers, shard, *args):
        if written:  # the first shard is written, the disk is full at the next
            raise OSError(28, "No space left on device", "s.zarr/mixed4a/mean/c/1")
        written.append(shard)
        return real(group, layers, shard, *args)

    monkeypatch.setattr(st, "write_shard", filling)
    store = tmp_path / "full.zarr"
    with pytest.raises(OutputError, match=r"^stopped in shard \d: No space left on device \(s.zarr/mixed4a/mean/c/1\); "
                                          "finished shards are kept, rerun the same command once that is fixed$"):
        extract(image_folder, store, weights="random", batch_size=4, workers=0, shard_rows=8, progress=False)
    assert zarr.open_group(str(store), mode="r")["mixed4a/done"][:].sum() == 1
    monkeypatch.setattr(st, "write_shard", real)
    assert extract(image_folder, store, weights="random", batch_size=4, workers=0, progress=False).computed == 16


def test_a_store_name_that_cannot_be_made_is_one_sentence(image_folder, tmp_path):
    (tmp_path / "afile").write_text("x")
    for store, fragment in ((tmp_path / "afile" / "sub", "cannot make store"), ("", "name is empty")):
        proc = run_cli("activations", image_folder, "--store", store, "--weights", "random", check=False)
        assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("activations", image_folder, "--store", "file://" + str(tmp_path / "url.zarr"), "--weights",
                   "random", "--shard-rows", "8", "-l", "conv2d0")
    assert (tmp_path / "url.zarr" / "conv2d0" / "done").exists()  # a file:// URL is the folder


def test_the_logits_are_a_layer_of_one_by_one_maps(image_folder, random_model, tmp_path):
    import torch

    from pipeline.images import ImageDataset, to_model_input

    store = tmp_path / "logits.zarr"
    extract(image_folder, store, ["softmax2_pre_activation_matmul"], weights="random", batch_size=4,
            shard_rows=8, progress=False)
    layer = pipeline.open_store(store)["softmax2_pre_activation_matmul"]
    assert layer.channels == 1008 and layer.spatial_shape == [1, 1]
    data = ImageDataset(str(image_folder), pipeline.open_store(store).all_paths[:2].tolist())
    batch = torch.stack([data[i][1] for i in range(2)])
    with torch.inference_mode():
        logits = random_model(to_model_input(batch))  # lucent's forward returns the softmax of these
    stored = np.asarray(layer.group["mean"][:2])
    np.testing.assert_allclose(np.exp(stored) / np.exp(stored).sum(1, keepdims=True), logits.numpy(),
                               rtol=1e-4, atol=1e-7)
    assert (np.asarray(layer.group["argmax"][:2]) == 0).all()


def test_a_layer_added_beside_a_finished_one_is_computed(tmp_path):
    """Pending shards are those some asked-for layer has not finished, not only the first layer's."""
    data = make_folder(tmp_path / "data", classes=("a",), per_class=3)
    store = tmp_path / "s.zarr"
    extract(data, store, ["conv2d0"], weights="random", batch_size=4, progress=False)
    summary = extract(data, store, ["conv2d0", "conv2d1"], weights="random", batch_size=4, progress=False)
    assert summary.computed == 3
    group = zarr.open_group(str(store), mode="r")
    assert group["conv2d1/done"][:].all() and group["conv2d1"].attrs["complete"] is True
    assert np.isfinite(group["conv2d1/mean"][:]).all()


def test_a_row_with_non_finite_activations_is_stored_invalid(tmp_path, monkeypatch):
    """The rows are marked before the shard writer copies them (an fp16 overflow, say)."""
    import pipeline.extract as ex
    from pipeline.shards import NON_FINITE

    data = make_folder(tmp_path / "data", classes=("a",), per_class=3)
    real = ex.forward_pass

    def overflowing(*args, **kwargs):
        forward = real(*args, **kwargs)

        def step(batch):
            out = forward(batch)
            out["conv2d0"][0, 5, 1, 1] = float("inf")  # the batch's first image, one channel's max
            return out

        return step

    monkeypatch.setattr(ex, "forward_pass", overflowing)
    store = tmp_path / "s.zarr"
    summary = extract(data, store, ["conv2d0"], weights="random", batch_size=4, progress=False)
    group = zarr.open_group(str(store), mode="r")
    assert group["images/valid"][:].tolist() == [False, True, True]
    assert group["images/error"][0] == NON_FINITE
    assert np.isnan(group["conv2d0/mean"][0]).all() and (group["conv2d0/argmax"][0] == -1).all()
    assert summary.invalid == [("a/img_00.jpg", NON_FINITE)]


def test_too_little_shared_memory_for_the_workers_stops_before_the_store(image_folder, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from pipeline import loading
    from pipeline.errors import InputError

    # a container's small /dev/shm: the workers' batches would fail there and the loader wait for ever
    monkeypatch.setattr(loading.os, "statvfs", lambda path: SimpleNamespace(f_bavail=8, f_frsize=1 << 20, f_flag=0))
    with pytest.raises(InputError, match="shared memory"):
        extract(image_folder, tmp_path / "s.zarr", weights="random", workers=2, batch_size=16, progress=False)
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("how, verify", [("truncated", False), ("deleted", False), ("flipped", True),
                                         ("layer_json", False), ("array_json", False), ("done", False)])
def test_a_rerun_repairs_a_damaged_store_to_equal_a_fresh_one(image_folder, small_store, tmp_path, capsys, how, verify):
    from conftest import damage_store

    store = tmp_path / "damaged.zarr"
    shutil.copytree(small_store, store)
    damage_store(store, how)
    summary = extract(image_folder, store, ["mixed4a"], weights="random", batch_size=4, workers=0,
                      progress=False, verify=verify)
    said = capsys.readouterr().err
    assert ("removing it and computing it again" if how.endswith("json") else "1 done shard of mixed4a damaged") in said
    assert summary.computed == (24 if how.endswith("json") else 8)
    expected, got = _arrays(small_store), _arrays(store)
    for name in expected:
        assert_array_equal(got[name], expected[name], err_msg=name)
    again = extract(image_folder, store, ["mixed4a"], weights="random", workers=0, progress=False, verify=True)
    assert again.computed == 0


def test_a_rerun_rewrites_a_lost_valid_chunk(image_folder, small_store, tmp_path, capsys):
    store = tmp_path / "damaged.zarr"
    shutil.copytree(small_store, store)
    (store / "images" / "valid" / "c" / "1").unlink()
    summary = extract(image_folder, store, ["mixed4a"], weights="random", batch_size=4, workers=0, progress=False)
    assert "images/valid chunk 1 (rows 8-15) is missing its file" in capsys.readouterr().err and summary.computed == 8
    expected, got = _arrays(small_store), _arrays(store)
    for name in expected:
        assert_array_equal(got[name], expected[name], err_msg=name)


def test_a_lost_valid_chunk_is_recomputed_only_with_every_layer_done_there(image_folder, tmp_path):
    """Validity is AND-ed with that of the layers done in the shard, which a lost chunk reads as
    False: recomputing one layer alone would have written every row of the shard invalid."""
    fresh, store = tmp_path / "fresh.zarr", tmp_path / "damaged.zarr"
    kwargs = dict(weights="random", batch_size=4, workers=0, shard_rows=8, progress=False)
    extract(image_folder, fresh, ["mixed3a", "mixed4a"], **kwargs)
    shutil.copytree(fresh, store)
    (store / "images" / "valid" / "c" / "1").unlink()
    with pytest.raises(DamagedStoreError, match=r"images/valid chunk 1 \(rows 8-15\) is missing its file; rerun with every layer "
                                                r"done there \(--layer mixed3a --layer mixed4a\)"):
        extract(image_folder, store, ["mixed4a"], **kwargs)
    assert extract(image_folder, store, ["mixed3a", "mixed4a"], **kwargs).computed == 8
    group, expected = zarr.open_group(str(store), mode="r"), zarr.open_group(str(fresh), mode="r")
    for name in ("images/valid", "images/error", "mixed3a/mean", "mixed4a/mean", "mixed3a/done", "mixed4a/done"):
        assert_array_equal(group[name][:], expected[name][:], err_msg=name)


def test_a_lost_valid_chunk_beside_an_imported_layer_is_not_sent_to_activations(image_folder, small_store, tmp_path):
    """The advice named the imported layer as a --layer to compute, which activations refuses."""
    from pipeline.importing import import_matrix

    store = tmp_path / "damaged.zarr"
    shutil.copytree(small_store, store)
    paths = list(pipeline.open_store(store).all_paths)
    import_matrix(store, np.ones((len(paths), 3), dtype=np.float32), "probe", paths)
    (store / "images" / "valid" / "c" / "1").unlink()
    with pytest.raises(DamagedStoreError, match="images/valid chunk 1 \\(rows 8-15\\) is missing its file; layer probe, done there, "
                                                "was imported and cannot be recomputed: restore the store"):
        extract(image_folder, store, ["mixed4a"], weights="random", batch_size=4, workers=0, progress=False)


def test_folders_that_are_no_zarr_nodes_are_no_damage(image_folder, small_store, tmp_path):
    """A NAS's @eaDir in the store or in a layer, or a layer whose zarr.json a killed writer left
    half-written: a rerun called the finished layer damaged and computed it again from scratch."""
    store = tmp_path / "s.zarr"
    shutil.copytree(small_store, store)
    for folder in (store / "@eaDir", store / "mixed4a" / "@eaDir", store / "mixed3a"):
        folder.mkdir()
    (store / "@eaDir" / "F").write_text("x")
    (store / "mixed4a" / "@eaDir" / "F").write_text("x")
    (store / "mixed3a" / f"zarr.{'0f' * 16}.partial").write_text("{")
    opened = pipeline.open_store(store)
    assert opened.info()["layers"].keys() == {"mixed4a"} and opened["mixed4a"].topk(3, k=2).rows.size == 2
    again = extract(image_folder, store, ["mixed4a"], weights="random", workers=0, progress=False)
    assert again.computed == 0 and (store / "mixed4a" / "@eaDir" / "F").exists()


@pytest.mark.parametrize("node, how", [("mixed4a", "invalid"), ("mixed4a", "null"), ("mixed4a/mean", "empty"),
                                       ("mixed4a/done", "no_metadata")])
def test_a_rerun_remakes_a_layer_whose_zarr_json_is_not_metadata(image_folder, small_store, tmp_path, capsys, node, how):
    """As for a lost one: the layer is removed and computed again (it was zarr's traceback)."""
    from conftest import spoil_json

    store = tmp_path / "spoiled.zarr"
    shutil.copytree(small_store, store)
    spoil_json(store, node, how)
    summary = extract(image_folder, store, ["mixed4a"], weights="random", batch_size=4, workers=0, progress=False)
    said = capsys.readouterr().err
    assert f"its {node}/zarr.json is not zarr metadata" in said and "removing it and computing it again" in said
    assert summary.computed == 24
    expected, got = _arrays(small_store), _arrays(store)
    for name in expected:
        assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.parametrize("node", ["images", "images/path", "images/valid"])
def test_a_rerun_refuses_an_images_zarr_json_that_is_not_metadata(image_folder, small_store, tmp_path, node):
    """Its rows' validity is not recomputable without every layer: the store is rebuilt or restored."""
    from conftest import spoil_json

    store = tmp_path / "spoiled.zarr"
    shutil.copytree(small_store, store)
    spoil_json(store, node, "invalid")
    with pytest.raises(DamagedStoreError, match=f"its {node}/zarr.json is not zarr metadata .*--overwrite"):
        extract(image_folder, store, ["mixed4a"], weights="random", batch_size=4, workers=0, progress=False)


def test_a_rerun_remakes_a_layer_whose_shape_was_edited(image_folder, small_store, tmp_path, capsys):
    import json

    store = tmp_path / "edited.zarr"
    shutil.copytree(small_store, store)
    path = store / "mixed4a" / "mean" / "zarr.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), shape=[24, 10])))
    assert extract(image_folder, store, ["mixed4a"], weights="random", batch_size=4, workers=0,
                   progress=False).computed == 24
    assert "its mixed4a/mean has shape [24, 10]" in capsys.readouterr().err
    assert_array_equal(_arrays(store)["mixed4a/mean"], _arrays(small_store)["mixed4a/mean"])
