"""spec -> Plan: what the network looks like, computed without torch.

``plan(spec)`` is the one place that knows every layer's and block's channels, stride, dilation,
sizes, shortcut kind, drop rates and attention attachments, and each one's description (a
``Graph``: children, dataflow, shapes, costs). The builder, the summary, ``draw``, ``fit`` and
``feature_info`` read it instead of re-deriving. The stage rules are torchvision's
``ResNet._make_layer`` (stride and shortcut on a stage's first block, ``replace_stride_with_dilation``)
and timm's stochastic-depth and DropBlock schedules.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .blocks.base import BlockPlan, BlockType, Shortcut
from .catalog import block_type
from .complexity import Cost
from .errors import SpecError, first_line
from .graph import Custom, DescriptionError, Graph, Scope
from .layers import describe as describe_layer
from .specs import ModelSpec, scaled, stage_name

Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """A stem or head layer: its child name, per-sample shapes and its description (an op or a graph)."""

    part: str  # "stem" or "head"
    index: int
    name: str
    layer: Any  # the validated layer params
    in_shape: Shape
    out_shape: Shape
    op: Any  # archkit.graph.Op or Graph


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """A stage: its child name, its blocks and their descriptions."""

    index: int
    name: str
    blocks: tuple[BlockPlan, ...]
    ops: tuple[Any, ...]  # each block's Graph (a Custom op for a module-form block)
    in_shape: Shape
    out_shape: Shape
    out_shapes: tuple[Shape, ...] = ()  # each block's output shape

    @property
    def depth(self) -> int:
        """Number of blocks."""
        return len(self.blocks)

    @property
    def cost(self) -> Cost | None:
        """The stage's parameters, MACs and writes per sample (None where a block must be measured)."""
        total = Cost()
        for op in self.ops:
            try:
                total = total + op.cost((), ())
            except NotImplementedError:
                return None
        return total

    def graph(self) -> Graph:
        """The stage as one sequential graph of its blocks (``0``, ``1``, ...)."""
        s = Scope("Sequential", sequential=True)
        x = s.input(self.in_shape)
        for j, op in enumerate(self.ops):
            x = s.call(str(j), op, x)
        return s.finish(x)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The whole network: input, stem layers, stages, head layers."""

    spec: ModelSpec
    input_shape: Shape
    stem: tuple[LayerPlan, ...]
    stages: tuple[StagePlan, ...]
    head: tuple[LayerPlan, ...]

    @property
    def blocks(self) -> list[BlockPlan]:
        """Every block in forward order."""
        return [b for s in self.stages for b in s.blocks]

    @property
    def features_shape(self) -> Shape:
        """The last stage's output shape (the head's input)."""
        return self.stages[-1].out_shape

    @property
    def output_shape(self) -> Shape:
        """The network's per-sample output shape."""
        return self.head[-1].out_shape if self.head else self.features_shape

    @property
    def stem_feature(self) -> LayerPlan | None:
        """The stem's feature map (index 0), timm's: the last stem layer before the stem's final
        downsampling (ResNet's activation before the max pool, at reduction 2), else its last layer;
        None for a spec without a stem."""
        if not self.stem:
            return None
        final = self.stem[-1].out_shape
        if len(final) != 3:
            return self.stem[-1]
        larger = [lp for lp in self.stem if len(lp.out_shape) == 3
                  and lp.out_shape[1] * lp.out_shape[2] > final[1] * final[2]]
        return larger[-1] if larger else self.stem[-1]

    def feature_info(self, indices: list[int]) -> list[dict]:
        """timm's ``feature_info`` for outputs ``indices`` (0 = the stem's feature map, i = stage i)."""
        height = self.input_shape[1]
        info = []
        for i in indices:
            if i == 0:
                stem = self.stem_feature
                if stem is None:
                    raise SpecError("this spec has no stem, so no feature map 0", None, "out_indices")
                name, shape = stem.name, stem.out_shape
            else:
                name, shape = self.stages[i - 1].name, self.stages[i - 1].out_shape
            info.append({"index": i, "module": name, "num_chs": shape[0], "reduction": round(height / shape[1])})
        return info


def layer_names(layers: list, taken: set[str]) -> list[str]:
    """Child names of stem or head layers: the given name, else the type, numbered if it is taken.

    Given names are reserved before any default is chosen, so a default never takes a name the
    spec gives to a later layer (which would silently drop one of them).
    """
    taken = taken | {layer.name for layer in layers if layer.name is not None}
    names = []
    for layer in layers:
        name = layer.name
        if name is None:
            name, k = layer.type, 2
            while name in taken:
                name, k = f"{layer.type}{k}", k + 1
            taken.add(name)
        names.append(name)
    return names


