"""The inverted-residual family's blocks (MobileNet V1-V4, MnasNet, EfficientNet V1/V2, MixNet, FBNet, LCNet), as
timm's ``_efficientnet_blocks.py`` builds them, in its module names so its weights load:

- ``ds``: depthwise-separable (``conv_dw``, ``bn1``, ``aa``, ``se``, ``conv_pw``, ``bn2``; timm's
  DepthwiseSeparableConv; ``pw_act``: MobileNetV1's activation after the pointwise conv, timm's ``dsa``);
- ``ir``: inverted residual / MBConv (``conv_pw``, ``bn1``, ``conv_dw``, ``bn2``, ``aa``, ``se``, ``conv_pwl``,
  ``bn3``; timm's InvertedResidual);
- ``er``: edge residual / FusedMBConv (``conv_exp``, ``bn1``, ``aa``, ``se``, ``conv_pwl``, ``bn2``; EfficientNetV2);
- ``cn``: conv, norm, activation (``conv``, ``bn1``, ``aa``; timm's ConvBnAct, MobileNetV3's last 1x1);
- ``uir``: MobileNetV4's universal inverted residual (``dw_start``, ``pw_exp``, ``dw_mid``, ``se``, ``pw_proj``,
  ``dw_end``, ``layer_scale``; each a ConvNormAct).

Norms are the spec's norm with the activation inside it (timm's ``BatchNormAct2d`` / ``GroupNormAct``). A kernel
list (``kernel_size: [3, 5, 7]``) is MixNet's MixedConv2d: the channels split over the kernels (children ``0``,
``1``, ...). ``padding: same`` is TensorFlow's 'SAME' (timm's tf_ models): static where the stride is 1, else
computed from each input's size. A block adds its input back where it keeps the shape (``shortcut: none``:
never, timm's ``noskip``); ``cn`` only where asked (``shortcut: identity``, timm's ``skip``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from .. import layers as L
from ..attention.base import make_divisible
from ..attention.gc import GlobalContextParams
from ..attention.se import squeeze_excite
from ..graph import (Attention, Concat, CondConv2d, Conv2d, Conv2dSame, HeadsOut, HeadsQuery, LayerScale,
                     Linear, Narrow, Passthrough, PoolFlat, Scope, SharedKV, Sigmoid, Value)
from ..layers import norm_act
from ..params import BlockParams, SpecModel
from .base import BlockPlan, Shortcut, block, drop_path

# the activations a block may name (timm's block-string n: re, r6, hs, sw, mi) over the spec's
ACTS = {"relu": L.ReLU(), "relu6": L.ReLU6(inplace=True), "hard_swish": L.HardSwish(inplace=True),
        "silu": L.SiLU(), "mish": L.Mish(inplace=True), "gelu": L.GELU()}
Kernel = int | list[int]


class SqueezeExciteSpec(SpecModel):
    """timm's EfficientNet-family SqueezeExcite (``se.conv_reduce``, ``se.act1``, ``se.conv_expand``, ``se.gate``)."""

    ratio: float = Field(0.25, gt=0, le=1, description="Hidden width: this share of the block's input (from_exp: "
                         "false, EfficientNet) or of its expanded width (from_exp: true, MobileNetV3).")
    kind: Literal["se", "gc"] = Field("se", description="The gate in the SE slot: squeeze-and-excitation, or global "
                                      "context (timm's se_layer 'gc': GCNet's, with the block's activation).")
    from_exp: bool = Field(False, description="The ratio is of the expanded width (timm's se_from_exp).")
    act: Literal["block", "relu"] = Field("block", description="The activation between the convs: the block's, "
                                          "or ReLU (MobileNetV3's force_act_layer).")
    gate: Literal["sigmoid", "hard_sigmoid"] = Field("sigmoid", description="The gate (MobileNetV3: hard_sigmoid).")
    divisor: int | None = Field(None, ge=1, le=256, description="The hidden width rounded to a multiple of this "
                                "(timm's round_channels: MobileNetV3's 8); none: to the nearest integer.")
    round_limit: float = Field(0.9, ge=0, lt=1, description="With divisor: one more multiple where rounding down "
                               "lost more than this share (timm's round_channels).")
    channels: int | None = Field(None, ge=1, le=1 << 20, description="The hidden width itself, in place of the "
                                 "ratio's (timm's channel-pruned models).")


