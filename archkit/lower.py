"""Descriptions -> modules: each primitive op becomes its torch layer; each described graph becomes a
module whose children are the graph's (named as recorded: the ``state_dict`` keys) and whose ``forward``
is generated from the recorded dataflow, as ``torch.fx`` generates code: one readable line per call,
registered with ``linecache`` so TorchScript, tracebacks and ``inspect`` see it. A sequential graph is
an ``nn.Sequential``. The whole network is assembled from these by ``build``.
"""

from __future__ import annotations

import importlib
import linecache
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from . import graph as g
from .nn.layers import (AvgPoolSame, BatchNormAct2d, BlurPool2d, CondConv2d, Conv2dSame, EvoNorm2dS0, LayerNormAct2d, DropBlock2d, DropPath, EvoNorm2dS0a,
                        GlobalResponseNorm, GroupNormAct,
                        LayerNorm2d, LayerScale2d, RmsNorm2d, SimpleNorm2d, ZeroPadShortcut)

# --- primitives --------------------------------------------------------------------------------------


def _activation(op: g.Activation) -> nn.Module:
    kind = op.kind
    if kind == "relu":
        return nn.ReLU(inplace=op.inplace)
    if kind == "leaky_relu":
        return nn.LeakyReLU(op.slope, inplace=op.inplace)
    if kind == "silu":
        return nn.SiLU(inplace=op.inplace)
    if kind in ("hardswish", "hardsigmoid", "relu6", "mish"):
        return {"hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid, "relu6": nn.ReLU6,
                "mish": nn.Mish}[kind](inplace=op.inplace)
    if kind == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    return {"sigmoid": nn.Sigmoid, "gelu": nn.GELU, "tanh": nn.Tanh, "identity": nn.Identity}[kind]()


def _pool(op: g.Pool2d) -> nn.Module:
    if op.kind == "max":
        return nn.MaxPool2d(op.kernel_size, op.stride, op.padding, ceil_mode=op.ceil_mode)
    return nn.AvgPool2d(op.kernel_size, op.stride, op.padding, ceil_mode=op.ceil_mode,
                        count_include_pad=op.count_include_pad)


def _passthrough(op: g.Passthrough) -> nn.Module:
    if op.kind == "dropout":
        return nn.Dropout(op.rate)
    if op.kind == "drop_path":
        return DropPath(op.rate)
    if op.kind == "drop_block":
        return DropBlock2d(op.rate, op.block_size, op.gamma_scale)
    return nn.Identity()


def _custom(op: g.Custom) -> nn.Module:
    factory = op.factory
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        return getattr(importlib.import_module(module_name), attr)(**dict(op.kwargs))
    return factory(TorchContext)


_PRIMITIVES: dict[type, Any] = {
    g.Conv2d: lambda op: nn.Conv2d(op.in_channels, op.out_channels, op.kernel_size, op.stride, op.padding,
                                   op.dilation, op.groups, op.bias),
    g.Conv1d: lambda op: nn.Conv1d(op.in_channels, op.out_channels, op.kernel_size, padding=op.padding, bias=op.bias),
    g.BatchNorm: lambda op: (nn.BatchNorm1d if op.flat else nn.BatchNorm2d)(op.channels, op.eps, op.momentum),
    g.GroupNorm: lambda op: nn.GroupNorm(op.groups, op.channels, op.eps),
    g.GroupNormAct: lambda op: GroupNormAct(op.groups, op.channels, op.eps,
                                            _activation(op.act) if op.act is not None else None),
    g.BatchNormAct: lambda op: BatchNormAct2d(op.channels, op.eps, op.momentum,
                                              _activation(op.act) if op.act is not None else None,
                                              DropBlock2d(*op.drop) if op.drop else None),
    g.LayerNorm2d: lambda op: LayerNorm2d(op.channels, eps=op.eps),
    g.LayerNormAct2d: lambda op: LayerNormAct2d(op.channels, op.eps, _activation(op.act) if op.act is not None else None),
    g.EvoNormS0: lambda op: EvoNorm2dS0(op.channels, op.groups, op.eps, op.act),
    g.LayerNorm: lambda op: nn.LayerNorm(op.channels, eps=op.eps),
    g.LinearLast: lambda op: nn.Linear(op.in_features, op.out_features, op.bias),
    g.GlobalResponseNorm: lambda op: GlobalResponseNorm(op.channels, op.eps, op.channels_last),
    g.RmsNorm2d: lambda op: RmsNorm2d(op.channels, op.eps),
    g.SimpleNorm2d: lambda op: SimpleNorm2d(op.channels, op.eps),
    g.LayerScale: lambda op: LayerScale2d(op.channels, op.init),
    g.Conv2dSame: lambda op: Conv2dSame(op.in_channels, op.out_channels, op.kernel_size, op.stride, 0, op.dilation,
                                        op.groups, op.bias),
    g.EvoNormS0a: lambda op: EvoNorm2dS0a(op.channels, op.groups, op.eps, op.act),
    g.Activation: _activation,
    g.Pool2d: _pool,
    g.AdaptiveAvgPool2d: lambda op: nn.AdaptiveAvgPool2d((op.size, op.size)),
    g.Flatten: lambda op: nn.Flatten(1),
    g.Linear: lambda op: nn.Linear(op.in_features, op.out_features, op.bias),
    g.CondConv2d: lambda op: CondConv2d(op.in_channels, op.out_channels, op.kernel_size, op.stride, op.padding,
                                        op.dilation, op.groups, op.experts, op.same),
    g.Passthrough: _passthrough,
    g.BlurPool2d: lambda op: BlurPool2d(op.channels, op.filt_size, op.stride, op.constant),
    g.ZeroPadShortcut: lambda op: ZeroPadShortcut(op.stride, op.pad),
    g.AvgPoolSame: lambda op: AvgPoolSame(),
    g.Custom: _custom,
}


