"""Decoders for phase one: the notebook's PIL path (exact), and two faster ones.

Offers:
    DECODERS                       ("pil", "fast", "gpu")
    make_dataset(root, paths, decoder, threads=1) -> a torch Dataset of (index, image, ok, error)
    FastDataset                    torchvision's decode_jpeg + transforms.v2 (PIL where it cannot)
    rank_cores(world) -> int       this process's share of the machine's cores under ``world`` ranks
    decoding(device, workers, world) -> (worker processes, decoding threads): the defaults
    check_shared_memory(workers, batch_size, free=None, ranks_here=1)   refuse workers /dev/shm cannot hold
    local_ranks(world) -> int      the job's ranks on this host
    make_loader(images, sampler, workers, threads, pin, decoder) -> a DataLoader of batches
    collate(items)                 batches; a ``gpu`` batch stays encoded, packed as ``Encoded``
    stack_channels_last(images)    a batch in the network's memory layout
    prefetched(batches, depth)     iterate in a background thread, ``depth`` batches ahead
    finish_batch(images, device) -> (uint8 (B, 3, 224, 224) on ``device``, failures)
    nvjpeg_takes(data) -> bool     whether ``gpu`` decodes the file on CUDA (else PIL, in the worker)

``pil``: ImageFolder's loader and the notebook's transforms, bit for bit.
``fast``: torchvision's ``decode_jpeg`` and ``transforms.v2`` on uint8 tensors
(about 2x faster; pixels within a few levels of PIL's), PIL for other formats.
``gpu``: workers only read the files; JPEGs are decoded in batches on CUDA by
``decode_jpeg(device="cuda")`` and resized there; other formats, and JPEGs nvJPEG
does not take (CMYK, grey, arithmetic-coded, a PNG named .jpg), by PIL in the workers.
"""

from __future__ import annotations

import io
import os
from typing import NamedTuple

from .errors import InputError
from .hardware import pinned_apart, usable_cores
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


def local_ranks(world: int) -> int:
    """How many of the job's ranks run on this host (torchrun's LOCAL_WORLD_SIZE; all of them without it)."""
    if world <= 1:
        return 1
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    except ValueError:
        return world


def rank_cores(world: int) -> int:
    """This rank's share of the cores: the ranks on one host share them, unless each was pinned to
    its own (``torchrun --numa-binding``), when its affinity already is its share."""
    return max(1, usable_cores() // (1 if pinned_apart() else local_ranks(world)))


def decoding(dev, workers: int | None, world: int) -> tuple[int, int]:
    """(worker processes, decoding threads in this process) for the device.

    On CUDA, worker processes decode while the GPU computes (threads of this
    process measured 4x slower there: the GIL). On the CPU both halves need the same
    cores, so by default there is no worker process: each lane decodes its own batch
    (``lanes.py``), or with one lane the batch is decoded in threads of this process
    and then the network runs. A worker process was as fast or slower on 2 cores (84
    against 82, 91 against 80 and 87 against 76 images/s in three runs; README) and
    costs 0.5 GB and a start-up.
    """
    cores = rank_cores(world)
    if workers is None:
        # On an H100 one worker decodes about 270 images/s and the network takes 8,000:
        # decoding is the ceiling up to about 30 workers (README, GPU figures).
        workers = max(1, min(32, cores - 1)) if dev.type == "cuda" else 0
    return workers, (cores if workers == 0 else 1)


PREFETCH = 4  # batches in flight per decoding worker
SHARED_MEMORY = "/dev/shm"


def check_shared_memory(workers: int, batch_size: int, free: int | None = None, ranks_here: int = 1) -> None:
    """Refuse, before the run, decoding workers whose batches ``/dev/shm`` cannot hold.

    Workers hand their batches over in shared memory, up to ``PREFETCH`` each. When an
    allocation fails there, the worker's error stays in its queue's feeder thread and the
    DataLoader waits for ever: a run in a container with Docker's default 64 MB hung at
    0 images. A batch is 224 x 224 x 3 bytes an image (uint8; encoded JPEGs are smaller).
    Besides the prefetched batches the loader holds the one being computed and the one
    before it (a 5 MB /dev/shm hung where 4 batches of 1.2 MB were counted, 6 MB did not);
    ``ranks_here`` torchrun ranks on this host share /dev/shm.
    """
    if workers == 0:
        return
    if free is None:
        try:
            stat = os.statvfs(SHARED_MEMORY)
        except (OSError, AttributeError):  # no /dev/shm (macOS, Windows): torch shares memory another way
            return
        if stat.f_flag & os.ST_RDONLY:  # the loader's queues fail there at once, named only as "Read-only file system"
            raise InputError(f"{SHARED_MEMORY} is read-only, and decoding workers hand their batches over there: "
                             "pass --workers 0 (the batch decodes in threads) or mount it writable")
        free = stat.f_bavail * stat.f_frsize
    crop = PREPROCESSING["center_crop"]
    need = ranks_here * (workers * PREFETCH + 2) * batch_size * 3 * crop * crop
    if need > free:
        here = f"{ranks_here} ranks, each with " if ranks_here > 1 else ""
        raise InputError(
            f"{here}{workers} decoding worker{'s' * (workers > 1)} with batches of {batch_size} "
            f"{'needs' if workers == 1 and not here else 'need'} about "
            f"{-(-need >> 20)} MB of shared memory and {SHARED_MEMORY} has {free >> 20} MB free (Docker's default "
            "is 64 MB): give the container more (docker run --shm-size=8g, or --ipc=host), or pass fewer "
            "--workers (0 decodes in threads) or a smaller --batch-size")


def make_loader(images, sampler, workers: int, threads: int, pin: bool, decoder: str):
    from torch.utils.data import DataLoader

    return DataLoader(make_dataset(images.root, images.paths, decoder, threads), batch_sampler=sampler,
                      num_workers=workers, pin_memory=pin, collate_fn=collate,
                      persistent_workers=False, prefetch_factor=PREFETCH if workers else None)


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


def prefetched(batches, depth: int = 3):
    """Iterate ``batches`` in a background thread, up to ``depth`` batches ahead.

    On CUDA without worker processes, the batch decodes in threads of this
    process; this lets the next batches decode while the GPU computes.
    Errors of the loader are raised here, in the consumer.
    """
    import queue
    import threading

    items, stop, end = queue.Queue(depth), threading.Event(), object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(end)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


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
