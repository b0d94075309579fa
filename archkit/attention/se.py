"""Squeeze-and-excitation (Hu et al., CVPR 2018), as timm's ``SEModule``."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from ..complexity import Cost
from . import _Reduced


class SEModule(nn.Module):
    """Global average -> 1x1 conv reduce -> ReLU -> 1x1 conv expand -> sigmoid gate (timm's keys)."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.bn = nn.Identity()  # timm's slot for an optional norm
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.fc2(self.act(self.bn(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * self.gate(scale)


class SqueezeExcite(_Reduced):
    """Squeeze-and-excitation channel gate (SE-ResNet)."""

    rd_ratio: float = Field(1 / 16, gt=0, le=1, description="Hidden width relative to the channels (1/r).")

    def build(self, channels: int) -> nn.Module:
        return SEModule(channels, self.reduced(channels))

    def cost(self, channels: int, hw: tuple[int, int]) -> Cost:
        r = self.reduced(channels)
        squeeze = channels + r + channels + channels  # mean, fc1 (act in place), fc2, gate
        return Cost(2 * channels * r + r + channels, 2 * channels * r, squeeze + channels * hw[0] * hw[1])
