"""Decoders for phase one: the notebook's PIL path (exact), and two faster ones.

Offers:
    DECODERS                       ("pil", "fast", "gpu")
    make_dataset(root, paths, decoder, threads=1) -> a torch Dataset of (index, image, ok, error)
    FastDataset                    torchvision's decode_jpeg + transforms.v2 (PIL where it cannot)
    collate(items)                 batches; a ``gpu`` batch stays encoded, packed as ``Encoded``
    stack_channels_last(images)    a batch in the network's memory layout
    finish_batch(images, device) -> (uint8 (B, 3, 224, 224) on ``device``, failures)
    nvjpeg_takes(data) -> bool     whether ``gpu`` decodes the file on CUDA (else PIL, in the worker)

``pil``: ImageFolder's loader and the notebook's transforms, bit for bit.
``fast``: torchvision's ``decode_jpeg`` and ``transforms.v2`` on uint8 tensors
(about 2x faster; pixels within a few levels of PIL's), PIL for other formats.
``gpu``: workers only read the files; JPEGs are decoded in batches on CUDA by
``decode_jpeg(device="cuda")`` and resized there; other formats, and JPEGs nvJPEG
does not take (CMYK, grey, arithmetic-coded, a PNG named .jpg), by PIL in the workers.

How many processes and threads decode, and the loaders, are ``loading.py``'s.
"""

from __future__ import annotations

import io
import os
from typing import NamedTuple

from .images import PREPROCESSING, ImageDataset, notebook_image

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
                if _over_pil_limit(data):
                    return super().__getitem__(i)  # PIL refuses it, in its own words, as in the notebook
                if not self.keep_encoded:
                    return i, _resize_crop(decode_jpeg(data, mode=ImageReadMode.RGB)), True, ""
                if nvjpeg_takes(data):
                    return i, data, True, ""
                # Else PIL decodes it below: nvJPEG would refuse it, and each refusal
                # costs its batch a decoding one file at a time.
            except (RuntimeError, OSError, ValueError):
                pass  # progressive/CMYK oddities and broken files: PIL decides, as the notebook would
        return super().__getitem__(i)


# Start-of-frame markers: baseline, extended and progressive Huffman (what nvJPEG decodes), then
# the lossless, hierarchical and arithmetic-coded kinds (which it does not).
_SOF_TAKEN = {0xC0, 0xC1, 0xC2}
_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def nvjpeg_takes(data) -> bool:
    """Whether nvJPEG decodes this file (a uint8 tensor of it) as torchvision calls it: a JPEG
    (FF D8) coded by Huffman, of 3 components of 8 bits. CMYK (4) needs a flag torchvision never sets;
    grey (1) goes to PIL too, which decodes it as the notebook does; ImageNet has a PNG and
    CMYK JPEGs named .JPEG. Only the headers are read, up to the frame's."""
    frame = _frame(data)
    return frame is not None and frame[0] in _SOF_TAKEN and frame[1] == 8 and frame[4] == 3


def _over_pil_limit(data) -> bool:
    """Whether PIL would refuse the JPEG as a decompression bomb (its error, above twice
    ``MAX_IMAGE_PIXELS``): such an image is an invalid row in the notebook, so PIL must say so
    here too; torchvision's decoder has no limit."""
    from PIL import Image

    frame = _frame(data)
    limit = Image.MAX_IMAGE_PIXELS
    return frame is not None and limit is not None and frame[2] * frame[3] > 2 * limit


