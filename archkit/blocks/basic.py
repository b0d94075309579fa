"""BasicBlock: two 3x3 convolutions, as torchvision's ResNet-18/34."""

from __future__ import annotations

from ..graph import Scope, Value
from .base import BlockPlan, ResNetParams, attend, block, drop_act_aa, residual


@block("basic", ResNetParams, cls_name="BasicBlock", expansion=1, drop_block=True,
       attn_positions=("mid", "pre_add", "post_add"))
def basic(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Two 3x3 convs, identity shortcut (ResNet-18/34)."""
    first = b.planes // b.params.reduce_first
    if first < 1:
        raise ValueError(f"planes {b.planes} // reduce_first {b.params.reduce_first} leaves no channels")
    # torchvision refuses dilation here; timm's BasicBlock dilates both convs: the first with the
    # dilation in force before the stage (the plan's), the second with the stage's own
    out = s.norm("bn1", s.conv("conv1", x, first, 3, stride=b.conv_stride, dilation=b.dilation))
    out = attend(b, s, "mid", drop_act_aa(b, s, out), "attn")
    out = s.norm("bn2", s.conv("conv2", out, b.planes, 3, dilation=b.stage_dilation), zero_init=True)
    return attend(b, s, "post_add", s.act("relu", residual(b, s, out, x)), "attn_out")
