"""Re-parameterizable blocks (timm's ``byobnet.py``), in timm's module names so its weights load.

- ``rep``: RepVGG (Ding et al., CVPR 2021): a kxk conv-norm, a 1x1 conv-norm and, where the block keeps
  its shape, a norm on the identity, summed; [attention]; activation (timm's ``RepVggBlock``).
- ``one``: MobileOne (Vasu et al., CVPR 2023): ``branches`` kxk conv-norms, a 1x1 "scale" conv-norm
  (for k > 1) and the identity norm, summed; [attention]; activation (timm's ``MobileOneBlock``). It
  cannot dilate: timm's MobileOneBlock drops the dilation it is given (its convs stay undilated), so an
  ``output_stride`` that needs it is refused rather than built as a different network.

In training form each branch is a ``ConvNormAct`` without activation (``conv``, ``bn``); in deploy form
(the spec's ``deploy: true``) the block is one convolution with bias, ``reparam_conv``, which
``archkit.reparameterize`` computes from the trained branches. The same units are stem layers
(``rep_stem``, ``one_stem``): timm's ``stem_type='rep'`` / ``'one'``.
"""

from __future__ import annotations

from typing import Callable, ClassVar

from pydantic import Field, SerializeAsAny, field_validator

from ..graph import Scope, Value
from ..layers import conv_norm_act, timm_padding
from ..params import AttentionSpec, LayerParams
from .base import BlockParams, BlockPlan, attend, block, drop_path

Attend = Callable[[Scope, Value], Value]


def rep_unit(s: Scope, x: Value, out: int, kernel_size: int, *, stride: int = 1, dilation: int = 1,
             identity_dilation: bool = True, groups: int = 1, branches: int | None = None,
             attention: Attend | None = None, drop: Callable[[Scope, Value], Value] | None = None,
             drop_block: tuple | None = None) -> Value:
    """A re-parameterizable unit recorded on ``s`` (the block's own scope): RepVGG's (``branches=None``:
    ``conv_kxk`` and ``conv_1x1``) or MobileOne's (``conv_kxk.0..branches-1`` and ``conv_scale``), in
    timm's child order and summation order; one ``reparam_conv`` where ``s.deploy``."""
    identity = x.shape[0] == out and stride == 1 and identity_dilation
    if s.deploy:
        pad = timm_padding(kernel_size, stride, dilation)
        y = s.conv("reparam_conv", x, out, kernel_size, stride=stride, dilation=dilation, groups=groups, bias=True,
                   padding=pad)
    else:
        if s.norm_layer is None or not s.norm_layer.foldable:
            raise ValueError(f"its branches' norms fold into one convolution (re-parameterization): the "
                             f"{s.norm_layer.type} norm cannot be folded (use batchnorm)")
        if identity:
            ident = s.norm_layer.emit_act(s, "identity", x, None)
        else:
            s.empty("identity")
        if branches is None:  # RepVGG: x = conv_1x1(x) + conv_kxk(x)
            kxk = conv_norm_act(s, "conv_kxk", x, out, kernel_size, stride=stride, dilation=dilation, groups=groups,
                                apply_act=False, drop=drop_block)  # DropBlock in its norm, as timm's RepVggBlock
            y = s.add(conv_norm_act(s, "conv_1x1", x, out, 1, stride=stride, groups=groups, apply_act=False), kxk)
        else:  # MobileOne: out = scale; out += each kxk branch
            unit = Scope("_", norm_layer=s.norm_layer, act_layer=s.act_layer)
            conv_norm_act(unit, "m", unit.input(x.shape), out, kernel_size, stride=stride, groups=groups,
                          apply_act=False)
            kxk = [s.call_item("conv_kxk", i, unit.child("m"), x) for i in range(branches)]
            y = None
            if kernel_size > 1:
                y = conv_norm_act(s, "conv_scale", x, out, 1, stride=stride, groups=groups, apply_act=False)
            else:
                s.empty("conv_scale")
            for v in kxk:
                y = v if y is None else s.add(y, v, inplace=True)
        if drop is not None and identity:
            y = drop(s, y)
        else:
            s.empty("drop_path")
        if identity:
            y = s.add(y, ident, inplace=True)
    y = attention(s, y) if attention is not None else y
    return s.act("act", y)


class RepParams(BlockParams):
    """RepVGG's block keys (timm's ``ByoBlockCfg``)."""

    groups: int = Field(1, ge=1, le=1 << 20, description="Groups of both convolutions (RepVGG-g4: 4 in every "
                        "other block).")
    kernel_size: int = Field(3, ge=1, le=15, description="Kernel of the kxk branch (odd).")

    _odd = field_validator("kernel_size")(classmethod(lambda cls, k: _odd_kernel(k)))


