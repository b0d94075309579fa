"""Efficient channel attention (Wang et al., CVPR 2020), as timm's ``EcaModule``."""

import math

from pydantic import Field

from ..graph import Activation, Conv1d, Reduce, Reshape, Scope, Value
from ..params import AttentionParams


class Eca(AttentionParams):
    """Efficient channel attention: a k-wide 1-D conv over pooled channels (ECA-Net)."""

    kernel_size: int | None = Field(None, ge=1, le=63, description="Odd kernel size; default adapts to the "
                                                                   "channels: |log2(C) + beta| / gamma, made odd.")
    gamma: float = Field(2.0, gt=0, le=64, description="Divisor in the adaptive kernel size.")
    beta: float = Field(1.0, ge=-64, le=64, description="Offset in the adaptive kernel size.")

    def kernel(self, channels: int) -> int:
        """The kernel size for ``channels`` (ECA-Net's rule, as timm computes it)."""
        if self.kernel_size is not None:
            if self.kernel_size % 2 == 0:
                raise ValueError(f"eca kernel_size must be odd, got {self.kernel_size}")
            return self.kernel_size
        t = int(abs(math.log(channels, 2) + self.beta) / self.gamma)
        return max(t if t % 2 else t + 1, 3)

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        """Global average, a 1-D conv across the channels (``conv``), sigmoid ``gate``, scale ``x``."""
        k = self.kernel(x.shape[0])
        inner, (y,) = s.enter(name, "EcaModule", x)
        pooled = inner.apply(Reshape((1, -1)), inner.apply(Reduce("mean", (1, 2), keepdim=False), y))
        gate = inner.call("gate", Activation("sigmoid"), inner.call("conv", Conv1d(1, 1, k, (k - 1) // 2), pooled))
        return inner.exit(inner.mul(y, inner.apply(Reshape((-1, 1, 1)), gate)))
