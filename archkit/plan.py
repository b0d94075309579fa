"""spec -> Plan: what the network looks like, computed without building a module.

``plan(spec)`` is the one place that knows every block's channels, stride, dilation, spatial size,
shortcut kind, drop-path rate and attention attachments, and every stem and head layer's name and
shapes. The builder, the summary, ``draw`` and ``feature_info`` read it instead of re-deriving.
The rules are torchvision's ``ResNet._make_layer`` (stride and shortcut on a stage's first block,
``replace_stride_with_dilation``) and timm's stochastic-depth schedule.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import SpecError
from .layers import Shape
from .registry import BLOCKS
from .specs import ModelSpec, scaled, stage_name


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """A stem or head layer: its child name and per-sample shapes."""

    part: str  # "stem" or "head"
    index: int
    name: str
    layer: Any  # the validated layer params
    in_shape: Shape
    out_shape: Shape


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """One residual block, as ``_make_layer`` makes it."""

    stage: int  # 0-based
    index: int  # within the stage
    global_index: int  # over the whole network
    type: str
    cls: Any
    params: Any
    in_channels: int
    planes: int
    out_channels: int
    stride: int
    dilation: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    shortcut: str  # identity, none, or the kind of the shortcut module (projection, avg_down, ...)
    drop_path_rate: float
    attn: tuple

    @property
    def name(self) -> str:
        """The block's module path: ``layer2.0``."""
        return f"{stage_name(self.stage)}.{self.index}"


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """A stage: its child name and blocks."""

    index: int
    name: str
    blocks: tuple[BlockPlan, ...]
    in_shape: Shape
    out_shape: Shape

    @property
    def depth(self) -> int:
        """Number of blocks."""
        return len(self.blocks)


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
    def stem_feature(self) -> LayerPlan:
        """The stem's feature map (index 0), timm's: the last stem layer before the stem's final
        downsampling (ResNet's activation before the max pool, at reduction 2), else its last layer."""
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
            out_shape = layer.output_shape(shape)
        except ValueError as exc:
            raise spec.error((part, i), f"{layer.type}: {exc}") from None
        out.append(LayerPlan(part, i, name, layer, shape, out_shape))
        taken.add(name)
        shape = out_shape
    return tuple(out), shape


def drop_path_rates(rate: float, blocks: int) -> list[float]:
    """timm's linear rule: block i of N gets rate * i / (N - 1); the first block never drops."""
    return [rate * i / (blocks - 1) if blocks > 1 else 0.0 for i in range(blocks)]


def plan(spec: ModelSpec, *, head: bool | None = None) -> Plan:
    """Every layer's and block's shapes and settings, or a located SpecError.

    ``head=False`` leaves out the head (a backbone); the default follows the spec's ``features_only``.
    """
    input_shape: Shape = (spec.input.channels, *spec.input.size)
    taken = {stage_name(i) for i in range(len(spec.stages))}
    stem, shape = _layers(spec, "stem", input_shape, taken)
    depths = [scaled(s.planes, s.depth, spec.width_multiplier, spec.depth_multiplier, spec.width_divisor)
              for s in spec.stages]
    rates = drop_path_rates(spec.drop_path_rate, sum(d for _, d in depths))
    stages, dilation, n = [], 1, 0
    for i, (stage, (planes, depth)) in enumerate(zip(spec.stages, depths)):
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
        in_channels, height, width = shape
        blocks, out_channels = [], None
        for j in range(depth):
            block = listed[j] if listed is not None else stage.block
            where = (*path, "blocks", j) if listed is not None else (*path, "block")
            cls = BLOCKS.get(block.type).obj
            kind = block.shortcut or cls.shortcuts[0]
            try:
                out_j = cls.out_channels(planes, block)
            except (ValueError, NotImplementedError) as exc:
                raise spec.error(path, f"{block.type} block: {exc}") from None
            if out_channels is not None and out_j != out_channels:
                raise spec.error(where, f"outputs {out_j} channels where the stage's first block outputs "
                                        f"{out_channels}; a stage's blocks share their output width")
            out_channels = out_j
            s = stride if j == 0 else 1
            sizer = getattr(cls, "out_size", None)  # plugin blocks not derived from Block: a strided 3x3's size
            try:
                size = sizer(in_size=(height, width), stride=s, params=block) if sizer else \
                    ((height - 1) // s + 1, (width - 1) // s + 1)
            except ValueError as exc:
                raise spec.error(path, f"{block.type} block: {exc}") from None
            changes = s != 1 or in_channels != out_channels
            shortcut = "none" if kind == "none" else kind if changes else "identity"
            if shortcut == "zero_pad" and out_channels < in_channels:
                raise spec.error((*where, "shortcut"), f"zero_pad cannot shrink {in_channels} channels to "
                                                       f"{out_channels}; use projection or avg_down")
            # torchvision gives the first block the dilation in force before this stage, the rest the new one
            blocks.append(BlockPlan(i, j, n, block.type, cls, block, in_channels, planes, out_channels, s,
                                    first_dilation if j == 0 else dilation, (height, width), size, shortcut,
                                    rates[n], tuple(block.attn)))
            in_channels, (height, width), n = out_channels, size, n + 1
        shape = (out_channels, height, width)
        stages.append(StagePlan(i, stage_name(i), tuple(blocks), in_shape, shape))
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
