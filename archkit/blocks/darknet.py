"""DarkNet-53 residual block and its stage-opening strided conv (Redmon & Farhadi, YOLOv3)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from torch import Tensor, nn

from ..complexity import Cost, conv

from ..context import Act, Context, Norm
from .base import Block, BlockParams


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> norm -> activation, DarkNet's unit."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, dilation: int,
                 norm: Norm, act: Act):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=False)
        self.bn = norm(out_channels)
        self.act = act()


class DarkNetParams(BlockParams):
    """The bottleneck ratio of the 1x1 convolution (DarkNet-53 halves the width)."""

    bottle_ratio: float = Field(0.5, gt=0.0, le=8.0, description="Width of the 1x1 conv relative to the output.")


class DarkNetBlock(Block):
    """1x1 to half width, 3x3 back, identity add (Darknet-53).

    Each conv is conv+norm+act; no activation after the add. A stage that changes stride or
    channels opens with a strided 3x3 conv (shortcut kind ``stage_conv``), run before the residual.
    """

    Params = DarkNetParams
    expansion = 1
    shortcuts = ("stage_conv",)
    attn_positions = ("mid", "pre_add", "post_add")
    inplace_add = False  # the branch ends in an activation

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, params: DarkNetParams, ctx: Context):
        super().__init__()
        mid = int(round(planes * params.bottle_ratio))
        if mid < 1:
            raise ValueError(f"planes {planes} x bottle_ratio {params.bottle_ratio} gives a width of 0")
        # The stage opens with a strided 3x3 conv; the residual then works at the new size.
        self.downsample = downsample  # registered first: it runs first
        self.conv1 = ConvNormAct(planes, mid, 1, 1, 1, ctx.norm, ctx.act)
        self.attn = ctx.attention("mid", mid)
        self.conv2 = ConvNormAct(mid, planes, 3, 1, dilation, ctx.norm, ctx.act)
        self.init_tail(planes, downsample, ctx)

    @classmethod
    def make_shortcut(cls, in_channels: int, out_channels: int, stride: int, dilation: int,
                      params: DarkNetParams, ctx: Context) -> nn.Module:
        """DarkNet's stage-opening 3x3 conv with the stage's stride, run before the residual."""
        return ConvNormAct(in_channels, out_channels, 3, stride, dilation, ctx.norm, ctx.act)

    @classmethod
    def shortcut_cost(cls, bp: Any, ctx: Context) -> Cost:
        if bp.shortcut in ("identity", "none"):
            return Cost()
        hw, c = bp.out_size, bp.out_channels
        return conv(bp.in_channels, c, 3, hw) + ctx.norm_cost(c, hw) + ctx.act_cost(c, hw)

    @classmethod
    def cost(cls, bp: Any, ctx: Context) -> Cost:
        """The stage conv (first block), 1x1 down, 3x3 up, the tail."""
        mid, p, hw = int(round(bp.planes * bp.params.bottle_ratio)), bp.planes, bp.out_size
        return (conv(p, mid, 1, hw) + ctx.norm_cost(mid, hw) + ctx.act_cost(mid, hw)
                + ctx.attention_cost("mid", mid, hw) + conv(mid, p, 3, hw) + ctx.norm_cost(p, hw)
                + ctx.act_cost(p, hw) + cls.tail_cost(bp, ctx))

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        out = self.conv1(x)
        if self.attn is not None:
            out = self.attn(out)
        out = self.add_residual(self.conv2(out), x)
        return self.after_add(out)

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so the block starts as identity."""
        if getattr(self.conv2.bn, "weight", None) is not None:
            nn.init.zeros_(self.conv2.bn.weight)
