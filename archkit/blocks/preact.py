"""Pre-activation blocks (He et al. 2016, "Identity Mappings in Deep Residual Networks"): norm and
activation come before each convolution, and nothing follows the add.

When a stage changes shape the shortcut reads the pre-activated input and has no norm of its own,
as in the authors' code, timm's ``PreActBottleneck`` and the WRN code.
"""

from __future__ import annotations

from pydantic import Field

from ..graph import Passthrough, Scope, Value
from .base import BlockParams, BlockPlan, attend, block, residual
from .bottleneck import GroupedParams, bottleneck_width


class WideBasicParams(BlockParams):
    """Dropout between the two convolutions, as the WRN paper's "B(3,3) with dropout"."""

    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability between the 3x3 convolutions.")


@block("wide_basic", WideBasicParams, cls_name="WideBasic", expansion=1)
def wide_basic(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Pre-activation WRN block with dropout (WRN-d-k)."""
    # BN-ReLU-conv3x3-dropout-BN-ReLU-conv3x3; a bare 1x1 conv shortcut when the shape changes
    pre = s.act("relu1", s.norm("bn1", x))
    out = s.conv("conv1", pre, b.planes, 3, stride=b.stride, dilation=b.dilation)
    out = s.call("dropout", Passthrough("dropout", b.params.dropout), out)
    out = s.conv("conv2", s.act("relu2", s.norm("bn2", out)), b.planes, 3, dilation=b.dilation)
    # the shortcut module shares the pre-activation (as the authors' code does); the identity carries x
    return attend(b, s, "post_add", residual(b, s, out, x, shortcut_input=pre, norm=False), "attn_out")


@block("preact_bottleneck", GroupedParams, cls_name="PreActBottleneck", expansion=4,
       attn_positions=("mid", "pre_add", "post_add"))
def preact_bottleneck(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Pre-activation bottleneck, ResNet v2 (as timm resnetv2_50)."""
    # BN-ReLU-conv1x1, BN-ReLU-conv3x3 (stride here), BN-ReLU-conv1x1, then the add; the network's
    # head needs one last norm and activation
    width = bottleneck_width(b.planes, b.params)
    pre = s.act("relu", s.norm("bn1", x))
    out = s.conv("conv1", pre, width, 1)
    out = s.act("relu", s.norm("bn2", out))
    out = s.conv("conv2", out, width, 3, stride=b.stride, dilation=b.dilation, groups=b.params.groups)
    out = attend(b, s, "mid", s.act("relu", s.norm("bn3", out)), "attn")
    out = s.conv("conv3", out, b.out_channels, 1)
    return attend(b, s, "post_add", residual(b, s, out, x, shortcut_input=pre, norm=False), "attn_out")
