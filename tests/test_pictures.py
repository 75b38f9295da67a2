"""Exemplar grids: the notebook's shape and labels, crops on the argmax, heatmaps from the shown images."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

import pipeline
from conftest import run_cli
from pipeline.errors import QueryError
from pipeline.display import display_image
from pipeline.pictures import OUTSIDE, crop_box, crop_field, tiles, upsample


def test_display_image_is_the_notebooks(image_folder):
    import torch
    from torchvision import transforms

    path = "bear/img_03.png"
    mine, error = display_image(str(image_folder), path)
    notebook = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
    expected = notebook(Image.open(image_folder / path).convert("RGB"))
    assert error == "" and mine.size == (224, 224)
    assert torch.equal(transforms.ToTensor()(mine), expected)


def test_grid_has_the_notebooks_shape_and_labels(small_store):
    layer = pipeline.open_store(small_store)["mixed4a"]
    figure = layer.grid("0-2", k=4)
    axes = np.array(figure.axes).reshape(3, 4)
    assert [axes[r][0].get_ylabel() for r in range(3)] == ["ch 0", "ch 1", "ch 2"]
    top = layer.topk(1, k=4)
    assert axes[1][2].get_title() == f"{top.activations[2]:.3g}"
    assert axes[0][0].get_title().startswith("#1 ")
    assert "RANDOM WEIGHTS" in figure.get_supxlabel()


def test_crops_are_centred_on_the_argmax_and_sized_by_the_field(small_store):
    layer = pipeline.open_store(small_store)["mixed4a"]
    results = layer.topk(5, k=3, by="max")
    for (y, x), row in zip(results.peaks, results.rows):
        # the whole field, start + stride * i to start + stride * i + size, even past the border
        assert crop_box(layer, y, x) == (-70 + 16 * x, -70 + 16 * y, 101 + 16 * x, 101 + 16 * y)
    assert [t.image.size for t in tiles(layer, results, crop=True)] == [(224, 224)] * 3


def test_a_crop_past_the_border_stays_square_with_grey_outside():
    image = Image.new("RGB", (224, 224), (200, 10, 10))
    crop = crop_field(image, (-70, -70, 101, 101))  # unit (0, 0) of mixed4a: mostly outside the image
    assert crop.size == (171, 171)
    assert crop.getpixel((10, 10)) == OUTSIDE and crop.getpixel((70, 70)) == (200, 10, 10)
    assert crop.getpixel((85, 85)) == (200, 10, 10)  # the field's centre, pixel 15, is inside
    assert crop_field(image, (300, 300, 471, 471)).getpixel((0, 0)) == OUTSIDE  # wholly outside: all grey


def test_a_heatmap_cell_lies_on_its_units_receptive_field():
    from pipeline.geometry import Field

    field = Field(171, 16, -70)  # mixed4a
    for y, x in ((7, 7), (0, 13), (13, 0)):
        heat = np.zeros((14, 14))
        heat[y, x] = 1
        up = upsample(heat, (224, 224), field)
        assert up.shape == (224, 224) and up.max() == 1
        assert up[15 + 16 * y, 15 + 16 * x] == 1 == up[int(field.centre(y)), int(field.centre(x))]
        assert up[15 + 16 * y - 8, 15 + 16 * x] == 0.5 if y else up[0, 15 + 16 * x] == 1  # before the first centre: held
    assert np.allclose(upsample(np.ones((14, 14)), (224, 224), field), 1)  # weights sum to one
    heat = np.zeros((4, 9))
    heat[1, 6] = 1  # (height, width) of another shape: rows stay rows
    up = upsample(heat, (96, 160), field)
    assert up.shape == (96, 160) and up[15 + 16, 15 + 16 * 6] == 1


def test_ranks_count_the_images_not_the_feature_visualisation(small_store):
    layer = pipeline.open_store(small_store)["mixed4a"]
    figure = layer.grid([2], k=3, featureviz=True)
    titles = [ax.get_title() for ax in figure.axes[:4]]
    assert titles[0] == "feature viz" and titles[1].startswith("#1 ") and titles[3].startswith("#3 ")


def test_a_one_image_grid_keeps_its_title_and_warning_whole(small_store):
    layer = pipeline.open_store(small_store)["mixed4a"]
    figure = layer.grid([2], k=1, crop=True)
    figure.canvas.draw()
    box = figure.bbox
    for text in (figure._suptitle, figure._supxlabel):
        extent = text.get_window_extent()
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1, text.get_text()
    assert "RANDOM WEIGHTS" in figure._supxlabel.get_text()


def test_heatmaps_come_from_the_model_on_the_shown_images_only(small_store, monkeypatch):
    import pipeline.heatmap as heatmap

    layer = pipeline.open_store(small_store)["mixed4a"]
    seen = []
    real = heatmap.channel_maps

    def counting(layer_, rows, channel):
        seen.append(list(rows))
        return real(layer_, rows, channel)

    monkeypatch.setattr(heatmap, "channel_maps", counting)
    layer.grid([7], k=3, heatmap=True)
    shown = layer.topk(7, k=3).rows.tolist()
    assert seen == [shown]
    maps = real(layer, shown, 7)
    assert maps.shape == (3, 14, 14)
    # The rerun maps reduce to the stored statistics.
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), layer.column(7)[shown], rtol=1e-4, atol=1e-6)


def test_missing_image_is_a_labelled_placeholder(image_folder, tmp_path):
    from pipeline.extract import extract

    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    store = tmp_path / "s.zarr"
    extract(data, store, weights="random", workers=0, shard_rows=8, progress=False)
    layer = pipeline.open_store(store)["mixed4a"]
    top = layer.topk(3, k=2)
    (data / top.paths[0]).unlink()
    drawn = tiles(layer, top)
    assert drawn[0].image is None and top.paths[0] in drawn[0].error and drawn[1].image is not None
    with pytest.warns(UserWarning, match="1 of 2 images could not be read"):
        layer.grid(3, k=2)  # draws, and says so in Python as the CLI does
    shutil.rmtree(data)
    with pytest.warns(UserWarning, match=r"If they moved, open the store with pipeline.open_store\(path, root=NEW_FOLDER\)"):
        layer.grid([3], k=2)


def test_grid_channels_from_python(small_store):
    layer = pipeline.open_store(small_store)["mixed4a"]
    for channels in (3, np.int64(3), [3], "3"):
        assert len(layer.grid(channels, k=2).axes) == len(layer.grid([3], k=2).axes)
    for channels, fragment in (([], "no channels given"), ([3, 999], "channel 999 is out of range"),
                               (2.5, "whole number")):
        with pytest.raises(QueryError, match=fragment):
            layer.grid(channels, k=2)


def test_grid_cli(small_store, tmp_path):
    out = tmp_path / "g.png"
    run_cli("grid", "--store", small_store, "--channels", "0-1", "-k", "3", "--crop", "--bottom", "--samples",
            "-o", out)
    assert Image.open(out).size[0] > 400
    proc = run_cli("grid", "--store", small_store, "--channels", "0-999", "-o", out, check=False)
    assert proc.returncode == 2 and "out of range" in proc.stderr


def test_a_flat_map_marks_no_peak(tmp_path):
    from pipeline import store as st

    images = {"path": ["a.jpg", "b.jpg", "c.jpg"], "label": [0] * 3, "classes": ["x"], "size": [1] * 3,
              "mtime_ns": [0] * 3}
    group = st.create_store(tmp_path / "s.zarr", {"model": {}}, images, shard_rows=4, overwrite=False)
    st.add_layer(group, "conv", 2, (2, 2), {})
    mean = np.array([[0.0, 1.0], [0.5, 0.0], [0.0, 2.0]], dtype=np.float32)
    peak = np.array([[0.0, 3.0], [0.5, 1.0], [0.0, 2.0]], dtype=np.float32)  # row 1 ch 0: constant 0.5
    st.write_shard(group, ["conv"], 0, {"conv": (mean, peak, np.zeros((3, 2), dtype=np.int32))},
                   [True] * 3, [""] * 3)
    layer = pipeline.open_store(tmp_path / "s.zarr")["conv"]
    assert layer.flat([0, 1, 2], 0).tolist() == [True, True, True]
    assert layer.flat([2, 0, 1], 1).tolist() == [True, False, False]


def test_a_one_by_one_map_is_never_flat(tmp_path):
    from pipeline.importing import import_matrix

    import_matrix(tmp_path / "s.zarr", np.ones((3, 2), np.float32), "logits", ["a", "b", "c"],
                  max_matrix=np.ones((3, 2), np.float32))
    assert pipeline.open_store(tmp_path / "s.zarr")["logits"].flat([0, 1, 2], 1).tolist() == [False] * 3


def test_a_unit_that_sees_the_whole_input_is_cropped_to_the_image(tmp_path):
    from pipeline import store as st
    from pipeline.pictures import covers_input

    images = {"path": ["a.jpg"], "label": [0], "classes": ["x"], "size": [1], "mtime_ns": [0]}
    group = st.create_store(tmp_path / "s.zarr", {"model": {}}, images, shard_rows=4, overwrite=False)
    st.add_layer(group, "logits", 2, (1, 1), {"receptive_field": {"size": 907, "stride": 32, "start": -326},
                                              "input_size": 224})
    st.add_layer(group, "conv", 2, (14, 14), {"receptive_field": {"size": 171, "stride": 16, "start": -70}})
    # InceptionV1's mixed5b and mixed4e_5x5 (their fields checked against the network's gradients)
    st.add_layer(group, "late", 2, (7, 7), {"receptive_field": {"size": 715, "stride": 32, "start": -326}})
    st.add_layer(group, "wide", 2, (14, 14), {"receptive_field": {"size": 427, "stride": 16, "start": -198}})
    # The last unit's field starts one pixel in, or the first one's ends one pixel short: a crop shows more
    st.add_layer(group, "in", 2, (7, 7), {"receptive_field": {"size": 715, "stride": 32, "start": -191}})
    st.add_layer(group, "short", 2, (1, 1), {"receptive_field": {"size": 223, "stride": 32, "start": 0}})
    s = pipeline.open_store(tmp_path / "s.zarr")
    assert covers_input(s["logits"]) and crop_box(s["logits"], 0, 0) == (0, 0, 224, 224)
    assert covers_input(s["late"]) and crop_box(s["late"], 6, 3) == (0, 0, 224, 224)
    assert not any(covers_input(s[name]) for name in ("conv", "wide", "in", "short"))
    assert crop_box(s["in"], 6, 0) == (-191, 1, 524, 716)


def test_missing_images_name_the_root_or_say_there_is_none():
    from pipeline.pictures import missing_line

    assert missing_line(1, 4, "a.jpg", "/data") == "1 of 4 images could not be read (e.g. a.jpg); they are shown as placeholders"
    assert missing_line(3, 4, "a.jpg", "/data").endswith("are the images still under /data? If they moved, pass --root NEW_FOLDER")
    assert missing_line(3, 4, "a.jpg", None).endswith("this store records no image folder: pass --root FOLDER")


def test_a_constant_channel_row_says_so(tmp_path):
    from pipeline.importing import import_matrix

    m = np.stack([np.arange(6, 0, -1), np.zeros(6), [3, 2, 0, 0, 0, 0]], axis=1).astype(np.float32)
    import_matrix(tmp_path / "c.zarr", m, "feat", [f"{i}.jpg" for i in range(6)])
    layer = pipeline.open_store(tmp_path / "c.zarr")["feat"]
    figure = layer.grid("0-1", k=3)
    axes = np.array(figure.axes).reshape(2, 3)
    assert [axes[r][0].get_ylabel() for r in range(2)] == ["ch 0", "ch 1\n(constant)"]
    figure = layer.grid([2], k=2, bottom=True)  # 4 images tie at 0: the bottom row shows 2 of them
    assert [ax.get_ylabel() for ax in np.array(figure.axes)[[0, 2]]] == ["ch 2", "ch 2\nbottom\n(ties)"]
    assert layer.topk(2, k=2, bottom=True).notes == ["4 images tie at 0: these are the first 2 of them by row, "
                                                     "not exemplars"]
    assert layer.topk(2, k=3).notes == []  # 3, 2, 0: no tie through the answer


def test_a_channels_rows_share_one_heat_scale(small_store, monkeypatch):
    import pipeline.heatmap as heatmap
    import pipeline.pictures as pictures

    layer = pipeline.open_store(small_store)["mixed4a"]
    maps, scales, real_tiles = [], [], pictures.tiles
    real_maps = heatmap.channel_maps
    monkeypatch.setattr(heatmap, "channel_maps", lambda *a: maps.append(real_maps(*a)) or maps[-1])
    monkeypatch.setattr(pictures, "tiles", lambda *a, **kw: scales.append(kw["scale"]) or real_tiles(*a, **kw))
    figure = layer.grid([7], k=3, heatmap=True, bottom=True)
    top = max(float(m.max()) for m in maps)
    assert len(maps) == 2 and scales == [top, top]  # the bottom row is drawn on the top row's scale
    assert np.array(figure.axes)[0].get_ylabel() == f"ch 7\nheat 0-{top:.3g}"
    assert pictures.heat_scale(None, np.zeros((2, 2))) == 1.0  # nothing to scale by: no division by 0


def test_a_channel_without_heat_says_so_rather_than_a_made_up_scale(small_store):
    layer = pipeline.open_store(small_store)["mixed4a"]
    table = layer.stats()
    silent = int(np.flatnonzero((table["max"] == 0) & (table["std"] == 0))[0])
    label = np.array(layer.grid([silent], k=2, heatmap=True).axes)[0].get_ylabel()
    assert label.endswith("\nheat: 0 everywhere") and "0-1" not in label


def test_each_crop_is_its_own_images_field_at_its_peak_y_then_x(small_store):
    layer = pipeline.open_store(small_store)["mixed4a"]
    results = layer.topk(5, k=3, by="max")
    assert any(y != x for y, x in results.peaks)  # a swapped (x, y) would crop elsewhere
    drawn = tiles(layer, results, crop=True)
    for tile, path, (y, x) in zip(drawn, results.paths, results.peaks):
        image, _ = display_image(layer.store.root, path)
        expected = crop_field(image, crop_box(layer, y, x)).resize((224, 224), Image.Resampling.BICUBIC)
        assert np.array_equal(np.asarray(tile.image), np.asarray(expected)), path


def test_a_crop_keeps_each_pixel_in_place_when_x_and_y_differ():
    pixels = np.zeros((224, 224, 3), dtype=np.uint8)
    pixels[..., 0] = np.arange(224)[None, :]  # red: the column
    pixels[..., 1] = np.arange(224)[:, None]  # green: the row
    crop = crop_field(Image.fromarray(pixels), (-10, 30, 40, 80))  # left past the border, top inside
    assert crop.size == (50, 50)
    assert crop.getpixel((5, 0)) == OUTSIDE
    assert crop.getpixel((10, 0)) == (0, 30, 0) and crop.getpixel((20, 7)) == (10, 37, 0)


def test_each_heatmap_is_drawn_on_its_own_image_at_the_given_scale(small_store):
    from pipeline.geometry import from_dict
    from pipeline.pictures import overlay

    layer = pipeline.open_store(small_store)["mixed4a"]
    results = layer.topk(5, k=3)
    field = from_dict(layer.attrs["receptive_field"])
    heat = np.random.default_rng(0).random((3, 14, 14))
    heat[1] *= 0.2  # a faint map must stay faint on the shared scale
    drawn = tiles(layer, results, heat=heat, scale=4.0)
    for i, (tile, path) in enumerate(zip(drawn, results.paths)):
        image, _ = display_image(layer.store.root, path)
        expected = overlay(image, heat[i], 4.0, field).resize((224, 224), Image.Resampling.BILINEAR)
        assert np.array_equal(np.asarray(tile.image), np.asarray(expected)), i


def test_shown_pairs_each_path_with_its_own_error(small_store, monkeypatch):
    import pipeline.pictures as pictures

    layer = pipeline.open_store(small_store)["mixed4a"]
    top = layer.topk(3, k=3)
    real = pictures.display_image
    gone = top.paths[0]
    monkeypatch.setattr(pictures, "display_image",
                        lambda root, path, *recorded: (None, "gone") if path == gone else real(root, path))
    shown = []
    layer.grid([3], k=3, shown=shown)
    assert shown == [(gone, f"{gone}: gone"), (top.paths[1], ""), (top.paths[2], "")]
    assert pictures.missing_line(2, 4, "a.jpg", "/data").endswith("they are shown as placeholders")  # half: not moved


def test_the_feature_visualisation_leads_only_the_top_row(small_store):
    layer = pipeline.open_store(small_store)["mixed4a"]
    axes = np.array(layer.grid([2], k=3, featureviz=True, bottom=True).axes).reshape(2, 4)
    assert axes[0][0].get_title() == "feature viz" and axes[1][0].get_title() != "feature viz"
    said = " ".join(axes[0][0].texts[0].get_text().split())  # not cached: the whole command, wrapped
    assert said.replace(" ", "") == f"notcached:exemplarsfeatureviz--store{small_store}--layermixed4a-c2".replace(" ", "")
    assert "missing" not in said


@pytest.fixture
def replaced(tmp_path):
    """A store of 6 images whose channel 0's top image is then replaced by a red square (another size)."""
    from conftest import make_folder
    from pipeline.extract import extract

    data = make_folder(tmp_path / "data", classes=("cat", "dog"), per_class=3, seed=3)
    store = tmp_path / "s.zarr"
    extract(data, store, weights="random", workers=0, shard_rows=8, progress=False)
    top = pipeline.open_store(store)["mixed4a"].topk(0, k=3)
    shutil.copy2(data / top.paths[0], tmp_path / "original")
    Image.new("RGB", (300, 260), (255, 0, 0)).save(data / top.paths[0])
    return store, data, top


