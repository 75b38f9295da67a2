"""Image discovery, order, labels, fingerprint and the notebook's preprocessing."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from conftest import make_image
from pipeline.errors import DatasetError
from pipeline.images import ImageDataset, fingerprint, scan, to_model_input


def _touch_image(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    make_image(np.random.default_rng(seed), 64, 48).save(path)


def test_imagefolder_order_labels_and_skips(tmp_path):
    for rel in ["b/2.jpg", "b/10.JPG", "a/x/deep.png", "a/1.jpeg", "c/.hidden.jpg", ".secret/z.jpg", "a/notes.txt"]:
        if rel.endswith(".txt"):
            (tmp_path / rel).write_text("x")
        else:
            _touch_image(tmp_path / rel)
    images = scan(tmp_path)
    assert images.layout == "imagefolder"
    assert images.paths == ["a/1.jpeg", "a/x/deep.png", "b/10.JPG", "b/2.jpg"]
    assert images.classes == ["a", "b"]  # c holds only a hidden file
    assert images.labels.tolist() == [0, 0, 1, 1]


def test_flat_folder_has_label_minus_one(tmp_path):
    for rel in ["z.png", "a.jpg", "sub/m.jpg"]:
        _touch_image(tmp_path / rel)
    images = scan(tmp_path)
    assert images.layout == "flat" and images.classes == []
    assert images.paths == ["a.jpg", "sub/m.jpg", "z.png"]
    assert images.labels.tolist() == [-1, -1, -1]


def test_an_image_beside_class_folders_makes_a_flat_folder_and_says_so(tmp_path):
    for rel in ["a/1.jpg", "b/2.jpg", "stray.jpg"]:
        _touch_image(tmp_path / rel)
    images = scan(tmp_path)
    assert images.layout == "flat" and "1 image(s) directly (stray.jpg)" in images.note
    (tmp_path / "stray.jpg").unlink()
    assert scan(tmp_path).layout == "imagefolder" and scan(tmp_path).note == ""


def test_a_fifo_named_like_an_image_is_left_out_not_waited_on(tmp_path):
    _touch_image(tmp_path / "a" / "1.jpg")
    os.mkfifo(tmp_path / "a" / "pipe.jpg")
    images = scan(tmp_path)
    assert images.paths == ["a/1.jpg"] and images.labels.tolist() == [0]
    assert "1 files named like images are not regular files" in images.note and "a/pipe.jpg" in images.note
    (tmp_path / "a" / "1.jpg").unlink()
    with pytest.raises(DatasetError, match="not regular files"):
        scan(tmp_path)


def test_order_does_not_depend_on_listing_order(tmp_path, monkeypatch):
    for rel in ["b/1.jpg", "a/2.jpg", "a/1.jpg"]:
        _touch_image(tmp_path / rel)
    first = scan(tmp_path).paths
    real_walk = os.walk

    def reversed_walk(*args, **kwargs):
        for dirpath, dirnames, filenames in real_walk(*args, **kwargs):
            dirnames.reverse()
            yield dirpath, dirnames, filenames[::-1]

    monkeypatch.setattr(os, "walk", reversed_walk)
    assert scan(tmp_path).paths == first


def test_fingerprint_changes_with_content(tmp_path):
    _touch_image(tmp_path / "a" / "1.jpg")
    before = fingerprint(scan(tmp_path))
    assert fingerprint(scan(tmp_path)) == before
    _touch_image(tmp_path / "a" / "1.jpg", seed=3)
    os.utime(tmp_path / "a" / "1.jpg", ns=(1, 1))
    assert fingerprint(scan(tmp_path)) != before


@pytest.mark.parametrize("setup", ["missing", "empty"])
def test_missing_or_empty_folder(tmp_path, setup):
    target = tmp_path / "nope" if setup == "missing" else tmp_path
    with pytest.raises(DatasetError):
        scan(target)


def test_preprocessing_is_the_notebooks_bit_for_bit(tmp_path):
    import torch
    from torchvision import transforms

    _touch_image(tmp_path / "x.jpg")
    make_image(np.random.default_rng(2), 500, 333).save(tmp_path / "y.png")
    notebook = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
    data = ImageDataset(str(tmp_path), ["x.jpg", "y.png"])
    for i, name in enumerate(["x.jpg", "y.png"]):
        _, uint8, ok, err = data[i]
        assert ok and err == ""
        expected = notebook(Image.open(tmp_path / name).convert("RGB")) * 255 - 117
        assert torch.equal(to_model_input(uint8[None])[0], expected)


def test_threaded_batches_equal_one_by_one_and_pickle(tmp_path):
    import pickle

    import torch

    names = [f"{i}.jpg" for i in range(6)]
    for i, name in enumerate(names):
        _touch_image(tmp_path / name, seed=i)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    names.insert(3, "broken.jpg")
    serial, threaded = ImageDataset(str(tmp_path), names), ImageDataset(str(tmp_path), names, threads=3)
    order = [5, 0, 3, 6, 1]
    expected, got = [serial[i] for i in order], threaded.__getitems__(order)
    assert [item[0] for item in got] == order  # the batch keeps its order
    for (i, a, ok_a, err_a), (j, b, ok_b, err_b) in zip(expected, got):
        assert (i, ok_a, err_a) == (j, ok_b, err_b) and torch.equal(a, b)
    assert not got[2][2] and got[2][3]  # the broken file: a row marked invalid, its error kept
    copy = pickle.loads(pickle.dumps(threaded))  # what a DataLoader worker process receives
    assert copy.threads == 3 and torch.equal(copy.__getitems__([0])[0][1], expected[1][1])


def test_a_dangling_link_is_an_invalid_row_not_a_crash(tmp_path):
    _touch_image(tmp_path / "a.jpg")
    os.symlink(tmp_path / "gone" / "x.jpg", tmp_path / "b.jpg")
    images = scan(tmp_path)
    assert images.paths == ["a.jpg", "b.jpg"] and images.sizes.tolist()[1] == -1
    _, _, ok, error = ImageDataset(images.root, images.paths)[1]
    assert not ok and "No such file" in error


def test_a_link_back_up_the_tree_repeats_nothing(tmp_path):
    _touch_image(tmp_path / "cat" / "a.jpg")
    _touch_image(tmp_path / "dog" / "b.jpg")
    os.symlink("..", tmp_path / "cat" / "up")  # would repeat every image, level after level (ImageFolder hangs)
    os.symlink(".", tmp_path / "dog" / "here")
    images = scan(tmp_path)
    assert images.paths == ["cat/a.jpg", "dog/b.jpg"] and images.labels.tolist() == [0, 1]


def _imagefolder(root):
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(str(root))
    return [(os.path.relpath(path, root).replace(os.sep, "/"), label) for path, label in folder.samples]


def test_links_between_class_folders_list_what_imagefolder_lists(tmp_path):
    """A link in one class to another class's folder, and a class folder that is a link to another:
    the notebook's ImageFolder lists the images under each class that reaches them."""
    for rel in ["a/a1.jpg", "c/c1.jpg", "d/d1.jpg"]:
        _touch_image(tmp_path / rel)
    os.symlink("../c", tmp_path / "a" / "sub")  # walked first: c must keep its own image and label
    os.symlink("a", tmp_path / "b")
    images = scan(tmp_path)
    assert list(zip(images.paths, images.labels.tolist())) == sorted(_imagefolder(tmp_path))
    assert images.classes == ["a", "b", "c", "d"] and ("c/c1.jpg", 2) in _imagefolder(tmp_path)


