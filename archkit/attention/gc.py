"""Global context block (Cao et al., GCNet 2019), as timm's ``GlobalContext``."""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ..complexity import Cost
from . import _Reduced


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (timm's ``LayerNorm2d``)."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


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


class GlobalContextParams(_Reduced):
    """Global context: attention pooling and a gating MLP (GCNet)."""

    rd_ratio: float = Field(1 / 8, gt=0, le=1, description="Hidden width relative to the channels.")
    rd_divisor: int = Field(1, ge=1, le=256, description="Round the hidden width to a multiple of this.")
    use_attn: bool = Field(True, description="Attention pooling (off: global average).")
    fuse_add: bool = Field(False, description="Add a transformed context (GCNet's fusion by addition).")
    fuse_scale: bool = Field(True, description="Scale by a gated context (fusion by multiplication).")

    def build(self, channels: int) -> nn.Module:
        if not (self.fuse_add or self.fuse_scale):
            raise ValueError("gc needs fuse_add or fuse_scale (or both)")
        return GlobalContext(channels, self.reduced(channels), self.use_attn, self.fuse_add, self.fuse_scale)

    def cost(self, channels: int, hw: tuple[int, int]) -> Cost:
        h, area = self.reduced(channels), hw[0] * hw[1]
        total = Cost(0, 0, channels)  # the context vector
        if self.use_attn:  # 1x1 conv to one map, softmax, then the context as a matrix product
            total = total + Cost(channels + 1, channels * area + channels * area, 2 * area)
        mlp = Cost(2 * channels * h + h + channels + 2 * h, 2 * channels * h, 2 * h + h + channels)
        if self.fuse_scale:  # the MLP, its gate, the product
            total = total + mlp + Cost(0, 0, channels + channels * area)
        if self.fuse_add:  # the MLP, the sum
            total = total + mlp + Cost(0, 0, channels * area)
        return total
