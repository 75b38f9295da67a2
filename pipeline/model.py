"""InceptionV1 from torch-lucent: loading weights, listing layers, cutting the graph.

Offers:
    LUCENT_URL                     where lucent fetches its pretrained weights
    MODEL_NAME, INPUT_SIZE         as recorded in a store
    load_model(weights, seed) -> (model, weights_info)
        weights: "pretrained" (lucent via torch hub), "random" (seeded), or a .pth path
    layer_shapes(model) -> {layer: (channels, height, width)} in execution order
    check_layers(model, names)     raise LayerError listing the valid names
    inception_branches(model, layer) -> {"1x1": [lo, hi], ...} for a mixed layer
    cut(model, layers) -> module   runs only up to the deepest requested layer and
                                   returns {layer: activation}

torch is imported lazily by each function, so ``import pipeline`` stays fast.
"""

from __future__ import annotations

import hashlib
import os
from .errors import WeightsError, first_line, unknown_layer

LUCENT_URL = "https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth"
MODEL_NAME = "lucent.modelzoo.inceptionv1"
INPUT_SIZE = 224


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fresh(seed: int):
    import torch
    from lucent.modelzoo.inceptionv1 import InceptionV1

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return InceptionV1(pretrained=False)


def _pretrained():
    import torch
    from lucent.modelzoo.inceptionv1 import InceptionV1

    try:
        model = InceptionV1(pretrained=True, progress=True)
    except PermissionError as exc:  # the network may be fine: torch hub's cache folder is not writable
        raise WeightsError(
            f"could not keep lucent's pretrained InceptionV1 weights in torch hub's cache ({exc.strerror}: "
            f"{exc.filename or torch.hub.get_dir()}); set TORCH_HOME to a folder you can write, or pass "
            "--weights /path/to/inception5h.pth"
        ) from None
    except Exception as exc:  # urllib, OSError, HTTP and unpickling errors alike
        raise WeightsError(
            f"could not fetch lucent's pretrained InceptionV1 weights from {LUCENT_URL} "
            f"({exc.__class__.__name__}); download that file elsewhere and pass "
            "--weights /path/to/inception5h.pth (WEIGHTS=... with make), or use --weights random "
            "for an untrained, seeded network"
        ) from None
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(LUCENT_URL))
    sha = _sha256_file(cached) if os.path.isfile(cached) else None
    return model, {"kind": "pretrained", "name": "inception5h", "url": LUCENT_URL, "sha256": sha}


def _from_file(path: str):
    import torch

    if os.path.isdir(path):
        raise WeightsError(f"weights file {path} is a folder; pass pretrained, random or a .pth file's path")
    if not os.path.isfile(path):
        raise WeightsError(f"weights file {path} does not exist; pass pretrained, random or a .pth path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:  # the file itself: permissions, a disk error
        raise WeightsError(f"cannot read weights file {path}: {exc.strerror or first_line(exc)}") from None
    except Exception as exc:  # torch.load fails in many ways on a file that is no checkpoint (KeyError, IndexError...)
        # torch's own text is a paragraph of advice on weights_only; the class name says enough.
        raise WeightsError(f"cannot read weights file {path}: it is not a state dict saved with torch.save "
                           f"({exc.__class__.__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model = _fresh(0)
    misfit = _misfit(model.state_dict(), state)
    if misfit:
        raise WeightsError(f"weights file {path} does not fit InceptionV1: {misfit}")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise WeightsError(
            f"weights file {path} does not fit InceptionV1: {first_line(exc)}"
        ) from None
    name = os.path.basename(path)
    # The path lets heatmaps rerun the model; the sha256 is what identifies the weights.
    return model, {"kind": "file", "name": name, "sha256": _sha256_file(path), "path": os.path.abspath(path)}


def _misfit(expected: dict, state) -> str:
    """What keeps ``state`` from loading into a model of ``expected``'s keys and shapes, in a few words."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a state dict"
    lacking = [k for k in expected if k not in state]
    unknown = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape)]
    parts = [f"{len(keys)} {what} (e.g. {keys[0]})" for keys, what in (
        (lacking, "tensors missing"), (unknown, "tensors it does not have"), (shapes, "tensors of another shape"))
        if keys]
    return ", ".join(parts)


def load_model(weights: str = "pretrained", seed: int = 0):
    """Return ``(model, info)``: the model in eval mode and what identifies its weights."""
    if weights == "pretrained":
        model, info = _pretrained()
    elif weights == "random":
        if not 0 <= int(seed) < 2**63:
            raise WeightsError(f"--seed must be from 0 to 2**63 - 1, not {seed}")
        model, info = _fresh(seed), {"kind": "random", "name": "random", "seed": seed}
    else:
        model, info = _from_file(os.fspath(weights))
    return model.eval().requires_grad_(False), info


def _probe_shapes(model) -> dict:
    import torch

    shapes, handles = {}, []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(_module, _inputs, output, name=name):
            if torch.is_tensor(output):
                shape = tuple(output.shape[1:])
                shapes[name] = shape + (1,) * (3 - len(shape))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def layer_shapes(model) -> dict[str, tuple[int, int, int]]:
    """Every hookable layer, in execution order, with (channels, height, width)."""
    # One probe forward per model object: the shapes never change.
    if not hasattr(model, "_exemplars_shapes"):
        model._exemplars_shapes = _probe_shapes(model)
    return dict(model._exemplars_shapes)


def check_layers(model, names) -> None:
    known = list(layer_shapes(model))
    for name in names:
        if name not in known:
            raise unknown_layer(name, known)


def inception_branches(model, layer: str) -> dict[str, list[int]]:
    """Channel ranges of an Inception block's branches (1x1, 3x3, 5x5, pool), else {}."""
    modules = dict(model.named_modules())
    parts = ["1x1", "3x3", "5x5", "pool_reduce"]
    convs = [modules.get(f"{layer}_{p}_pre_relu_conv") for p in parts]
    if any(c is None for c in convs):
        return {}
    out, start = {}, 0
    for part, conv in zip(parts, convs):
        out[part.replace("_reduce", "")] = [start, start + conv.out_channels]
        start += conv.out_channels
    return out


def _leaf_modules():
    from lucent.modelzoo.inceptionv1 import helper_layers as h

    return [h.RedirectedReluLayer, h.ReluLayer, h.CatLayer, h.MaxPool2dLayer,
            h.SoftMaxLayer, h.AVGPoolLayer, h.LocalResponseNormLayer]


def cut(model, layers):
    """A module computing only what ``layers`` need, returning ``{layer: tensor}``.

    torch.fx drops everything after the deepest requested layer (about 38% of
    the network's compute for mixed4a); lucent's helper layers stay single
    nodes so that each is addressable by its module name.
    """
    import torch.nn.functional as F
    from torchvision.models.feature_extraction import create_feature_extractor

    check_layers(model, layers)
    return create_feature_extractor(
        model,
        return_nodes={name: name for name in layers},
        tracer_kwargs={"leaf_modules": _leaf_modules(),
                       "autowrap_functions": [F.local_response_norm]},
        suppress_diff_warning=True,
    ).eval()
