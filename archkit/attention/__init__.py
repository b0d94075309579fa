"""Attention modules a spec attaches to blocks (``attn:``), one file per type; timm's semantics and names.

Each type is a pydantic params model (``AttentionParams``) that builds its module for a channel
count. A block places each attachment at its ``position``:

- ``pre_add`` (default): after the block's last norm, before the shortcut is added; the module is
  the block's ``se`` child, timm ResNet's ``attn_layer`` slot, so timm's weights load by key;
- ``mid``: after the middle convolution's norm and activation (child ``attn``; RegNet-Y's place);
- ``post_add``: after the add and the final activation (child ``attn_out``).

Blocks say which positions they offer (``attn_positions``). Plugins add types through the
``archkit.attention`` entry-point group, naming an ``AttentionParams`` subclass.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ..complexity import Cost


def make_divisible(value: float, divisor: int) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, at least ``divisor`` (timm, round_limit=0)."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class AttentionParams(BaseModel):
    """Base of every attention type: where it goes, then the type's own parameters."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
    role: ClassVar[str] = "attention"

    position: str = Field("pre_add", description="Where in the block: pre_add (before the shortcut add), "
                                                 "mid (after the middle conv) or post_add (after the add).")

    def build(self, channels: int) -> nn.Module:
        """The module for a feature map of ``channels`` channels."""
        raise NotImplementedError

    def cost(self, channels: int, hw: tuple[int, int]) -> Cost:
        """Parameters, MACs and writes per sample on a (channels, *hw) map (see archkit.complexity);
        types that do not declare it are measured on the meta device."""
        raise NotImplementedError


class _Reduced(AttentionParams):
    """Attention with a reduced hidden width, timm's ``rd_*`` parameters."""

    rd_ratio: float = Field(1 / 16, gt=0, le=1, description="Hidden width relative to the channels.")
    rd_channels: int | None = Field(None, ge=1, le=1 << 20, description="Hidden width; overrides rd_ratio.")
    rd_divisor: int = Field(8, ge=1, le=256, description="Round the hidden width to a multiple of this.")

    def reduced(self, channels: int) -> int:
        """The hidden width for ``channels``, as timm computes it."""
        return self.rd_channels or make_divisible(channels * self.rd_ratio, self.rd_divisor)


from .cbam import Cbam  # noqa: E402
from .eca import Eca  # noqa: E402
from .gc import GlobalContextParams  # noqa: E402
from .se import SqueezeExcite  # noqa: E402

BUILTIN_ATTENTION: dict[str, type[AttentionParams]] = {
    "se": SqueezeExcite,
    "eca": Eca,
    "cbam": Cbam,
    "gc": GlobalContextParams,
}

__all__ = ["AttentionParams", "BUILTIN_ATTENTION", "make_divisible"]
