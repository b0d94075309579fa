"""Bottleneck (ResNet V1.5) and its torchvision presets: ResNeXt (grouped) and Wide."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from pydantic import Field

from ..graph import Scope, Value
from .base import BlockParams, BlockPlan, ResNetParams, attend, block, drop_act_aa, residual


class GroupedParams(BlockParams):
    """Grouped-conv width of a bottleneck: width = int(planes * base_width / 64) * groups."""

    groups: int = Field(1, ge=1, le=4096, description="Groups of the 3x3 convolution (ResNeXt cardinality).")
    base_width: int = Field(64, ge=1, le=65536, description="Width per group at planes=64 (64 is ResNet).")


class ExplicitWidths(BlockParams):
    """A channel-pruned network's widths (timm's ``*_pruned`` models), given per block."""

    widths: list[Annotated[int, Field(ge=1, le=1 << 20)]] | None = Field(
        None, min_length=2, max_length=2, description="[first 1x1, 3x3] output widths in place of the "
        "planes x base_width rule (a pruned network's; usually set per block under a stage's blocks:).")
    out_channels: int | None = Field(None, ge=1, le=1 << 20, description="Output channels in place of planes x 4 "
                                     "(a pruned network's).")


class BottleneckParams(GroupedParams, ExplicitWidths, ResNetParams):
    """Bottleneck settings: grouped width, timm's ResNet options, explicit (pruned) widths."""


def grouped_width(planes: int, base_width: int, groups: int) -> int:
    """torchvision's and timm's grouped width: int(planes * base_width / 64) * groups (ResNeXt, Res2Net, ResNeSt,
    SKNet)."""
    width = int(planes * (base_width / 64.0)) * groups
    if width < 1:
        raise ValueError(f"planes {planes} x base_width {base_width} / 64 gives a width of 0")
    return width


def bottleneck_width(planes: int, params: Any) -> int:
    """The 3x3 conv's width, torchvision's rule: int(planes * base_width / 64) * groups (or the explicit one)."""
    if getattr(params, "widths", None):
        return params.widths[1]
    return grouped_width(planes, params.base_width, params.groups)


def first_width(planes: int, params: Any) -> int:
    """The first 1x1 conv's width: the 3x3's divided by ``reduce_first`` (or the explicit one)."""
    if getattr(params, "widths", None):
        return params.widths[0]
    first = bottleneck_width(planes, params) // getattr(params, "reduce_first", 1)
    if first < 1:
        raise ValueError(f"the width {bottleneck_width(planes, params)} // reduce_first {params.reduce_first} "
                         "leaves no channels")
    return first


def bottleneck_main(b: BlockPlan, s: Scope, x: Value) -> Value:
    """The residual branch up to the last norm: 1x1, grouped 3x3 with the stride, 1x1 up."""
    width, first = bottleneck_width(b.planes, b.params), first_width(b.planes, b.params)
    groups = b.params.groups
    if first % groups or width % groups:
        raise ValueError(f"groups {groups} must divide the widths {first} and {width}")
    out = s.act("relu", s.norm("bn1", s.conv("conv1", x, first, 1)))
    # torchvision puts the stride on the 3x3 conv (conv2), while the original paper puts it on the
    # first 1x1: "ResNet V1.5", which improves accuracy according to
    # https://ngc.nvidia.com/catalog/model-scripts/nvidia:resnet_50_v1_5_for_pytorch
    out = s.norm("bn2", s.conv("conv2", out, width, 3, stride=b.conv_stride, dilation=b.dilation, groups=groups))
    out = attend(b, s, "mid", drop_act_aa(b, s, out), "attn")
    return s.norm("bn3", s.conv("conv3", out, b.out_channels, 1), zero_init=True)


def _out_channels(planes: int, params: Any) -> int:
    return getattr(params, "out_channels", None) or planes * 4


@block("bottleneck", BottleneckParams, cls_name="Bottleneck", expansion=4, drop_block=True,
       attn_positions=("mid", "pre_add", "post_add"), out_channels=_out_channels)
def bottleneck(b: BlockPlan, s: Scope, x: Value) -> Value:
    """1x1-3x3-1x1 x4, stride on the 3x3 (ResNet V1.5)."""
    out = residual(b, s, bottleneck_main(b, s, x), x)
    return attend(b, s, "post_add", s.act("relu", out), "attn_out")


class ResNeXtParams(ExplicitWidths, ResNetParams):
    """ResNeXt's C x d notation: ``resnext50_32x4d`` is cardinality 32, base width 4."""

    cardinality: int = Field(32, ge=1, le=4096, description="Number of groups in the 3x3 convolution (C).")
    base_width: int = Field(4, ge=1, le=65536, description="Channels per group at planes=64 (d).")

    @property
    def groups(self) -> int:
        """The 3x3 convolution's groups: the cardinality."""
        return self.cardinality


class WideParams(BottleneckParams):
    """torchvision's wide ResNet: the bottleneck's inner width doubled (base width 128)."""

    base_width: int = Field(128, ge=1, le=65536, description="Width per group at planes=64 (128 doubles it).")


resnext = dataclasses.replace(bottleneck, name="resnext", params=ResNeXtParams, cls_name="ResNeXtBottleneck",
                              doc="Grouped bottleneck, C x d notation (ResNeXt).")
wide_bottleneck = dataclasses.replace(bottleneck, name="wide_bottleneck", params=WideParams,
                                      cls_name="WideBottleneck", doc="Bottleneck with a 2x wider 3x3 (wide_resnet50_2).")
