"""Receptive fields against hand-computed small networks and the network's own gradients."""

from __future__ import annotations

import pytest

from pipeline.geometry import Field, from_dict, as_dict, receptive_field


class _Small:
    """pad 1 -> conv 3x3 stride 1 -> maxpool 2 stride 2 -> conv 3x3 stride 2 (no padding)."""

    @staticmethod
    def build(pool: str = "max"):
        import torch.nn as nn
        import torch.nn.functional as F

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Conv2d(1, 1, 3)
                # Same geometry either way; an average pool passes gradient to its whole window.
                self.pool = nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2)
                self.b = nn.Conv2d(1, 1, 3, stride=2)

            def forward(self, x):
                return self.b(self.pool(self.a(F.pad(x, (1, 1, 1, 1)))))

        return Net()


def test_small_network_by_hand():
    import torch.fx

    traced = torch.fx.symbolic_trace(_Small.build())
    # By hand: a: size 3, stride 1, start -1 (the pad); pool: size 3 + 1 = 4, stride 2;
    # b: size 4 + 2 * 2 = 8, stride 4, start -1.
    assert receptive_field(traced, "a") == Field(3, 1, -1.0)
    assert receptive_field(traced, "pool") == Field(4, 2, -1.0)
    assert receptive_field(traced, "b") == Field(8, 4, -1.0)
    assert receptive_field(traced, "b").box(2, 3) == (7.0, 11.0, 15.0, 19.0)


def test_small_network_against_gradients():
    import torch
    import torch.fx

    net = _Small.build("avg")
    field = receptive_field(torch.fx.symbolic_trace(net), "b")
    assert field == receptive_field(torch.fx.symbolic_trace(_Small.build("max")), "b")
    x = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
    net(x)[0, 0, 2, 3].backward()
    ys, xs = torch.nonzero(x.grad[0, 0], as_tuple=True)
    top, left, bottom, right = field.box(2, 3)
    assert (ys.min().item(), xs.min().item(), ys.max().item() + 1, xs.max().item() + 1) == (top, left, bottom, right)


@pytest.mark.parametrize("layer, expected", [("conv2d0", Field(7, 2, -2.0)), ("mixed3a", Field(59, 8, -22.0)),
                                             ("mixed4a", Field(171, 16, -70.0))])
def test_inceptionv1_fields_match_its_gradients(random_model, layer, expected):
    import torch

    from pipeline.model import cut

    net = cut(random_model, [layer])
    field = receptive_field(net, layer)
    assert field == expected
    generator = torch.Generator().manual_seed(0)  # a fixed input: the tightness check is deterministic
    x = (torch.randn(1, 3, 224, 224, generator=generator) * 50).requires_grad_(True)
    out = net(x)[layer]
    y0 = out.shape[-1] // 2
    out[0, :, y0, y0].sum().backward()
    ys, xs = torch.nonzero(x.grad[0].abs().sum(0), as_tuple=True)
    top, left, bottom, right = field.box(y0, y0)
    assert ys.min().item() >= top and ys.max().item() < bottom and xs.min().item() >= left and xs.max().item() < right
    # The field is tight: the gradient reaches its edges (away from the image border).
    assert ys.min().item() == max(0, top) and ys.max().item() + 1 == min(224, bottom)


def test_round_trip_through_attributes():
    assert from_dict(as_dict(Field(171, 16, -70.0))) == Field(171, 16, -70.0)
