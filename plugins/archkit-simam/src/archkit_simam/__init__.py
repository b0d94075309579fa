"""SimAM, a parameter-free attention module (Yang et al., ICML 2021), as an archkit attention type.

This plugin extends a different registry than archkit-se: not blocks but attention types. One
entry point in ``archkit.attention`` naming an ``AttentionParams`` subclass; every block that offers
an attention position can then carry it from a spec: ``block: {attn: [{type: simam}]}``.

It is a *module-form* plugin: it builds an ``nn.Module`` (in ``archkit_simam.module``, imported only
when a model is built) and declares its cost, so the spec tools never import torch for it.
"""

from __future__ import annotations

from pydantic import Field

from archkit.attention import AttentionParams
from archkit.complexity import Cost

__version__ = "0.2.0"


class SimAM(AttentionParams):
    """Parameter-free energy-based attention (SimAM)."""

    e_lambda: float = Field(1e-4, gt=0, le=1, description="Regularizer of the energy function (lambda).")

    def build(self, channels: int):
        from .module import SimAMModule

        return SimAMModule(self.e_lambda)

    def cost(self, channels: int, hw: tuple[int, ...]) -> Cost:
        """No parameters and nothing FlopCounterMode counts as a MAC; elementwise, it writes six maps
        (the difference, its square, the energy's quotient and sum, the gate, the product) and five
        per-channel vectors (the mean, the sum and three steps of the denominator)."""
        area = hw[0] * hw[1]
        return Cost(0, 0, 6 * channels * area + 5 * channels)
