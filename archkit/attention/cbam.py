"""Convolutional block attention (Woo et al., ECCV 2018), as timm's ``CbamModule``."""

from pydantic import Field

from ..graph import Activation, BatchNorm, Concat, Conv2d, Reduce, Scope, Value
from .base import _Reduced


class Cbam(_Reduced):
    """Channel then spatial attention (CBAM)."""

    rd_divisor: int = Field(1, ge=1, le=256, description="Round the hidden width to a multiple of this.")
    spatial_kernel_size: int = Field(7, ge=1, le=63, description="Kernel of the spatial attention's conv (odd).")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        """``channel``: one MLP (``fc1``, ``act``, ``fc2``) over the average- and max-pooled channels, summed,
        sigmoid ``gate``; then ``spatial``: a conv-norm (``conv``) over the channels' mean and max, ``gate``."""
        k = self.spatial_kernel_size
        if k % 2 == 0:
            raise ValueError(f"cbam spatial_kernel_size must be odd, got {k}")
        c, r = x.shape[0], self.reduced(x.shape[0])
        outer, (y,) = s.enter(name, "CbamModule", x)
        channel, (z,) = outer.enter("channel", "ChannelAttn", y)
        pooled = [channel.apply(Reduce(kind, (1, 2)), z) for kind in ("mean", "amax")]
        mlp = [channel.conv("fc2", channel.call("act", Activation("relu", True), channel.conv("fc1", p, r, 1)), c, 1)
               for p in pooled]  # one MLP, called on both
        z = channel.mul(z, channel.call("gate", Activation("sigmoid"), channel.add(*mlp)))
        y = channel.exit(z)
        spatial, (z,) = outer.enter("spatial", "SpatialAttn", y)
        maps = spatial.apply(Concat(), *(spatial.apply(Reduce(kind, (0,)), z) for kind in ("mean", "amax")))
        conv, (m,) = spatial.enter("conv", "ConvNorm", maps)
        m = conv.call("bn", BatchNorm(1), conv.call("conv", Conv2d(2, 1, k, 1, (k - 1) // 2), m))
        attn = spatial.call("gate", Activation("sigmoid"), conv.exit(m))
        return outer.exit(spatial.exit(spatial.mul(z, attn)))