class MobileParams(BlockParams):
    """What every block of the family takes: its group's size and width, activation, padding, groups, SE."""

    scaled_widths: ClassVar[tuple[str, ...]] = ("channels",)  # what the width multiplier scales (the stage applies it)
    repeat: int = Field(1, ge=1, le=1000, description="Blocks of these settings in a row (a group of an "
                        "efficientnet stage; timm's r), before the depth multiplier.")
    channels: int | None = Field(None, ge=1, le=1 << 20, description="Output channels (timm's c) before the width "
                                 "multiplier; default: the stage's planes.")
    act: Literal["relu", "relu6", "hard_swish", "silu", "mish", "gelu"] | None = Field(
        None, description="The activation of this block (timm's n: re, r6, hs, sw, mi); default: the spec's.")
    padding: Literal["symmetric", "same"] = Field("symmetric", description="timm's symmetric padding, or "
                                                  "TensorFlow's 'SAME' (the tf_ models).")
    aa: Literal["blur", "blurpc", "avg"] | None = Field(None, description="Anti-aliased downsampling: the strided "
                                                        "conv at stride 1, then a blur (reflect or constant padded) "
                                                        "or average pool (timm's aa_layer).")
    se: SqueezeExciteSpec | None = Field(None, description="Squeeze-and-excitation after the depthwise conv.")


def _odd(k: Kernel) -> Kernel:
    ks = k if isinstance(k, list) else [k]
    if not ks or len(ks) > 8 or any(not 1 <= v <= 31 for v in ks):
        raise ValueError(f"a kernel is 1..31, a mixed kernel list 1..8 of them (got {k})")
    return k


class _DepthwiseParams(MobileParams):
    """The keys of the blocks around a depthwise conv."""

    kernel_size: Kernel = Field(3, description="The depthwise kernel (a list: MixNet's mixed kernels).")
    pw_kernel_size: Kernel = Field(1, description="The pointwise conv's kernel (timm's p).")
    group_size: int = Field(1, ge=0, le=1 << 20, description="Channels per group of the depthwise conv (1: "
                            "depthwise; 0: one group).")

    @field_validator("kernel_size", "pw_kernel_size")
    @classmethod
    def _kernels(cls, value: Kernel) -> Kernel:
        return _odd(value)


class _SpaceToDepthParams(_DepthwiseParams):
    """Space-to-depth (EfficientNet-X/H: timm's d): the blocks of its run output four times their channels."""

    s2d: Literal[0, 1, 2] = Field(0, description="Space-to-depth (timm's d1): 1, a 2x2 stride-2 conv to four times "
                                  "the channels before the depthwise conv (whose kernel halves, rounded up); 2, a "
                                  "later block of the run (an efficientnet stage gives them); either outputs four "
                                  "times its channels.")


def _s2d_channels(planes: int, params: Any) -> int:
    """The channels a block outputs: four times its width in a space-to-depth run (timm's builder)."""
    return planes * (4 if getattr(params, "s2d", 0) else 1)


class DepthwiseSeparableParams(_SpaceToDepthParams):
    """timm's DepthwiseSeparableConv keys."""

    pw_act: bool = Field(False, description="The activation after the pointwise conv too (MobileNetV1, LCNet: "
                                            "timm's dsa).")


