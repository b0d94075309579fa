"""Squeeze-and-excitation (Hu et al., CVPR 2018), as timm's ``SEModule``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..graph import Activation, MeanHW, Passthrough, Scope, Value
from .base import _Reduced


def squeeze_excite(s: Scope, name: str, x: Value, reduced: int, *, act: Any = None, bn: str | None = "identity",
                   type_name: str = "SEModule") -> Value:
    """Global average -> 1x1 conv reduce (``fc1``) -> [``bn``] -> activation -> 1x1 conv expand (``fc2``)
    -> sigmoid ``gate`` -> scale ``x``, as child ``name`` (timm's keys; torchvision's RegNet SE shares them).

    ``act`` is an activation layer (default: an in-place ReLU, timm's); ``bn`` is timm's norm slot: an
    Identity (``"identity"``, timm's default), the spec's norm (``"norm"``) or no child at all (None).
    """
    inner, (y,) = s.enter(name, type_name, x)
    c = x.shape[0]
    squeezed = inner.conv("fc1", inner.apply(MeanHW(), y), reduced, 1, bias=True)
    if bn == "norm":
        squeezed = inner.norm("bn", squeezed)
    elif bn == "identity":
        squeezed = inner.call("bn", Passthrough("identity"), squeezed)
    squeezed = act.emit(inner, "act", squeezed) if act is not None else inner.call("act", _RELU, squeezed)
    gate = inner.call("gate", _SIGMOID, inner.conv("fc2", squeezed, c, 1, bias=True))
    return inner.exit(inner.mul(y, gate))


_RELU = Activation("relu", inplace=True)
_SIGMOID = Activation("sigmoid")


class SqueezeExcite(_Reduced):
    """Squeeze-and-excitation channel gate (SE-ResNet)."""

    rd_ratio: float = Field(1 / 16, gt=0, le=1, description="Hidden width relative to the channels (1/r).")
    act: Literal["relu", "spec"] = Field("relu", description="The activation between its convs: ReLU (timm's "
                                         "SEModule default) or the spec's activation (timm's CSPNet and BYOB "
                                         "models pass theirs).")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return squeeze_excite(s, name, x, self.reduced(x.shape[0]), act=s.act_layer if self.act == "spec" else None)
