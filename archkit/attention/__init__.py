"""Attention modules a spec attaches to blocks (``attn:``), one file per type; timm's semantics and names.

Each type is a params model (``archkit.params.AttentionParams``) that records its module on a
block's scope (``emit``). A block places each attachment at its ``position``:

- ``pre_add`` (default): after the block's last norm, before the shortcut is added; the module is
  the block's ``se`` child, timm ResNet's ``attn_layer`` slot, so timm's weights load by key;
- ``mid``: after the middle convolution's norm and activation (child ``attn``; RegNet-Y's place);
- ``post_add``: after the add and the final activation (child ``attn_out``).

Blocks say which positions they offer (``attn_positions``). Plugins add types through the
``archkit.attention`` entry-point group, naming an ``AttentionParams`` subclass.
"""

from __future__ import annotations

from ..params import AttentionParams
from .base import _Reduced, make_divisible
from .bat import BilinearAttention
from .cbam import Cbam
from .eca import Eca
from .gc import GlobalContextParams
from .se import SqueezeExcite

BUILTIN_ATTENTION: dict[str, type[AttentionParams]] = {
    "se": SqueezeExcite,
    "eca": Eca,
    "cbam": Cbam,
    "gc": GlobalContextParams,
    "bat": BilinearAttention,
}

__all__ = ["AttentionParams", "BUILTIN_ATTENTION", "make_divisible", "_Reduced"]
