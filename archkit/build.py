"""Plan -> modules: the one place that turns descriptions into torch.

Each primitive op becomes its torch layer; each described graph becomes a module whose children
are the graph's (named as recorded: the ``state_dict`` keys) and whose ``forward`` is generated from
the recorded dataflow, as ``torch.fx`` generates code: one readable line per call, registered with
``linecache`` so TorchScript, tracebacks and ``inspect`` see it. A sequential graph is an
``nn.Sequential``. Weights are initialized once, as torchvision's ResNet.
"""

from __future__ import annotations

import contextlib
import importlib
import linecache
import math
from collections import OrderedDict
from typing import Any, Iterator

import torch
from torch import nn

from . import graph as g
from .errors import first_line
from .model import ArchkitNet, FeatureExtractor, Freezable
from .nn.layers import AvgPoolSame, BatchNormAct2d, BlurPool2d, DropBlock2d, DropPath, LayerNorm2d, ZeroPadShortcut
from .plan import Plan, out_indices as _indices, plan
from .specs import ModelSpec

# --- primitives --------------------------------------------------------------------------------------


def _activation(op: g.Activation) -> nn.Module:
    kind = op.kind
    if kind == "relu":
        return nn.ReLU(inplace=op.inplace)
    if kind == "leaky_relu":
        return nn.LeakyReLU(op.slope, inplace=op.inplace)
    if kind == "silu":
        return nn.SiLU(inplace=op.inplace)
    if kind == "hardswish":
        return nn.Hardswish(inplace=op.inplace)
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
    g.BatchNormAct: lambda op: BatchNormAct2d(op.channels, op.eps, op.momentum,
                                              _activation(op.act) if op.act is not None else None),
    g.LayerNorm2d: lambda op: LayerNorm2d(op.channels, eps=op.eps),
    g.Activation: _activation,
    g.Pool2d: _pool,
    g.AdaptiveAvgPool2d: lambda op: nn.AdaptiveAvgPool2d((op.size, op.size)),
    g.Flatten: lambda op: nn.Flatten(1),
    g.Linear: lambda op: nn.Linear(op.in_features, op.out_features, op.bias),
    g.Passthrough: _passthrough,
    g.BlurPool2d: lambda op: BlurPool2d(op.channels, op.filt_size, op.stride),
    g.ZeroPadShortcut: lambda op: ZeroPadShortcut(op.stride, op.pad),
    g.AvgPoolSame: lambda op: AvgPoolSame(),
    g.Custom: _custom,
}


def module_of(op: Any) -> nn.Module:
    """The torch module for an op or a described graph."""
    if isinstance(op, g.Graph):
        return _graph_module(op)
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
            lines.append(f"    {out} = self.{node.target}({', '.join(ins)})")
        elif isinstance(node.op, g.Add) and node.op.inplace and node.inputs[0] not in inputs \
                and uses.get(node.inputs[0]) == 1:
            lines.append(f"    {ins[0]} += {ins[1]}")  # torchvision's out += identity
            out = ins[0]
        else:
            lines.append(f"    {out} = {node.op.code(ins)}")
        names[node.output] = out
    lines.append(f"    return {names[graph.output.index]}")
    return "\n".join(lines) + "\n"


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
        return module_of(s._children["m"])

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
        return module_of(s._children["m"]) if s.has("m") else None

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
        return module_of(s._children["downsample"]) if s.has("downsample") else None


# --- the network -------------------------------------------------------------------------------------


def init_weights(model: nn.Module, spec: ModelSpec) -> None:
    """torchvision's ResNet init; ``zero_init_residual`` zeroes the norms blocks mark (``zero_init_last()``).

    Every tensor is written here, so a model materialized from the meta device (``to_empty``) is fully
    initialized: convolutions by ``init.conv`` (bias as PyTorch's default), norms to ones and zeros
    with fresh running statistics, everything else by its own ``reset_parameters()``.
    """
    mode = {"kaiming_fan_out": "fan_out", "kaiming_fan_in": "fan_in"}.get(spec.init.conv)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and mode is not None:
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:  # PyTorch's default for a conv bias
                fan_in = m.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
                nn.init.uniform_(m.bias, -bound, bound)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)):
            if isinstance(m, nn.modules.batchnorm._NormBase):
                m.reset_running_stats()
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, _SELF_INIT):
            m.reset_parameters()
    if spec.init.zero_init_residual:
        # This improves the model by 0.2~0.3% according to https://arxiv.org/abs/1706.02677
        for m in model.modules():
            zero = getattr(m, "zero_init_last", None)
            if callable(zero):
                zero()


# modules whose whole state their own reset_parameters() writes
_SELF_INIT = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.LayerNorm, BlurPool2d)
_KNOWN = (*_SELF_INIT, nn.modules.batchnorm._NormBase, nn.GroupNorm)