def _layers(spec: ModelSpec, part: str, shape: Shape, taken: set[str]) -> tuple[tuple[LayerPlan, ...], Shape]:
    layers = getattr(spec, part)
    out = []
    for i, (name, layer) in enumerate(zip(layer_names(layers, taken), layers)):
        try:
            op, out_shape = _layer_op(layer, name, shape, spec.norm, spec.activation)
        except (ValueError, NotImplementedError) as exc:
            raise spec.error((part, i), f"{layer.type}: {first_line(exc)}") from None
        out.append(LayerPlan(part, i, name, layer, shape, out_shape, op))
        taken.add(name)
        shape = out_shape
    return tuple(out), shape


_LAYER_CACHE: dict[tuple, tuple[Any, Shape]] = {}
_BLOCK_CACHE: dict[tuple, Graph] = {}
_CACHE_MAX = 4096


def _layer_op(layer: Any, name: str, shape: Shape, norm: Any, act: Any) -> tuple[Any, Shape]:
    key = (layer, name, shape, norm, act)
    found = _LAYER_CACHE.get(key)
    if found is None:
        found = describe_layer(layer, name, shape, norm, act)
        if len(_LAYER_CACHE) > _CACHE_MAX:
            _LAYER_CACHE.clear()
        _LAYER_CACHE[key] = found
    return found


def describe_block(bp: BlockPlan) -> Graph:
    """The block's description (cached: blocks of a stage, and of many specs, share one)."""
    key = bp.key()
    graph = _BLOCK_CACHE.get(key)
    if graph is None:
        s = Scope(bp.kind.cls_name, norm_layer=bp.norm, act_layer=bp.act)
        x = s.input((bp.in_channels, *bp.in_size))
        graph = s.finish(bp.kind.describe(bp, s, x))
        if len(_BLOCK_CACHE) > _CACHE_MAX:
            _BLOCK_CACHE.clear()
        _BLOCK_CACHE[key] = graph
    return graph


class ModuleBlock:
    """Builds a module-form block from its plan (the builder calls it, with torch imported)."""

    def __init__(self, bp: BlockPlan):
        self.bp = bp

    def __call__(self) -> Any:
        return self.bp.kind.module(self.bp)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModuleBlock) and other.bp.key() == self.bp.key()

    def __hash__(self) -> int:
        return hash(self.bp.key())


def _module_block(bp: BlockPlan, out_size: tuple[int, int]) -> Custom:
    declared = None
    if bp.kind.cost is not None:
        declared = bp.kind.cost(bp)
    return Custom(bp.kind.cls_name, ModuleBlock(bp), (), (bp.out_channels, *out_size), declared,
                  declared.params if declared is not None else 0)


def drop_path_rates(rate: float, blocks: int) -> list[float]:
    """timm's linear rule: block i of N gets rate * i / (N - 1); the first block never drops."""
    return [rate * i / (blocks - 1) if blocks > 1 else 0.0 for i in range(blocks)]


def drop_block_of(rate: float, stage: int) -> tuple[float, int, float] | None:
    """timm's ``drop_blocks``: block size 5 and gamma scale 0.25 in the third stage, 3 and 1.0 in the fourth."""
    if rate <= 0 or stage not in (2, 3):
        return None
    return (rate, 5, 0.25) if stage == 2 else (rate, 3, 1.0)


