"""BasicBlock: two 3x3 convolutions, as torchvision's ResNet-18/34."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..complexity import Cost, conv

from ..context import Context
from .base import Block, BlockParams, conv3x3


class BasicBlock(Block):
    """Two 3x3 convs, identity shortcut (ResNet-18/34)."""

    Params = BlockParams
    expansion = 1
    attn_positions = ("mid", "pre_add", "post_add")

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, params: BlockParams, ctx: Context):
        super().__init__()
        if dilation > 1:
            # torchvision raises the same: its 3x3 convs keep dilation 1 here.
            raise ValueError("dilation > 1 is not supported in BasicBlock (as in torchvision)")
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = ctx.norm(planes)
        self.relu = ctx.act()
        self.attn = ctx.attention("mid", planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = ctx.norm(planes)
        self.init_tail(planes, downsample, ctx)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        if self.attn is not None:
            out = self.attn(out)
        out = self.bn2(self.conv2(out))
        out = self.add_residual(out, identity)
        return self.after_add(self.relu(out))

    @classmethod
    def cost(cls, bp: Any, ctx: Context) -> Cost:
        """conv-norm-act, conv-norm, the tail, the final activation."""
        p, hw = bp.planes, bp.out_size
        return (conv(bp.in_channels, p, 3, hw) + ctx.norm_cost(p, hw) + ctx.act_cost(p, hw)
                + ctx.attention_cost("mid", p, hw) + conv(p, p, 3, hw) + ctx.norm_cost(p, hw)
                + cls.tail_cost(bp, ctx) + ctx.act_cost(p, hw))

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so the block starts as identity (Goyal et al., 2017)."""
        if getattr(self.bn2, "weight", None) is not None:
            nn.init.zeros_(self.bn2.weight)