def test_a_file_replaced_after_phase_one_is_a_placeholder_not_the_new_picture(replaced, tmp_path):
    from pipeline.heatmap import channel_maps

    store, data, top = replaced
    layer = pipeline.open_store(store)["mixed4a"]
    for crop in (False, True):
        drawn = tiles(layer, top, crop=crop)
        assert drawn[0].image is None and "changed since the store was made" in drawn[0].error
        assert drawn[1].image is not None and drawn[2].image is not None
    maps = channel_maps(layer, top.rows, 0)  # its map would be the red square's, and could set the scale
    assert np.isnan(maps[0]).all() and np.isfinite(maps[1:]).all()
    with pytest.warns(UserWarning, match=r"1 of 3 images changed since the store was made \(size or modification "
                      r"time; e\.g\. " + top.paths[0]):
        figure = layer.grid([0], k=3, heatmap=True)
    assert figure.axes[0].texts[0].get_text().startswith("changed since the\nstore was made\n")
    assert figure.axes[0].texts[0].get_text().count("changed") == 1
    said = run_cli("grid", "--store", store, "--channels", "0", "-k", "3", "--crop", "-o", tmp_path / "g.png").stderr
    assert "warning: 1 of 3 images changed since the store was made" in said and "rerun `exemplars activations`" in said
    assert "could not be read" not in said

    shutil.copy2(tmp_path / "original", data / top.paths[0])  # the original back, with its time
    assert all(t.image is not None for t in tiles(layer, top, crop=True))


