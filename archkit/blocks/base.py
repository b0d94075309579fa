"""The block contract every built-in and plugin block follows.

A block is an ``nn.Module`` class with:

- ``Params``: a pydantic model of what a spec may set (defaults, bounds, a description per field);
  archkit adds the ``type`` tag and the keys every block shares (``shortcut``, ``attn``);
- ``expansion``: output channels per ``planes`` (``out_channels`` may override for other rules);
- ``__init__(in_channels, planes, *, stride, dilation, downsample, params, ctx)`` where ``ctx`` is an
  ``archkit.context.Context``: norm and activation factories, the block's attention attachments
  (``ctx.attention(position, channels)``), its shortcut kind (``ctx.residual`` is False for
  ``shortcut: none``), its drop-path module (``ctx.drop_path()``) and its position in the network;
- ``shortcuts``: the shortcut kinds it accepts, its default first; ``attn_positions``: where it
  places attention attachments;
- ``make_shortcut(in_channels, out_channels, stride, dilation, params, ctx)``: the module built for
  ``ctx.shortcut`` when a stage changes stride or channels; the block decides in ``forward`` how to
  use it (DarkNet runs it before the residual, pre-activation blocks after BN-ReLU);
- optionally ``zero_init_last()``, called for ``init.zero_init_residual``;
- optionally ``has_drop_block = True`` where it places ``ctx.drop_block()`` (the spec's
  ``drop_block_rate`` is refused for blocks without one), and ``out_size(in_size, stride, params)``
  where its output size is not a strided 3x3's;
- optionally ``cost(bp, ctx)``, a classmethod giving parameters, MACs and written elements per sample
  for a block plan (``archkit.complexity``); it counts only where the class defines it itself (a
  subclass that changes the structure must not inherit its parent's), else the summary measures the
  block on the meta device.

Subclassing ``Block`` is a convenience, not a requirement: the builder only uses the names above.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from ..complexity import Cost
from ..context import Context
from . import antialias as _antialias
from . import shortcuts as _shortcuts


class BlockParams(BaseModel):
    """Parameters of a block type; subclasses add fields with defaults, bounds and descriptions."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class ResNetParams(BlockParams):
    """What timm's ResNet blocks add to torchvision's: anti-aliased downsampling, a reduced first
    convolution (SENet-154) and a larger projection kernel (SENet-154's 3x3 downsample)."""

    aa: Literal["blur", "avg"] | None = Field(None, description="Anti-aliased downsampling (timm's aa_layer): "
                                              "the strided conv runs at stride 1, then blur or avg pools.")
    reduce_first: int = Field(1, ge=1, le=64, description="The first conv's width is divided by this "
                                                          "(timm's block_reduce_first; SENet-154 uses 2).")
    shortcut_kernel_size: int = Field(1, ge=1, le=7, description="Kernel of a strided projection shortcut "
                                      "(timm's down_kernel_size; 1x1 where the stage keeps its resolution).")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding that keeps the size at stride 1, as torchvision's."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
                     groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias, as torchvision's."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class Block(nn.Module):
    """Convenience base class: expansion, shortcut kinds, attention slots and the residual tail."""

    Params: ClassVar[type[BlockParams]] = BlockParams
    expansion: ClassVar[int] = 1
    shortcuts: ClassVar[tuple[str, ...]] = ("projection", "avg_down", "zero_pad", "none")
    attn_positions: ClassVar[tuple[str, ...]] = ("pre_add", "post_add")
    # torchvision adds in place (out += identity); a branch ending in an activation must not, since
    # the activation's backward reads its output
    inplace_add: ClassVar[bool] = True
    # whether the block places ``ctx.drop_block()`` (the spec's drop_block_rate), as timm's ResNet blocks
    has_drop_block: ClassVar[bool] = False

    @classmethod
    def out_channels(cls, planes: int, params: BlockParams) -> int:
        """Channels this block outputs for ``planes``."""
        return planes * cls.expansion

    @classmethod
    def out_size(cls, in_size: tuple[int, int], stride: int, params: BlockParams) -> tuple[int, int]:
        """The output size for an input of ``in_size`` at ``stride`` (a strided 3x3 conv's by default)."""
        return _antialias.out_size(getattr(params, "aa", None), in_size, stride)

    @classmethod
    def make_shortcut(cls, in_channels: int, out_channels: int, stride: int, dilation: int,
                      params: BlockParams, ctx: Context) -> nn.Module:
        """The module for ``ctx.shortcut`` (see ``archkit.blocks.shortcuts``), with the spec's norm."""
        return _shortcuts.build(ctx.shortcut, in_channels, out_channels, stride, dilation, ctx.norm,
                                getattr(params, "shortcut_kernel_size", 1))

    @classmethod
    def shortcut_cost(cls, bp: Any, ctx: Context) -> Cost:
        """The cost of the module ``make_shortcut`` builds for block plan ``bp`` (none for identity)."""
        if bp.shortcut in ("identity", "none"):
            return Cost()
        return _shortcuts.cost(bp.shortcut, bp.in_channels, bp.out_channels, bp.stride, bp.dilation, bp.in_size,
                               ctx.norm_cost, getattr(bp.params, "shortcut_kernel_size", 1))

    @classmethod
    def tail_cost(cls, bp: Any, ctx: Context) -> Cost:
        """What ``init_tail`` adds: pre-add attention, the add, post-add attention, and the shortcut."""
        hw, c = bp.out_size, bp.out_channels
        add = Cost(0, 0, 0 if cls.inplace_add or bp.shortcut == "none" else c * hw[0] * hw[1])
        return (ctx.attention_cost("pre_add", c, hw) + add + ctx.attention_cost("post_add", c, hw)
                + cls.shortcut_cost(bp, ctx))

    def init_tail(self, out_channels: int, downsample: nn.Module | None, ctx: Context) -> None:
        """Attach what every residual block ends with: ``se`` (attention before the add; timm's name,
        so its weights load), drop path, the shortcut, and ``attn_out`` (attention after the add)."""
        self.se = ctx.attention("pre_add", out_channels)
        self.drop_path = ctx.drop_path()
        self.downsample = downsample
        self.residual = ctx.residual
        self.add_in_place = type(self).inplace_add  # an instance attribute (another name), for TorchScript
        self.attn_out = ctx.attention("post_add", out_channels)

    def drop_act_aa(self, out: Tensor) -> Tensor:
        """timm's order after the strided conv's norm: DropBlock (``self.drop_block``), the activation
        (``self.relu``), anti-aliased downsampling (``self.aa``); either may be None."""
        if self.drop_block is not None:
            out = self.drop_block(out)
        out = self.relu(out)
        if self.aa is not None:
            out = self.aa(out)
        return out

    def add_residual(self, out: Tensor, shortcut: Tensor) -> Tensor:
        """Attention before the add, drop path, then the add (none for ``shortcut: none``)."""
        if self.se is not None:
            out = self.se(out)
        if self.drop_path is not None:
            out = self.drop_path(out)
        if self.residual:
            if self.add_in_place:
                out += shortcut
            else:
                out = out + shortcut
        return out

    def after_add(self, out: Tensor) -> Tensor:
        """Attention after the add (``position: post_add``), if any."""
        if self.attn_out is not None:
            out = self.attn_out(out)
        return out
