"""The block contract every built-in and plugin block follows.

A block is an ``nn.Module`` class with:

- ``Params``: a pydantic model of what a spec may set (defaults, bounds, a description per field);
  the registry adds the ``type`` tag, so authors never write it;
- ``expansion``: output channels per ``planes`` (``out_channels`` may override for other rules);
- ``__init__(in_channels, planes, *, stride, dilation, downsample, params, norm, act)``;
- ``make_shortcut(...)``: the module built for the first block of a stage when stride or channels
  change (1x1 conv + norm by default, as torchvision's ``_make_layer``); the block decides in
  ``forward`` how to use it (DarkNet runs it before the residual, pre-activation blocks after BN-ReLU);
- optionally ``zero_init_last()``, called for ``init.zero_init_residual``.

Subclassing ``Block`` is a convenience, not a requirement: the builder only uses the names above.
"""

from __future__ import annotations

from typing import Callable, ClassVar

from pydantic import BaseModel, ConfigDict
from torch import nn

Norm = Callable[[int], nn.Module]
Act = Callable[[], nn.Module]


class BlockParams(BaseModel):
    """Parameters of a block type; subclasses add fields with defaults, bounds and descriptions."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding that keeps the size at stride 1, as torchvision's."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
                     groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias, as torchvision's."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class Block(nn.Module):
    """Convenience base class: default expansion, output channels and ``_make_layer`` shortcut."""

    Params: ClassVar[type[BlockParams]] = BlockParams
    expansion: ClassVar[int] = 1

    @classmethod
    def out_channels(cls, planes: int, params: BlockParams) -> int:
        """Channels this block outputs for ``planes``."""
        return planes * cls.expansion

    @classmethod
    def make_shortcut(cls, in_channels: int, out_channels: int, stride: int, dilation: int,
                      params: BlockParams, norm: Norm, act: Act) -> nn.Module:
        """torchvision's downsample: 1x1 conv with the stage's stride, then norm."""
        return nn.Sequential(conv1x1(in_channels, out_channels, stride), norm(out_channels))