def test_under_another_root_sizes_alone_are_compared(replaced, tmp_path):
    """A copy that does not keep times (cp -r) gives every file a new mtime; its sizes still tell a replaced file."""
    store, data, top = replaced
    copy = tmp_path / "copy"
    shutil.copytree(data, copy, copy_function=shutil.copy)  # new times, same bytes
    drawn = tiles(pipeline.open_store(store, root=copy)["mixed4a"], top)
    assert drawn[0].image is None and "changed since the store was made" in drawn[0].error
    assert drawn[1].image is not None and drawn[2].image is not None
    shutil.copy(tmp_path / "original", copy / top.paths[0])
    assert all(t.image is not None for t in tiles(pipeline.open_store(store, root=copy)["mixed4a"], top))
    # where the images are read from the recorded root, a new time alone says the file changed
    shutil.copy(tmp_path / "original", data / top.paths[0])
    assert tiles(pipeline.open_store(store)["mixed4a"], top)[0].image is None


def test_a_recorded_root_that_is_a_link_to_a_copy_now_is_cleared_by_naming_the_copy(tmp_path):
    """The store was made through a link; the link now leads to a copy made without times. Given
    as --root, the copy is another root (sizes alone), though it resolves to where the link leads."""
    import os

    from conftest import make_folder
    from pipeline.extract import extract

    real = make_folder(tmp_path / "real", classes=("cat", "dog"), per_class=2, seed=5)
    os.symlink(real, tmp_path / "ds")
    store = tmp_path / "s.zarr"
    extract(tmp_path / "ds", store, weights="random", workers=0, progress=False)
    top = pipeline.open_store(store)["mixed4a"].topk(0, k=3)
    shutil.copytree(real, tmp_path / "copy", copy_function=shutil.copy)  # new times, same bytes
    os.unlink(tmp_path / "ds")
    os.symlink(tmp_path / "copy", tmp_path / "ds")
    assert all(t.image is not None for t in tiles(pipeline.open_store(store, root=tmp_path / "copy")["mixed4a"], top))


