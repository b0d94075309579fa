"""ResNeSt's bottleneck (Zhang et al. 2020, "ResNeSt: Split-Attention Networks"), as timm's ``resnest.py``
``ResNestBottleneck``: 1x1, then the 3x3 as timm's ``SplitAttn`` (``conv2``: a grouped conv making ``radix``
splits of each cardinal group, ``bn0``, ReLU; the splits summed and pooled into ``fc1``, ``bn1``, ReLU, ``fc2``;
a softmax over the splits within each cardinal group, a sigmoid for radix 1, weighs them), 1x1 up, the shortcut,
add, ReLU. ``avd``: where the block strides, the 3x3 runs at stride 1 and a 3x3 average pool downsamples before
it (``avd_first``) or after it (``avd_last``)."""

from __future__ import annotations

from pydantic import Field

from ..attention.base import make_divisible
from ..graph import (Activation, Add, Concat, Contiguous, Conv2d, MeanHW, Mul, Narrow, Pool2d, Reshape, Scope, Softmax,
                     Value)
from .base import BlockParams, BlockPlan, block, residual
from .bottleneck import grouped_width


class ResNeStParams(BlockParams):
    """Radix, cardinality, width and ResNeSt's average-pool downsampling."""

    radix: int = Field(2, ge=1, le=64, description="Splits of each cardinal group (1: a sigmoid gate).")
    cardinality: int = Field(1, ge=1, le=4096, description="Cardinal groups of the 3x3.")
    base_width: int = Field(64, ge=1, le=65536, description="Channels per cardinal group at planes=64 (width = "
                                                            "int(planes * base_width / 64) * cardinality).")
    avd: bool = Field(True, description="A strided block downsamples with a 3x3 average pool, its 3x3 at stride 1.")
    avd_first: bool = Field(False, description="The pool before the 3x3 (timm's avd_first), not after it.")
    rd_ratio: float = Field(0.25, gt=0, le=1, description="The attention's hidden width relative to the input "
                                                          "width x radix (at least 32, a multiple of 8).")


def split_attention(b: BlockPlan, s: Scope, name: str, x: Value, width: int, stride: int) -> Value:
    """timm's ``SplitAttn`` as child ``name``: ``width`` output channels from ``radix`` splits."""
    p = b.params
    r, card = p.radix, p.cardinality
    inner, (y,) = s.enter(name, "SplitAttn", x)
    d = b.dilation
    y = inner.call("conv", Conv2d(x.shape[0], width * r, 3, stride, d, d, card * r), y)
    y = inner.call("act0", Activation("relu", True), inner.norm("bn0", y))
    splits = [inner.apply(Narrow(i * width, width), y) for i in range(r)] if r > 1 else [y]
    gap = splits[0]
    for part in splits[1:]:
        gap = inner.apply(Add(), gap, part)
    hidden = make_divisible(x.shape[0] * r * p.rd_ratio, 8, min_value=32, round_limit=0.9)
    a = inner.call("fc1", Conv2d(width, hidden, 1, groups=card, bias=True), inner.apply(MeanHW(), gap))
    a = inner.call("act1", Activation("relu", True), inner.norm("bn1", a))
    a = inner.call("fc2", Conv2d(hidden, width * r, 1, groups=card, bias=True), a)
    if r == 1:
        out = inner.apply(Mul(), y, inner.call("rsoftmax", Activation("sigmoid", False), a))
    else:  # softmax over the radix within each cardinal group: (card, radix, k) as timm's RadixSoftmax views it
        k = width // card
        a = inner.apply(Reshape((card * r * k, 1, 1)), inner.apply(Softmax(1), inner.apply(Reshape((card, r, k)), a)))
        out = None
        for i, part in enumerate(splits):
            pieces = [inner.apply(Narrow((c * r + i) * k, k), a) for c in range(card)]
            gate = pieces[0] if card == 1 else inner.apply(Concat(), *pieces)
            term = inner.apply(Mul(), part, gate)
            out = term if out is None else inner.apply(Add(), out, term)
    return inner.exit(inner.apply(Contiguous(), out))


@block("resnest", ResNeStParams, cls_name="ResNestBottleneck", expansion=4, attn_positions=())
def resnest(b: BlockPlan, s: Scope, x: Value) -> Value:
    """ResNeSt bottleneck: split-attention 3x3 (ResNeSt)."""
    p = b.params
    width = grouped_width(b.planes, p.base_width, p.cardinality)
    avd = p.avd and b.stride > 1
    out = s.act("act1", s.norm("bn1", s.conv("conv1", x, width, 1)))
    pool = Pool2d("avg", 3, b.stride, 1)
    if avd and p.avd_first:
        out = s.call("avd_first", pool, out)
    out = split_attention(b, s, "conv2", out, width, 1 if avd else b.stride)
    if avd and not p.avd_first:
        out = s.call("avd_last", pool, out)
    out = s.norm("bn3", s.conv("conv3", out, b.out_channels, 1), zero_init=True)
    return s.act("act3", residual(b, s, out, x))
