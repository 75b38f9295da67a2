"""Finding images, their fixed order and labels, and the notebook's preprocessing.

Offers:
    IMAGE_EXTENSIONS      the suffixes taken as images (torchvision's list)
    PREPROCESSING         the default preprocessing, as recorded in a store
    ImageList             paths (relative, POSIX), labels, classes, sizes, mtimes
    scan(root) -> ImageList
    fingerprint(images) -> str   sha256 over (path, size, mtime) of every image
    load_rgb(source) -> PIL.Image  the notebook's loader (ImageFolder's pil_loader); a path or a binary file
    notebook_transform()         Resize(256), CenterCrop(224), PILToTensor: uint8
    notebook_image(source, transform=None) -> (uint8 image, "" or the error: the image is then zeros)
    error_text(exc) -> str       a decoding error as the store keeps it
    to_model_input(batch)        uint8 -> x * 255 - 117 after ToTensor's division, bit for bit
    ImageDataset                 a torch Dataset of uint8 crops, never raising on bad files;
                                 with ``threads`` > 1 a batch's files decode in parallel threads
    file_stat(path) -> (size, mtime_ns) | None   None where there is no regular file to read
(The images as displayed, and whether a file is still the one measured: ``display``.)

Layout: ``root`` is an ImageFolder tree when it holds class subfolders and no
image directly (labels index the sorted class names), otherwise a flat folder
(label -1, subfolders included). Hidden files and folders are skipped. Order
is the sorted relative POSIX path, whatever order the file system lists.
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# The notebook: Resize(256) + CenterCrop(224) + ToTensor, then x * 255 - 117.
PREPROCESSING = {
    "loader": "PIL.Image.open(f).convert('RGB')",
    "resize": 256,
    "interpolation": "bilinear",
    "antialias": True,
    "center_crop": 224,
    "to_tensor": "uint8 / 255 (torchvision ToTensor)",
    "model_input": "x * 255 - 117",
}

# Large photos are legitimate here; PIL's bomb warning would flood the log.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


@dataclass
class ImageList:
    root: str
    layout: str  # "imagefolder" or "flat"
    paths: list[str]
    labels: np.ndarray
    classes: list[str] = field(default_factory=list)
    sizes: np.ndarray | None = None
    mtimes: np.ndarray | None = None
    note: str = ""  # what a user should know about how the folder was read

    def __len__(self) -> int:
        return len(self.paths)

    def absolute(self, i: int) -> str:
        return os.path.join(self.root, self.paths[i])


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _is_image(name: str) -> bool:
    return _visible(name) and name.lower().endswith(IMAGE_EXTENSIONS)


def _walk(top: str, start: str | None = None) -> list[str]:
    """Image files under ``start`` (default ``top``) as POSIX paths relative to ``top``, following
    links to folders as ImageFolder does (two links to one folder list it twice), but never into a
    folder already on the way down, nor ``top``: a link back up the tree would repeat every image
    level after level (ImageFolder's walk ends only at the system's limit on links, or never)."""
    found, chains = [], {}  # a folder's path -> the real folders on the way down to it, itself included
    above = frozenset({os.path.realpath(top)} if start else ())
    cut = len(top.rstrip(os.sep)) + 1  # os.walk's folders all start with ``top``: cut as text, not pathlib
    for dirpath, dirnames, filenames in os.walk(start or top, followlinks=True):
        chain = chains.pop(dirpath, above) | {os.path.realpath(dirpath)}
        keep = []
        for name in sorted(d for d in dirnames if _visible(d)):
            path = os.path.join(dirpath, name)
            if os.path.realpath(path) not in chain:
                keep.append(name)
                chains[path] = chain
        dirnames[:] = keep
        folder = dirpath[cut:].replace(os.sep, "/")
        prefix = folder + "/" if folder else ""
        found.extend(prefix + f for f in filenames if _is_image(f))
    return found


def _check_names(paths: list[str], root: str) -> None:
    """The store keeps paths as UTF-8 text; a name in another encoding is said, not crashed on."""
    for p in paths:
        try:
            p.encode("utf-8")
        except UnicodeEncodeError:
            shown = p.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise DatasetError(f"the file name {shown!r} under {root} is not valid UTF-8, which the store "
                               "cannot record; rename it (e.g. with convmv) or move it out") from None


def scan(root: str | os.PathLike) -> ImageList:
    """List the images under ``root`` in their fixed order, with labels and stats."""
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    if not os.path.isdir(root):
        raise DatasetError(f"image folder {root} does not exist or is not a folder")
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    top_images = [e for e in entries if e.is_file() and _is_image(e.name)]
    subdirs = [e.name for e in entries if e.is_dir() and _visible(e.name)]
    layout = "imagefolder" if subdirs and not top_images else "flat"
    # pathlib's relative_to took two thirds of a 1.28M-file listing (README, "start-up")
    if layout == "imagefolder":
        # Each class folder is walked on its own, as ImageFolder does: a link inside one class to
        # another class's folder lists those images under both classes, and takes none from the other.
        rel = sorted(p for name in subdirs for p in _walk(root, os.path.join(root, name)))
    else:
        rel = sorted(_walk(root))
    if not rel:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    _check_names(rel, root)
    if layout == "imagefolder":
        classes = sorted({p.split("/", 1)[0] for p in rel})
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[p.split("/", 1)[0]] for p in rel], dtype=np.int32)
    else:
        classes, labels = [], np.full(len(rel), -1, dtype=np.int32)
    folder = root.rstrip(os.sep) + os.sep  # once, not per file: joined as text, as _walk cut it
    stats = [_stat(folder + p) for p in rel]
    # A FIFO, socket or device named like an image would hang the decoder (a FIFO's read waits
    # for a writer): such files are left out, and said so.
    special = [p for p, st in zip(rel, stats) if st is None]
    if special:
        keep = [st is not None for st in stats]
        rel, labels, stats = ([x for x, k in zip(seq, keep) if k] for seq in (rel, labels, stats))
        labels = np.asarray(labels, dtype=np.int32)
        if not rel:
            raise DatasetError(f"no images under {root}: {len(special)} files named like images are not "
                               f"regular files (FIFOs, sockets or devices), e.g. {special[0]}")
    notes = [_mixed_note(root, top_images, rel), _hidden_note(root, entries, layout)]
    if special:
        notes.append(f"warning: {len(special)} files named like images are not regular files (FIFOs, sockets "
                     f"or devices) and were left out: {', '.join(special[:3])}{', ...' if len(special) > 3 else ''}")
    return ImageList(root, layout, rel, labels, classes,
                     np.array([size for size, _ in stats], dtype=np.int64),
                     np.array([mtime for _, mtime in stats], dtype=np.int64),
                     note="\n".join(filter(None, notes)))


def _mixed_note(root: str, top_images, rel: list[str]) -> str:
    """A warning where images beside subfolders of images made the folder a flat one: one stray
    file would otherwise silently drop every class label."""
    nested = sum("/" in p for p in rel)
    if not top_images or not nested:
        return ""
    shown = ", ".join(e.name for e in top_images[:3]) + (", ..." if len(top_images) > 3 else "")
    return (f"warning: {root} holds {len(top_images)} image(s) directly ({shown}) beside subfolders of "
            f"{nested} image{'s' * (nested != 1)}, so it is read as a flat folder, without labels; to use the subfolders as "
            "classes, move those images into them or out of the folder")


def _hidden_note(root: str, entries, layout: str) -> str:
    """A warning where hidden class folders hold images (.ipynb_checkpoints, say): they are left
    out, while ImageFolder makes them classes and numbers every later class one higher."""
    if layout != "imagefolder":
        return ""
    hidden = [e.name for e in entries if e.is_dir() and not _visible(e.name)
              and any(name.lower().endswith(IMAGE_EXTENSIONS) for _, _, files in os.walk(e.path) for name in files)]
    if not hidden:
        return ""
    return (f"warning: hidden folder(s) {', '.join(hidden[:3])}{', ...' if len(hidden) > 3 else ''} in {root} "
            "hold images and are left out; torchvision's ImageFolder would count them as classes, so its "
            "class numbers (the notebook's labels) would differ from these")


def _stat(path: str) -> tuple[int, int] | None:
    """(size, mtime_ns); (-1, 0) for what cannot be read (a dangling link): its row fails to
    decode; None for what is not a regular file."""
    try:
        s = os.stat(path)
    except OSError:
        return -1, 0
    if not stat.S_ISREG(s.st_mode):
        return None
    return s.st_size, s.st_mtime_ns


def file_stat(path: str) -> tuple[int, int] | None:
    found = _stat(path)
    return found if found is not None and found[0] >= 0 else None


def fingerprint(images: ImageList) -> str:
    from .store import dataset_fingerprint

    return dataset_fingerprint(images.paths, images.sizes, images.mtimes)


def load_rgb(source) -> Image.Image:
    """ImageFolder's default loader, which the notebook uses; ``source`` is a path or a binary file."""
    if hasattr(source, "read"):
        return Image.open(source).convert("RGB")
    with open(source, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")


def notebook_transform():
    """The notebook's transforms up to uint8 (ToTensor's division comes later)."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(PREPROCESSING["resize"]),
        transforms.CenterCrop(PREPROCESSING["center_crop"]),
        transforms.PILToTensor(),
    ])


def notebook_image(source, transform=None):
    """``source`` (a path or a binary file) through the notebook's loader and transforms:
    (uint8 image, ""), or a zero image and the error where any decoder step fails."""
    import torch

    try:
        return (transform or notebook_transform())(load_rgb(source)), ""
    except Exception as exc:  # any decoder failure marks the row invalid
        size = PREPROCESSING["center_crop"]
        return torch.zeros(3, size, size, dtype=torch.uint8), error_text(exc)


def error_text(exc: BaseException) -> str:
    """A decoding error as the store keeps it: its class and message, without the repr of
    PIL's open file (which spells out the whole absolute path again), and never empty."""
    message = re.sub(r"<_io\.\w+ name=(['\"])(.*?)\1>", lambda m: repr(os.path.basename(m.group(2))), str(exc))
    if not message and isinstance(exc, MemoryError):
        message = "not enough memory to decode it"
    return f"{exc.__class__.__name__}: {message}".strip()


def to_model_input(batch_uint8):
    """uint8 (B,3,H,W) -> the model's input, bit for bit as the notebook computes it."""
    import torch

    # In place on a copy: one float tensor, not four, and the caller's batch untouched.
    return batch_uint8.to(torch.float32, copy=True).div_(255).mul_(255).sub_(117)


class ImageDataset:
    """Decoded, preprocessed images as uint8 tensors; bad files never raise.

    Item ``i`` is ``(index, image, ok, error)``; a file that cannot be decoded
    gives a zero image, ``ok=False`` and the error text. ``__getitems__`` (which
    a DataLoader without worker processes calls for a whole batch) decodes in
    ``threads`` threads: PIL releases the GIL while it decodes and resizes.
    """

    def __init__(self, root: str, paths: list[str], threads: int = 1):
        self.root, self.paths, self.threads = root, paths, threads
        self.transform = notebook_transform()
        self._pool = None

    def __getstate__(self):  # worker processes get a copy without the thread pool
        return {**self.__dict__, "_pool": None}

    def __getitems__(self, indices: list[int]) -> list:
        if self.threads <= 1 or len(indices) <= 1:
            return [self[i] for i in indices]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="decode")
        return list(self._pool.map(self.__getitem__, indices))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        image, error = notebook_image(os.path.join(self.root, self.paths[i]), self.transform)
        return i, image, not error, error
