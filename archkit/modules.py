"""Module-form bases for plugin blocks that extend a built-in one in Python: ``BasicBlock`` and
``Bottleneck`` here are ``nn.Module`` classes built from the built-in descriptions (same children,
same keys, same forward), to subclass where a description cannot say what a block does (a forward
that reads values, say). A subclass declares no cost unless it defines ``cost``: archkit measures it
on the meta device, since an override may change the structure.

    class Gated(BasicBlock):
        def forward(self, x):
            return super().forward(x) * self.gate(x)
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn

from .blocks import BUILTIN_BLOCKS
from .blocks.base import BlockPlan


class DescribedModule(nn.Module):
    """An ``nn.Module`` whose children and forward come from a built-in block's description."""

    describes: ClassVar[str] = ""  # the built-in block type
    Params: ClassVar[type]
    expansion: ClassVar[int] = 1
    shortcuts: ClassVar[tuple[str, ...]] = ()
    attn_positions: ClassVar[tuple[str, ...]] = ()
    has_drop_block: ClassVar[bool] = False

    def __init__(self, b: BlockPlan):
        super().__init__()
        from .lower import _graph_module
        from .plan import describe_block

        kind = BUILTIN_BLOCKS[self.describes]
        graph = describe_block(dataclasses.replace(b, kind=kind))
        built = _graph_module(graph)
        for name, child in built.named_children():
            self.add_module(name, child)
        for name in graph.empty:
            setattr(self, name, None)
        self._described = type(built).forward
        self._zero_init = graph.zero_init

    def forward(self, x: Any) -> Any:
        return self._described(self, x)

    def zero_init_last(self) -> None:
        """Zero the norms the description marks (none for pre-activation blocks)."""
        for path in self._zero_init:
            norm = self.get_submodule(path)
            if getattr(norm, "weight", None) is not None:
                nn.init.zeros_(norm.weight)


def module_block(name: str) -> type[DescribedModule]:
    """The module-form base class of built-in block type ``name``."""
    kind = BUILTIN_BLOCKS[name]
    attrs = {"describes": name, "Params": kind.params, "expansion": kind.expansion,
             "shortcuts": tuple(k.value for k in kind.shortcuts), "attn_positions": kind.attn_positions,
             "has_drop_block": kind.drop_block, "__doc__": kind.doc, "__module__": __name__}
    if kind.out_channels is not None:
        attrs["out_channels"] = staticmethod(kind.out_channels)
    return type(kind.cls_name, (DescribedModule,), attrs)


BasicBlock = module_block("basic")
Bottleneck = module_block("bottleneck")

__all__ = ["BasicBlock", "Bottleneck", "DescribedModule", "module_block"]
