"""Receptive fields from a network's geometry: kernel sizes, strides and paddings.

Offers:
    Field(size, stride, start)     unit i of a layer sees input pixels
                                   [start + i*stride, start + i*stride + size - 1]
    Field.centre(i) / Field.box(y, x) -> (top, left, bottom, right), input pixels
    receptive_field(graph_module, node) -> Field   walks a torch.fx graph
    union(fields) -> Field         the field that covers several (a block's concatenated branches)
    as_dict / from_dict            the form stored in a layer's attributes

Square kernels and symmetric layouts (as in InceptionV1) are assumed; a
concatenation takes the union of its inputs' fields. Only ``receptive_field``
needs torch, and only for the graph it is given.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    size: int = 1
    stride: int = 1
    start: float = 0.0

    def after(self, kernel: int, stride: int, padding: int = 0) -> "Field":
        return Field(self.size + (kernel - 1) * self.stride, self.stride * stride, self.start - padding * self.stride)

    def centre(self, i: int) -> float:
        return self.start + i * self.stride + (self.size - 1) / 2

    def box(self, y: int, x: int) -> tuple[float, float, float, float]:
        top, left = self.start + y * self.stride, self.start + x * self.stride
        return top, left, top + self.size, left + self.size


def union(fields) -> Field:
    fields = list(fields)
    stride = max(f.stride for f in fields)
    start = min(f.start for f in fields)
    end = max(f.start + f.size for f in fields)
    return Field(int(end - start), stride, start)


def as_dict(field: Field) -> dict:
    return {"size": field.size, "stride": field.stride, "start": field.start}


def from_dict(data: dict) -> Field:
    return Field(int(data["size"]), int(data["stride"]), float(data["start"]))


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _window(kernel, stride, padding) -> tuple[int, int, int]:
    stride = kernel if stride is None or stride == () else stride
    return int(_first(kernel)), int(_first(stride)), int(_first(padding))


def _node_field(node, modules, fields) -> Field:
    import torch.nn as nn
    import torch.nn.functional as F

    inputs = [fields[a] for a in node.all_input_nodes if a in fields]
    if node.op == "placeholder" or not inputs:
        return Field()
    base = union(inputs)
    if node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            return base.after(*_window(module.kernel_size, module.stride, module.padding))
        if "kernel_size" in node.kwargs:  # lucent's MaxPool2dLayer takes its window per call
            kw = node.kwargs
            return base.after(*_window(kw["kernel_size"], kw.get("stride", (1, 1)), kw.get("padding", 0)))
        return base
    if node.op == "call_function":
        if node.target is F.pad:
            pad = node.args[1] if len(node.args) > 1 else node.kwargs["pad"]
            return Field(base.size, base.stride, base.start - pad[0] * base.stride)
        if node.target in (F.max_pool2d, F.avg_pool2d):
            args = list(node.args[1:4]) + [None] * 3
            kernel = args[0] if args[0] is not None else node.kwargs["kernel_size"]
            stride = args[1] if args[1] is not None else node.kwargs.get("stride")
            padding = args[2] if args[2] is not None else node.kwargs.get("padding", 0)
            return base.after(*_window(kernel, stride, padding))
    return base  # operator.getitem and element-wise operations keep their input's geometry


def receptive_field(graph_module, node_name: str) -> Field:
    """The field of ``node_name`` (a node or module name) in input pixels."""
    modules = dict(graph_module.named_modules())
    fields = {}
    for node in graph_module.graph.nodes:
        fields[node] = _node_field(node, modules, fields)
        if node.name == node_name or (node.op == "call_module" and node.target == node_name):
            return fields[node]
    raise KeyError(node_name)
