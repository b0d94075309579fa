"""RegNet's X and Y blocks (Radosavovic et al. 2020, "Designing Network Design Spaces"), as torchvision's
``ResBottleneckBlock``: 1x1, grouped 3x3 with the stride (fixed group width), [SE], 1x1, add, ReLU.

Unlike the ResNet bottleneck, the output width is ``planes`` (expansion 1), the inner width is
``planes * bottleneck_multiplier``, and RegNet-Y's squeeze-and-excitation is sized from the block's
*input* width (``se_ratio * in_channels``), as the paper and torchvision define it.
"""

from __future__ import annotations

from pydantic import Field

from ..attention.se import SqueezeExcite
from ..graph import Scope, Value
from .base import BlockParams, BlockPlan, attend, block, residual


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
