"""timm's bring-your-own-blocks residual blocks (``timm/models/byobnet.py``), in its module names so its
weights load: each conv a ``ConvNormAct`` (``conv``, then ``bn`` with the activation inside), the
shortcut module (``shortcut``) registered first, the add after stochastic depth, then ``act``.

- ``byob_basic``: kxk, kxk (timm's byobnet ``basic``; archkit's ``basic`` is torchvision's BasicBlock);
- ``bottle``: 1x1, kxk (strided, grouped), [kxk: ``extra_conv``], 1x1 (timm's ``bottle``: the ResNe(X)t
  bottleneck of GENet, ResNet-Q, the *ts ResNets, RegNetZ and CLIP's ResNets);
- ``dark``: 1x1, kxk strided (timm's ``dark``);
- ``edge``: kxk strided, 1x1 (timm's ``edge``, an EdgeResidual-like block).

The inner width is timm's ``make_divisible(width * bottle_ratio)`` of the output width (``bottle``:
of the input width with ``bottle_in``); ``group_size`` sets channels per group (1: depthwise). Attention
sits at ``mid`` (child ``attn``) or ``pre_add`` (child ``attn_last``: timm's ``attn_last``). Shortcut
kinds: ``projection`` (timm's ``downsample='conv1x1'``), ``avg_down`` (``'avg'``: DownsampleAvg) and
``identity`` (``''``: no shortcut where the block changes shape, as RegNetZ).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..attention.base import make_divisible
from ..graph import AvgPoolSame, Passthrough, Pool2d, Scope, Value
from ..layers import conv_norm_act
from .base import BlockParams, BlockPlan, Shortcut, attend, block, drop_path

_SHORTCUTS = ("projection", "avg_down", "identity")


class ByobParams(BlockParams):
    """The keys of timm's ``ByoBlockCfg`` and block kwargs that shape a block."""

    kernel_size: int = Field(3, ge=1, le=15, description="Kernel of the kxk convolutions.")
    bottle_ratio: float = Field(1.0, gt=0.0, le=64.0, description="Inner width relative to the output width "
                                "(timm's br), rounded to a multiple of 8 as timm's make_divisible.")
    group_size: int | None = Field(None, ge=1, le=1 << 20, description="Channels per group of the grouped kxk "
                                   "conv (timm's gs; 1: depthwise; none: one group).")
    linear_out: bool = Field(False, description="No activation after the add (RegNetZ's linear_out).")
    aa: Literal["avg", "blur"] | None = Field(None, description="Anti-aliased downsampling (timm's aa_layer): "
                                              "strided convs run at stride 1, then avg or blur pools (CLIP).")

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, k: int) -> int:
        if k % 2 == 0:
            raise ValueError(f"must be odd (got {k}): an even kernel shifts the map against the shortcut")
        return k


class BottleParams(ByobParams):
    """The bottleneck's extra keys."""

    extra_conv: bool = Field(False, description="A second kxk conv after the strided one (ResNet-61Q's "
                             "conv2b_kxk).")
    bottle_in: bool = Field(False, description="Take the inner width from the input width (RegNetZ's "
                            "inverted bottleneck) rather than the output width.")


def _mid(b: BlockPlan, channels: int) -> tuple[int, int]:
    """timm's inner width and groups for ``channels`` x bottle ratio."""
    mid = make_divisible(channels * b.params.bottle_ratio, 8, round_limit=0.9)
    gs = b.params.group_size
    if gs and mid % gs:
        raise ValueError(f"group_size {gs} does not divide the inner width {mid}")
    return mid, mid // gs if gs else 1


def _shortcut(b: BlockPlan, s: Scope, x: Value) -> Value | None:
    """timm's ``create_shortcut``: ``shortcut`` an Identity, None, a 1x1 ConvNormAct or a DownsampleAvg."""
    kind = b.shortcut
    if kind is Shortcut.NONE:
        s.empty("shortcut")
        return None
    if kind is Shortcut.IDENTITY:
        return s.call("shortcut", Passthrough("identity"), x)
    if kind is Shortcut.PROJECTION:
        return conv_norm_act(s, "shortcut", x, b.out_channels, 1, stride=b.stride, dilation=b.dilation,
                             apply_act=False, aa=b.params.aa)
    if kind is not Shortcut.AVG_DOWN:
        raise ValueError(f"{b.kind.name} blocks build no {kind.value} shortcut")
    inner, (y,) = s.enter("shortcut", "DownsampleAvg", x)
    if b.stride > 1 or b.dilation > 1:
        if b.dilation > 1:
            y = inner.call("pool", AvgPoolSame(), y)
        else:
            y = inner.call("pool", Pool2d("avg", 2, b.stride, 0, True, False), y)
    else:
        y = inner.call("pool", Passthrough("identity"), y)
    return inner.exit(conv_norm_act(inner, "conv", y, b.out_channels, 1, apply_act=False))


