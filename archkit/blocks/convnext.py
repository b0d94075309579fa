"""ConvNeXt's block (Liu et al. 2022, "A ConvNet for the 2020s"; V2: Woo et al. 2023), as timm's
``convnext.py`` ``ConvNeXtBlock``: a depthwise k x k ``conv_dw`` (with bias), the norm, an MLP with the spec's
activation (``mlp.fc1``, ``mlp.fc2``; V2: ``mlp.grn``, global response normalization, after the activation),
the layer scale ``gamma`` (a parameter of the block itself, as timm names it; V2 has none) and the identity add.

The MLP is 1x1 convs on the NCHW map with the spec's norm (``conv_mlp``: timm's atto..nano models), or Linear
layers on the map made channels-last with a LayerNorm of the spec's layernorm2d eps (the larger models): the
same function, other parameter shapes, so each model follows timm's choice (its packaged specs say which)."""

from __future__ import annotations

from pydantic import Field

from ..graph import (Conv2d, GlobalResponseNorm, LayerNorm, LinearLast, OwnScale, Passthrough, Permute, Scope,
                     Value)
from .base import BlockParams, BlockPlan, block, drop_path


class ConvNeXtParams(BlockParams):
    """timm's ConvNeXtBlock keys."""

    kernel_size: int = Field(7, ge=1, le=31, description="The depthwise conv's kernel (odd).")
    mlp_ratio: float = Field(4.0, gt=0, le=64, description="The MLP's hidden width relative to the channels.")
    conv_mlp: bool = Field(True, description="The MLP as 1x1 convs on the NCHW map with the spec's norm (timm's "
                                             "conv_mlp; any norm); false: Linear layers on the channels-last map "
                                             "after timm's LayerNorm (a layernorm2d spec; timm's default form).")
    use_grn: bool = Field(False, description="Global response normalization after the MLP's activation "
                                             "(ConvNeXt V2).")
    ls_init_value: float | None = Field(1e-6, gt=0, le=1, description="The layer scale gamma's start (none: no "
                                                                      "layer scale, ConvNeXt V2).")

    def model_post_init(self, _: object) -> None:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (got {self.kernel_size})")


@block("convnext", ConvNeXtParams, cls_name="ConvNeXtBlock", expansion=1, shortcuts=("identity",),
       attn_positions=(), stage="convnext")
def convnext(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Depthwise k x k, norm, MLP, layer scale, identity add (ConvNeXt)."""
    p = b.params
    c = x.shape[0]
    if b.out_channels != c or b.stride != 1:
        raise ValueError(f"a convnext block keeps its {c} channels and resolution (the stage downsamples)")
    k, d = p.kernel_size, b.dilation
    out = s.call("conv_dw", Conv2d(c, c, k, 1, d * (k - 1) // 2, d, c, True), x)
    out = _conv_mlp(b, s, out) if p.conv_mlp else _linear_mlp(b, s, out)
    if p.ls_init_value is not None:
        out = s.apply(OwnScale("gamma", c, p.ls_init_value), out)
    shortcut = s.call("shortcut", Passthrough("identity"), x)
    return s.add(drop_path(b, s, out), shortcut)


def _conv_mlp(b: BlockPlan, s: Scope, x: Value) -> Value:
    """The spec's norm on the NCHW map, then timm's ConvMlp (1x1 convs with bias) or its GRN form."""
    c, hidden = x.shape[0], int(b.params.mlp_ratio * x.shape[0])
    mlp, (y,) = s.enter("mlp", "GlobalResponseNormMlp" if b.params.use_grn else "ConvMlp", s.norm("norm", x))
    y = mlp.act("act", mlp.call("fc1", Conv2d(c, hidden, 1, bias=True), y))
    if b.params.use_grn:
        y = mlp.call("grn", GlobalResponseNorm(hidden, channels_last=False), y)
    return mlp.exit(mlp.call("fc2", Conv2d(hidden, c, 1, bias=True), y))


def _linear_mlp(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Channels-last: timm's LayerNorm (the spec's layernorm2d eps), then Mlp (Linear layers) or its GRN form."""
    norm = s.norm_layer
    if getattr(norm, "type", None) != "layernorm2d":
        raise ValueError(f"the channels-last MLP (conv_mlp: false) takes timm's LayerNorm: the spec's norm must be "
                         f"layernorm2d, not {getattr(norm, 'type', norm)} (or keep conv_mlp: true)")
    c, hidden = x.shape[0], int(b.params.mlp_ratio * x.shape[0])
    y = s.call("norm", LayerNorm(c, norm.eps), s.apply(Permute((1, 2, 0)), x))
    mlp, (y,) = s.enter("mlp", "GlobalResponseNormMlp" if b.params.use_grn else "Mlp", y)
    y = mlp.act("act", mlp.call("fc1", LinearLast(c, hidden), y))
    if b.params.use_grn:
        y = mlp.call("grn", GlobalResponseNorm(hidden, channels_last=True), y)
    y = mlp.exit(mlp.call("fc2", LinearLast(hidden, c), y))
    return s.apply(Permute((2, 0, 1)), y)
