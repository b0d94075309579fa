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
from ..graph import AvgPoolSame, Conv2d, Passthrough, Pool2d, Scope, Value
from ..layers import conv_norm_act, timm_padding
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
    inner = _inner(b)
    out = conv_norm_act(s, "conv1", x, inner, 1)
    out = conv_norm_act(s, "conv2", out, inner, 3, stride=b.stride, dilation=b.dilation, groups=inner // p.group_width)
    out = _excite(b, s, out)
    out = conv_norm_act(s, "conv3", out, b.planes, 1, apply_act=False, zero_init=True)
    sc = _downsample(b, s, x)
    out = attend(b, s, "pre_add", out, "attn_last")
    if sc is not None:  # timm drops the path only where there is a shortcut to add it to
        out = s.add(drop_path(b, s, out), sc)
    return s.call("act3", Passthrough("identity"), out) if p.linear_out else s.act("act3", out)


@block("regnet_prebottle", RegNetParams, cls_name="PreBottleneck", expansion=1,
       shortcuts=("projection", "avg_down", "identity"), attn_positions=("mid", "pre_add"))
def regnet_prebottle(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Pre-activation RegNet bottleneck in timm's names (timm's regnet.py RegNetV)."""
    p = b.params
    inner = _inner(b)
    x = _norm_act(s, "norm1", x)  # the shortcut takes the normalized input, as timm's
    out = s.call("conv1", Conv2d(x.shape[0], inner, 1), x)
    out = _norm_act(s, "norm2", out)
    out = s.call("conv2", Conv2d(inner, inner, 3, b.stride, timm_padding(3, b.stride, b.dilation), b.dilation,
                                 inner // p.group_width), out)
    out = _excite(b, s, out)
    out = _norm_act(s, "norm3", out)
    out = s.call("conv3", Conv2d(inner, b.planes, 1), out)
    sc = _downsample(b, s, x, preact=True)
    out = attend(b, s, "pre_add", out, "attn_last")
    return out if sc is None else s.add(drop_path(b, s, out), sc)  # timm drops the path only with a shortcut


def _inner(b: BlockPlan) -> int:
    """timm's bottleneck width (``int(round(out_chs * bottle_ratio))``), which the group width must divide."""
    inner = int(round(b.planes * b.params.bottleneck_multiplier))
    if inner < 1 or inner % b.params.group_width:
        raise ValueError(f"group width {b.params.group_width} does not divide the inner width {inner}")
    return inner


def _norm_act(s: Scope, name: str, x: Value) -> Value:
    """The spec's norm with the spec's activation inside (timm's norm_act_layer)."""
    if not callable(getattr(s.norm_layer, "emit_act", None)) or not callable(getattr(s.act_layer, "op", None)):
        raise ValueError(f"a pre-activation RegNet block puts the activation inside the norm: the "
                         f"{s.norm_layer.type} norm with the {s.act_layer.type} activation cannot (use batchnorm, "
                         "groupnorm or evonorm_s0a, and relu, silu or leaky_relu)")
    return s.norm_layer.emit_act(s, name, x, s.act_layer.op())


def _excite(b: BlockPlan, s: Scope, x: Value) -> Value:
    """timm's ``se`` (an SEModule sized from the block's input, with the block's activation), then any ``mid``
    attention the spec adds."""
    if b.params.se_ratio:
        se = SqueezeExcite(type="se", rd_ratio=b.params.se_ratio, rd_from="in", rounding="round", act="spec")
        x = se.emit_in(s, "se", x, b)
    else:
        s.empty("se")
    return attend(b, s, "mid", x, "attn")


def _downsample(b: BlockPlan, s: Scope, x: Value, preact: bool = False) -> Value | None:
    """timm's regnet ``create_shortcut``: an Identity, none, ``downsample_conv`` (a 1x1 ConvNormAct, strided; a
    bare conv in a pre-activation block) or ``downsample_avg`` (a Sequential of the pool and the 1x1)."""
    kind = b.shortcut
    if kind is Shortcut.NONE:
        s.empty("downsample")
        return None
    if kind is Shortcut.IDENTITY:
        return s.call("downsample", Passthrough("identity"), x)
    if kind not in (Shortcut.PROJECTION, Shortcut.AVG_DOWN):
        raise ValueError(f"{b.kind.name} blocks build no {kind.value} shortcut")
    stride = b.stride if kind is Shortcut.PROJECTION else 1
    if kind is Shortcut.PROJECTION:
        inner, name, y = s, "downsample", x
    else:
        inner, (y,) = s.enter("downsample", "Sequential", x, sequential=True)
        name = "1"
        if b.stride > 1 and b.dilation == 1:
            y = inner.call("0", Pool2d("avg", 2, b.stride, 0, True, False), y)
        elif b.stride > 1 or b.dilation > 1:  # a stride that became dilation: a 'same' 2x2 average at stride 1
            y = inner.call("0", AvgPoolSame(), y)
        else:
            y = inner.call("0", Passthrough("identity"), y)
    if preact:
        y = inner.call(name, Conv2d(x.shape[0], b.out_channels, 1, stride), y)
    else:
        y = conv_norm_act(inner, name, y, b.out_channels, 1, stride=stride, apply_act=False)
    return y if inner is s else inner.exit(y)