def plan(spec: ModelSpec, *, head: bool | None = None) -> Plan:
    """Every layer's and block's shapes, settings and description, or a located SpecError.

    ``head=False`` leaves out the head (a backbone); the default follows the spec's ``features_only``.
    """
    input_shape: Shape = (spec.input.channels, *spec.input.size)
    taken = {stage_name(i) for i in range(len(spec.stages))}
    stem, shape = _layers(spec, "stem", input_shape, taken)
    sizes = [scaled(s.planes, s.depth, spec.width_multiplier, spec.depth_multiplier, spec.width_divisor)
             for s in spec.stages]
    rates = drop_path_rates(spec.drop_path_rate, sum(d for _, d in sizes))
    stages, dilation, n = [], 1, 0
    for i, (stage, (planes, depth)) in enumerate(zip(spec.stages, sizes)):
        path = ("stages", i)
        if len(shape) != 3:
            raise spec.error(path, f"a stage needs a (channels, height, width) input, but gets {list(shape)}")
        listed = stage.blocks  # per-block settings (a pruned network's widths), else the stage's block for all
        if listed is not None and len(listed) != depth:
            raise spec.error((*path, "blocks"), f"lists {len(listed)} blocks for a stage of depth {depth}")
        stride, first_dilation = stage.stride, dilation
        if stage.dilate:  # replace_stride_with_dilation: later blocks dilate instead of striding
            dilation *= stride
            stride = 1
        in_shape = shape
        blocks, ops, shapes, out_channels = [], [], [], None
        for j in range(depth):
            block = listed[j] if listed is not None else stage.block
            where = (*path, "blocks", j) if listed is not None else (*path, "block")
            kind: BlockType = block_type(block.type)
            try:
                out_j = kind.channels_out(planes, block)
            except (ValueError, NotImplementedError) as exc:
                raise spec.error(path, f"{block.type} block: {first_line(exc)}") from None
            if out_channels is not None and out_j != out_channels:
                raise spec.error(where, f"outputs {out_j} channels where the stage's first block outputs "
                                        f"{out_channels}; a stage's blocks share their output width")
            out_channels = out_j
            s = stride if j == 0 else 1
            # torchvision gives the first block the dilation in force before this stage, the rest the new one
            block_dilation = first_dilation if j == 0 else dilation
            if block_dilation > 1 and not kind.dilation:
                raise spec.error(path, f"{block.type} blocks cannot dilate (stage {i + 1} needs dilation "
                                       f"{block_dilation})")
            asked = Shortcut(block.shortcut) if block.shortcut else kind.shortcuts[0]
            changes = s != 1 or shape[0] != out_channels
            shortcut = Shortcut.NONE if asked is Shortcut.NONE else asked if changes else Shortcut.IDENTITY
            if shortcut is Shortcut.ZERO_PAD and out_channels < shape[0]:
                raise spec.error((*where, "shortcut"), f"zero_pad cannot shrink {shape[0]} channels to "
                                                       f"{out_channels}; use projection or avg_down")
            bp = BlockPlan(i, j, n, kind, block, shape[0], planes, out_channels, s, block_dilation, dilation,
                           (shape[1], shape[2]), shortcut, rates[n],
                           drop_block_of(spec.drop_block_rate, i) if kind.drop_block else None,
                           tuple(block.attn), spec.norm, spec.activation, f"{stage_name(i)}.{j}")
            try:
                if kind.describe is not None:
                    op = describe_block(bp)
                    out_shape = op.output.shape
                else:
                    out_size = ((shape[1] - 1) // s + 1, (shape[2] - 1) // s + 1)
                    sizer = getattr(kind.module, "out_size", None)
                    if sizer is not None:
                        out_size = tuple(sizer(in_size=(shape[1], shape[2]), stride=s, params=block))
                    op = _module_block(bp, out_size)
                    out_shape = (out_channels, *out_size)
            except (ValueError, NotImplementedError) as exc:  # DescriptionError is a ValueError
                raise spec.error(path, f"{block.type} block: {first_line(exc)}") from None
            if out_shape[0] != out_channels:
                raise spec.error(path, f"{block.type} block: its description outputs {out_shape[0]} channels, its "
                                       f"type says {out_channels}")
            blocks.append(bp)
            ops.append(op)
            shapes.append(tuple(out_shape))
            shape, n = tuple(out_shape), n + 1
        stages.append(StagePlan(i, stage_name(i), tuple(blocks), tuple(ops), in_shape, shape, tuple(shapes)))
    with_head = not spec.features_only if head is None else head
    head_plan = _layers(spec, "head", shape, taken)[0] if with_head else ()
    return Plan(spec, input_shape, stem, tuple(stages), head_plan)


def out_indices(spec: ModelSpec, indices: Any) -> list[int]:
    """Validated feature outputs: the argument, else the spec's ``out_indices``, else every stage."""
    stages = len(spec.stages)
    from_spec = indices is None
    indices = spec.out_indices if from_spec else indices
    if indices is None:
        return list(range(1, stages + 1))
    field = ("out_indices",)

    def error(message: str) -> SpecError:
        return spec.error(field, message) if from_spec else SpecError(message, None, "out_indices (argument)")

    if isinstance(indices, int) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise error(f"must be a list of integers, got {indices!r}")
    indices = list(indices)
    if not indices:
        raise error("must name at least one output")
    low = 0 if spec.stem else 1
    for i in indices:
        if not low <= i <= stages:
            raise error(f"{i} is out of range: 0 is the stem's feature map, 1..{stages} the stages"
                        + ("" if spec.stem else " (this spec has no stem, so no 0)"))
    if indices != sorted(set(indices)):
        raise error(f"must be increasing without repeats, got {indices}")
    return indices


__all__ = ["LayerPlan", "StagePlan", "Plan", "BlockPlan", "plan", "describe_block", "out_indices", "drop_path_rates",
           "DescriptionError"]
