"""RegNet's X and Y blocks (Radosavovic et al. 2020, "Designing Network Design Spaces"), as torchvision's
``ResBottleneckBlock``: 1x1, grouped 3x3 with the stride (fixed group width), [SE], 1x1, add, ReLU.

Unlike the ResNet bottleneck, the output width is ``planes`` (expansion 1), the inner width is
``planes * bottleneck_multiplier``, and RegNet-Y's squeeze-and-excitation is sized from the block's
*input* width (``se_ratio * in_channels``), as the paper and torchvision define it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from torch import Tensor, nn

from ..attention.se import SEModule
from ..complexity import Cost, conv
from ..context import Context
from .base import Block, BlockParams, conv1x1, conv3x3


class RegNetParams(BlockParams):
    """Group width, bottleneck multiplier and the optional SE ratio of a RegNet block."""

    group_width: int = Field(8, ge=1, le=4096, description="Channels per group of the 3x3 convolution.")
    bottleneck_multiplier: float = Field(1.0, gt=0, le=16, description="Inner width relative to the output width.")
    se_ratio: float | None = Field(None, gt=0, le=1, description="RegNet-Y: SE width relative to the block's input "
                                                                 "width (0.25); none for RegNet-X.")


def _widths(in_channels: int, planes: int, params: RegNetParams) -> tuple[int, int, int]:
    inner = int(round(planes * params.bottleneck_multiplier))
    if inner < 1 or inner % params.group_width:
        raise ValueError(f"group width {params.group_width} does not divide the inner width {inner}")
    squeeze = int(round(params.se_ratio * in_channels)) if params.se_ratio else 0
    return inner, inner // params.group_width, squeeze


class RegNetBlock(Block):
    """RegNet X/Y bottleneck: fixed group width, optional SE (RegNet)."""

    Params = RegNetParams
    expansion = 1
    attn_positions = ("mid", "pre_add", "post_add")

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, params: RegNetParams, ctx: Context):
        super().__init__()
        inner, groups, squeeze = _widths(in_channels, planes, params)
        self.conv1 = conv1x1(in_channels, inner)
        self.bn1 = ctx.norm(inner)
        self.conv2 = conv3x3(inner, inner, stride, groups, dilation)
        self.bn2 = ctx.norm(inner)
        self.relu = ctx.act()
        self.excite = SEModule(inner, squeeze) if squeeze else None
        self.attn = ctx.attention("mid", inner)
        self.conv3 = conv1x1(inner, planes)
        self.bn3 = ctx.norm(planes)
        self.init_tail(planes, downsample, ctx)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        if self.excite is not None:
            out = self.excite(out)
        if self.attn is not None:
            out = self.attn(out)
        out = self.bn3(self.conv3(out))
        return self.after_add(self.relu(self.add_residual(out, identity)))

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so the block starts as identity."""
        if getattr(self.bn3, "weight", None) is not None:
            nn.init.zeros_(self.bn3.weight)

    @classmethod
    def cost(cls, bp: Any, ctx: Context) -> Cost:
        """1x1, grouped 3x3 with the stride, SE, 1x1, the tail, the final activation."""
        inner, groups, squeeze = _widths(bp.in_channels, bp.planes, bp.params)
        hw, ihw, out = bp.out_size, bp.in_size, bp.out_channels
        total = (conv(bp.in_channels, inner, 1, ihw) + ctx.norm_cost(inner, ihw) + ctx.act_cost(inner, ihw)
                 + conv(inner, inner, 3, hw, groups) + ctx.norm_cost(inner, hw) + ctx.act_cost(inner, hw))
        if squeeze:
            total = total + Cost(2 * inner * squeeze + squeeze + inner, 2 * inner * squeeze,
                                 3 * inner + squeeze + inner * hw[0] * hw[1])
        return (total + ctx.attention_cost("mid", inner, hw) + conv(inner, out, 1, hw) + ctx.norm_cost(out, hw)
                + cls.tail_cost(bp, ctx) + ctx.act_cost(out, hw))
