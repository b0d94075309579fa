"""SE-ResNet's squeeze-and-excitation bottleneck (Hu et al., CVPR 2018), as timm's ``seresnet``.

A description-form plugin: the block is written once, as data flow over archkit's primitives, and
archkit derives its module, shapes, parameters and MACs from it; no torch is imported here.
"""

from __future__ import annotations

from pydantic import Field

from archkit.attention.se import squeeze_excite
from archkit.blocks import BottleneckParams, attend, block, bottleneck_main, residual
from archkit.blocks.bottleneck import bottleneck

__version__ = "0.2.0"


def floor_divisible(value: float, divisor: int) -> int:
    """``value`` rounded down to a multiple of ``divisor`` (at least one divisor): this block's SE width."""
    return max(divisor, int(value) // divisor * divisor)


class SEParams(BottleneckParams):
    """Bottleneck width plus the SE reduction."""

    reduction: int = Field(16, ge=1, le=1024, description="Channel reduction inside the SE module (r).")
    divisor: int = Field(8, ge=1, le=256, description="Round the SE width to a multiple of this.")


@block("se_bottleneck", SEParams, cls_name="SEBottleneck", expansion=4, drop_block=True,
       attn_positions=("mid", "pre_add", "post_add"), out_channels=bottleneck.out_channels)
def se_bottleneck(b, s, x):
    """Bottleneck with squeeze-and-excitation (SE-ResNet)."""
    out = bottleneck_main(b, s, x)  # the bottleneck's 1x1-3x3-1x1, its DropBlock and anti-aliasing slots
    reduced = floor_divisible(out.shape[0] / b.params.reduction, b.params.divisor)
    # the residual is recalibrated before the add; the SE module uses the spec's activation
    out = squeeze_excite(s, "excite", out, reduced, act=b.act, bn=None)
    # residual: the spec's own attention (attn:), drop path, the shortcut, the add unless shortcut: none
    return attend(b, s, "post_add", s.act("relu", residual(b, s, out, x)), "attn_out")
