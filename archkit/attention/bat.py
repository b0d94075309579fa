"""Bilinear attentional transform (Zheng et al., CVPR 2020), as timm's ``BatNonLocalAttn`` (``bat_resnext26ts``):
a module-form type (its forward reshapes attention matrices by the map's size), with its cost declared."""

from pydantic import Field

from ..complexity import Cost
from .base import _Reduced, make_divisible


class BilinearAttention(_Reduced):
    """Non-local attention by learned row and column transforms over blocks of the map (BAT)."""

    rd_ratio: float = Field(0.25, gt=0, le=1, description="Hidden width relative to the channels.")
    block_size: int = Field(7, ge=1, le=64, description="Size of the attention matrices; the map's height and width "
                            "must be multiples of it.")
    groups: int = Field(2, ge=1, le=1024, description="Groups of the transform (must divide the hidden width).")
    drop_rate: float = Field(0.2, ge=0, lt=1, description="Dropout2d on the attention's output (training only).")

    def reduced(self, channels: int) -> int:
        """The hidden width, as timm's BatNonLocalAttn rounds it (make_divisible, round limit 0.9)."""
        return self.rd_channels or make_divisible(channels * self.rd_ratio, self.rd_divisor, round_limit=0.9)

    def _check(self, channels: int, hw: tuple[int, ...]) -> tuple[int, int, int]:
        r = self.reduced(channels)
        h, w = hw
        if h % self.block_size or w % self.block_size:
            raise ValueError(f"bat needs a map whose height and width are multiples of block_size {self.block_size}, "
                             f"gets {h}x{w}")
        if r % self.groups:
            raise ValueError(f"bat groups {self.groups} do not divide its hidden width {r}")
        return r, h, w

    def build(self, channels: int):
        from ..nn.bat import BatNonLocalAttn

        return BatNonLocalAttn(channels, self.reduced(channels), self.block_size, self.groups, self.drop_rate)

    def cost(self, channels: int, hw: tuple[int, ...]) -> Cost:
        """Parameters; MACs of its convolutions and the two attention products (FlopCounterMode's count);
        writes as its forward makes them (pooled strips with their indices, the attention matrices, their
        block-diagonal expansion where the map is larger than a block)."""
        c, (r, h, w), g, bs = channels, self._check(channels, hw), self.groups, self.block_size
        area = h * w
        params = c * r + 2 * r + r * g + 2 * g + 2 * (bs ** 3 * g * g + bs * bs * g) + r * r + 2 * r + r * c + 2 * c
        macs = c * r * area + r * g * area + 2 * bs ** 3 * g * g + r * h * h * w + r * h * w * w + r * r * area \
            + r * c * area
        writes = 6 * r * area + 2 * g * area + 3 * c * area + 8 * g * bs + 6 * g * bs * bs
        if r != g:  # p and q expanded over each group's channels, then copied (a no-op view where r == g)
            writes += 2 * r * bs * bs
        fixed = 0
        for t in (h // bs, w // bs):
            if t > 1:  # resize_mat: the identity (once per call, whatever the batch), its product, two concatenations
                fixed += t * t
                writes += 3 * r * bs * bs * t * t
        acts = (2 * r + g + c) * area + 2 * bs * bs * g  # its six convolutions' outputs
        return Cost(params, macs, writes, fixed, acts)