def test_a_file_that_cannot_be_decoded_is_unreadable_not_missing(replaced, tmp_path):
    import os

    store, data, top = replaced
    target, original = data / top.paths[1], os.stat(data / top.paths[1])
    target.write_bytes(b"\0" * original.st_size)  # damaged, with the size and time the store recorded
    os.utime(target, ns=(original.st_atime_ns, original.st_mtime_ns))
    layer = pipeline.open_store(store)["mixed4a"]
    with pytest.warns(UserWarning) as said:
        axes = layer.grid([0], k=3).axes
    assert [a.texts[0].get_text().split("\n")[0] for a in axes[:2]] == ["changed since the", "unreadable"]
    lines = str(said[0].message).splitlines()
    assert lines[0].startswith("1 of 3 images could not be read (e.g. " + top.paths[1]) and "changed" in lines[1]


def test_a_channel_below_zero_everywhere_is_not_said_to_be_zero(small_store, monkeypatch):
    """A layer before its ReLU (mixed4a_3x3_pre_relu_conv, say) has channels whose shown maps are all
    negative: their label said "heat: 0 everywhere" beside captions of -0.05 ... -0.1."""
    import pipeline.heatmap as heatmap

    layer = pipeline.open_store(small_store)["mixed4a"]
    monkeypatch.setattr(heatmap, "channel_maps", lambda _layer, rows, _c: np.full((len(rows), 14, 14), -0.25, np.float32))
    label = np.array(layer.grid([7], k=2, heatmap=True).axes)[0].get_ylabel()
    assert "0 everywhere" not in label and "-0.25" in label
    # and no map at all (every shown image unreadable) is no map of zeros either
    monkeypatch.setattr(heatmap, "channel_maps", lambda _layer, rows, _c: np.full((len(rows), 14, 14), np.nan, np.float32))
    label = np.array(layer.grid([7], k=2, heatmap=True).axes)[0].get_ylabel()
    assert "0 everywhere" not in label and "no map" in label


