"""The one object a block or layer gets beyond its own params (timm byobnet's ``LayerFn`` idea).

New cross-cutting features go here, not into every block's signature: a block built by archkit
receives its norm and activation factories, its attention attachments, its shortcut kind, its
stochastic-depth rate and its position in the network through ``ctx``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .complexity import Cost

Norm = Callable[[int], nn.Module]
Act = Callable[[], nn.Module]

SHORTCUT_KINDS = ("projection", "avg_down", "zero_pad", "none")
ATTN_POSITIONS = ("mid", "pre_add", "post_add")


def _default_norm(channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels)


def _default_act() -> nn.Module:
    return nn.ReLU(inplace=True)


@dataclasses.dataclass(frozen=True)
class Context:
    """Frozen per-block context: factories, attachments, shortcut kind, drop-path rate, position."""

    norm: Norm = _default_norm
    act: Act = _default_act
    norm_layer: Any = None  # the spec's norm params, for 'norm' layers on any shape (flat or spatial)
    act_layer: Any = None  # the spec's activation params (for analytic costs)
    shortcut: str = "identity"  # identity, none, or the kind of the module passed as ``downsample``
    attn: tuple = ()  # attention attachments (archkit.attention.AttentionParams) for this block
    drop_path_rate: float = 0.0
    drop_block_rate: float = 0.0  # the spec's DropBlock rate: timm applies it in the third and fourth stages
    index: int = 0  # the block's index over the whole network
    stage: int = 0  # its stage's index (0-based)

    @property
    def residual(self) -> bool:
        """Whether the block adds a shortcut at all (``shortcut: none`` builds a plain network)."""
        return self.shortcut != "none"

    def attention(self, position: str, channels: int) -> nn.Module | None:
        """The attachments placed at ``position`` for ``channels`` (one module, a Sequential, or None)."""
        modules = [a.build(channels) for a in self.attn if a.position == position]
        if not modules:
            return None
        return modules[0] if len(modules) == 1 else nn.Sequential(*modules)

    def norm_cost(self, channels: int, hw: tuple[int, ...] = (1, 1)) -> Any:
        """Parameters and writes of the spec's norm on a (channels, *hw) map (raises if it declares none)."""
        if self.norm_layer is None:  # the default BatchNorm2d
            return Cost(2 * channels, 0, channels * _area(hw))
        return self.norm_layer.cost((channels, *hw), self)

    def act_cost(self, channels: int, hw: tuple[int, ...] = (1, 1)) -> Any:
        """Parameters and writes of the spec's activation on a (channels, *hw) map."""
        if self.act_layer is None:  # the default in-place ReLU
            return Cost()
        return self.act_layer.cost((channels, *hw), self)

    def attention_cost(self, position: str, channels: int, hw: tuple[int, int]) -> Any:
        """The cost of the attachments at ``position``."""
        total = Cost()
        for a in self.attn:
            if a.position == position:
                total = total + a.cost(channels, hw)
        return total

    def drop_path(self) -> nn.Module | None:
        """The block's stochastic-depth module, or None at rate 0 (as timm: no module, same keys)."""
        return DropPath(self.drop_path_rate) if self.drop_path_rate > 0 else None


    def drop_block(self) -> nn.Module | None:
        """The block's DropBlock (timm's ``drop_blocks``): block size 5 and gamma scale 0.25 in the third
        stage, 3 and 1.0 in the fourth, none elsewhere or at rate 0 (no parameters: keys unchanged)."""
        if self.drop_block_rate <= 0 or self.stage not in (2, 3):
            return None
        return DropBlock2d(self.drop_block_rate, 5, 0.25) if self.stage == 2 else DropBlock2d(self.drop_block_rate, 3, 1.0)


class DropBlock2d(nn.Module):
    """DropBlock (Ghiasi et al. 2018), as timm's ``DropBlock2d`` with its defaults: one spatial mask
    shared by all channels, blocks of ``block_size``, kept activations rescaled. Identity in eval mode.

    Draws the same random numbers in the same order as timm's, so seeded runs match it.
    """

    def __init__(self, drop_prob: float = 0.1, block_size: int = 7, gamma_scale: float = 1.0):
        super().__init__()
        self.drop_prob, self.block_size, self.gamma_scale = drop_prob, block_size, gamma_scale

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not self.drop_prob:
            return x
        b, _, h, w = x.shape
        kh, kw = min(self.block_size, h), min(self.block_size, w)
        gamma = self.gamma_scale * self.drop_prob * h * w / (kh * kw) / ((h - kh + 1) * (w - kw + 1))
        with torch.no_grad():
            seeds = torch.empty((b, 1, h, w), dtype=x.dtype, device=x.device).bernoulli_(gamma)
            block_mask = F.max_pool2d(seeds, kernel_size=(kh, kw), stride=1, padding=(kh // 2, kw // 2))
            if kh % 2 == 0 or kw % 2 == 0:  # an even block: max_pool2d's output is one larger
                block_mask = block_mask[..., (kh + 1) % 2:, (kw + 1) % 2:]
            keep = 1.0 - block_mask
            keep.mul_((keep.numel() / keep.to(torch.float32).sum().add(1e-7)).to(x.dtype))
        return x * keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}, gamma_scale={self.gamma_scale}"


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop a sample's residual branch with probability ``drop_prob``.

    Same semantics and attribute name as timm's ``DropPath`` (kept samples are scaled by 1/keep).
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


def _area(hw: tuple[int, ...]) -> int:
    n = 1
    for s in hw:
        n *= s
    return n
