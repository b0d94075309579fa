"""DarkNet-53 residual block and its stage-opening strided conv (Redmon & Farhadi, YOLOv3)."""

from __future__ import annotations

from pydantic import Field

from ..graph import Scope, Value
from .base import BlockParams, BlockPlan, Shortcut, attend, block, drop_path


class DarkNetParams(BlockParams):
    """The bottleneck ratio of the 1x1 convolution (DarkNet-53 halves the width)."""

    bottle_ratio: float = Field(0.5, gt=0.0, le=8.0, description="Width of the 1x1 conv relative to the output.")


def conv_norm_act(s: Scope, name: str, x: Value, out: int, kernel_size: int, *, stride: int = 1,
                  dilation: int = 1, zero_init: bool = False) -> Value:
    """Conv (no bias) -> norm -> activation as one child ``name`` with children conv, bn, act."""
    inner, (y,) = s.enter(name, "ConvNormAct", x, sequential=True)
    y = inner.conv("conv", y, out, kernel_size, stride=stride, dilation=dilation)
    y = inner.act("act", inner.norm("bn", y))
    if zero_init:
        s.mark_zero_init(f"{name}.bn")
    return inner.exit(y)


@block("darknet", DarkNetParams, cls_name="DarkNetBlock", expansion=1, shortcuts=("stage_conv",),
       attn_positions=("mid", "pre_add", "post_add"))
def darknet(b: BlockPlan, s: Scope, x: Value) -> Value:
    """1x1 to half width, 3x3 back, identity add (Darknet-53)."""
    # Each conv is conv+norm+act; no activation after the add. A stage that changes stride or
    # channels opens with a strided 3x3 conv (shortcut kind stage_conv), run before the residual.
    if b.shortcut is Shortcut.STAGE_CONV:
        x = conv_norm_act(s, "downsample", x, b.out_channels, 3, stride=b.stride, dilation=b.dilation)
    else:
        s.empty("downsample")
    mid = int(round(b.planes * b.params.bottle_ratio))
    if mid < 1:
        raise ValueError(f"planes {b.planes} x bottle_ratio {b.params.bottle_ratio} gives a width of 0")
    out = attend(b, s, "mid", conv_norm_act(s, "conv1", x, mid, 1), "attn")
    out = conv_norm_act(s, "conv2", out, b.planes, 3, dilation=b.dilation, zero_init=True)
    out = drop_path(b, s, attend(b, s, "pre_add", out, "se"))
    # the branch ends in an activation, whose backward reads its output: not in place
    return attend(b, s, "post_add", s.add(out, x), "attn_out")
