"""The images as the notebook displays them, and files changed since phase one measured them."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from conftest import make_image


def _touch_image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    make_image(np.random.default_rng(seed), 64, 48).save(path)


@pytest.mark.parametrize("size", [(299, 256), (256, 299), (301, 400), (640, 427)])
def test_the_displayed_image_is_the_crop_the_model_saw(tmp_path, size):
    """Odd margins: torchvision's CenterCrop rounds (W - 224) / 2 = 37.5 up to 38."""
    import torch
    from torchvision import transforms

    from pipeline.display import display_image

    make_image(np.random.default_rng(7), *size).save(tmp_path / "x.png")
    mine, error = display_image(str(tmp_path), "x.png")
    notebook = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.PILToTensor()])
    expected = notebook(Image.open(tmp_path / "x.png").convert("RGB"))
    assert error == "" and torch.equal(transforms.PILToTensor()(mine), expected)


def test_a_file_replaced_since_it_was_measured_is_told_by_its_size_or_time(tmp_path):
    from pipeline.display import CHANGED, changed, display_image, unshown

    path = tmp_path / "a.png"
    _touch_image(path)
    st = os.stat(path)
    recorded = (st.st_size, st.st_mtime_ns)
    assert changed(str(path), recorded) == "" and display_image(str(tmp_path), "a.png", recorded)[1] == ""
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes, another time
    assert changed(str(path), recorded).startswith(CHANGED)
    assert changed(str(path), (st.st_size, None)) == ""  # times not compared (another --root): the size is
    assert changed(str(path), None) == ""  # nothing recorded (an imported store)
    Image.new("RGB", (30, 30), (255, 0, 0)).save(path)  # replaced by a red square
    image, error = display_image(str(tmp_path), "a.png", recorded)
    assert image is None and error.startswith(CHANGED) and unshown(error) == "changed"
    assert changed(str(path), (st.st_size, None)).startswith(CHANGED)  # another size, whatever the times
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert changed(str(tmp_path / "gone.png"), recorded) == ""  # a missing file is said by opening it
    assert unshown(display_image(str(tmp_path), "gone.png", recorded)[1]) == "missing"
    (tmp_path / "bad.png").write_bytes(b"not an image")
    image, error = display_image(str(tmp_path), "bad.png")
    assert image is None and unshown(error) == "unreadable"  # there, but cannot be decoded: no "missing"