def module_of(op: Any) -> nn.Module:
    """The torch module for an op or a described graph."""
    if isinstance(op, g.Graph):
        return _graph_module(op)
    if isinstance(op, g.ListOf):
        return nn.ModuleList([module_of(item) for item in op.items])
    return _PRIMITIVES[type(op)](op)


# --- graphs ------------------------------------------------------------------------------------------


class Generated(nn.Module):
    """Base of the module classes generated from descriptions: picklable (the class is rebuilt from its
    source)."""

    _archkit_source: tuple = ()  # (type name, forward source, zero-init paths, sequential)

    def __reduce_ex__(self, protocol: int) -> Any:
        return _restore, (self._archkit_source,), self.__dict__.copy()


class ZeroInit:
    """``zero_init_last`` for a generated module whose description marks norms to zero."""

    def zero_init_last(self) -> None:
        """Zero the marked norms' scales so the block starts as identity (Goyal et al., 2017)."""
        for path in self._archkit_source[2]:  # type: ignore[attr-defined]
            norm = self.get_submodule(path)  # type: ignore[attr-defined]
            if getattr(norm, "weight", None) is not None:
                nn.init.zeros_(norm.weight)


class GeneratedSequential(Generated, nn.Sequential):
    """A sequential description under a class name of its own (``ConvNormAct``), or with zero-init marks."""


def _restore(source: tuple) -> nn.Module:
    cls = _class_for(*source)
    return cls.__new__(cls)


_CLASSES: dict[tuple, type] = {}


def _class_for(type_name: str, code: str, zero_init: tuple, sequential: bool) -> type:
    key = (type_name, code, zero_init, sequential)
    cls = _CLASSES.get(key)
    if cls is None:
        namespace: dict[str, Any] = {"__archkit_source__": key}
        bases: tuple = (ZeroInit,) if zero_init else ()
        if sequential:
            cls = type(type_name, (*bases, GeneratedSequential), {"_archkit_source": key})
        else:
            filename = f"<archkit-generated {type_name} {len(_CLASSES)}>"
            linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
            scope = {"torch": torch}
            exec(compile(code, filename, "exec"), scope)  # our own generated source: names are identifiers
            namespace.update({"forward": scope["forward"], "_archkit_source": key})
            cls = type(type_name, (*bases, Generated), namespace)
        cls.__module__ = __name__
        _CLASSES[key] = cls
    return cls


