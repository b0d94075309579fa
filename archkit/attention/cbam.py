"""Convolutional block attention (Woo et al., ECCV 2018), as timm's ``CbamModule``."""

from __future__ import annotations

from pydantic import Field

from ..complexity import Cost
from ..graph import Custom, Scope, Value
from .base import _Reduced


class Cbam(_Reduced):
    """Channel then spatial attention (CBAM)."""

    rd_divisor: int = Field(1, ge=1, le=256, description="Round the hidden width to a multiple of this.")
    spatial_kernel_size: int = Field(7, ge=1, le=63, description="Kernel of the spatial attention's conv (odd).")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        if self.spatial_kernel_size % 2 == 0:
            raise ValueError(f"cbam spatial_kernel_size must be odd, got {self.spatial_kernel_size}")
        c, h, w = x.shape
        r, k, area = self.reduced(c), self.spatial_kernel_size, h * w
        channel = Cost(2 * c * r, 4 * c * r, 2 * (c + r + c) + 2 * c)
        spatial = Cost(2 * k * k + 2, 2 * k * k * area, 2 * area + 2 * area + area + area)  # mean/max, cat, conv, bn
        cost = channel + spatial + Cost(0, 0, 2 * c * area + area)  # the two products, the gate
        kwargs = (("channels", c), ("reduced", r), ("spatial_kernel_size", k))
        return s.call(name, Custom("CbamModule", "archkit.nn.attention:CbamModule", kwargs, x.shape, cost,
                                   cost.params), x)