def _finish(b: BlockPlan, s: Scope, out: Value, sc: Value | None) -> Value:
    """[attn_last], stochastic depth, the add, the activation (none: ``linear_out``)."""
    out = drop_path(b, s, attend(b, s, "pre_add", out, "attn_last"))
    if sc is not None:
        out = s.add(out, sc)
    if b.params.linear_out:
        return s.call("act", Passthrough("identity"), out)
    return s.act("act", out)


_KINDS = dict(shortcuts=_SHORTCUTS, attn_positions=("mid", "pre_add"), drop_block=True)  # in a kxk's norm, as timm's


@block("byob_basic", ByobParams, cls_name="BasicBlock", **_KINDS)
def byob_basic(b: BlockPlan, s: Scope, x: Value) -> Value:
    """kxk, kxk and the add (timm's byobnet BasicBlock)."""
    p = b.params
    mid, groups = _mid(b, b.out_channels)
    sc = _shortcut(b, s, x)
    out = conv_norm_act(s, "conv1_kxk", x, mid, p.kernel_size, stride=b.stride, dilation=b.dilation, aa=p.aa)
    out = attend(b, s, "mid", out, "attn")
    out = conv_norm_act(s, "conv2_kxk", out, b.out_channels, p.kernel_size, dilation=b.stage_dilation, groups=groups,
                        apply_act=False, drop=b.drop_block)
    s.mark_zero_init("conv2_kxk.bn")
    return _finish(b, s, out, sc)


@block("bottle", BottleParams, cls_name="BottleneckBlock", **_KINDS)
def bottle(b: BlockPlan, s: Scope, x: Value) -> Value:
    """1x1, kxk, [kxk], 1x1 and the add (timm's byobnet BottleneckBlock)."""
    p = b.params
    mid, groups = _mid(b, b.in_channels if p.bottle_in else b.out_channels)
    sc = _shortcut(b, s, x)
    out = conv_norm_act(s, "conv1_1x1", x, mid, 1)
    out = conv_norm_act(s, "conv2_kxk", out, mid, p.kernel_size, stride=b.stride, dilation=b.dilation, groups=groups,
                        aa=p.aa, drop=b.drop_block)
    if p.extra_conv:
        out = conv_norm_act(s, "conv2b_kxk", out, mid, p.kernel_size, dilation=b.stage_dilation, groups=groups)
    else:
        s.empty("conv2b_kxk")
    out = attend(b, s, "mid", out, "attn")
    out = conv_norm_act(s, "conv3_1x1", out, b.out_channels, 1, apply_act=False)
    s.mark_zero_init("conv3_1x1.bn")
    return _finish(b, s, out, sc)


@block("dark", ByobParams, cls_name="DarkBlock", **_KINDS)
def dark(b: BlockPlan, s: Scope, x: Value) -> Value:
    """1x1, kxk strided and the add (timm's byobnet DarkBlock)."""
    p = b.params
    mid, groups = _mid(b, b.out_channels)
    sc = _shortcut(b, s, x)
    out = attend(b, s, "mid", conv_norm_act(s, "conv1_1x1", x, mid, 1), "attn")
    out = conv_norm_act(s, "conv2_kxk", out, b.out_channels, p.kernel_size, stride=b.stride, dilation=b.dilation,
                        groups=groups, apply_act=False, aa=p.aa, drop=b.drop_block)
    s.mark_zero_init("conv2_kxk.bn")
    return _finish(b, s, out, sc)


@block("edge", ByobParams, cls_name="EdgeBlock", **_KINDS)
def edge(b: BlockPlan, s: Scope, x: Value) -> Value:
    """kxk strided, 1x1 and the add (timm's byobnet EdgeBlock)."""
    p = b.params
    mid, groups = _mid(b, b.out_channels)
    sc = _shortcut(b, s, x)
    out = conv_norm_act(s, "conv1_kxk", x, mid, p.kernel_size, stride=b.stride, dilation=b.dilation, groups=groups,
                        aa=p.aa, drop=b.drop_block)
    out = attend(b, s, "mid", out, "attn")
    out = conv_norm_act(s, "conv2_1x1", out, b.out_channels, 1, apply_act=False)
    s.mark_zero_init("conv2_1x1.bn")
    return _finish(b, s, out, sc)