def forward_source(graph: g.Graph) -> str:
    """The ``forward`` a graph's module runs: one line per recorded call."""
    names: dict[int, str] = {}
    args = []
    for i, v in enumerate(graph.inputs):
        names[v.index] = "x" if i == 0 else f"x{i}"
        args.append(names[v.index])
    uses: dict[int, int] = {}
    for node in graph.nodes:
        for j in node.inputs:
            uses[j] = uses.get(j, 0) + 1
    inputs = {v.index for v in graph.inputs}
    lines = [f"def forward(self, {', '.join(args)}):"]
    for node in graph.nodes:
        ins = [names[j] for j in node.inputs]
        out = f"v{node.output}"
        if node.target is not None:
            lines.append(f"    {out} = {_child_ref(node.target)}({', '.join(ins)})")
        elif isinstance(node.op, g.Add) and node.op.inplace and node.inputs[0] not in inputs \
                and uses.get(node.inputs[0]) == 1:
            lines.append(f"    {ins[0]} += {ins[1]}")  # torchvision's out += identity
            out = ins[0]
        else:
            lines.append(f"    {out} = {node.op.code(ins)}")
        names[node.output] = out
    lines.append(f"    return {names[graph.output.index]}")
    return "\n".join(lines) + "\n"


def _child_ref(target: str) -> str:
    """The child in generated code: ``self.conv1``, or ``getattr(self, "0")`` for an index name (timm's
    MixedConv2d children; TorchScript takes both)."""
    return f"self.{target}" if target.split("[")[0].isidentifier() else f"getattr(self, {target!r})"


def _is_chain(graph: g.Graph) -> bool:
    return graph.sequential


def _graph_module(graph: g.Graph) -> nn.Module:
    if _is_chain(graph):
        children = OrderedDict((name, module_of(op)) for name, op in graph.children.items())
        if graph.type_name == "Sequential" and not graph.zero_init:
            return nn.Sequential(children)
        module = _class_for(graph.type_name, "", graph.zero_init, True)(children)
        return module
    cls = _class_for(graph.type_name, forward_source(graph), graph.zero_init, False)
    module = cls()
    for node in graph.nodes:  # parameters the module owns (ConvNeXt's gamma): first in its state_dict, as timm's
        if isinstance(node.op, g.OwnScale) and node.op.name not in module._parameters:
            module.register_parameter(node.op.name, nn.Parameter(torch.full((node.op.channels,), node.op.init)))
    for name, op in graph.children.items():
        module.add_module(name, module_of(op))
    for name in graph.empty:
        setattr(module, name, None)
    return module


# --- module-form plugins ---------------------------------------------------------------------------


class TorchContext:
    """What a module-form plugin builds with: the spec's norm and activation as modules, and for a
    block (``plan``) its attention attachments, stochastic depth, DropBlock and shortcut."""

    def __init__(self, norm_layer: Any, act_layer: Any, plan: Any = None):
        self.norm_layer, self.act_layer, self.plan = norm_layer, act_layer, plan

    def _one(self, emit: Any, shape: tuple[int, ...]) -> nn.Module:
        s = g.Scope("_", norm_layer=self.norm_layer, act_layer=self.act_layer)
        emit(s, "m", s.input(shape))
        return module_of(s.child("m"))

    def norm(self, channels: int) -> nn.Module:
        """The spec's norm for ``channels`` (2-D)."""
        return self._one(lambda s, n, x: s.norm(n, x), (channels, 8, 8))

    def act(self) -> nn.Module:
        """The spec's activation."""
        return self._one(lambda s, n, x: s.act(n, x), (1, 1, 1))

    def attention(self, position: str, channels: int, size: tuple[int, int] = (8, 8)) -> nn.Module | None:
        """The block's attention attachments at ``position`` (None when there are none)."""
        from .blocks.base import attend

        s = g.Scope("_", norm_layer=self.norm_layer, act_layer=self.act_layer)
        attend(self.plan, s, position, s.input((channels, *size)), "m")
        return module_of(s.child("m")) if s.has("m") else None

    def drop_path(self) -> nn.Module | None:
        """The block's stochastic depth (None at rate 0)."""
        rate = self.plan.drop_path_rate
        return DropPath(rate) if rate > 0 else None

    def drop_block(self) -> nn.Module | None:
        """The block's DropBlock (None where the plan places none)."""
        return DropBlock2d(*self.plan.drop_block) if self.plan.drop_block else None

    def shortcut(self, norm: bool = True) -> nn.Module | None:
        """The block's shortcut module (None for identity or no shortcut)."""
        from .blocks.base import shortcut

        b = self.plan
        s = g.Scope("_", norm_layer=self.norm_layer, act_layer=self.act_layer)
        shortcut(b, s, s.input((b.in_channels, *b.in_size)), norm=norm)
        return module_of(s.child("downsample")) if s.has("downsample") else None