class OneParams(RepParams):
    """MobileOne's block keys."""

    branches: int = Field(1, ge=1, le=16, description="Over-parameterized kxk branches (timm's num_conv_branches).")
    depthwise: bool = Field(False, description="A depthwise block: groups = channels and the output keeps the "
                            "input's width (MobileOne's 3x3 blocks).")


def _groups(b: BlockPlan) -> int:
    return b.in_channels if getattr(b.params, "depthwise", False) else b.params.groups


def _odd_kernel(k: int) -> int:
    if k % 2 == 0:
        raise ValueError(f"must be odd (got {k}): the other branches are padded to the kxk kernel")
    return k


def _block_unit(b: BlockPlan, s: Scope, x: Value, branches: int | None) -> Value:
    return rep_unit(s, x, b.out_channels, b.params.kernel_size, stride=b.stride, dilation=b.dilation,
                    identity_dilation=b.dilation == b.stage_dilation, groups=_groups(b), branches=branches,
                    drop_block=b.drop_block if branches is None else None,
                    attention=lambda sc, v: attend(b, sc, "post_add", v, "attn"),
                    drop=lambda sc, v: drop_path(b, sc, v))


@block("rep", RepParams, cls_name="RepVggBlock", shortcuts=("none",), attn_positions=("post_add",), drop_block=True,
       renamable=False)
def rep(b: BlockPlan, s: Scope, x: Value) -> Value:
    """RepVGG: kxk + 1x1 + identity-norm branches summed, then the activation (re-parameterizable)."""
    return _block_unit(b, s, x, None)


@block("one", OneParams, cls_name="MobileOneBlock", shortcuts=("none",), attn_positions=("post_add",),
       dilation=False, out_channels=lambda planes, params: planes, renamable=False)
def one(b: BlockPlan, s: Scope, x: Value) -> Value:
    """MobileOne: over-parameterized kxk branches + 1x1 scale + identity-norm, summed (re-parameterizable)."""
    if b.params.depthwise and b.out_channels != b.in_channels:
        raise ValueError(f"a depthwise block keeps its {b.in_channels} channels (the stage gives {b.out_channels})")
    return _block_unit(b, s, x, b.params.branches)


# --- stem layers ---------------------------------------------------------------------------------------


class RepStem(LayerParams):
    """timm's ``stem_type='rep'``: a RepVGG unit at stride 2 (in timm's layout, the stem module itself)."""

    whole: ClassVar[bool] = True  # the stem module itself as a timm-layout stem's only unnamed layer
    cls_name: ClassVar[str] = "RepVggBlock"
    channels: int = Field(ge=1, le=1 << 20, description="Output channels.")
    kernel_size: int = Field(3, ge=1, le=15, description="Kernel of the kxk branch (odd).")
    stride: int = Field(2, ge=1, le=64, description="Stride.")
    attn: list[SerializeAsAny[AttentionSpec]] = Field(default_factory=list, max_length=16, description=(
        "Attention after the branches' sum, before the activation (timm's byob models with an attn_layer "
        "put it in the stem too); position is ignored."))

    _odd = field_validator("kernel_size")(classmethod(lambda cls, k: _odd_kernel(k)))

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        inner, (y,) = s.enter(name, self.cls_name, x)
        y = rep_unit(inner, y, self.channels, self.kernel_size, stride=self.stride, branches=self._branches(),
                     attention=self._attention)
        return inner.exit(y)

    def _attention(self, s: Scope, x: Value) -> Value:
        if not self.attn:
            s.empty("attn")
            return x
        if len(self.attn) == 1:
            return self.attn[0].emit(s, "attn", x)
        seq, (z,) = s.enter("attn", "Sequential", x, sequential=True)
        for i, a in enumerate(self.attn):
            z = a.emit(seq, str(i), z)
        return seq.exit(z)

    def _branches(self) -> int | None:
        return None


class OneStem(RepStem):
    """timm's ``stem_type='one'``: a MobileOne unit at stride 2 (one kxk branch and the 1x1 scale, as timm's)."""

    cls_name: ClassVar[str] = "MobileOneBlock"

    def _branches(self) -> int | None:
        return 1


REP_LAYERS: dict[str, type[LayerParams]] = {"rep_stem": RepStem, "one_stem": OneStem}