class InvertedResidualParams(_SpaceToDepthParams):
    """timm's InvertedResidual keys."""

    exp_ratio: float = Field(6.0, gt=0, le=64, description="The expanded width relative to the input (timm's e).")
    exp_kernel_size: Kernel = Field(1, description="The expansion conv's kernel (timm's a).")
    mid_channels: int | None = Field(None, ge=1, le=1 << 20, description="The expanded width itself, in place of "
                                     "the input's times exp_ratio (timm's channel-pruned models).")
    num_experts: int = Field(0, ge=0, le=64, description="CondConv (timm's cc): each conv mixes this many expert "
                             "kernels per sample, routed from the block's pooled input (timm's CondConvResidual); "
                             "0: plain convs.")

    @field_validator("exp_kernel_size")
    @classmethod
    def _exp_kernel(cls, value: Kernel) -> Kernel:
        return _odd(value)


class EdgeResidualParams(MobileParams):
    """timm's EdgeResidual keys."""

    scaled_widths: ClassVar[tuple[str, ...]] = ("channels", "force_in_channels")
    kernel_size: int = Field(3, ge=1, le=31, description="The expansion conv's kernel (timm's k).")
    exp_ratio: float = Field(4.0, gt=0, le=64, description="The expanded width relative to the input (timm's e).")
    pw_kernel_size: int = Field(1, ge=1, le=31, description="The pointwise conv's kernel (timm's p).")
    force_in_channels: int = Field(0, ge=0, le=1 << 20, description="Expand from this width instead of the "
                                   "input's (timm's fc, EfficientNet-EdgeTPU); 0: the input's.")
    group_size: int = Field(0, ge=0, le=1 << 20, description="Channels per group of the expansion conv (0: one).")


class ConvBnActParams(MobileParams):
    """timm's ConvBnAct keys."""

    kernel_size: int = Field(3, ge=1, le=31, description="The conv's kernel.")
    group_size: int = Field(0, ge=0, le=1 << 20, description="Channels per group (0: one group).")


class UniversalInvertedResidualParams(MobileParams):
    """timm's UniversalInvertedResidual keys (MobileNetV4): which of the three depthwise convs exist."""

    start_kernel_size: int = Field(0, ge=0, le=31, description="Depthwise conv before the expansion (timm's a; 0: "
                                   "none).")
    kernel_size: int = Field(3, ge=0, le=31, description="Depthwise conv after the expansion (timm's k; 0: none).")
    end_kernel_size: int = Field(0, ge=0, le=31, description="Depthwise conv after the projection (timm's p; 0: "
                                 "none).")
    exp_ratio: float = Field(4.0, gt=0, le=64, description="The expanded width relative to the input.")
    group_size: int = Field(1, ge=0, le=1 << 20, description="Channels per group of the depthwise convs (1: "
                            "depthwise).")
    layer_scale: float | None = Field(None, gt=0, le=1, description="LayerScale2d's start (timm's "
                                      "layer_scale_init_value; MobileNetV4 hybrids: 1e-5); none: no layer scale.")


class MobileAttentionParams(MobileParams):
    """timm's MobileAttention keys with multi-query attention (MobileNetV4's hybrids: timm's mqa)."""

    num_heads: int = Field(8, ge=1, le=256, description="Query heads (timm's h).")
    key_dim: int = Field(64, ge=1, le=4096, description="Width of each head's query, the shared key and the shared "
                         "value (timm's d).")
    kv_stride: int = Field(2, ge=1, le=8, description="Keys and values from a map this much smaller: a strided "
                           "depthwise conv and norm before their projections (timm's v; MobileNetV4's 2; 1: none).")
    kernel_size: int = Field(3, ge=1, le=31, description="The kv downsampling's depthwise kernel (timm's k).")
    layer_scale: float | None = Field(None, gt=0, le=1, description="LayerScale2d's start; none: no layer scale.")


# --- primitives the blocks share ---------------------------------------------------------------------


def groups_of(group_size: int, channels: int) -> int:
    """timm's ``num_groups``: 0 one group, else ``channels // group_size`` (1: depthwise)."""
    if not group_size:
        return 1
    if channels % group_size:
        raise ValueError(f"group_size {group_size} does not divide {channels} channels")
    return channels // group_size


