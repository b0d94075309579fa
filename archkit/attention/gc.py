"""Global context block (Cao et al., GCNet 2019), as timm's ``GlobalContext``."""

from typing import Literal

from pydantic import Field

from ..graph import Activation, Add, LayerNorm2d, MatMul, Passthrough, Reduce, Reshape, Scope, Softmax, Value
from .base import _Reduced


def _conv_mlp(s: Scope, name: str, x: Value, hidden: int, act: str = "relu") -> Value:
    """timm's ``ConvMlp``: 1x1 conv, LayerNorm over channels, the activation (ReLU, or ``spec``: the scope's, as a
    block passes its own), (dropout), 1x1 conv back."""
    inner, (y,) = s.enter(name, "ConvMlp", x)
    y = inner.call("norm", LayerNorm2d(hidden, 1e-6), inner.conv("fc1", y, hidden, 1, bias=True))
    y = inner.act("act", y) if act == "spec" else inner.call("act", Activation("relu"), y)
    y = inner.call("drop", Passthrough("dropout"), y)
    return inner.exit(inner.conv("fc2", y, x.shape[0], 1, bias=True))


class GlobalContextParams(_Reduced):
    """Global context: attention pooling and a gating MLP (GCNet)."""

    rd_ratio: float = Field(1 / 8, gt=0, le=1, description="Hidden width relative to the channels.")
    rd_divisor: int = Field(1, ge=1, le=256, description="Round the hidden width to a multiple of this.")
    use_attn: bool = Field(True, description="Attention pooling (off: global average).")
    fuse_add: bool = Field(False, description="Add a transformed context (GCNet's fusion by addition).")
    fuse_scale: bool = Field(True, description="Scale by a gated context (fusion by multiplication).")
    act: Literal["relu", "spec"] = Field("relu", description="The MLPs' activation: ReLU (timm's default) or the "
                                         "spec's (the block's, as timm's EfficientNet builder passes it).")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        """The context (attention-pooled by ``conv_attn`` and a softmax, else the mean), then ``mlp_add``
        (added) and ``mlp_scale`` (a sigmoid ``gate`` scaling ``x``)."""
        if not (self.fuse_add or self.fuse_scale):
            raise ValueError("gc needs fuse_add or fuse_scale (or both)")
        c = x.shape[0]
        hidden = self.reduced(c)
        inner, (y,) = s.enter(name, "GlobalContext", x)
        if self.use_attn:
            attn = inner.apply(Reshape((1, -1)), inner.conv("conv_attn", y, 1, 1, bias=True))
            attn = inner.apply(Reshape((1, -1, 1)), inner.apply(Softmax(), attn))
            context = inner.apply(MatMul(), inner.apply(Reshape((1, c, -1)), y), attn)
            context = inner.apply(Reshape((c, 1, 1)), context)
        else:
            context = inner.apply(Reduce("mean", (1, 2)), y)
        if self.fuse_add:
            add = _conv_mlp(inner, "mlp_add", context, hidden, self.act)
        if self.fuse_scale:
            scale = _conv_mlp(inner, "mlp_scale", context, hidden, self.act)
            y = inner.mul(y, inner.call("gate", Activation("sigmoid"), scale))
        else:
            inner.empty("mlp_scale")
        if self.fuse_add:
            y = inner.apply(Add(broadcast=True), y, add)
        else:
            inner.empty("mlp_add")
        return inner.exit(y)
