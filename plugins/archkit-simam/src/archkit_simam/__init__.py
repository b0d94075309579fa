"""SimAM, a parameter-free attention module (Yang et al., ICML 2021), as an archkit attention type.

This plugin extends a different registry than archkit-se: not blocks but attention types. One
entry point in ``archkit.attention`` naming an ``AttentionParams`` subclass; every block that offers
an attention position can then carry it from a spec: ``block: {attn: [{type: simam}]}``.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from archkit.attention import AttentionParams

__version__ = "0.1.0"


class SimAMModule(nn.Module):
    """Weights each activation by an energy function of its distance from its channel's mean."""

    def __init__(self, e_lambda: float):
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[2] * x.shape[3] - 1
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        energy = d / (4 * (d.sum(dim=(2, 3), keepdim=True) / n + self.e_lambda)) + 0.5
        return x * energy.sigmoid()

    def extra_repr(self) -> str:
        return f"e_lambda={self.e_lambda}"


class SimAM(AttentionParams):
    """Parameter-free energy-based attention (SimAM)."""

    e_lambda: float = Field(1e-4, gt=0, le=1, description="Regularizer of the energy function (lambda).")

    def build(self, channels: int) -> nn.Module:
        return SimAMModule(self.e_lambda)
