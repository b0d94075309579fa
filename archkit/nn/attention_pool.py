"""Attention pooling with an absolute position embedding, as timm's ``AttentionPool2d`` (CLIP's ResNet
head, Radford et al. 2021): same parameters, keys and arithmetic, so timm's weights load and outputs match."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AttentionPool2d(nn.Module):
    """Tokens of the feature map plus their mean (the query token), an absolute position embedding
    (``pos_embed``, resampled bicubically for other sizes), multi-head attention (``q``, ``k``, ``v``
    or one ``qkv``), ``proj``; the mean token's output is the pooled result."""

    classifier_name = "proj"  # what reset_classifier and num_classes changes replace (timm's get_classifier)
    fx_leaf = True  # its forward branches on the input size: torch.fx keeps it one call (archkit.fuse)

    def __init__(self, in_features: int, feat_size: tuple[int, int], out_features: int, embed_dim: int,
                 num_heads: int, qkv_bias: bool = True, qkv_separate: bool = True, drop_rate: float = 0.0):
        super().__init__()
        self.in_features, self.embed_dim, self.num_heads = in_features, embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.feat_size = tuple(feat_size)
        if qkv_separate:
            self.q = nn.Linear(in_features, embed_dim, bias=qkv_bias)
            self.k = nn.Linear(in_features, embed_dim, bias=qkv_bias)
            self.v = nn.Linear(in_features, embed_dim, bias=qkv_bias)
            self.qkv = None
        else:
            self.q = self.k = self.v = None
            self.qkv = nn.Linear(in_features, embed_dim * 3, bias=qkv_bias)
        self.drop = nn.Dropout(drop_rate)
        self.proj = nn.Linear(embed_dim, out_features) if out_features > 0 else nn.Identity()
        self.pos_embed = nn.Parameter(torch.zeros(self.feat_size[0] * self.feat_size[1] + 1, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm's init of the position embedding (truncated normal, std in_features ** -0.5)."""
        nn.init.trunc_normal_(self.pos_embed, std=self.in_features ** -0.5)

    def _pos_embed(self, h: int, w: int) -> Tensor:
        posemb = self.pos_embed.unsqueeze(0)
        if (h, w) == self.feat_size:
            return posemb
        prefix, grid = posemb[:, :1], posemb[:, 1:]  # timm's resample_abs_pos_embed
        dtype = grid.dtype
        grid = grid.float().reshape(1, self.feat_size[0], self.feat_size[1], -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True)
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, -1).to(dtype)
        return torch.cat([prefix, grid], dim=1)

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        b, _, h, w = x.shape
        n = h * w
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([x.mean(1, keepdim=True), x], dim=1)
        x = x + self._pos_embed(h, w)
        if self.qkv is None:
            q = self.q(x).reshape(b, n + 1, self.num_heads, self.head_dim).transpose(1, 2)
            k = self.k(x).reshape(b, n + 1, self.num_heads, self.head_dim).transpose(1, 2)
            v = self.v(x).reshape(b, n + 1, self.num_heads, self.head_dim).transpose(1, 2)
        else:
            q, k, v = self.qkv(x).reshape(b, -1, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        x = self.drop(x.transpose(1, 2).reshape(b, n + 1, -1))
        if not pre_logits:
            x = self.proj(x)
        return x[:, 0]
