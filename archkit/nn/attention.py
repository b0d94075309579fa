"""The torch modules of the attention types that are modules rather than descriptions (timm's keys)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import LayerNorm2d


class EcaModule(nn.Module):
    """Global average -> 1-D conv across channels -> sigmoid gate."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x.mean((2, 3)).view(x.shape[0], 1, -1))
        return x * self.gate(y).view(x.shape[0], -1, 1, 1)


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


class ConvMlp(nn.Module):
    """1x1 conv -> LayerNorm -> ReLU -> 1x1 conv, timm's ``ConvMlp`` keys."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.norm = LayerNorm2d(hidden, eps=1e-6)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.0)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.drop(self.act(self.norm(self.fc1(x)))))


class GlobalContext(nn.Module):
    """Attention-pooled context, then a scaling gate and/or an additive transform."""

    def __init__(self, channels: int, hidden: int, use_attn: bool, fuse_add: bool, fuse_scale: bool):
        super().__init__()
        self.conv_attn = nn.Conv2d(channels, 1, 1) if use_attn else None
        self.mlp_add = ConvMlp(channels, hidden) if fuse_add else None
        self.mlp_scale = ConvMlp(channels, hidden) if fuse_scale else None
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if self.conv_attn is not None:
            attn = F.softmax(self.conv_attn(x).reshape(b, 1, h * w), dim=-1).unsqueeze(3)
            context = (x.reshape(b, c, h * w).unsqueeze(1) @ attn).view(b, c, 1, 1)
        else:
            context = x.mean(dim=(2, 3), keepdim=True)
        if self.mlp_scale is not None:
            x = x * self.gate(self.mlp_scale(context))
        if self.mlp_add is not None:
            x = x + self.mlp_add(context)
        return x

