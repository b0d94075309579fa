"""BasicBlock: two 3x3 convolutions, as torchvision's ResNet-18/34."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..complexity import Cost, conv

from ..context import Context
from . import antialias
from .base import Block, ResNetParams, conv3x3


class BasicBlock(Block):
    """Two 3x3 convs, identity shortcut (ResNet-18/34)."""

    Params = ResNetParams
    expansion = 1
    attn_positions = ("mid", "pre_add", "post_add")
    has_drop_block = True

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, params: ResNetParams, ctx: Context):
        super().__init__()
        if dilation > 1:
            # torchvision raises the same: its 3x3 convs keep dilation 1 here.
            raise ValueError("dilation > 1 is not supported in BasicBlock (as in torchvision)")
        first = planes // params.reduce_first
        if first < 1:
            raise ValueError(f"planes {planes} // reduce_first {params.reduce_first} leaves no channels")
        aa = antialias.make(params.aa, first, stride)
        self.conv1 = conv3x3(in_channels, first, 1 if aa is not None else stride)
        self.bn1 = ctx.norm(first)
        self.drop_block = ctx.drop_block()
        self.relu = ctx.act()
        self.aa = aa
        self.attn = ctx.attention("mid", first)
        self.conv2 = conv3x3(first, planes)
        self.bn2 = ctx.norm(planes)
        self.init_tail(planes, downsample, ctx)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.drop_act_aa(self.bn1(self.conv1(x)))
        if self.attn is not None:
            out = self.attn(out)
        out = self.bn2(self.conv2(out))
        out = self.add_residual(out, identity)
        return self.after_add(self.relu(out))

    @classmethod
    def cost(cls, bp: Any, ctx: Context) -> Cost:
        """conv-norm-act (at stride 1 then anti-aliased, with ``aa``), conv-norm, the tail, the final activation."""
        p, hw, aa = bp.planes, bp.out_size, bp.params.aa
        first = p // bp.params.reduce_first
        hw1 = bp.in_size if aa is not None and bp.stride > 1 else hw
        return (conv(bp.in_channels, first, 3, hw1) + ctx.norm_cost(first, hw1) + ctx.act_cost(first, hw1)
                + antialias.cost(aa, first, hw, bp.stride)
                + ctx.attention_cost("mid", first, hw) + conv(first, p, 3, hw) + ctx.norm_cost(p, hw)
                + cls.tail_cost(bp, ctx) + ctx.act_cost(p, hw))

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so the block starts as identity (Goyal et al., 2017)."""
        if getattr(self.bn2, "weight", None) is not None:
            nn.init.zeros_(self.bn2.weight)
