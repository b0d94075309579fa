"""Pre-activation blocks (He et al. 2016, "Identity Mappings in Deep Residual Networks"): norm and
activation come before each convolution, and nothing follows the add.

When a stage changes shape the shortcut reads the pre-activated input and has no norm of its own,
as in the authors' code, timm's ``PreActBottleneck`` and the WRN code.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from torch import Tensor, nn

from ..complexity import Cost, conv

from ..context import Context
from . import shortcuts as _shortcuts
from .base import Block, BlockParams, conv1x1, conv3x3
from .bottleneck import GroupedParams, bottleneck_width


class _PreAct(Block):
    @classmethod
    def make_shortcut(cls, in_channels: int, out_channels: int, stride: int, dilation: int,
                      params: BlockParams, ctx: Context) -> nn.Module:
        """The shortcut without a norm: it reads the already normalized, activated input."""
        return _shortcuts.build(ctx.shortcut, in_channels, out_channels, stride, dilation, None)

    @classmethod
    def shortcut_cost(cls, bp: Any, ctx: Context) -> Cost:
        if bp.shortcut in ("identity", "none"):
            return Cost()
        return _shortcuts.cost(bp.shortcut, bp.in_channels, bp.out_channels, bp.stride, bp.dilation, bp.in_size,
                               None)


class WideBasicParams(BlockParams):
    """Dropout between the two convolutions, as the WRN paper's "B(3,3) with dropout"."""

    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability between the 3x3 convolutions.")


class WideBasic(_PreAct):
    """Pre-activation WRN block with dropout (WRN-d-k).

    BN-ReLU-conv3x3-dropout-BN-ReLU-conv3x3; a bare 1x1 conv shortcut when the shape changes.
    """

    Params = WideBasicParams
    expansion = 1

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, params: WideBasicParams, ctx: Context):
        super().__init__()
        self.bn1 = ctx.norm(in_channels)
        self.relu1 = ctx.act()
        self.conv1 = conv3x3(in_channels, planes, stride, dilation=dilation)
        self.dropout = nn.Dropout(params.dropout)
        self.bn2 = ctx.norm(planes)
        self.relu2 = ctx.act()
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.init_tail(planes, downsample, ctx)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(x))
        # When the shape changes the shortcut shares the pre-activation (as the authors' code does);
        # otherwise the identity carries the raw input.
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.dropout(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        return self.after_add(self.add_residual(out, shortcut))

    @classmethod
    def cost(cls, bp: Any, ctx: Context) -> Cost:
        """norm-act, 3x3 with the stride, (dropout), norm-act, 3x3, the tail."""
        p, hw, ihw, c = bp.planes, bp.out_size, bp.in_size, bp.in_channels
        return (ctx.norm_cost(c, ihw) + ctx.act_cost(c, ihw) + conv(c, p, 3, hw) + ctx.norm_cost(p, hw)
                + ctx.act_cost(p, hw) + conv(p, p, 3, hw) + cls.tail_cost(bp, ctx))


class PreActBottleneck(_PreAct):
    """Pre-activation bottleneck, ResNet v2 (as timm resnetv2_50).

    BN-ReLU-conv1x1, BN-ReLU-conv3x3 (stride here), BN-ReLU-conv1x1, then the add; the network's
    head needs one last norm and activation.
    """

    Params = GroupedParams
    expansion = 4
    attn_positions = ("mid", "pre_add", "post_add")

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, params: GroupedParams, ctx: Context):
        super().__init__()
        width = bottleneck_width(planes, params)
        out_channels = planes * self.expansion
        self.bn1 = ctx.norm(in_channels)
        self.conv1 = conv1x1(in_channels, width)
        self.bn2 = ctx.norm(width)
        self.conv2 = conv3x3(width, width, stride, params.groups, dilation)
        self.bn3 = ctx.norm(width)
        self.attn = ctx.attention("mid", width)
        self.conv3 = conv1x1(width, out_channels)
        self.relu = ctx.act()
        self.init_tail(out_channels, downsample, ctx)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.relu(self.bn3(out))
        if self.attn is not None:
            out = self.attn(out)
        out = self.conv3(out)
        return self.after_add(self.add_residual(out, shortcut))

    @classmethod
    def cost(cls, bp: Any, ctx: Context) -> Cost:
        """norm-act, 1x1, norm-act, 3x3 with the stride, norm-act, 1x1 up, the tail."""
        w, out, hw, ihw, c = bottleneck_width(bp.planes, bp.params), bp.out_channels, bp.out_size, bp.in_size, \
            bp.in_channels
        return (ctx.norm_cost(c, ihw) + ctx.act_cost(c, ihw) + conv(c, w, 1, ihw) + ctx.norm_cost(w, ihw)
                + ctx.act_cost(w, ihw) + conv(w, w, 3, hw, bp.params.groups) + ctx.norm_cost(w, hw)
                + ctx.act_cost(w, hw) + ctx.attention_cost("mid", w, hw) + conv(w, out, 1, hw)
                + cls.tail_cost(bp, ctx))
