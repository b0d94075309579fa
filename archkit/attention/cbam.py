"""Convolutional block attention (Woo et al., ECCV 2018), as timm's ``CbamModule``."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from ..complexity import Cost
from . import _Reduced


class ChannelAttn(nn.Module):
    """Shared MLP over average- and max-pooled channels, summed, sigmoid gate."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(reduced, channels, 1, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        x_avg = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        x_max = self.fc2(self.act(self.fc1(x.amax((2, 3), keepdim=True))))
        return x * self.gate(x_avg + x_max)


class ConvNorm(nn.Module):
    """Conv (no bias) then BatchNorm, with timm's ``ConvNormAct`` keys (``conv``, ``bn``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class SpatialAttn(nn.Module):
    """Conv over the channel-wise mean and max maps, sigmoid gate."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.conv = ConvNorm(2, 1, kernel_size)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        attn = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * self.gate(self.conv(attn))


class CbamModule(nn.Module):
    """Channel attention, then spatial attention."""

    def __init__(self, channels: int, reduced: int, spatial_kernel_size: int):
        super().__init__()
        self.channel = ChannelAttn(channels, reduced)
        self.spatial = SpatialAttn(spatial_kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial(self.channel(x))


class Cbam(_Reduced):
    """Channel then spatial attention (CBAM)."""

    rd_divisor: int = Field(1, ge=1, le=256, description="Round the hidden width to a multiple of this.")
    spatial_kernel_size: int = Field(7, ge=1, le=63, description="Kernel of the spatial attention's conv (odd).")

    def build(self, channels: int) -> nn.Module:
        if self.spatial_kernel_size % 2 == 0:
            raise ValueError(f"cbam spatial_kernel_size must be odd, got {self.spatial_kernel_size}")
        return CbamModule(channels, self.reduced(channels), self.spatial_kernel_size)

    def cost(self, channels: int, hw: tuple[int, int]) -> Cost:
        r, k, area = self.reduced(channels), self.spatial_kernel_size, hw[0] * hw[1]
        channel = Cost(2 * channels * r, 4 * channels * r, 2 * (channels + r + channels) + 2 * channels)
        spatial = Cost(2 * k * k + 2, 2 * k * k * area, 2 * area + 2 * area + area + area)  # mean/max, cat, conv, bn
        return channel + spatial + Cost(0, 0, 2 * channels * area + area)  # the two products, the gate
