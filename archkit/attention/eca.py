"""Efficient channel attention (Wang et al., CVPR 2020), as timm's ``EcaModule``."""

from __future__ import annotations

import math

from pydantic import Field

from ..complexity import Cost
from ..graph import Custom, Scope, Value
from ..params import AttentionParams


class Eca(AttentionParams):
    """Efficient channel attention: a k-wide 1-D conv over pooled channels (ECA-Net)."""

    kernel_size: int | None = Field(None, ge=1, le=63, description="Odd kernel size; default adapts to the "
                                                                   "channels: |log2(C) + beta| / gamma, made odd.")
    gamma: float = Field(2.0, gt=0, le=64, description="Divisor in the adaptive kernel size.")
    beta: float = Field(1.0, ge=-64, le=64, description="Offset in the adaptive kernel size.")

    def kernel(self, channels: int) -> int:
        """The kernel size for ``channels`` (ECA-Net's rule, as timm computes it)."""
        if self.kernel_size is not None:
            if self.kernel_size % 2 == 0:
                raise ValueError(f"eca kernel_size must be odd, got {self.kernel_size}")
            return self.kernel_size
        t = int(abs(math.log(channels, 2) + self.beta) / self.gamma)
        return max(t if t % 2 else t + 1, 3)

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        c, h, w = x.shape
        k = self.kernel(c)
        cost = Cost(k, k * c, 3 * c + c * h * w)  # mean, conv, gate; the product
        return s.call(name, Custom("EcaModule", "archkit.nn.attention:EcaModule", (("kernel_size", k),), x.shape,
                                   cost, k), x)
