"""Efficient channel attention (Wang et al., CVPR 2020), as timm's ``EcaModule``."""

from __future__ import annotations

import math

from pydantic import Field
from torch import Tensor, nn

from ..complexity import Cost
from . import AttentionParams


class EcaModule(nn.Module):
    """Global average -> 1-D conv across channels -> sigmoid gate."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x.mean((2, 3)).view(x.shape[0], 1, -1))
        return x * self.gate(y).view(x.shape[0], -1, 1, 1)


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

    def build(self, channels: int) -> nn.Module:
        return EcaModule(self.kernel(channels))

    def cost(self, channels: int, hw: tuple[int, int]) -> Cost:
        k = self.kernel(channels)
        return Cost(k, k * channels, 3 * channels + channels * hw[0] * hw[1])  # mean, conv, gate; the product