def conv(s: Scope, name: str, x: Value, out: int, kernel: Kernel, *, stride: int = 1, dilation: int = 1,
         groups: int = 1, same: bool = False, bias: bool = False) -> Value:
    """timm's ``create_conv2d``: symmetric or 'SAME' padding; a kernel list is MixedConv2d (channels split over
    the kernels, the first part taking the remainder, each part depthwise where the conv is)."""
    if isinstance(kernel, list) and len(kernel) > 1:
        c = x.shape[0]
        if groups not in (1, c):
            raise ValueError(f"a mixed-kernel conv is depthwise or one group, not {groups} groups")
        ins, outs = _split(c, len(kernel)), _split(out, len(kernel))
        inner, (y,) = s.enter(name, "MixedConv2d", x)
        parts, start = [], 0
        for i, (k, ci, co) in enumerate(zip(kernel, ins, outs)):
            part = inner.apply(Narrow(start, ci), y)
            parts.append(conv(inner, str(i), part, co, k, stride=stride, dilation=dilation,
                              groups=ci if groups == c else 1, same=same, bias=bias))
            start += ci
        return inner.exit(inner.apply(Concat(), *parts))
    k = kernel[0] if isinstance(kernel, list) else kernel
    pad = _padding(k, stride, dilation, same)
    if pad is None:
        return s.call(name, Conv2dSame(x.shape[0], out, k, stride, 0, dilation, groups, bias), x)
    return s.call(name, Conv2d(x.shape[0], out, k, stride, pad, dilation, groups, bias), x)


def _padding(kernel: int, stride: int, dilation: int, same: bool) -> int | None:
    """timm's ``get_padding_value``: the symmetric padding (``get_padding``), or None where 'SAME' must be computed
    from the input's size (not ``is_static_pad``)."""
    if same and not (stride == 1 and (dilation * (kernel - 1)) % 2 == 0):
        return None
    return ((stride - 1) + dilation * (kernel - 1)) // 2


def cond_conv(s: Scope, name: str, x: Value, routing: Value, out: int, kernel: Kernel, *, stride: int = 1,
              dilation: int = 1, groups: int = 1, same: bool = False) -> Value:
    """timm's ``CondConv2d`` (padding as ``conv``'s), mixing its experts by ``routing``."""
    if isinstance(kernel, list):
        if len(kernel) > 1:
            raise ValueError("CondConv takes one kernel size, not mixed kernels (timm's)")
        kernel = kernel[0]
    pad = _padding(kernel, stride, dilation, same)
    op = CondConv2d(x.shape[0], out, kernel, stride, pad or 0, dilation, groups, False, routing.shape[0], pad is None)
    return s.call(name, op, x, routing)


