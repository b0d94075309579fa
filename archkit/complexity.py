"""Analytic complexity (pycls' ``complexity()`` idea): parameters, MACs and written elements per sample,
computed from shapes alone, for every built-in layer, block, shortcut and attention type.

The summary, ``archkit list`` and design-space tools use these instead of running a forward pass;
the meta-device measurement stays the oracle (a property test requires equality for parameters and
MACs) and the fallback for plugin types that declare no cost. MACs follow
``torch.utils.flop_counter``: only convolutions, matrix products and linear layers count (FLOPs / 2),
biases and elementwise ops do not. ``writes`` counts the elements each op produces (in-place ops
write none): an estimate of forward activation memory.
"""

from __future__ import annotations

from typing import NamedTuple


class Cost(NamedTuple):
    """Per-sample parameters, multiply-accumulates and written elements (a tuple: cheap to make, since
    design-space tools add thousands of these per second)."""

    params: int = 0
    macs: int = 0
    writes: int = 0

    def __add__(self, other: "Cost") -> "Cost":  # type: ignore[override]
        return Cost(self[0] + other[0], self[1] + other[1], self[2] + other[2])

    def __mul__(self, n: int) -> "Cost":  # type: ignore[override]
        return Cost(self[0] * n, self[1] * n, self[2] * n)


ZERO = Cost()


def conv(cin: int, cout: int, kernel: int, out_hw: tuple[int, int], groups: int = 1, bias: bool = False) -> Cost:
    """A 2-D convolution with a square kernel producing ``out_hw``."""
    area = out_hw[0] * out_hw[1]
    weights = cout * (cin // groups) * kernel * kernel
    return Cost(weights + (cout if bias else 0), weights * area, cout * area)


def linear(fin: int, fout: int, bias: bool = True) -> Cost:
    """A fully connected layer."""
    return Cost(fin * fout + (fout if bias else 0), fin * fout, fout)


def elementwise(numel: int, inplace: bool = False) -> Cost:
    """An op that writes one output of ``numel`` elements (none if in place)."""
    return Cost(0, 0, 0 if inplace else numel)


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output size of a convolution or pooling window (floor mode)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def pool_out_ceil(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Output size of a pooling window in ceil mode (PyTorch's rule: the last window starts inside)."""
    out = (size + 2 * padding - kernel + stride - 1) // stride + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out