def test_grid_refuses_flags_that_are_not_bools(tmp_path):
    from pipeline.importing import import_matrix

    m = np.arange(12, dtype=np.float32).reshape(4, 3)
    import_matrix(tmp_path / "s.zarr", m, "feat", ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    layer = pipeline.open_store(tmp_path / "s.zarr")["feat"]
    # "no" is true: bottom="no" added a bottom row, heatmap="no" imported torch and ran the model
    for flag in ("crop", "heatmap", "bottom", "samples", "featureviz"):
        with pytest.raises(QueryError, match=f"{flag} must be True or False, not 'no'"):
            layer.grid([0], k=2, **{flag: "no"})
    with pytest.warns(UserWarning):  # the imported store records no image folder: its tiles say so
        assert len(layer.grid([0], k=2, bottom=np.True_).axes) == 4


@pytest.mark.parametrize("start", [-61.0, -60.0, -59.0])
@pytest.mark.parametrize("size", [283, 284, 285])
def test_covers_input_means_every_units_field_holds_the_whole_input(start, size):
    from types import SimpleNamespace

    from pipeline.pictures import covers_input

    layer = SimpleNamespace(name="x", spatial_shape=[7, 7], attrs={
        "receptive_field": {"size": size, "stride": 10, "start": start}, "input_size": 224})
    first = start + 10 * np.arange(7)  # unit i sees [first[i], first[i] + size)
    assert covers_input(layer) == bool((first <= 0).all() and (first + size >= 224).all())


def test_a_heatmap_is_coloured_on_the_scale_given_not_its_own_maximum():
    from matplotlib import colormaps

    from pipeline.geometry import Field
    from pipeline.pictures import overlay

    image = Image.new("RGB", (224, 224), (0, 0, 0))
    heat = np.zeros((14, 14))
    heat[7, 7] = 0.5  # a faint map: half the channel's brightest
    field = Field(171, 16, -70)
    on_one, on_half = (np.asarray(overlay(image, heat, scale, field), dtype=float) for scale in (1.0, 0.5))
    brightest = np.asarray(colormaps["inferno"]([0.5, 1.0])[:, :3] * 255, dtype=np.uint8) * 0.55
    centre = 15 + 16 * 7
    assert np.abs(on_one[centre, centre] - brightest[0]).max() <= 1.5  # half way up the colour map
    assert np.abs(on_half[centre, centre] - brightest[1]).max() <= 1.5  # the top of it


def test_a_grid_by_max_ranks_and_samples_by_the_max_and_its_title_counts_the_store(small_store):
    layer = pipeline.open_store(small_store)["mixed4a"]
    n = int(layer.usable.sum())
    figure = layer.grid([5], k=n + 1, by="max", samples=True)
    rows = np.array(figure.axes).reshape(2, -1)
    column = np.asarray(layer.group["max"][:, 5], dtype=np.float64)
    usable = np.asarray(layer.usable)
    ranked = np.flatnonzero(usable)[np.argsort(-column[usable], kind="stable")]
    titles = [[ax.get_title() for ax in row if ax.get_title()] for row in rows]
    assert [t.split()[-1] for t in titles[0]] == [f"{column[r]:.3g}" for r in ranked]
    drawn = layer.samples(5, per_band=max(1, (n + 1) // 5), by="max")
    assert [t.split("  ")[0] for t in titles[1]] == [f"{v:.3g}" for v in drawn.activations]
    assert all(float(t.split("  ")[0]) in {float(f"{column[r]:.3g}") for r in ranked} for t in titles[1])
    assert figure.get_suptitle().startswith(f"mixed4a: top {n} images per channel by spatial max")


def test_a_grid_of_a_layer_with_no_usable_image_is_refused_before_a_file_is_written(tmp_path):
    """It wrote a figure of empty rows, "top 0 images" each, and exited 0, where stats and gallery refuse."""
    from pipeline.importing import import_matrix

    import_matrix(tmp_path / "s.zarr", np.full((6, 3), np.nan, dtype=np.float32), "feat", [f"{i}.jpg" for i in range(6)])
    with pytest.raises(QueryError, match="layer feat has no usable image"):
        pipeline.open_store(tmp_path / "s.zarr")["feat"].grid("0-2")
    proc = run_cli("grid", "--store", tmp_path / "s.zarr", "-l", "feat", "--channels", "0-2", "-o", tmp_path / "g.png", check=False)
    assert proc.returncode == 2 and "no usable image" in proc.stderr and not (tmp_path / "g.png").exists()
