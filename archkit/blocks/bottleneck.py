"""Bottleneck (ResNet V1.5) and its torchvision presets: ResNeXt (grouped) and Wide."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from torch import Tensor, nn

from ..complexity import Cost, conv

from ..context import Context
from . import antialias
from .base import Block, BlockParams, ResNetParams, conv1x1, conv3x3


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


def bottleneck_width(planes: int, params: Any) -> int:
    """The 3x3 conv's width, torchvision's rule: int(planes * base_width / 64) * groups (or the explicit one)."""
    if getattr(params, "widths", None):
        return params.widths[1]
    width = int(planes * (params.base_width / 64.0)) * params.groups
    if width < 1:
        raise ValueError(f"planes {planes} x base_width {params.base_width} / 64 gives a width of 0")
    return width


def first_width(planes: int, params: Any) -> int:
    """The first 1x1 conv's width: the 3x3's divided by ``reduce_first`` (or the explicit one)."""
    if params.widths:
        return params.widths[0]
    first = bottleneck_width(planes, params) // params.reduce_first
    if first < 1:
        raise ValueError(f"the width {bottleneck_width(planes, params)} // reduce_first {params.reduce_first} "
                         "leaves no channels")
    return first


class Bottleneck(Block):
    """1x1-3x3-1x1 x4, stride on the 3x3 (ResNet V1.5)."""

    # torchvision puts the stride on the 3x3 conv (conv2), while the original paper puts it on the
    # first 1x1: "ResNet V1.5", which improves accuracy according to
    # https://ngc.nvidia.com/catalog/model-scripts/nvidia:resnet_50_v1_5_for_pytorch
    Params = BottleneckParams
    expansion = 4
    attn_positions = ("mid", "pre_add", "post_add")
    has_drop_block = True

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, params: BottleneckParams, ctx: Context):
        super().__init__()
        groups = params.groups
        width = bottleneck_width(planes, params)
        first = first_width(planes, params)
        if first % groups or width % groups:
            raise ValueError(f"groups {groups} must divide the widths {first} and {width}")
        out_channels = self.out_channels(planes, params)
        aa = antialias.make(params.aa, width, stride)
        self.conv1 = conv1x1(in_channels, first)
        self.bn1 = ctx.norm(first)
        self.conv2 = conv3x3(first, width, 1 if aa is not None else stride, groups, dilation)
        self.bn2 = ctx.norm(width)
        self.drop_block = ctx.drop_block()
        self.aa = aa
        self.attn = ctx.attention("mid", width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = ctx.norm(out_channels)
        self.relu = ctx.act()
        self.init_tail(out_channels, downsample, ctx)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.drop_act_aa(self.bn2(self.conv2(out)))
        if self.attn is not None:
            out = self.attn(out)
        out = self.bn3(self.conv3(out))
        out = self.add_residual(out, identity)
        return self.after_add(self.relu(out))

    @classmethod
    def out_channels(cls, planes: int, params: Any) -> int:
        """planes x 4, or a pruned network's explicit output width."""
        return params.out_channels or planes * cls.expansion

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so the block starts as identity (Goyal et al., 2017)."""
        if getattr(self.bn3, "weight", None) is not None:
            nn.init.zeros_(self.bn3.weight)

    @classmethod
    def cost(cls, bp: Any, ctx: Context) -> Cost:
        """1x1 at the input size, grouped 3x3 with the stride (at stride 1 then anti-aliased, with ``aa``),
        1x1 up, the tail, the final activation."""
        w, out, hw, ihw = bottleneck_width(bp.planes, bp.params), bp.out_channels, bp.out_size, bp.in_size
        first, aa = first_width(bp.planes, bp.params), bp.params.aa
        hw2 = ihw if aa is not None and bp.stride > 1 else hw
        return (conv(bp.in_channels, first, 1, ihw) + ctx.norm_cost(first, ihw) + ctx.act_cost(first, ihw)
                + conv(first, w, 3, hw2, bp.params.groups) + ctx.norm_cost(w, hw2) + ctx.act_cost(w, hw2)
                + antialias.cost(aa, w, hw, bp.stride) + ctx.attention_cost("mid", w, hw) + conv(w, out, 1, hw) + ctx.norm_cost(out, hw)
                + cls.tail_cost(bp, ctx) + ctx.act_cost(out, hw))


class ResNeXtParams(ExplicitWidths, ResNetParams):
    """ResNeXt's C x d notation: ``resnext50_32x4d`` is cardinality 32, base width 4."""

    cardinality: int = Field(32, ge=1, le=4096, description="Number of groups in the 3x3 convolution (C).")
    base_width: int = Field(4, ge=1, le=65536, description="Channels per group at planes=64 (d).")

    @property
    def groups(self) -> int:
        """The 3x3 convolution's groups: the cardinality."""
        return self.cardinality


class ResNeXtBottleneck(Bottleneck):
    """Grouped bottleneck, C x d notation (ResNeXt)."""

    Params = ResNeXtParams
    cost = Bottleneck.__dict__["cost"]  # the same structure: its cost holds


class WideParams(BottleneckParams):
    """torchvision's wide ResNet: the bottleneck's inner width doubled (base width 128)."""

    base_width: int = Field(128, ge=1, le=65536, description="Width per group at planes=64 (128 doubles it).")


class WideBottleneck(Bottleneck):
    """Bottleneck with a 2x wider 3x3 (wide_resnet50_2)."""

    Params = WideParams
    cost = Bottleneck.__dict__["cost"]  # the same structure: its cost holds
