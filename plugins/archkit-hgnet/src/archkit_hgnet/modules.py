"""The one module PP-HGNet needs that archkit's primitives do not have (imported when a model is built)."""

from __future__ import annotations

import torch
from torch import nn


class LearnableAffineBlock(nn.Module):
    """timm's ``LearnableAffineBlock``: ``scale * x + bias`` with two learnable scalars."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([scale_value]), requires_grad=True)
        self.bias = nn.Parameter(torch.tensor([bias_value]), requires_grad=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x + self.bias
