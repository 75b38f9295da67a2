"""Shared fixtures: a generated image folder, random weights, small stores.

Everything is made here from a fixed seed; nothing is downloaded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
EXEMPLARS = [sys.executable, "-m", "pipeline"]


@pytest.fixture(autouse=True)
def _close_figures():
    """Tests look at the figures the API returns and leave them open; pyplot keeps each one."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def make_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth random colour fields plus a few shapes: varied enough to rank."""
    small = rng.integers(0, 256, size=(max(2, height // 32), max(2, width // 32), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(image).copy()
    for _ in range(int(rng.integers(1, 5))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(4, max(5, min(width, height) // 3)))
        pixels[max(0, y - r):y + r, max(0, x - r):x + r] = rng.integers(0, 256, 3)
    return Image.fromarray(pixels)


def make_folder(root: Path, classes=("apple", "bear", "cloud"), per_class=8, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = int(rng.integers(180, 400)), int(rng.integers(180, 400))
            ext = ".png" if i % 4 == 3 else ".jpg"
            make_image(rng, w, h).save(root / c / f"img_{i:02d}{ext}")
    return root


def exemplars_here(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``exemplars ARGS`` in this process, faster than ``run_cli``: (exit code, stdout, stderr)."""
    import pipeline.cli as cli

    monkeypatch.setattr("sys.argv", ["exemplars", *map(str, args)])
    try:
        cli.main()
        code = 0
    except SystemExit as stopped:
        code = stopped.code or 0
    said = capsys.readouterr()
    return code, said.out, said.err


def run_cli(*args, check=True, env=None, **kwargs) -> subprocess.CompletedProcess:
    """Run ``exemplars`` in a fresh process, as a user would."""
    full_env = dict(os.environ, **(env or {}))
    kwargs.setdefault("cwd", ROOT)
    proc = subprocess.run([*EXEMPLARS, *map(str, args)], capture_output=True, text=True, env=full_env, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"exemplars {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """An ImageFolder of 24 generated images in 3 classes (jpg and png)."""
    return make_folder(tmp_path_factory.mktemp("images") / "data")


@pytest.fixture(scope="session")
def random_model():
    from pipeline.model import load_model

    return load_model("random", seed=0)[0]


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory, random_model) -> Path:
    """A locally saved .pth, as a user with downloaded weights would pass it."""
    import torch

    path = tmp_path_factory.mktemp("weights") / "inception_random.pth"
    torch.save(random_model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def small_store(tmp_path_factory, image_folder) -> Path:
    """Phase one over ``image_folder`` with random weights, shards of 8 rows."""
    from pipeline.extract import extract

    path = tmp_path_factory.mktemp("stores") / "small.zarr"
    extract(image_folder, path, ["mixed4a"], weights="random", batch_size=4, workers=0,
            shard_rows=8, progress=False)
    return path


DAMAGES = ("truncated", "deleted", "flipped", "layer_json", "array_json", "done")


def damage_store(store: Path, how: str, layer: str = "mixed4a", shard: int = 1) -> None:
    """Damage a written store as a disk, a copy cut short or a hand would: ``how`` one of ``DAMAGES``."""
    shard_file = Path(store) / layer / "mean" / "c" / str(shard) / "0"
    if how == "truncated":
        os.truncate(shard_file, shard_file.stat().st_size // 2)
    elif how == "deleted":
        shard_file.unlink()
    elif how == "flipped":  # a byte in the middle of every inner chunk: the shard's index stays whole
        import zarr

        arr = zarr.open_group(str(store), mode="r")[f"{layer}/mean"]
        entries = int(np.prod([-(-s // c) for s, c in zip(arr.shards, arr.chunks)]))
        raw = bytearray(shard_file.read_bytes())
        index = np.frombuffer(bytes(raw[-(entries * 16 + 4):-4]), dtype="<u8").reshape(-1, 2)
        for offset, length in index[index[:, 0] != 2 ** 64 - 1].tolist():
            raw[offset + length // 2] ^= 0x5A
        shard_file.write_bytes(bytes(raw))
    elif how == "layer_json":
        (Path(store) / layer / "zarr.json").unlink()
    elif how == "array_json":
        (Path(store) / layer / "mean" / "zarr.json").unlink()
    elif how == "done":  # the shard's done marker: bytes that are no zstd frame
        (Path(store) / layer / "done" / "c" / str(shard)).write_bytes(b"not zstd")
    else:
        raise ValueError(how)


# A node's zarr.json as a copy cut short, a full disk or a hand leave it: none is zarr metadata.
SPOILED_JSON = {"invalid": "{bad", "empty": "", "no_metadata": "{}", "null": "null"}
LAYER_NODES = ("mixed4a", "mixed4a/mean", "mixed4a/done")
IMAGE_NODES = ("images", "images/path", "images/valid")


def spoil_json(store: Path, node: str, how: str = "invalid") -> None:
    """Overwrite ``node``'s zarr.json (``node``: "mixed4a", "images/path", ...) with ``SPOILED_JSON[how]``."""
    (Path(store) / node / "zarr.json").write_text(SPOILED_JSON[how])


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.fixture
def s3_server(tmp_path):
    """moto's S3 server on loopback, started and stopped by the test."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", port],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        import s3fs

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", int(port)), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=env["AWS_ENDPOINT_URL"])
        fs.mkdir("exemplars-test")
        yield env
    finally:
        server.terminate()
        server.wait()
        # fsspec keeps one S3FileSystem per set of arguments, endpoint read once: the next test's
        # server, on another port, was asked through this one's (connection refused).
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
