"""Shortcut modules, by kind: what ``shortcut:`` in a spec's block selects when a stage changes shape.

- ``projection``: 1x1 conv with the stride, then norm (torchvision's ``_make_layer``; the ResNet
  paper's option B).
- ``avg_down``: 2x2 average pool with the stride, then a 1x1 conv and norm (ResNet-D, He et al.
  2019 "Bag of Tricks"; timm's ``downsample_avg``, whose module indices it keeps so weights load).
- ``zero_pad``: strided identity with zero channels appended, no parameters (the ResNet paper's
  option A, used for its CIFAR networks).
- ``none``: no shortcut at all (the paper's plain networks); handled by the block, never built here.
"""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from .. import complexity
from ..complexity import Cost
from ..context import Norm


class ZeroPadShortcut(nn.Module):
    """Option A: keep every ``stride``-th pixel and append zero channels up to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"a zero_pad shortcut cannot shrink {in_channels} channels to {out_channels}")
        self.stride = stride
        self.pad = out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.pad)) if self.pad else x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad={self.pad}"


class AvgPoolSame(nn.Module):
    """2x2 average at stride 1 with 'same' padding (bottom/right), timm's ``AvgPool2dSame(2, 1)``:
    what ``avg_down`` does in a stage whose stride became dilation."""

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), 2, 1)


def _kernel(kind: str, kernel_size: int, stride: int, dilation: int) -> int:
    """timm's ``downsample_conv``: the projection's kernel is 1x1 where the stage keeps its resolution."""
    return 1 if kind != "projection" or (stride == 1 and dilation == 1) else kernel_size


def build(kind: str, in_channels: int, out_channels: int, stride: int, dilation: int,
          norm: Norm | None, kernel_size: int = 1) -> nn.Module:
    """The shortcut module of ``kind``; ``norm=None`` leaves out the norm (pre-activation blocks);
    ``kernel_size`` > 1 makes a strided projection a padded k x k conv (SENet-154's 3x3)."""
    conv_stride = stride
    layers: list[nn.Module] = []
    if kind == "zero_pad":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if kind == "avg_down":
        # timm keeps the pool slot (Identity at stride 1) so conv and norm stay at indices 1 and 2
        if stride == 1 and dilation == 1:
            layers.append(nn.Identity())
        elif stride == 1:
            layers.append(AvgPoolSame())
        else:
            # ceil_mode and count_include_pad=False keep odd sizes right, as timm's
            layers.append(nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False))
        conv_stride = 1
    elif kind != "projection":
        raise ValueError(f"unknown shortcut kind {kind!r}")
    k = _kernel(kind, kernel_size, stride, dilation)
    if k == 1:
        layers.append(nn.Conv2d(in_channels, out_channels, 1, conv_stride, bias=False))
    else:
        layers.append(nn.Conv2d(in_channels, out_channels, k, conv_stride, ((stride - 1) + dilation * (k - 1)) // 2,
                                dilation, bias=False))
    if norm is None:
        return layers[0] if len(layers) == 1 else nn.Sequential(*layers)
    layers.append(norm(out_channels))
    return nn.Sequential(*layers)


def cost(kind: str, in_channels: int, out_channels: int, stride: int, dilation: int, in_hw: tuple[int, int],
         norm: Callable[[int, tuple[int, int]], Cost] | None, kernel_size: int = 1) -> Cost:
    """What ``build`` would cost per sample on an (in_channels, *in_hw) input; ``norm`` None: no norm."""
    h, w = in_hw
    out_hw = ((h - 1) // stride + 1, (w - 1) // stride + 1)
    if kind == "zero_pad":
        pad = out_channels - in_channels
        return Cost(0, 0, out_channels * out_hw[0] * out_hw[1] if pad else 0)
    pool = Cost()
    if kind == "avg_down":
        if stride == 1 and dilation == 1:
            conv_hw = (h, w)
        elif stride == 1:
            conv_hw = (h, w)
            pool = Cost(0, 0, in_channels * ((h + 1) * (w + 1) + h * w))  # pad, then pool
        else:
            conv_hw = (complexity.pool_out_ceil(h, 2, stride), complexity.pool_out_ceil(w, 2, stride))
            pool = Cost(0, 0, in_channels * conv_hw[0] * conv_hw[1])
    else:
        conv_hw = out_hw
    total = pool + complexity.conv(in_channels, out_channels, _kernel(kind, kernel_size, stride, dilation), conv_hw)
    return total + norm(out_channels, conv_hw) if norm is not None else total
