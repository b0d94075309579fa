"""Res2Net's bottleneck (Gao et al. 2019, "Res2Net: A New Multi-scale Backbone Architecture"), as timm's
``res2net.py`` ``Bottle2neck``: the 1x1 conv's output split into ``scale`` groups of ``width`` channels; group
*i* (after the first) adds the previous group's output before its own 3x3 (``convs.i``, ``bns.i``), so the
receptive fields grow within one block; the last group passes through (average-pooled where the block strides
or changes width); the groups concatenated, then the 1x1 up, [attention ``se``], the shortcut, add, ReLU.
Res2NeXt is the same with grouped 3x3s (``cardinality``)."""

from __future__ import annotations

from pydantic import Field

from ..graph import Concat, Conv2d, Narrow, Pool2d, Scope, Value
from .base import BlockParams, BlockPlan, block, residual
from .bottleneck import grouped_width


class Res2NetParams(BlockParams):
    """The scale (groups of the split), width per group at planes 64, and the 3x3s' cardinality."""

    scale: int = Field(4, ge=1, le=64, description="Channel groups of the split (timm's scale; 1: a plain bottleneck "
                                                   "with one 3x3).")
    base_width: int = Field(26, ge=1, le=65536, description="Channels per group at planes=64 (timm's base_width: "
                                                            "width = floor(planes * base_width / 64) * cardinality).")
    cardinality: int = Field(1, ge=1, le=4096, description="Groups of each 3x3 conv (Res2NeXt: 8).")


def _norm_op(s: Scope, channels: int, size: tuple[int, int]) -> object:
    """The spec's norm for ``channels`` as an op (a ``bns`` list item)."""
    probe = Scope("probe", norm_layer=s.norm_layer, act_layer=s.act_layer)
    probe.norm("norm", probe.input((channels, *size)))
    return probe.child("norm")


@block("res2net", Res2NetParams, cls_name="Bottle2neck", expansion=4, attn_positions=("pre_add",))
def res2net(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Res2Net bottleneck: hierarchical 3x3s over channel groups (Res2Net, Res2NeXt)."""
    p = b.params
    width = grouped_width(b.planes, p.base_width, p.cardinality)
    first = b.stride > 1 or b.in_channels != b.out_channels  # timm's is_first: the block that has a downsample
    out = s.act("relu", s.norm("bn1", s.conv("conv1", x, width * p.scale, 1)))
    parts = [s.apply(Narrow(i * width, width), out) for i in range(p.scale)]
    outs: list[Value] = []
    sp = parts[0]
    for i in range(max(1, p.scale - 1)):
        sp = parts[i] if i == 0 or first else s.add(sp, parts[i])
        sp = s.call_item("convs", i, Conv2d(width, width, 3, b.stride, b.dilation, b.dilation, p.cardinality), sp)
        sp = s.act("relu", s.call_item("bns", i, _norm_op(s, width, sp.shape[1:]), sp))
        outs.append(sp)
    if p.scale > 1:
        outs.append(s.call("pool", Pool2d("avg", 3, b.stride, 1), parts[-1]) if first else parts[-1])
    out = s.apply(Concat(), *outs) if len(outs) > 1 else outs[0]
    out = s.norm("bn3", s.conv("conv3", out, b.out_channels, 1), zero_init=True)
    return s.act("relu", residual(b, s, out, x))