def _fully_initialized_by_us(model: nn.Module) -> bool:
    """Whether ``init_weights`` writes every parameter and buffer (no plugin module with state of its own)."""
    for m in model.modules():
        if isinstance(m, _KNOWN):
            continue
        if next(m.parameters(recurse=False), None) is not None or next(m.buffers(recurse=False), None) is not None:
            return False
    return True


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _child(spec: ModelSpec, path: tuple, what: str, op: Any) -> nn.Module:
    try:
        return module_of(op)
    except (ValueError, NotImplementedError, RuntimeError, TypeError) as exc:  # a plugin's constructor, say
        raise spec.error(path, f"{what}: {first_line(exc)}") from exc


def _stage_module(spec: ModelSpec, sp: Any) -> nn.Module:
    if sp.result is not None and sp.result.graph is not None:  # a stage type's own module (a CSP stage)
        return _child(spec, ("stages", sp.index), f"{sp.type} stage", sp.result.graph)
    return nn.Sequential(*(_child(spec, ("stages", sp.index), f"{bp.type} block", op)
                           for bp, op in zip(sp.blocks, sp.ops)))


def _assemble(spec: ModelSpec, p: Plan, features: bool, indices: list[int]) -> nn.Module:
    stem = p.stem
    if features and max(indices) == 0:  # the stem's feature map only: nothing after it runs
        stem = stem[: stem.index(p.stem_feature) + 1]
    stages = p.stages[: max(indices)] if features else p.stages
    head = () if features else p.head
    parts = {"stem": OrderedDict((lp.name.rpartition(".")[2], _child(spec, (lp.part, lp.index), lp.layer.type, lp.op))
                                 for lp in stem),
             "stages": OrderedDict((sp.name.rpartition(".")[2], _stage_module(spec, sp)) for sp in stages),
             "head": OrderedDict((lp.name.rpartition(".")[2], _child(spec, (lp.part, lp.index), lp.layer.type, lp.op))
                                 for lp in head)}
    if p.layout == "timm":  # stem.*, stages.N.*, head.*
        children = OrderedDict((part, nn.Sequential(modules)) for part, modules in parts.items()
                               if modules or part != "head")
    else:  # conv1, ..., layer1..N, ..., fc
        children = OrderedDict((name, module) for modules in parts.values() for name, module in modules.items())
    if features:
        info = p.feature_info(indices)
        return FeatureExtractor(children, [d["module"] for d in info], info, spec, [lp.name for lp in stem],
                                [sp.name for sp in stages])
    return ArchkitNet(children, spec, [lp.name for lp in p.stem], [sp.name for sp in p.stages],
                      [lp.name for lp in p.head], p.feature_info(list(range(0 if p.stem else 1, len(p.stages) + 1))))


def build(spec: ModelSpec, device: Any = None, *, features_only: bool | None = None,
          out_indices: Any = None) -> nn.Module:
    """Assemble the model: stem layers, ``layer1``..``layerN``, head layers, as one ``nn.Sequential``.

    ``device="meta"`` builds the structure without allocating or initializing weights.
    ``features_only`` (or the spec's ``features_only:``) returns a FeatureExtractor of the stem and the
    stages up to the last of ``out_indices`` (0 = the stem's feature map before its final downsampling,
    as timm's; i = stage i; default: every stage).

    Each weight is initialized once: the model is built on the meta device, materialized with
    ``to_empty`` on ``device`` and initialized by ``init_weights`` (PyTorch's default init, which
    torchvision then overwrites, never runs). A model holding plugin modules with state of their own
    is built directly on ``device`` instead, so their constructors' values stay.
    """
    with _float32():  # whatever a plugin or the caller set as torch's default: the dtype the summary reports
        return _build(spec, device, features_only, out_indices)


@contextlib.contextmanager
def _float32() -> Iterator[None]:
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _build(spec: ModelSpec, device: Any, features_only: bool | None, out_indices: Any) -> nn.Module:
    features = spec.features_only if features_only is None else features_only
    indices = _indices(spec, out_indices) if features else []
    p = plan(spec, head=not features)
    if str(device) == "meta":
        with torch.device("meta"):
            return _assemble(spec, p, features, indices)
    target = torch.device(device) if device is not None else torch.device("cpu")
    with torch.device("meta"):
        skeleton = _assemble(spec, p, features, indices)
    if _fully_initialized_by_us(skeleton):
        model = skeleton.to_empty(device=target)
        with _seeded(spec.seed):
            init_weights(model, spec)
    else:
        with torch.device(target), _seeded(spec.seed):
            model = _assemble(spec, p, features, indices)
            init_weights(model, spec)
    if isinstance(model, Freezable):
        model.train()  # frozen stages and norm_eval take effect on the built weights
    return model
