"""Selective-kernel blocks (Li et al. 2019, "Selective Kernel Networks"), as timm's ``sknet.py``: the 3x3 of a
basic block (``sk_basic``) or bottleneck (``sk_bottleneck``) becomes timm's ``SelectiveKernel``: paths of
3x3 ``ConvNormAct``s with growing dilation (``paths.i``; timm's ``keep_3x3``: a 5x5 is a 3x3 dilated by 2), each
on its share of the input channels (``split_input``) or all of them, summed and pooled into an attention
(``attn``: ``fc_reduce``, ``bn``, ReLU, ``fc_select``) whose softmax over the paths weighs them."""

from __future__ import annotations

from pydantic import Field

from ..attention.base import make_divisible
from ..graph import Activation, Add, BatchNorm, Conv2d, MeanHW, Mul, Narrow, Reshape, Scope, Softmax, Value
from ..layers import conv_norm_act
from .base import BlockParams, BlockPlan, block, residual
from .bottleneck import grouped_width


class SelectiveKernelParams(BlockParams):
    """timm's ``sk_kwargs`` and the bottleneck's grouped width."""

    kernel_sizes: list[int] = Field(default_factory=lambda: [3, 5], min_length=1, max_length=8, description=(
        "One path per kernel (odd, >= 3), each a 3x3 dilated to that kernel's reach (timm's keep_3x3)."))
    rd_ratio: float = Field(1 / 16, gt=0, le=1, description="The attention's hidden width relative to the channels.")
    rd_divisor: int = Field(8, ge=1, le=1024, description="The hidden width is a multiple of it (timm's make_divisible).")
    split_input: bool = Field(True, description="Each path convolves its share of the input channels (timm's "
                                                "split_input), not all of them.")


class SelectiveKernelBottleneckParams(SelectiveKernelParams):
    """The bottleneck's width rule (ResNeXt's: floor(planes * base_width / 64) * cardinality)."""

    cardinality: int = Field(1, ge=1, le=4096, description="Groups of each path's conv (SKResNeXt: 32).")
    base_width: int = Field(64, ge=1, le=65536, description="Channels per group at planes=64.")


def selective_kernel(b: BlockPlan, s: Scope, name: str, x: Value, out: int, *, groups: int = 1) -> Value:
    """timm's ``SelectiveKernel`` as child ``name``, strided as the block is."""
    p = b.params
    if any(k < 3 or k % 2 == 0 for k in p.kernel_sizes):
        raise ValueError(f"kernel_sizes must be odd and at least 3 (got {p.kernel_sizes})")
    paths = len(p.kernel_sizes)
    c_in = x.shape[0]
    if p.split_input and c_in % paths:
        raise ValueError(f"{paths} paths cannot split {c_in} input channels evenly (split_input)")
    share = c_in // paths if p.split_input else c_in
    inner, (y,) = s.enter(name, "SelectiveKernel", x)
    outs = []
    for i, k in enumerate(p.kernel_sizes):
        part = inner.apply(Narrow(i * share, share), y) if p.split_input else y
        unit = Scope("_", norm_layer=inner.norm_layer, act_layer=inner.act_layer)  # a list item: the op alone
        conv_norm_act(unit, "m", unit.input(part.shape), out, 3, stride=b.stride, dilation=b.dilation * (k - 1) // 2,
                      groups=min(out, groups))
        outs.append(inner.call_item("paths", i, unit.child("m"), part))
    total = outs[0]
    for o in outs[1:]:
        total = inner.apply(Add(), total, o)
    hidden = make_divisible(out * p.rd_ratio, p.rd_divisor, round_limit=0.9)
    attn, (a,) = inner.enter("attn", "SelectiveKernelAttn", inner.apply(MeanHW(), total))
    a = attn.call("fc_reduce", Conv2d(out, hidden, 1), a)
    a = attn.call("act", Activation("relu", True), attn.call("bn", BatchNorm(hidden), a))
    a = attn.call("fc_select", Conv2d(hidden, out * paths, 1), a)
    a = attn.apply(Reshape((paths, out, 1, 1)), a)
    a = attn.exit(attn.apply(Reshape((paths * out, 1, 1)), attn.apply(Softmax(0), a)))
    mixed = [inner.apply(Mul(), o, inner.apply(Narrow(i * out, out), a)) for i, o in enumerate(outs)]
    result = mixed[0]
    for m in mixed[1:]:
        result = inner.apply(Add(), result, m)
    return inner.exit(result)


@block("sk_basic", SelectiveKernelParams, cls_name="SelectiveKernelBasic", expansion=1, attn_positions=("pre_add",))
def sk_basic(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Basic block whose first 3x3 is a selective kernel (timm's SKResNet-18/34)."""
    out = selective_kernel(b, s, "conv1", x, b.planes)
    out = conv_norm_act(s, "conv2", out, b.out_channels, 3, dilation=b.stage_dilation, apply_act=False,
                        zero_init=True)
    return s.act("act", residual(b, s, out, x))


@block("sk_bottleneck", SelectiveKernelBottleneckParams, cls_name="SelectiveKernelBottleneck", expansion=4,
       attn_positions=("pre_add",))
def sk_bottleneck(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Bottleneck whose 3x3 is a selective kernel (timm's SKResNet-50, SKResNeXt-50)."""
    p = b.params
    width = grouped_width(b.planes, p.base_width, p.cardinality)
    out = conv_norm_act(s, "conv1", x, width, 1)
    out = selective_kernel(b, s, "conv2", out, width, groups=p.cardinality)
    out = conv_norm_act(s, "conv3", out, b.out_channels, 1, apply_act=False, zero_init=True)
    return s.act("act", residual(b, s, out, x))
