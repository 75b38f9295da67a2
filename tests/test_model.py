"""Model loading (random, file, pretrained failure), layer listing and the graph cut."""

from __future__ import annotations

import pytest

from pipeline.errors import LayerError, WeightsError
from pipeline.model import LUCENT_URL, check_layers, cut, layer_shapes, load_model


def test_random_weights_are_seeded():
    import torch

    a, info = load_model("random", seed=3)
    b, _ = load_model("random", seed=3)
    c, _ = load_model("random", seed=4)
    assert info == {"kind": "random", "name": "random", "seed": 3}
    wa, wb, wc = (m.conv2d0_pre_relu_conv.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_weights_file_round_trip(weights_file, random_model):
    import torch

    model, info = load_model(str(weights_file))
    assert info["kind"] == "file" and len(info["sha256"]) == 64
    assert torch.equal(model.mixed4a_1x1_pre_relu_conv.weight, random_model.mixed4a_1x1_pre_relu_conv.weight)


def test_unreadable_and_mismatched_weights(tmp_path):
    import torch

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        load_model(str(garbage))
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(WeightsError, match=r"does not fit InceptionV1: 116 tensors missing \(e.g. conv2d0_pre_relu_conv"
                                           r".weight\), 1 tensors it does not have \(e.g. fc.weight\)$"):
        load_model(str(wrong))
    state = load_model("random")[0].state_dict()
    state["conv2d0_pre_relu_conv.bias"] = torch.zeros(3)
    torch.save(state, wrong)
    with pytest.raises(WeightsError, match=r"1 tensors of another shape \(e.g. conv2d0_pre_relu_conv.bias\)$"):
        load_model(str(wrong))
    torch.save([1, 2], wrong)
    with pytest.raises(WeightsError, match="it holds a list, not a state dict"):
        load_model(str(wrong))
    with pytest.raises(WeightsError, match="does not exist"):
        load_model(str(tmp_path / "absent.pth"))
    for name, content in (("text.pth", b"hello"), ("empty.pth", b"")):  # KeyError and EOFError inside torch.load
        (tmp_path / name).write_bytes(content)
        with pytest.raises(WeightsError, match="cannot read weights file .*: it is not a state dict saved with torch.save"):
            load_model(str(tmp_path / name))
    import pipeline.model

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(wrong))

    real, torch.load = torch.load, denied
    try:
        with pytest.raises(WeightsError, match=r"^cannot read weights file .*wrong.pth: Permission denied$"):
            pipeline.model.load_model(str(wrong))
    finally:
        torch.load = real
    with pytest.raises(WeightsError, match="--seed must be from 0"):
        load_model("random", seed=10**20)


def test_pretrained_failure_names_the_fixes(monkeypatch, tmp_path):
    import torch.hub

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as err:
        load_model("pretrained")
    message = str(err.value)
    assert LUCENT_URL in message and "--weights /path/to/inception5h.pth" in message and "--weights random" in message


def test_layer_shapes(random_model):
    shapes = layer_shapes(random_model)
    assert shapes["mixed4a"] == (508, 14, 14)
    assert shapes["mixed3a"] == (256, 28, 28)
    assert shapes["mixed5b"] == (1024, 7, 7)
    assert shapes["softmax2"] == (1008, 1, 1)
    names = list(shapes)
    assert names.index("mixed3b") < names.index("mixed4a") < names.index("mixed4b")


def test_unknown_layer_lists_valid_names(random_model):
    with pytest.raises(LayerError, match="unknown layer 'mixed9z'.*mixed4a") as caught:
        check_layers(random_model, ["mixed9z"])
    # the blocks and a pointer to the whole list, not all 138 names on one line
    assert len(str(caught.value)) < 400 and str(caught.value).endswith("`exemplars layers` lists all 138")
    with pytest.raises(LayerError, match="did you mean mixed4a_3x3"):
        check_layers(random_model, ["mixed4a_3x"])


@pytest.mark.parametrize("layers", [["mixed4a"], ["conv2d2", "mixed3b"], ["mixed4a_3x3", "mixed5b"]])
def test_cut_equals_forward_hook(random_model, layers):
    import torch

    x = torch.randn(2, 3, 224, 224) * 60
    seen, handles = {}, []
    for name in layers:
        module = dict(random_model.named_modules())[name]
        handles.append(module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o)))
    with torch.inference_mode():
        random_model(x)
        for h in handles:
            h.remove()
        out = cut(random_model, layers)(x)
    for name in layers:
        assert torch.allclose(out[name], seen[name], rtol=1e-5, atol=1e-5)


def test_cut_stops_after_the_deepest_layer(random_model):
    net = cut(random_model, ["mixed4a"])
    targets = {n.target for n in net.graph.nodes if n.op == "call_module"}
    assert "mixed4a" in targets and "mixed4b" not in targets and "softmax2" not in targets


@pytest.mark.parametrize("error", [RuntimeError("invalid hash value"), EOFError("Ran out of input")])
def test_a_corrupt_pretrained_download_names_the_fixes_too(monkeypatch, error):
    import torch.hub

    def corrupt(*args, **kwargs):  # a download cut short or altered: not an OSError
        raise error

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", corrupt)
    with pytest.raises(WeightsError, match="--weights random"):
        load_model("pretrained")


def test_a_checkpoint_holding_a_state_dict_loads(weights_file, random_model, tmp_path):
    import torch

    wrapped = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": torch.load(weights_file, weights_only=True), "epoch": 3}, wrapped)
    model, _ = load_model(str(wrapped))
    assert torch.equal(model.mixed4a_5x5_pre_relu_conv.weight, random_model.mixed4a_5x5_pre_relu_conv.weight)


def test_inception_branches_in_the_order_they_are_concatenated(random_model):
    from pipeline.model import inception_branches
    from pipeline.stats import KNOWN_BRANCHES

    assert inception_branches(random_model, "mixed4a") == {k: list(v) for k, v in KNOWN_BRANCHES["mixed4a"].items()}
    assert inception_branches(random_model, "mixed3a") == {"1x1": [0, 64], "3x3": [64, 192], "5x5": [192, 224],
                                                           "pool": [224, 256]}
    assert inception_branches(random_model, "conv2d2") == {}


def test_an_unwritable_weights_cache_is_named_not_blamed_on_the_network(monkeypatch):
    import errno

    import torch.hub

    def read_only(*args, **kwargs):  # torch hub makes its checkpoints folder before it downloads
        raise PermissionError(errno.EACCES, "Permission denied", "/nonexistent/.cache/torch/hub/checkpoints")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", read_only)
    with pytest.raises(WeightsError) as err:
        load_model("pretrained")
    message = str(err.value)
    assert "Permission denied: /nonexistent/.cache/torch/hub/checkpoints" in message and "TORCH_HOME" in message
    assert "could not fetch" not in message


def test_a_folder_given_as_weights_is_called_a_folder(tmp_path):
    """It was said not to exist, beside the folder the user could see."""
    with pytest.raises(WeightsError, match="is a folder; pass pretrained, random or a .pth file's path"):
        load_model(str(tmp_path))
