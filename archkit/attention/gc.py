"""Global context block (Cao et al., GCNet 2019), as timm's ``GlobalContext``."""

from __future__ import annotations

from pydantic import Field

from ..complexity import Cost
from ..graph import Custom, Scope, Value
from .base import _Reduced


class GlobalContextParams(_Reduced):
    """Global context: attention pooling and a gating MLP (GCNet)."""

    rd_ratio: float = Field(1 / 8, gt=0, le=1, description="Hidden width relative to the channels.")
    rd_divisor: int = Field(1, ge=1, le=256, description="Round the hidden width to a multiple of this.")
    use_attn: bool = Field(True, description="Attention pooling (off: global average).")
    fuse_add: bool = Field(False, description="Add a transformed context (GCNet's fusion by addition).")
    fuse_scale: bool = Field(True, description="Scale by a gated context (fusion by multiplication).")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        if not (self.fuse_add or self.fuse_scale):
            raise ValueError("gc needs fuse_add or fuse_scale (or both)")
        c, hh, ww = x.shape
        h, area = self.reduced(c), hh * ww
        total = Cost(0, 0, c)  # the context vector
        if self.use_attn:  # 1x1 conv to one map, softmax, then the context as a matrix product
            total = total + Cost(c + 1, c * area + c * area, 2 * area)
        mlp = Cost(2 * c * h + h + c + 2 * h, 2 * c * h, 2 * h + h + c)
        if self.fuse_scale:  # the MLP, its gate, the product
            total = total + mlp + Cost(0, 0, c + c * area)
        if self.fuse_add:  # the MLP, the sum
            total = total + mlp + Cost(0, 0, c * area)
        kwargs = (("channels", c), ("hidden", h), ("use_attn", self.use_attn), ("fuse_add", self.fuse_add),
                  ("fuse_scale", self.fuse_scale))
        return s.call(name, Custom("GlobalContext", "archkit.nn.attention:GlobalContext", kwargs, x.shape, total,
                                   total.params), x)
