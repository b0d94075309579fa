"""ResNet-D's shortcut (He et al., "Bag of Tricks for Image Classification", 2019).

This plugin changes a different part of the block contract than archkit-se: not ``forward`` but
``make_shortcut``. A strided 1x1 conv throws away 3/4 of its input; ResNet-D average-pools first
and convolves at stride 1. The deep stem needs no code: it is three conv layers in the spec.
"""

from __future__ import annotations

from torch import nn

from archkit.blocks import BasicBlock, Bottleneck, BlockParams, conv1x1

__version__ = "0.1.0"


def avg_down_shortcut(in_channels: int, out_channels: int, stride: int, dilation: int, norm) -> nn.Module:  # noqa: ANN001
    """2x2 average pool (when striding) -> 1x1 conv -> norm, as timm's ``downsample_avg``."""
    layers = []
    if stride > 1:
        # ceil_mode and count_include_pad=False keep odd sizes right (timm does the same)
        layers.append(nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False))
    layers += [conv1x1(in_channels, out_channels), norm(out_channels)]
    return nn.Sequential(*layers)


class _AvgDown:
    @classmethod
    def make_shortcut(cls, in_channels: int, out_channels: int, stride: int, dilation: int,
                      params: BlockParams, norm, act) -> nn.Module:  # noqa: ANN001
        """Average-pool downsampling instead of a strided 1x1 conv."""
        return avg_down_shortcut(in_channels, out_channels, stride, dilation, norm)


class BottleneckD(_AvgDown, Bottleneck):
    """Bottleneck with ResNet-D's avg-pool shortcut."""


class BasicBlockD(_AvgDown, BasicBlock):
    """BasicBlock with ResNet-D's avg-pool shortcut."""
