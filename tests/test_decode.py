"""Decoders and loader defaults: the ``gpu`` path's batching, run here on the CPU."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import make_image
from pipeline.decode import Encoded, collate, finish_batch, make_dataset


@pytest.fixture
def mixed_folder(tmp_path):
    rng = np.random.default_rng(0)
    make_image(rng, 500, 375).save(tmp_path / "a.jpg", quality=90)
    make_image(rng, 300, 400).save(tmp_path / "b.png")  # not a JPEG: decoded by a worker already
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    make_image(rng, 375, 500).save(tmp_path / "d.jpg", quality=90)
    return tmp_path, ["a.jpg", "b.png", "c.jpg", "d.jpg"]


def test_gpu_decoder_batch_equals_the_fast_decoder(mixed_folder):
    import torch

    root, paths = mixed_folder
    encoded = make_dataset(str(root), paths, "gpu")
    index, images, ok, errors = collate([encoded[i] for i in range(len(paths))])
    assert isinstance(images, Encoded)  # three tensors cross from a worker, not one per image
    # the broken c.jpg has no frame header: PIL in the worker refuses it, as the notebook would
    assert images.sizes.tolist() == [os.path.getsize(root / "a.jpg"), 0, 0, os.path.getsize(root / "d.jpg")]
    assert ok.tolist() == [True, True, False, True] and errors[2].startswith("OSError")
    assert images.decoded.shape == (2, 3, 224, 224) and images.data.numel() == sum(images.sizes.tolist())
    batch, failed = finish_batch(images, torch.device("cpu"))  # the same calls as on CUDA
    assert batch.shape == (4, 3, 224, 224) and batch.dtype == torch.uint8 and failed == {}
    assert not batch[2].any()  # the broken file's image is black, its row marked invalid
    fast = make_dataset(str(root), paths, "fast")
    for i in (0, 1, 3):
        assert torch.equal(batch[i], fast[i][1])


def test_files_nvjpeg_refuses_are_decoded_by_pil(mixed_folder, tmp_path, monkeypatch):
    import io

    import torch
    import torchvision.io
    from PIL import Image

    from pipeline.decode import nvjpeg_takes
    from pipeline.images import ImageDataset

    root, _ = mixed_folder
    base = Image.open(root / "a.jpg")
    for mode, name in (("L", "grey.jpg"), ("CMYK", "cmyk.jpg")):
        base.convert(mode).save(root / name)
    base.save(root / "png.jpg", "PNG")  # ImageNet has a PNG named .JPEG
    data = (root / "a.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(data[:len(data) // 3])  # a frame header, then the data stops
    paths = ["grey.jpg", "cmyk.jpg", "png.jpg", "a.jpg", "cut.jpg"]
    gpu = make_dataset(str(root), paths, "gpu")
    _, images, ok, errors = collate([gpu[i] for i in range(len(paths))])
    assert images.sizes.tolist()[:3] == [0, 0, 0] and ok.tolist()[:3] == [True] * 3  # PIL, in the worker
    pil = ImageDataset(str(root), paths)
    real = torchvision.io.decode_jpeg

    def refusing(encoded, **kwargs):  # nvJPEG refusing a batch, then a.jpg alone
        if isinstance(encoded, list) or len(encoded) == len(data):
            raise RuntimeError("nvjpeg refused it")
        return real(encoded, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", refusing)
    batch, failed = finish_batch(images, torch.device("cpu"))
    for i in range(4):  # every readable file is PIL's image, as the notebook would make it
        assert torch.equal(batch[i], pil[i][1])
    assert list(failed) == [4] and failed[4].startswith("OSError") and not batch[4].any()
    assert nvjpeg_takes(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    sof = data.index(b"\xff\xc0")
    twelve = bytearray(data)
    twelve[sof + 4] = 12  # 12-bit samples: nvJPEG decodes 8-bit ones only
    assert not nvjpeg_takes(torch.frombuffer(twelve, dtype=torch.uint8))
    assert not nvjpeg_takes(b"\xff\xd8")
    buffer = io.BytesIO()
    base.save(buffer, "JPEG", progressive=True)
    assert nvjpeg_takes(buffer.getvalue())  # progressive Huffman (SOF2): nvJPEG's
    arithmetic = bytearray(buffer.getvalue())
    sof = arithmetic.index(b"\xff\xc2")
    arithmetic[sof + 1] = 0xC9  # the same frame, marked arithmetic-coded
    assert not nvjpeg_takes(bytes(arithmetic))


def test_decoded_batches_pass_through(mixed_folder):
    import torch

    root, paths = mixed_folder
    dataset = make_dataset(str(root), paths, "pil", threads=2)
    _, images, ok, errors = collate(dataset.__getitems__([0, 1, 2, 3]))
    assert torch.is_tensor(images) and ok.tolist() == [True, True, False, True] and errors[2]
    batch, failed = finish_batch(images, torch.device("cpu"))
    assert failed == {} and torch.equal(batch, images)


def test_a_batch_of_decoded_images_only_stays_a_tensor(mixed_folder):
    import torch

    root, paths = mixed_folder
    encoded = make_dataset(str(root), paths, "gpu")
    _, images, _, _ = collate([encoded[1]])  # the PNG: decoded in the worker
    assert torch.is_tensor(images) and images.shape == (1, 3, 224, 224)


def test_a_batch_is_stacked_in_the_networks_layout():
    import torch

    from pipeline.decode import stack_channels_last

    images = [torch.randint(0, 256, (5, 4, 3), dtype=torch.uint8).permute(2, 0, 1) for _ in range(3)]  # as PIL's
    images.append(torch.randint(0, 256, (3, 5, 4), dtype=torch.uint8))  # as decode_jpeg's
    batch = stack_channels_last(images)
    assert torch.equal(batch, torch.stack(images))
    assert batch.is_contiguous(memory_format=torch.channels_last)


def test_the_fast_decoder_is_pils_crop_within_a_few_levels(mixed_folder):
    """``fast`` must see the notebook's crop: a 1-pixel shift or a resize without antialiasing
    moves whole edges (mean differences of 0.2-5 levels), not a level here and there."""
    from pipeline.images import ImageDataset

    root, paths = mixed_folder
    fast, pil = make_dataset(str(root), paths, "fast"), ImageDataset(str(root), paths)
    for i, name in enumerate(paths):
        (_, got, ok, error), (_, expected, pil_ok, pil_error) = fast[i], pil[i]
        assert (ok, error) == (pil_ok, pil_error), name  # a JPEG decode_jpeg refuses is PIL's to judge
        difference = (got.int() - expected.int()).abs()
        assert got.shape == expected.shape and difference.max() <= 4 and difference.float().mean() < 0.1, name
    assert fast[2][2] is False and fast[2][3].startswith("OSError")  # the broken c.jpg stays invalid


@pytest.mark.parametrize("decoder", ["fast", "gpu"])
def test_an_image_over_pils_pixel_limit_is_invalid_with_every_decoder(mixed_folder, monkeypatch, decoder):
    """decode_jpeg has no limit: a 196-megapixel JPEG was a valid row under ``fast`` and an invalid one
    in the notebook (PIL's DecompressionBombError). Here the limit is lowered to below a.jpg's size."""
    from PIL import Image

    from pipeline.decode import _frame
    from pipeline.images import ImageDataset

    root, paths = mixed_folder
    assert _frame((root / "a.jpg").read_bytes())[2:] == (375, 500, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 375 * 500 // 2 - 1)
    _, _, ok, error = make_dataset(str(root), paths, decoder)[0]
    assert not ok and error.startswith("DecompressionBombError") and (ok, error) == ImageDataset(str(root), paths)[0][2:]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 375 * 500 // 2)  # at the limit: decoded
    assert make_dataset(str(root), paths, decoder)[0][2] is True
