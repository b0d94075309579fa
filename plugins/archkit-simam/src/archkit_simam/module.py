"""SimAM's torch module (imported when a model is built)."""

from __future__ import annotations

from torch import Tensor, nn


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
