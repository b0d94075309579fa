"""Bilinear attentional transform (Zheng et al., "Learning Bilinear Attentional Transforms", CVPR 2020), as
timm's ``BatNonLocalAttn`` (same children, keys and arithmetic; ``bat_resnext26ts``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import BatchNormAct2d


class ConvNormAct(nn.Module):
    """A 1x1 conv, then a BatchNorm with ReLU inside (timm's ConvNormAct keys: conv, bn)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = BatchNormAct2d(out_channels, act=nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class BilinearAttnTransform(nn.Module):
    """Row and column attention matrices from max-pooled strips, applied as ``p @ x @ q`` per group."""

    fx_leaf = True  # its forward branches on the input size: torch.fx keeps it one call (archkit.fuse)

    def __init__(self, in_channels: int, block_size: int, groups: int):
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, groups)
        self.conv_p = nn.Conv2d(groups, block_size * block_size * groups, kernel_size=(block_size, 1))
        self.conv_q = nn.Conv2d(groups, block_size * block_size * groups, kernel_size=(1, block_size))
        self.conv2 = ConvNormAct(in_channels, in_channels)
        self.block_size, self.groups, self.in_channels = block_size, groups, in_channels

    @staticmethod
    def resize_mat(x: Tensor, t: int) -> Tensor:
        b, c, block_size, _ = x.shape
        if t <= 1:
            return x
        x = x.view(b * c, -1, 1, 1)
        x = x * torch.eye(t, t, dtype=x.dtype, device=x.device)
        x = x.view(b * c, block_size, block_size, t, t)
        x = torch.cat(torch.split(x, 1, dim=1), dim=3)
        x = torch.cat(torch.split(x, 1, dim=2), dim=4)
        return x.view(b, c, block_size * t, block_size * t)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        bs, g = self.block_size, self.groups
        if h % bs != 0 or w % bs != 0:
            raise ValueError("bat needs a map whose height and width are multiples of block_size " + str(bs) +
                             ", gets " + str(h) + "x" + str(w))
        out = self.conv1(x)
        rp = F.adaptive_max_pool2d(out, (bs, 1))
        cp = F.adaptive_max_pool2d(out, (1, bs))
        p = self.conv_p(rp).view(b, g, bs, bs).sigmoid()
        q = self.conv_q(cp).view(b, g, bs, bs).sigmoid()
        p = p / p.sum(dim=3, keepdim=True)
        q = q / q.sum(dim=2, keepdim=True)
        p = p.view(b, g, 1, bs, bs).expand(b, g, c // g, bs, bs).contiguous().view(b, c, bs, bs)
        q = q.view(b, g, 1, bs, bs).expand(b, g, c // g, bs, bs).contiguous().view(b, c, bs, bs)
        p = self.resize_mat(p, h // bs)
        q = self.resize_mat(q, w // bs)
        y = p.matmul(x)
        y = y.matmul(q)
        return self.conv2(y)


class BatNonLocalAttn(nn.Module):
    """Reduce (``conv1``), bilinear attentional transform (``ba``), expand (``conv2``), dropout, plus the input."""

    def __init__(self, in_channels: int, rd_channels: int, block_size: int, groups: int, drop_rate: float):
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, rd_channels)
        self.ba = BilinearAttnTransform(rd_channels, block_size, groups)
        self.conv2 = ConvNormAct(rd_channels, in_channels)
        self.dropout = nn.Dropout2d(p=drop_rate)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.ba(self.conv1(x)))
        return self.dropout(y) + x
