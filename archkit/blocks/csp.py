"""timm's CSPNet blocks (``timm/models/cspnet.py``), in its module names so its weights load: each conv a
``ConvNormAct`` (``conv``, then ``bn`` with the activation inside), the shortcut added after stochastic depth.

- ``csp_bottle``: 1x1, 3x3 (grouped), [attention], 1x1 without activation, add, activation (ResNet-like).
- ``csp_dark``: 1x1, [attention], 3x3, add (DarkNet-53's residual block).
- ``csp_edge``: 3x3, [attention], 1x1, add (EdgeResidual / Fused-MBConv-like).

The width of the inner convolutions is ``round(planes * bottle_ratio)``; a CSP stage gives each block
its own ``planes`` (the stage's width times its ``block_ratio``). In timm's stages these blocks never
stride (the stage's ``conv_down`` does); in a ``resnet`` stage the 3x3 takes the stride.
"""

from pydantic import Field

from ..graph import Scope, Value
from ..layers import conv_norm_act
from .base import BlockParams, BlockPlan, attend, block, drop_path, shortcut


class CspBlockParams(BlockParams):
    """The inner width and the groups of timm's CSPNet blocks."""

    bottle_ratio: float = Field(1.0, gt=0.0, le=16.0, description="Inner width relative to the block's planes "
                                "(rounded), timm's bottle_ratio.")
    groups: int = Field(1, ge=1, le=4096, description="Groups of the 3x3 convolution (and of the stage's conv_down).")


def _mid(b: BlockPlan) -> int:
    mid = int(round(b.planes * b.params.bottle_ratio))
    if mid < 1:
        raise ValueError(f"planes {b.planes} x bottle_ratio {b.params.bottle_ratio} gives a width of 0")
    return mid


def _add(b: BlockPlan, s: Scope, out: Value, x: Value) -> Value:
    """timm's ``x = self.drop_path(x) + shortcut`` (a new tensor: the branch may end in an activation)."""
    out = drop_path(b, s, out)
    sc = shortcut(b, s, x)
    return out if sc is None else s.add(out, sc)


@block("csp_bottle", CspBlockParams, cls_name="BottleneckBlock", attn_positions=("mid", "pre_add"))
def csp_bottle(b: BlockPlan, s: Scope, x: Value) -> Value:
    """1x1, 3x3, 1x1 and an activation after the add (timm's CSPNet BottleneckBlock)."""
    mid, groups = _mid(b), b.params.groups
    out = conv_norm_act(s, "conv1", x, mid, 1)
    out = conv_norm_act(s, "conv2", out, mid, 3, stride=b.stride, dilation=b.dilation, groups=groups)
    out = attend(b, s, "mid", out, "attn2")
    out = conv_norm_act(s, "conv3", out, b.out_channels, 1, apply_act=False, zero_init=True)
    out = attend(b, s, "pre_add", out, "attn3")  # timm's attn_last
    return s.act("act3", _add(b, s, out, x))


@block("csp_dark", CspBlockParams, cls_name="DarkBlock", attn_positions=("mid",))
def csp_dark(b: BlockPlan, s: Scope, x: Value) -> Value:
    """1x1 down, 3x3 back, the add (timm's DarkBlock)."""
    out = attend(b, s, "mid", conv_norm_act(s, "conv1", x, _mid(b), 1), "attn")
    out = conv_norm_act(s, "conv2", out, b.out_channels, 3, stride=b.stride, dilation=b.dilation,
                        groups=b.params.groups, zero_init=True)
    return _add(b, s, out, x)


@block("csp_edge", CspBlockParams, cls_name="EdgeBlock", attn_positions=("mid",))
def csp_edge(b: BlockPlan, s: Scope, x: Value) -> Value:
    """3x3 up, 1x1 back, the add (timm's EdgeBlock)."""
    out = conv_norm_act(s, "conv1", x, _mid(b), 3, stride=b.stride, dilation=b.dilation, groups=b.params.groups)
    out = conv_norm_act(s, "conv2", attend(b, s, "mid", out, "attn"), b.out_channels, 1, zero_init=True)
    return _add(b, s, out, x)