def test_hidden_class_folders_with_images_are_left_out_and_said(tmp_path):
    for rel in ["cat/1.jpg", "dog/2.jpg", ".ipynb_checkpoints/3.jpg"]:
        _touch_image(tmp_path / rel)
    (tmp_path / ".git").mkdir()
    images = scan(tmp_path)
    assert images.classes == ["cat", "dog"]
    assert ".ipynb_checkpoints" in images.note and "class numbers" in images.note and ".git" not in images.note


def test_a_dangling_link_beside_the_class_folders_is_no_class(tmp_path):
    _touch_image(tmp_path / "cat" / "a.jpg")
    _touch_image(tmp_path / "dog" / "b.jpg")
    os.symlink("/nonexistent.jpg", tmp_path / "broken.jpg")
    images = scan(tmp_path)
    assert images.classes == ["cat", "dog"] and images.labels.tolist() == [0, 1]


def test_a_file_name_that_is_not_utf8_is_one_sentence(tmp_path):
    _touch_image(tmp_path / "a.jpg")
    os.rename(tmp_path / "a.jpg", os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg"))
    with pytest.raises(DatasetError, match="not valid UTF-8"):
        scan(tmp_path)


def test_class_labels_are_imagefolders_case_sensitive_order(tmp_path):
    from torchvision.datasets.folder import find_classes

    for rel in ["a/1.jpg", "B/1.jpg", "_c/1.jpg"]:
        _touch_image(tmp_path / rel)
    images = scan(tmp_path)
    classes, index = find_classes(str(tmp_path))  # what the notebook's ImageFolder labels by
    assert images.classes == classes == ["B", "_c", "a"]
    assert images.labels.tolist() == [index[p.split("/")[0]] for p in images.paths]


def test_a_stored_error_names_no_file_object_and_is_never_empty(tmp_path):
    from pipeline.images import error_text, notebook_image

    (tmp_path / "x.jpg").write_text("not an image")
    _, error = notebook_image(str(tmp_path / "x.jpg"))
    assert error == "UnidentifiedImageError: cannot identify image file 'x.jpg'", error
    assert error_text(MemoryError()) == "MemoryError: not enough memory to decode it"


def test_two_ways_to_one_folder_inside_a_class_list_it_twice_as_imagefolder_does(tmp_path):
    for rel in ["a/a1.jpg", "a/sub/s.jpg", "b/b1.jpg"]:
        _touch_image(tmp_path / rel)
    os.symlink("../b", tmp_path / "a" / "l1")
    os.symlink("../b", tmp_path / "a" / "l2")
    os.symlink("sub", tmp_path / "a" / "zsub")
    images = scan(tmp_path)
    assert list(zip(images.paths, images.labels.tolist())) == sorted(_imagefolder(tmp_path))
    assert {"a/l2/b1.jpg", "a/zsub/s.jpg"} <= set(images.paths)