def _frame(data) -> tuple[int, int, int, int, int] | None:
    """A JPEG's frame header: (marker, bits, height, width, components); None where there is none."""
    view = memoryview(data.numpy()) if hasattr(data, "numpy") else memoryview(data)
    if len(view) < 4 or view[0] != 0xFF or view[1] != 0xD8:
        return None
    pos = 2
    while pos + 4 <= len(view):
        if view[pos] != 0xFF:
            return None
        marker = view[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in _SOF_TAKEN or marker in _SOF_OTHER:
            if pos + 9 >= len(view):
                return None
            return (marker, view[pos + 4], view[pos + 5] << 8 | view[pos + 6], view[pos + 7] << 8 | view[pos + 8],
                    view[pos + 9])
        if marker == 0xDA:  # a scan before any frame
            return None
        pos += 2 + (view[pos + 2] << 8 | view[pos + 3])
    return None


def make_dataset(root, paths, decoder: str, threads: int = 1):
    if decoder == "pil":
        return ImageDataset(root, paths, threads)
    return FastDataset(root, paths, keep_encoded=decoder == "gpu", threads=threads)


class Encoded(NamedTuple):
    """A batch the ``gpu`` decoder still has to decode, packed into few tensors.

    One tensor per image would cross from a worker process as one shared-memory
    file each: 256 a batch ran a GPU machine out of them and the loader hung.
    ``data`` holds the JPEG files back to back, ``sizes`` their lengths (0 for an
    image already decoded), ``decoded`` those images, in order.
    """

    data: object
    sizes: object
    decoded: object


def stack_channels_last(images):
    """(3, H, W) uint8 images -> a (B, 3, H, W) batch laid out as channels_last, the network's layout.

    PIL's images are (H, W, 3) in memory underneath: stacking them so is a plain
    copy, and the network's input needs no transposition after (0.05 against
    0.22 ms an image with ``to_model_input``, measured).
    """
    import torch

    out = torch.empty((len(images), *images[0].shape), dtype=images[0].dtype, memory_format=torch.channels_last)
    return torch.stack(images, out=out)


def collate(items):
    import torch

    index = torch.tensor([item[0] for item in items])
    ok = torch.tensor([item[2] for item in items])
    errors = [item[3] for item in items]
    images = [item[1] for item in items]
    if all(image.dim() == 3 for image in images):
        return index, stack_channels_last(images), ok, errors
    size = PREPROCESSING["center_crop"]
    encoded = [image for image in images if image.dim() == 1]
    decoded = [image for image in images if image.dim() == 3]
    packed = Encoded(torch.cat(encoded), torch.tensor([image.numel() if image.dim() == 1 else 0 for image in images]),
                     torch.stack(decoded) if decoded else torch.empty(0, 3, size, size, dtype=torch.uint8))
    return index, packed, ok, errors


def finish_batch(images, device):
    """Decode what is still encoded (``gpu``), resize there, and stack on ``device``.

    Returns ``(batch, failed)``: ``failed`` maps a position in the batch to the
    error of a file neither nvJPEG nor PIL decodes (its image is left black). A file
    nvJPEG refuses is decoded by PIL, from the bytes already read, as the notebook would.
    """
    import torch

    if torch.is_tensor(images):
        return images.to(device, non_blocking=True), {}
    from torchvision.io import ImageReadMode, decode_jpeg

    sizes = images.sizes.tolist()
    encoded = [i for i, n in enumerate(sizes) if n]
    files = list(torch.split(images.data, [sizes[i] for i in encoded]))
    out = [None] * len(sizes)
    for i, image in zip((i for i, n in enumerate(sizes) if not n), images.decoded.to(device, non_blocking=True)):
        out[i] = image
    failed = {}
    if files and torch.device(device).type == "cuda":
        # torchvision's nvJPEG call allocates its outputs on this stream but decodes on its own
        # without waiting for it: memory that queued kernels (the last batch's) still read could
        # be handed to it and overwritten (pytorch/vision#9606). So the stream drains first.
        torch.cuda.current_stream(device).synchronize()
    by_pil = set()  # positions PIL decoded, resized and cropped already
    try:
        decoded = decode_jpeg(files, mode=ImageReadMode.RGB, device=device) if files else []
    except RuntimeError:  # one bad file fails the batch: decode one by one to find it
        decoded = []
        for i, data in zip(encoded, files):
            try:
                decoded.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                image, error = notebook_image(io.BytesIO(data.numpy().tobytes()))  # as the notebook would
                if error:
                    failed[i] = error
                decoded.append(image.to(device))
                by_pil.add(i)
    for i, image in zip(encoded, decoded):  # outside the try: a failing resize is no decoder's refusal
        out[i] = image if i in by_pil else _resize_crop(image)
    return torch.stack(out), failed
