"""Anti-aliased downsampling (Zhang 2019, "Making Convolutional Networks Shift-Invariant Again"), as
timm's ``aa_layer``: a block's strided convolution runs at stride 1 and a low-pass downsampling
follows its activation.

- ``blur``: timm's ``BlurPool2d``: reflect-pad, then a depthwise binomial filter ([1, 2, 1] by
  default) with the stride. The filter is a non-persistent buffer: not in the state_dict, as timm's.
- ``avg``: a ``stride x stride`` average pool (timm's ``aa_layer=nn.AvgPool2d``).
"""

from __future__ import annotations

from math import comb

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..complexity import Cost

KINDS = ("blur", "avg")


class BlurPool2d(nn.Module):
    """Reflect padding, then a depthwise ``filt_size`` binomial blur with ``stride`` (timm's keys: none)."""

    def __init__(self, channels: int, filt_size: int = 3, stride: int = 2):
        super().__init__()
        if filt_size < 2:
            raise ValueError(f"a blur filter needs at least 2 taps, got {filt_size}")
        self.channels, self.filt_size, self.stride = channels, filt_size, stride
        self.padding = [((stride - 1) + (filt_size - 1)) // 2] * 4
        self.register_buffer("filt", torch.empty(channels, 1, filt_size, filt_size), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Write the binomial filter (C(n, k) / 2^n, outer product), e.g. after ``to_empty``."""
        if self.filt.is_meta:
            return
        taps = torch.tensor([comb(self.filt_size - 1, k) for k in range(self.filt_size)], dtype=torch.float32)
        taps = taps / 2 ** (self.filt_size - 1)
        with torch.no_grad():
            self.filt.copy_((taps[:, None] * taps[None, :]).expand(self.channels, 1, -1, -1))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, self.padding, mode="reflect"), self.filt, stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, filt_size={self.filt_size}, stride={self.stride}"


def blur_size(size: int, filt_size: int, stride: int) -> int:
    pad = ((stride - 1) + (filt_size - 1)) // 2
    return (size + 2 * pad - filt_size) // stride + 1


def make(kind: str | None, channels: int, stride: int) -> nn.Module | None:
    """The anti-aliasing module of ``kind`` after a stride-``stride`` position (None: no module)."""
    if kind is None or stride == 1:
        return None
    if kind == "blur":
        return BlurPool2d(channels, 3, stride)
    if kind == "avg":
        return nn.AvgPool2d(stride)
    raise ValueError(f"unknown anti-aliasing {kind!r} (choose from {', '.join(KINDS)})")


def out_size(kind: str | None, hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """The output size after a stride-``stride`` position with anti-aliasing ``kind`` (None: a strided conv)."""
    if kind == "avg" and stride > 1:
        if hw[0] % stride or hw[1] % stride:  # the shortcut's strided output would be one larger
            raise ValueError(f"aa: avg needs a size divisible by the stride {stride}, gets {hw[0]}x{hw[1]}")
        return (hw[0] // stride, hw[1] // stride)
    if kind == "blur" and stride > 1:
        if min(hw) <= ((stride - 1) + 2) // 2:
            raise ValueError(f"a {hw[0]}x{hw[1]} input is too small for the blur's reflect padding")
        return (blur_size(hw[0], 3, stride), blur_size(hw[1], 3, stride))
    return ((hw[0] - 1) // stride + 1, (hw[1] - 1) // stride + 1)


def cost(kind: str | None, channels: int, out_hw: tuple[int, int], stride: int) -> Cost:
    """MACs and writes of the module ``make`` builds (padding counted as a write, as F.pad makes a copy)."""
    if kind is None or stride == 1:
        return Cost()
    area = out_hw[0] * out_hw[1]
    if kind == "avg":
        return Cost(0, 0, channels * area)
    return Cost(0, channels * 9 * area, 2 * channels * area)  # the padded copy (about) and the output