def _split(channels: int, parts: int) -> list[int]:
    """timm's ``_split_channels``: equal parts, the first taking the remainder."""
    split = [channels // parts] * parts
    split[0] += channels - sum(split)
    if min(split) < 1:
        raise ValueError(f"{channels} channels cannot split over {parts} kernels")
    return split


def anti_alias(b: BlockPlan, s: Scope, x: Value, name: str = "aa") -> Value:
    """timm's ``create_aa`` where the block strides: a blur (reflect or constant padded) or average pool."""
    aa = b.params.aa
    if aa is None or b.stride == 1:
        s.empty(name)
        return x
    return s.call(name, L.aa_op(aa, x.shape[0], b.stride), x)


def squeeze(b: BlockPlan, s: Scope, x: Value, ratio_base: float = 1.0) -> Value:
    """The block's SE as child ``se`` on the expanded map ``x`` (timm's builder: a ratio of the input width is
    ``ratio / exp_ratio`` of the expanded one, ``ratio_base`` the exp_ratio)."""
    se = b.params.se
    if se is None:
        s.empty("se")
        return x
    ratio = se.ratio if se.from_exp else se.ratio / ratio_base
    if getattr(b.params, "s2d", 0) == 1:  # timm's builder: the SE sits on four times the input's channels
        ratio /= 4
    if se.kind == "gc":  # timm's GlobalContext(channels, rd_ratio=..., act_layer=the block's)
        return GlobalContextParams.model_validate({"type": "gc", "rd_ratio": ratio, "act": "spec"}).emit(s, "se", x)
    mid = x.shape[0] * ratio
    hidden = make_divisible(mid, se.divisor, round_limit=se.round_limit) if se.divisor else round(mid)
    hidden = se.channels or hidden
    if hidden < 1:
        raise ValueError(f"se ratio {se.ratio} of {x.shape[0]} channels leaves no hidden channels")
    act = L.ReLU() if se.act == "relu" else s.act_layer
    return squeeze_excite(s, "se", x, hidden, act=act, bn=None, type_name="SqueezeExcite", gate=se.gate,
                          names={"reduce": "conv_reduce", "act": "act1", "expand": "conv_expand"})


def space_to_depth(b: BlockPlan, s: Scope, x: Value, same: bool) -> tuple[Value, Kernel, bool]:
    """timm's ``conv_s2d`` and ``bn_s2d`` where the block opens a space-to-depth run: the map, the depthwise kernel
    and whether it pads 'SAME' after it."""
    p = b.params
    if p.s2d != 1:
        s.empty("conv_s2d")
        s.empty("bn_s2d")
        return x, p.kernel_size, same
    if isinstance(p.kernel_size, list) or b.stride > 1:
        raise ValueError("space-to-depth takes one depthwise kernel and stride 1 (it downsamples itself)")
    y = norm_act(s, "bn_s2d", conv(s, "conv_s2d", x, 4 * x.shape[0], 2, stride=2, same=True))
    kernel = (p.kernel_size + 1) // 2
    return y, kernel, True if kernel == 2 else same


def skip(b: BlockPlan, s: Scope, y: Value, x: Value) -> Value:
    """timm's ``has_skip``: stochastic depth and the input added back where the plan gives an identity."""
    if b.shortcut is not Shortcut.IDENTITY:  # (timm builds a DropPath here too, unused: no weights)
        s.empty("drop_path")
        return y
    return s.add(drop_path(b, s, y), x)


def begin(b: BlockPlan, s: Scope) -> tuple[Any, bool]:
    """The block's params, with the block's own activation in the scope (timm's per-block act_layer)."""
    p = b.params
    if p.repeat != 1:  # an efficientnet stage's groups: count it (each block it plans has repeat 1)
        raise ValueError("repeat counts the blocks of a group (an efficientnet stage's groups:); here the stage's "
                         "depth counts them")
    if p.channels is not None and p.channels != b.planes:
        raise ValueError(f"channels {p.channels} is not the {b.planes} this stage gives the block (its planes; an "
                         "efficientnet stage's groups: give each their own)")
    if p.act is not None:
        s.act_layer = ACTS[p.act]
    return p, p.padding == "same"


# --- the blocks --------------------------------------------------------------------------------------

_SKIPS = ("identity", "none")


@block("ds", DepthwiseSeparableParams, cls_name="DepthwiseSeparableConv", shortcuts=_SKIPS, attn_positions=(),
       stage="efficientnet", out_channels=_s2d_channels)
def depthwise_separable(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Depthwise kxk, [SE], pointwise 1x1 (MobileNetV1, EfficientNet's first block)."""
    p, same = begin(b, s)
    y, kernel, dw_same = space_to_depth(b, s, x, same)
    c = y.shape[0]
    aa = p.aa is not None and b.stride > 1 and not p.s2d
    y = conv(s, "conv_dw", y, c, kernel, stride=1 if aa else b.stride, dilation=b.dilation,
             groups=groups_of(p.group_size, c), same=dw_same)
    y = squeeze(b, s, anti_alias(b, s, norm_act(s, "bn1", y)))
    y = norm_act(s, "bn2", conv(s, "conv_pw", y, b.out_channels, p.pw_kernel_size, same=same), p.pw_act)
    return skip(b, s, y, x)


@block("ir", InvertedResidualParams, cls_name="InvertedResidual", shortcuts=_SKIPS, attn_positions=(),
       stage="efficientnet", out_channels=_s2d_channels)
def inverted_residual(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Pointwise expansion, depthwise kxk, [SE], linear pointwise projection (MobileNetV2's MBConv)."""
    p, same = begin(b, s)
    inner, kernel, dw_same = space_to_depth(b, s, x, same)
    mid = p.mid_channels or make_divisible(inner.shape[0] * p.exp_ratio, 8, round_limit=0.9)  # (timm's default)
    convs = conv
    if p.num_experts:  # CondConv: the routing weights from the pooled input, routing_fn registered last (timm's)
        if p.s2d:
            raise ValueError("CondConv blocks take no space-to-depth (timm's)")
        routing = s.call("routing_fn", Linear(x.shape[0], p.num_experts), s.apply(PoolFlat(), x))
        routing = s.apply(Sigmoid(), routing)
        s.register_last("routing_fn")
        convs = lambda s_, n, v, *a, **k: cond_conv(s_, n, v, routing, *a, **k)  # noqa: E731
    y = norm_act(s, "bn1", convs(s, "conv_pw", inner, mid, p.exp_kernel_size, same=same))
    aa = p.aa is not None and b.stride > 1 and not p.s2d
    y = convs(s, "conv_dw", y, mid, kernel, stride=1 if aa else b.stride, dilation=b.dilation,
              groups=groups_of(p.group_size, mid), same=dw_same)
    y = squeeze(b, s, anti_alias(b, s, norm_act(s, "bn2", y)), p.exp_ratio)
    y = norm_act(s, "bn3", convs(s, "conv_pwl", y, b.out_channels, p.pw_kernel_size, same=same), False)
    return skip(b, s, y, x)


@block("er", EdgeResidualParams, cls_name="EdgeResidual", shortcuts=_SKIPS, attn_positions=(), stage="efficientnet")
def edge_residual(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Full kxk expansion, [SE], linear pointwise projection (FusedMBConv: EfficientNetV2, EdgeTPU)."""
    p, same = begin(b, s)
    mid = make_divisible((p.force_in_channels or x.shape[0]) * p.exp_ratio, 8, round_limit=0.9)
    aa = p.aa is not None and b.stride > 1
    y = conv(s, "conv_exp", x, mid, p.kernel_size, stride=1 if aa else b.stride, dilation=b.dilation,
             groups=groups_of(p.group_size, mid), same=same)
    y = squeeze(b, s, anti_alias(b, s, norm_act(s, "bn1", y)), p.exp_ratio)
    y = norm_act(s, "bn2", conv(s, "conv_pwl", y, b.out_channels, p.pw_kernel_size, same=same), False)
    return skip(b, s, y, x)


@block("cn", ConvBnActParams, cls_name="ConvBnAct", shortcuts=("none", "identity"), attn_positions=(),
       stage="efficientnet")
def conv_bn_act(b: BlockPlan, s: Scope, x: Value) -> Value:
    """A conv, the norm with the activation (timm's ConvBnAct; MobileNetV3's last 1x1, MobileNetV4's convs)."""
    p, same = begin(b, s)
    if p.se is not None:
        raise ValueError("cn blocks have no SE")
    aa = p.aa is not None and b.stride > 1
    y = conv(s, "conv", x, b.out_channels, p.kernel_size, stride=1 if aa else b.stride, dilation=b.dilation,
             groups=groups_of(p.group_size, x.shape[0]), same=same)
    return skip(b, s, anti_alias(b, s, norm_act(s, "bn1", y)), x)


@block("uir", UniversalInvertedResidualParams, cls_name="UniversalInvertedResidual", shortcuts=_SKIPS,
       attn_positions=(), stage="efficientnet")
def universal_inverted_residual(b: BlockPlan, s: Scope, x: Value) -> Value:
    """[Depthwise], pointwise expansion, [depthwise], [SE], projection, [depthwise], [layer scale] (MobileNetV4)."""
    p, same = begin(b, s)
    if same:
        raise ValueError("uir blocks take timm's symmetric padding")
    start, mid_k, end = p.start_kernel_size, p.kernel_size, p.end_kernel_size
    if b.stride > 1 and not (start or mid_k or end):
        raise ValueError("a strided uir block needs a depthwise conv (start, mid or end kernel)")
    c_in, out = x.shape[0], b.out_channels
    aa, y = p.aa, x
    if start:
        y = L.conv_norm_act(s, "dw_start", y, c_in, start, stride=1 if mid_k else b.stride, dilation=b.dilation,
                            groups=groups_of(p.group_size, c_in), apply_act=False, aa=aa)
    else:
        s.empty("dw_start")
    mid = make_divisible(c_in * p.exp_ratio, 8, round_limit=0.9)
    y = L.conv_norm_act(s, "pw_exp", y, mid, 1)
    if mid_k:
        y = L.conv_norm_act(s, "dw_mid", y, mid, mid_k, stride=b.stride, dilation=b.dilation,
                            groups=groups_of(p.group_size, mid), aa=aa)
    else:
        s.empty("dw_mid")
    y = L.conv_norm_act(s, "pw_proj", squeeze(b, s, y, p.exp_ratio), out, 1, apply_act=False)
    if end:
        y = L.conv_norm_act(s, "dw_end", y, out, end, stride=1 if start or mid_k else b.stride, dilation=b.dilation,
                            groups=groups_of(p.group_size, out), apply_act=False)
    else:
        s.empty("dw_end")
    if p.layer_scale is not None:
        y = s.call("layer_scale", LayerScale(out, p.layer_scale), y)
    else:
        s.empty("layer_scale")
    return skip(b, s, y, x)


@block("mqa", MobileAttentionParams, cls_name="MobileAttention", shortcuts=_SKIPS, attn_positions=(),
       stage="efficientnet", stride=False)
def mobile_attention(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Norm, multi-query attention (heads share one key and value, from a map kv_stride smaller), [layer scale]
    (MobileNetV4's hybrids)."""
    p, same = begin(b, s)
    if same or p.se is not None or p.aa is not None:
        raise ValueError("mqa blocks take symmetric padding, no SE and no aa")
    y = norm_act(s, "norm", x, False)
    attn, (y,) = s.enter("attn", "MultiQueryAttention2d", y)
    q = attn.apply(HeadsQuery(p.num_heads, p.key_dim), _projected(attn, "query", y, p.num_heads * p.key_dim, None))
    k = attn.apply(SharedKV(), _projected(attn, "key", y, p.key_dim, p, b.dilation))
    v = attn.apply(SharedKV(), _projected(attn, "value", y, p.key_dim, p, b.dilation))
    o = attn.apply(HeadsOut(), attn.apply(Attention(), q, k, v), y)
    out, (o,) = attn.enter("output", "Sequential", o, sequential=True)
    o = out.call("drop", Passthrough("dropout", 0.0), out.conv("proj", o, b.out_channels, 1))
    y = attn.exit(out.exit(o))
    if p.layer_scale is not None:
        y = s.call("layer_scale", LayerScale(b.out_channels, p.layer_scale), y)
    else:
        s.empty("layer_scale")
    return skip(b, s, y, x)


def _projected(s: Scope, name: str, x: Value, out: int, p: Any, dilation: int = 1) -> Value:
    """timm's query / key / value Sequential: [a strided depthwise conv and the spec's norm,] a 1x1 projection."""
    inner, (y,) = s.enter(name, "Sequential", x, sequential=True)
    if p is not None and p.kv_stride > 1:
        c = x.shape[0]
        y = conv(inner, "down_conv", y, c, p.kernel_size, stride=p.kv_stride, dilation=dilation, groups=c)
        y = inner.norm("norm", y)
    return inner.exit(inner.conv("proj", y, out, 1))
