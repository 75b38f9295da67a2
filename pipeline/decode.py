"""Decoders for phase one: the notebook's PIL path (exact), and two faster ones.

Offers:
    DECODERS                       ("pil", "fast", "gpu")
    make_dataset(root, paths, decoder, threads=1) -> a torch Dataset of (index, image, ok, error)
    decoding(device, workers, world) -> (worker processes, decoding threads): the defaults
    make_loader(images, sampler, workers, threads, pin, decoder) -> a DataLoader of batches
    collate(items)                 batches; ``gpu`` items stay a list of encoded bytes
    finish_batch(images, device) -> (uint8 (B, 3, 224, 224) on ``device``, failures)

``pil``: ImageFolder's loader and the notebook's transforms, bit for bit.
``fast``: torchvision's ``decode_jpeg`` and ``transforms.v2`` on uint8 tensors
(about 2x faster; pixels within a few levels of PIL's), PIL for other formats.
``gpu``: workers only read the files; JPEGs are decoded in batches on CUDA by
``decode_jpeg(device="cuda")`` and resized there; other formats as ``fast``.
"""

from __future__ import annotations

import os

from .images import PREPROCESSING, ImageDataset

DECODERS = ("pil", "fast", "gpu")
JPEG = (".jpg", ".jpeg")


def _resize_crop(tensor):
    from torchvision.transforms.v2 import functional as F

    tensor = F.resize(tensor, [PREPROCESSING["resize"]], antialias=True)
    return F.center_crop(tensor, [PREPROCESSING["center_crop"]])


class FastDataset(ImageDataset):
    """decode_jpeg + v2 transforms on uint8; falls back to PIL where it cannot decode."""

    def __init__(self, root, paths, keep_encoded: bool = False, threads: int = 1):
        super().__init__(root, paths, threads)
        self.keep_encoded = keep_encoded

    def __getitem__(self, i: int):
        from torchvision.io import ImageReadMode, decode_jpeg, read_file

        path = os.path.join(self.root, self.paths[i])
        if path.lower().endswith(JPEG):
            try:
                data = read_file(path)
                if self.keep_encoded:
                    return i, data, True, ""
                return i, _resize_crop(decode_jpeg(data, mode=ImageReadMode.RGB)), True, ""
            except (RuntimeError, OSError, ValueError):
                pass  # progressive/CMYK oddities and broken files: PIL decides, as the notebook would
        return super().__getitem__(i)


def make_dataset(root, paths, decoder: str, threads: int = 1):
    if decoder == "pil":
        return ImageDataset(root, paths, threads)
    return FastDataset(root, paths, keep_encoded=decoder == "gpu", threads=threads)


def decoding(dev, workers: int | None, world: int) -> tuple[int, int]:
    """(worker processes, decoding threads in this process) for the device.

    On CUDA, worker processes decode while the GPU computes. On the CPU both
    halves need the same cores, so by default the batch is decoded in threads
    of this process and then the network runs, each half on every core: as
    fast as one worker process on 2 cores (within the machine's noise, see the
    README), without that process's 0.5 GB and start-up.
    """
    cores = max(1, (os.cpu_count() or 2) // world)
    if workers is None:
        workers = max(1, min(8, cores - 1)) if dev.type == "cuda" else 0
    return workers, (cores if workers == 0 else 1)


def make_loader(images, sampler, workers: int, threads: int, pin: bool, decoder: str):
    from torch.utils.data import DataLoader

    return DataLoader(make_dataset(images.root, images.paths, decoder, threads), batch_sampler=sampler,
                      num_workers=workers, pin_memory=pin, collate_fn=collate,
                      persistent_workers=False, prefetch_factor=4 if workers else None)


def collate(items):
    import torch

    index = torch.tensor([item[0] for item in items])
    ok = torch.tensor([item[2] for item in items])
    errors = [item[3] for item in items]
    images = [item[1] for item in items]
    if all(image.dim() == 3 for image in images):
        images = torch.stack(images)
    return index, images, ok, errors


def finish_batch(images, device):
    """Decode what is still encoded (``gpu``), resize there, and stack on ``device``.

    Returns ``(batch, failed)``: ``failed`` maps a position in the batch to the
    error of a JPEG the GPU decoder refused (its image is left black).
    """
    import torch

    if torch.is_tensor(images):
        return images.to(device, non_blocking=True), {}
    from torchvision.io import ImageReadMode, decode_jpeg

    size = PREPROCESSING["center_crop"]
    out = [image.to(device, non_blocking=True) if image.dim() == 3 else None for image in images]
    encoded = [i for i, image in enumerate(images) if image.dim() == 1]
    failed = {}
    try:
        decoded = decode_jpeg([images[i] for i in encoded], mode=ImageReadMode.RGB, device=device)
    except RuntimeError:  # one bad file fails the batch: decode one by one to find it
        decoded = []
        for i in encoded:
            try:
                decoded.append(decode_jpeg(images[i], mode=ImageReadMode.RGB, device=device))
            except RuntimeError as exc:
                failed[i] = f"RuntimeError: {exc}".splitlines()[0]
                decoded.append(None)
    for i, image in zip(encoded, decoded):
        out[i] = _resize_crop(image) if image is not None else torch.zeros(3, size, size, dtype=torch.uint8,
                                                                           device=device)
    return torch.stack(out), failed
