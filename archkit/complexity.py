"""``Cost``: parameters, multiply-accumulates and written elements per sample, the figures every
primitive of ``archkit.graph`` knows and the summary adds up (pycls' ``complexity()`` idea).

MACs follow ``torch.utils.flop_counter``: only convolutions, matrix products and linear layers count
(FLOPs / 2), biases and elementwise ops do not. ``writes`` counts the elements each op produces
(in-place ops and views write none): an estimate of forward activation memory. ``acts`` counts the
elements convolutions and linear layers output: pycls' "activations" (Dollár et al. 2021), the third
complexity figure design spaces constrain.
"""

from __future__ import annotations

from typing import NamedTuple


class Cost(NamedTuple):
    """Per-sample parameters, multiply-accumulates and written elements (a tuple: cheap to make, since
    design-space tools add thousands of these per second)."""

    params: int = 0
    macs: int = 0
    writes: int = 0
    fixed: int = 0  # elements written once per call whatever the batch (a constant made in forward: torch.eye)
    acts: int = 0  # elements output by convolutions and linear layers (pycls' activations)

    def __add__(self, other: "Cost") -> "Cost":  # type: ignore[override]
        return Cost(self[0] + other[0], self[1] + other[1], self[2] + other[2], self[3] + other[3],
                    self[4] + other[4])

    def __mul__(self, n: int) -> "Cost":  # type: ignore[override]
        return Cost(self[0] * n, self[1] * n, self[2] * n, self[3] * n, self[4] * n)

    def without_params(self) -> "Cost":
        """The same call again: its parameters were counted on the first (a layer used twice)."""
        return Cost(0, self[1], self[2], self[3], self[4])
