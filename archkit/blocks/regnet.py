"""RegNet's X and Y blocks (Radosavovic et al. 2020, "Designing Network Design Spaces"), as torchvision's
``ResBottleneckBlock`` (``regnet``): 1x1, grouped 3x3 with the stride (fixed group width), [SE], 1x1, add, ReLU;
and as timm's ``regnet.py`` ``Bottleneck`` (``regnet_bottle``): the same with each conv a ``ConvNormAct``, SE
``se``, the spec's activation, the shortcut ``downsample`` (a 1x1 ``ConvNormAct``, timm's ``'avg'`` pool and
conv, or none where the shape changes) and RegNetZ's linear output.

Unlike the ResNet bottleneck, the output width is ``planes`` (expansion 1), the inner width is
``planes * bottleneck_multiplier``, and RegNet-Y's squeeze-and-excitation is sized from the block's
*input* width (``se_ratio * in_channels``), as the paper and torchvision define it.
"""

from __future__ import annotations

from pydantic import Field

from ..attention.se import SqueezeExcite
from ..graph import AvgPoolSame, Passthrough, Pool2d, Scope, Value
from ..layers import conv_norm_act
from .base import BlockParams, BlockPlan, Shortcut, attend, block, drop_path, residual


class RegNetParams(BlockParams):
    """Group width, bottleneck multiplier and the optional SE ratio of a RegNet block."""

    group_width: int = Field(8, ge=1, le=4096, description="Channels per group of the 3x3 convolution.")
    bottleneck_multiplier: float = Field(1.0, gt=0, le=16, description="Inner width relative to the output width.")
    se_ratio: float | None = Field(None, gt=0, le=1, description="RegNet-Y: SE width relative to the block's input "
                                                                 "width (0.25); none for RegNet-X.")


@block("regnet", RegNetParams, cls_name="RegNetBlock", expansion=1, attn_positions=("mid", "pre_add", "post_add"))
def regnet(b: BlockPlan, s: Scope, x: Value) -> Value:
    """RegNet X/Y bottleneck: fixed group width, optional SE (RegNet)."""
    p = b.params
    inner = int(round(b.planes * p.bottleneck_multiplier))
    if inner < 1 or inner % p.group_width:
        raise ValueError(f"group width {p.group_width} does not divide the inner width {inner}")
    out = s.act("relu", s.norm("bn1", s.conv("conv1", x, inner, 1)))
    out = s.conv("conv2", out, inner, 3, stride=b.stride, dilation=b.dilation, groups=inner // p.group_width)
    out = s.act("relu", s.norm("bn2", out))
    if p.se_ratio:  # the SE any block may take, sized from the block's input as torchvision's RegNet-Y
        se = SqueezeExcite(type="se", rd_ratio=p.se_ratio, rd_from="in", rounding="round")
        out = se.emit_in(s, "excite", out, b)
    out = attend(b, s, "mid", out, "attn")
    out = s.norm("bn3", s.conv("conv3", out, b.planes, 1), zero_init=True)
    return attend(b, s, "post_add", s.act("relu", residual(b, s, out, x)), "attn_out")


class RegNetBottleParams(RegNetParams):
    """timm's RegNet bottleneck keys: the RegNet numbers (as the generator writes them) and RegNetZ's linear output."""

    linear_out: bool = Field(False, description="No activation after the add (timm's RegNetZ).")


@block("regnet_bottle", RegNetBottleParams, cls_name="Bottleneck", expansion=1,
       shortcuts=("projection", "avg_down", "identity"), attn_positions=("mid", "pre_add"))
def regnet_bottle(b: BlockPlan, s: Scope, x: Value) -> Value:
    """RegNet X/Y/Z bottleneck in timm's names (timm's regnet.py)."""
    p = b.params
    inner = int(round(b.planes * p.bottleneck_multiplier))
    if inner < 1 or inner % p.group_width:
        raise ValueError(f"group width {p.group_width} does not divide the inner width {inner}")
    out = conv_norm_act(s, "conv1", x, inner, 1)
    out = conv_norm_act(s, "conv2", out, inner, 3, stride=b.stride, dilation=b.dilation, groups=inner // p.group_width)
    if p.se_ratio:  # timm's SEModule sized from the block's input, with the block's activation
        se = SqueezeExcite(type="se", rd_ratio=p.se_ratio, rd_from="in", rounding="round", act="spec")
        out = se.emit_in(s, "se", out, b)
    else:
        s.empty("se")
    out = attend(b, s, "mid", out, "attn")
    out = conv_norm_act(s, "conv3", out, b.planes, 1, apply_act=False, zero_init=True)
    sc = _downsample(b, s, x)
    out = drop_path(b, s, attend(b, s, "pre_add", out, "attn_last"))
    if sc is not None:
        out = s.add(out, sc)
    return s.call("act3", Passthrough("identity"), out) if p.linear_out else s.act("act3", out)


def _downsample(b: BlockPlan, s: Scope, x: Value) -> Value | None:
    """timm's regnet ``create_shortcut``: an Identity, none, ``downsample_conv`` (a 1x1 ConvNormAct, strided) or
    ``downsample_avg`` (a Sequential of the pool and a 1x1 ConvNormAct)."""
    kind = b.shortcut
    if kind is Shortcut.NONE:
        s.empty("downsample")
        return None
    if kind is Shortcut.IDENTITY:
        return s.call("downsample", Passthrough("identity"), x)
    if kind is Shortcut.PROJECTION:
        return conv_norm_act(s, "downsample", x, b.out_channels, 1, stride=b.stride, apply_act=False)
    if kind is not Shortcut.AVG_DOWN:
        raise ValueError(f"{b.kind.name} blocks build no {kind.value} shortcut")
    inner, (y,) = s.enter("downsample", "Sequential", x, sequential=True)
    if b.stride > 1 and b.dilation == 1:
        y = inner.call("0", Pool2d("avg", 2, b.stride, 0, True, False), y)
    elif b.stride > 1 or b.dilation > 1:  # a stride that became dilation: a 'same' 2x2 average at stride 1
        y = inner.call("0", AvgPoolSame(), y)
    else:
        y = inner.call("0", Passthrough("identity"), y)
    return inner.exit(conv_norm_act(inner, "1", y, b.out_channels, 1, apply_act=False))
