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
import math
import re
from typing import Any

from .blocks.base import BlockPlan
from .complexity import Cost
from .errors import SpecError, first_line
from .graph import DescriptionError, Graph, Scope
from .layers import describe as describe_layer
from .specs import MAX_BLOCKS, ModelSpec, scaled_depth, scaled_width
from .catalog import BLOCKS, STAGES, block_type, stage_kind
from .params import note_reads, reading
from .registry import BUILTIN
from .stages import StageInput, StageProblem, StageResult, describe_block
from .stages.base import drop_block_of

Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """A stem or head layer: its child name, per-sample shapes and its description (an op or a graph)."""

    part: str  # "stem", "final" or "head"
    index: int
    name: str  # its module path: conv1 (torchvision's layout), stem.conv1 (timm's); final layers: their name
    layer: Any  # the validated layer params
    in_shape: Shape
    out_shape: Shape
    op: Any  # archkit.graph.Op or Graph

    @property
    def cost(self) -> Cost:
        """Parameters, MACs and writes per sample (NotImplementedError for a type that declares none)."""
        cached = self.__dict__.get("_cost")
        if cached is None:
            cached = self.op.cost((self.in_shape,), self.out_shape)
            object.__setattr__(self, "_cost", cached)
        return cached


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """A stage: its module path, its blocks and their descriptions, and the stage module's."""

    index: int
    name: str  # its module path: layer2 (torchvision's layout), stages.1 (timm's)
    blocks: tuple[BlockPlan, ...]
    ops: tuple[Any, ...]  # each block's Graph (a Custom op for a module-form block)
    in_shape: Shape
    out_shape: Shape
    out_shapes: tuple[Shape, ...] = ()  # each block's output shape
    result: StageResult | None = None  # what the stage type planned (cached across plans)
    stage: Any = None  # the validated stage params

    @property
    def depth(self) -> int:
        """Number of blocks."""
        return len(self.blocks)

    @property
    def cost(self) -> Cost | None:
        """The stage's parameters, MACs and writes per sample (None where a block must be measured)."""
        return self.result.cost if self.result is not None else StageResult(self.blocks, self.ops, (), 0).cost

    @property
    def type(self) -> str:
        """The stage type's name."""
        return self.result.type if self.result is not None and self.result.type else "resnet"

    def graph(self) -> Graph:
        """The stage module's description: the stage type's, else a sequential graph of its blocks."""
        if self.result is not None and self.result.graph is not None:
            return self.result.graph
        s = Scope("Sequential", sequential=True)
        x = s.input(self.in_shape)
        for bp, op in zip(self.blocks, self.ops):
            x = s.call(bp.name.rpartition(".")[2], op, x)
        return s.finish(x)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The whole network: input, stem layers, stages, final layers, head layers."""

    spec: ModelSpec
    input_shape: Shape
    stem: tuple[LayerPlan, ...]
    stages: tuple[StagePlan, ...]
    head: tuple[LayerPlan, ...]
    final: tuple[LayerPlan, ...] = ()

    @property
    def names(self) -> Any:
        """The module layout (``archkit.layout.Layout``): where the stem, stages, blocks and head live."""
        return self.spec.names

    def notes(self) -> list[str]:
        """What builds but is likely not what was meant: strides on a map already 1x1 (a small input)."""
        for sp in self.stages:
            if len(sp.in_shape) == 3 and sp.in_shape[1:] == (1, 1) and sp.stage is not None and \
                    sp.stage.stride > 1 and not sp.stage.dilate:
                size = "x".join(map(str, self.input_shape[1:]))
                return [f"stages[{sp.index}] and later strides act on a 1x1 map and do nothing: the {size} input is "
                        "1x1 before them (a larger input size, or fewer strides?)"]
        return []

    @property
    def blocks(self) -> list[BlockPlan]:
        """Every block in forward order."""
        return [b for s in self.stages for b in s.blocks]

    @property
    def features_shape(self) -> Shape:
        """The last feature map's shape (the head's input): the final layers', else the last stage's."""
        return self.final[-1].out_shape if self.final else self.stages[-1].out_shape

    @property
    def final_taps(self) -> bool:
        """Whether the last feature map is the final layers' output (timm's byobnet ``final_conv``), rather than
        the last stage's (timm's RegNet, whose final conv feeds only the head)."""
        return bool(self.final) and self.spec.final_in_features

    def feature_shape(self, index: int) -> Shape:
        """The shape of feature map ``index`` (0: the stem's; the last stage's, after the final layers where
        they are part of the features)."""
        if index == 0:
            return self.stem_feature.out_shape
        return self.features_shape if index == len(self.stages) and self.final_taps else self.stages[index - 1].out_shape

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

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's ``group_matcher`` for layer-wise decay, from the plan's module paths: the stem; each block
        (``coarse``: each stage); a stage's own modules join its first block's group where they come before
        its blocks (a downsample conv) and its last block's where they come after (CSP's transitions), as
        timm's stages do; final layers join the last block's (timm's ``MATCH_PREV_GROUP``, 99999). Each rule
        carries its group's ordinals (stage, block), so any names the layout gives order the same way."""
        stem = "|".join(re.escape(lp.name) for lp in self.stem) or "$^"
        rules: list[tuple[str, tuple | None]] = []
        for i, sp in enumerate(self.stages):
            stage = re.escape(sp.name)
            if coarse:
                rules.append((rf"^{stage}(?:\.|$)", (i,)))
                continue
            rules += [(rf"^{re.escape(bp.name)}(?:\.|$)", (i, j)) for j, bp in enumerate(sp.blocks)]
            inner = sp.blocks[0].name[len(sp.name):].rpartition(".")[0]  # "" or ".blocks": where the blocks live
            own = list(sp.graph().children) if sp.result is not None and sp.result.graph is not None else []
            container = inner.lstrip(".").partition(".")[0]
            after = own[own.index(container) + 1:] if container in own else []
            if after:
                rules.append((rf"^{stage}\.(?:{'|'.join(map(re.escape, after))})(?:\.|$)", (i, 99999)))
            if len(own) > len(after) + (container in own):
                rules.append((rf"^{stage}(?:\.|$)", (i, 0)))
        if self.final:
            rules.append((rf"^(?:{'|'.join(re.escape(lp.name) for lp in self.final)})(?:\.|$)", (99999,)))
        return {"stem": rf"^(?:{stem})(?:\.|$)", "blocks": rules}

    def backbone(self, indices: list[int]) -> tuple[tuple, tuple, tuple]:
        """The stem layers, stages and final layers a backbone for outputs ``indices`` keeps: up to the last
        output (the stem up to its feature map for output 0 alone; final layers with the last stage)."""
        last = max(indices)
        stem = self.stem if last > 0 else self.stem[: self.stem.index(self.stem_feature) + 1]
        return stem, self.stages[:last], self.final if last == len(self.stages) and self.final_taps else ()

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
            else:  # the last stage's map is the final layers' output, as timm's final_conv
                name = self.final[-1].name if i == len(self.stages) and self.final_taps else self.stages[i - 1].name
                shape = self.feature_shape(i)
            ratio = height / shape[1]  # timm reports the strides' product: 32 for a 240 input's 8x8 map, not 30
            reduction = 2 ** round(math.log2(ratio)) if ratio >= 1 else 1
            info.append({"index": i, "module": name, "num_chs": shape[0], "reduction": reduction})
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
            base = layer.type.rpartition(":")[2]  # a plugin's type by its qualified name: its bare name
            name, k = base, 2
            while name in taken:
                name, k = f"{base}{k}", k + 1
            taken.add(name)
        names.append(name)
    return names


def _layers(spec: ModelSpec, part: str, shape: Shape, taken: set[str],
            width: float = 1.0) -> tuple[tuple[LayerPlan, ...], Shape]:
    layers = getattr(spec, part)
    rule = spec.scaling
    if width != 1.0 and part in rule.parts and width >= rule.fixed_below.get(part, 0.0):  # the family scales it too
        keep = _classes_layer(layers) if part == "head" else None  # the classes never scale
        layers = [layer if i == keep else _scaled_layer(layer, width, spec, part) for i, layer in enumerate(layers)]
    key = (part, tuple(layers), shape, frozenset(taken), spec.norm, spec.activation, spec.layout, spec.deploy)
    found = _PART_CACHE.get(key)
    if found is None:  # a stem or head is described once per configuration (fit repeats them)
        found = _describe_layers(spec, part, layers, shape, taken)
        if len(_PART_CACHE) > _CACHE_MAX:
            _PART_CACHE.clear()
        _PART_CACHE[key] = found
    taken.update(lp.name.rpartition(".")[2] for lp in found[0])  # later parts' default names avoid these
    return found


def _widths(layer: Any) -> dict[str, int]:
    """The width fields ``layer``'s type names (``widths``; ``channels`` by default) that it sets."""
    return {f: v for f in layer.widths if isinstance(v := getattr(layer, f, None), int) and not isinstance(v, bool)}


def _classes_layer(head: list) -> int | None:
    """The head layer whose width is the classes (a 1x1 conv classifier: the last layer that sets a width, with
    no linear classifier after it); None where a linear layer holds them."""
    last = next((i for i in range(len(head) - 1, -1, -1) if head[i].classifier or _widths(head[i])), None)
    return None if last is None or head[last].classifier else last


def _scaled_layer(layer: Any, width: float, spec: ModelSpec, part: str) -> Any:
    """``layer`` with its widths scaled (and a nested layer's, ``layers:``, each)."""
    floor = part in spec.scaling.floor
    update: dict[str, Any] = {f: max(v if floor else 0, scaled_width(v, width, spec.width_divisor,
                                                                      spec.scaling.round_limit))
                              for f, v in _widths(layer).items()}
    if layer.nested and isinstance(getattr(layer, "layers", None), list):
        update["layers"] = [_scaled_layer(inner, width, spec, part) for inner in layer.layers]
    return layer.model_copy(update=update) if update else layer


def _describe_layers(spec: ModelSpec, part: str, layers: list, shape: Shape,
                     taken: set[str]) -> tuple[tuple[LayerPlan, ...], Shape]:
    container = "" if part == "final" else getattr(spec.names, part)  # final layers: the network's own
    prefix = f"{container}." if container else ""
    out = []
    for i, (name, layer) in enumerate(zip(layer_names(layers, taken), layers)):
        try:
            if container and len(layers) == 1 and \
                    (layer.name == container or (layer.name is None and layer.whole)):
                name = ""  # the part's only layer is the part itself (timm's byob stems: stem.conv.*, stem.conv_kxk.*)
            op, out_shape = _layer_op(layer, name or container, shape, spec.norm, spec.activation, spec.deploy)
        except (ValueError, NotImplementedError) as exc:
            raise spec.error((part, i), f"{layer.type}: {first_line(exc)}") from None
        if part in ("stem", "final") and len(out_shape) != 3:  # the stages and the feature maps need a map
            after = "the stages" if part == "stem" else "the head and the feature maps"
            raise spec.error((part, i), f"{layer.type}: {after} need a (channels, height, width) input, this {part} "
                                        f"layer gives {list(out_shape)} (pooling and flattening belong in head:)")
        out.append(LayerPlan(part, i, prefix + name if name else container, layer, shape, out_shape, op))
        taken.add(name)
        shape = out_shape
    return tuple(out), shape


_LAYER_CACHE: dict[tuple, tuple[Any, Shape]] = {}
_PART_CACHE: dict[tuple, tuple[tuple[LayerPlan, ...], Shape]] = {}
_STAGE_CACHE: dict[StageInput, StageResult] = {}
_CACHE_MAX = 4096


def _layer_op(layer: Any, name: str, shape: Shape, norm: Any, act: Any, deploy: bool = False) -> tuple[Any, Shape]:
    key = (layer, name, shape, norm, act, deploy)
    found = _LAYER_CACHE.get(key)
    if found is None:
        found = describe_layer(layer, name, shape, norm, act, deploy)
        if len(_LAYER_CACHE) > _CACHE_MAX:
            _LAYER_CACHE.clear()
        _LAYER_CACHE[key] = found
    return found


def drop_path_rates(rate: float, blocks: int, schedule: str = "linspace") -> list[float]:
    """timm's rules: ``linspace`` (its ResNet, CSP and BYOB models: block i of N gets rate * i / (N - 1), the last
    the full rate) or ``fraction`` (its EfficientNet builder: rate * i / N); the first block never drops."""
    if schedule == "fraction":
        return [rate * i / blocks for i in range(blocks)]
    return [rate * i / (blocks - 1) if blocks > 1 else 0.0 for i in range(blocks)]


def _stage(si: StageInput) -> StageResult:
    found = _STAGE_CACHE.get(si)
    if found is not None:
        note_reads(found.reads)
    else:  # a stage is planned once per configuration (fit and list repeat them)
        kind = stage_kind(si.stage.type)
        with reading() as fields:  # the block keys its planning and its blocks' descriptions read
            found = kind.plan(si)
        object.__setattr__(found, "type", kind.name)
        object.__setattr__(found, "reads", frozenset(fields))
        if len(_STAGE_CACHE) > _CACHE_MAX:
            _STAGE_CACHE.clear()
        _STAGE_CACHE[si] = found
    return found


_PLAN_CACHE: dict[tuple, tuple] = {}


def plan(spec: ModelSpec, *, head: bool | None = None, width_multiplier: float | None = None,
         depth_multiplier: float | None = None) -> Plan:
    """Every layer's and block's shapes, settings and description, or a located SpecError.

    ``head=False`` leaves out the head (a backbone); the default follows the spec's ``features_only``.
    ``width_multiplier`` / ``depth_multiplier`` replace the spec's (design-space searches vary them).
    Plans are kept per configuration: a search that revisits one pays a dictionary lookup.
    """
    width = spec.width_multiplier if width_multiplier is None else width_multiplier
    depth = spec.depth_multiplier if depth_multiplier is None else depth_multiplier
    with_head = not spec.features_only if head is None else head
    key = (spec, width, depth, with_head)  # the spec by value (hashed once): a new field can never be left out
    found = _PLAN_CACHE.get(key)
    if found is None:
        found = _plan(spec, with_head, width, depth)
        if spec.deploy:
            _check_deploy(spec, found, _plan(spec.model_copy(update={"deploy": False}), with_head, width, depth))
        if len(_PLAN_CACHE) > _CACHE_MAX:
            _PLAN_CACHE.clear()
        _PLAN_CACHE[key] = found
    return Plan(spec, *found)


def _plan(spec: ModelSpec, with_head: bool, width: float, depth_multiplier: float) -> tuple:
    input_shape: Shape = (spec.input.channels, *spec.input.size)
    names = spec.names
    taken = {names.stages} if names.stages else {spec.stage_path(i) for i in range(len(spec.stages))}
    if not names.stem:  # the network's namespace: a later part's given name is no stem layer's default
        taken |= {layer.name for layer in spec.final if layer.name is not None}
        taken |= {names.head} if names.head else {layer.name for layer in spec.head if layer.name is not None}
    stem, shape = _layers(spec, "stem", input_shape, taken, width)
    rule = spec.scaling
    widths = (width if "stages" in rule.parts else 1.0, spec.width_divisor, rule.round_limit)
    sizes = [(scaled_width(s.planes, *widths), _depth(s, depth_multiplier, rule.depth)) for s in spec.stages]
    rates = drop_path_rates(spec.drop_path_rate, sum(d for _, d in sizes), spec.drop_path_schedule)
    stages, dilation, n, planned = [], 1, 0, 0
    # timm's output_stride: once the network's stride reaches it, later strides become dilation
    net_stride = max(1, round(input_shape[1] / shape[1])) if len(shape) == 3 else 1
    for i, (stage, (planes, depth)) in enumerate(zip(spec.stages, sizes)):
        path = ("stages", i)
        if len(shape) != 3:
            raise spec.error(path, f"a stage needs a (channels, height, width) input, but gets {list(shape)}")
        dilate = stage.dilate or (net_stride >= spec.output_stride and stage.stride > 1)
        if not dilate:
            net_stride *= stage.stride
        si = StageInput(i, spec.stage_path(i), stage, planes, depth,
                        shape, dilation, n, tuple(rates[n:n + depth]), spec.norm, spec.activation,
                        spec.drop_block_rate, names.like, block_type, dilate, spec.deploy,
                        drop_block_of(spec.drop_block_rate, i, len(spec.stages), spec.drop_block_size), names,
                        widths)
        try:
            result = _stage(si)
        except StageProblem as exc:
            origin = _plugin(BLOCKS, exc.block) if exc.block else ""
            raise spec.error((*path, *exc.where), f"{exc}{origin}") from (exc.__cause__ if exc.block else None)
        except SpecError:
            raise
        except Exception as exc:  # noqa: BLE001 - a stage type's own code failing (a plugin's): located, named
            raise spec.error(path, f"{stage.type} stage: {type(exc).__name__}: {first_line(exc)}"
                                   f"{_plugin(STAGES, stage.type)}") from exc
        out = result.out_shape
        if len(out) == 3 and out[1] < shape[1] and not dilate:  # a block that downsamples itself (space-to-depth)
            net_stride = max(net_stride, 2 ** round(math.log2(input_shape[1] / out[1])))
        stages.append(StagePlan(i, si.name, result.blocks, result.ops, shape, out, result.shapes, result, stage))
        shape, dilation, n = out, result.dilation, n + depth
        planned += len(result.blocks)
        if planned > MAX_BLOCKS:  # a stage type may plan more blocks than its depth says
            raise spec.error(path, f"{planned:,} blocks planned up to stage {i + 1}, above the {MAX_BLOCKS:,} "
                                   f"supported (stage type {stage.type}{_plugin(STAGES, stage.type)})")
    check_reads(spec, stages)
    check_renames(spec, stages)
    final, shape = _layers(spec, "final", shape, taken, width) if spec.final else ((), shape)
    head_plan = _layers(spec, "head", shape, taken, width)[0] if with_head else ()
    return input_shape, stem, tuple(stages), head_plan, final


def _depth(stage: Any, multiplier: float, rounding: str) -> int:
    """A stage's depth after the multiplier (its own, if it has one): its type's rule where it has one (timm's
    EfficientNet stages give each block string at least one block), else ``scaled_depth``."""
    multiplier = multiplier if stage.depth_multiplier is None else stage.depth_multiplier
    rule = getattr(stage, "scaled_depth", None)
    return rule(multiplier, rounding) if callable(rule) else scaled_depth(stage.depth, multiplier, rounding)


_SHARED_KEYS = frozenset({"type", "shortcut", "attn", "names"})  # every block's, read by the planner itself


def check_reads(spec: ModelSpec, stages: Any) -> None:
    """A block key the spec sets that no description of its type reads anywhere in the network would change
    nothing (a plugin's params inherited from another block's, say): refused where it is set. A module-form
    block's reads are known once it is built (the builder calls this again then)."""
    reads: dict[str, set | None] = {}
    for sp in stages:
        planned = sp.result.reads if sp.result is not None else frozenset()  # the stage's planning, its blocks'
        for bp, op in zip(sp.blocks, sp.ops):
            built = getattr(getattr(op, "factory", None), "reads", ...)  # a module-form block: known once built
            if built is None:
                reads[bp.type] = None
            elif reads.get(bp.type, set()) is not None:
                reads[bp.type] = reads.get(bp.type, set()) | planned | (built if built is not ... else set())
    for i, sp in enumerate(stages):
        stage = sp.stage
        places = _block_places(stage)
        for where, block in places:
            if block is None or reads.get(block.type) is None:  # not planned here, or a module-form block
                continue
            known = reads[block.type]
            unread = sorted(set(block.model_fields_set) - _SHARED_KEYS - known)
            if unread:
                raise spec.error(("stages", i, *where, unread[0]), f"{block.type} blocks never read {unread[0]!r}: "
                                 "set here it would change nothing (a key of the block's params that its "
                                 "description ignores)")


def check_renames(spec: ModelSpec, stages: Any) -> None:
    """Each key of a block's ``names:`` must rename a child of a block it applies to: one the top-level
    ``block:`` gives, of some block of the network (ResNet-18's first stage has no ``downsample``, the next
    ones do); one a stage gives, of a block of that stage. A name no such block has is refused where it is set."""
    inherited = dict(getattr(spec.block, "names", None) or {})
    everywhere: set[str] = set()
    for sp in stages:
        everywhere |= _renamed_in(sp)
    for i, sp in enumerate(stages):
        here = _renamed_in(sp)
        places = _block_places(sp.stage)
        for where, block in places:
            names = getattr(block, "names", None) or {}
            unused = sorted(k for k, v in names.items() if k not in (everywhere if inherited.get(k) == v else here))
            if unused:
                children = sorted({c for op in sp.ops for c in getattr(op, "children", ())})
                raise spec.error(("stages", i, *where, "names", unused[0]), f"no {block.type} block "
                                 f"{'of this network' if inherited.get(unused[0]) else f'of stage {i + 1}'} has a "
                                 f"child {unused[0]!r} (stage {i + 1}'s blocks have: {', '.join(children)})")


def _block_places(stage: Any) -> list[tuple[tuple, Any]]:
    """Where a stage sets block keys: its ``block``, each ``blocks:``, ``pattern:`` and (a stage type's own)
    ``groups:`` item (path, block)."""
    return [(("block",), stage.block)] + [((key, j), b) for key in ("blocks", "pattern", "groups")
                                          for j, b in enumerate(getattr(stage, key, None) or ())]


def _renamed_in(sp: Any) -> set[str]:
    """The ``names:`` keys the blocks of stage plan ``sp`` used."""
    return {k for op in sp.ops for k in getattr(op, "renamed", ())}


def _plugin(registry: Any, name: str) -> str:
    """`` (plugin DIST VERSION)`` for a plugin's type, so a user knows whose code failed; nothing for built-ins."""
    try:
        entry = registry.get(name)
    except SpecError:
        return ""
    return "" if entry.origin == BUILTIN else f" (plugin {entry.origin})"


def _check_deploy(spec: ModelSpec, deployed: tuple, trained: tuple) -> None:
    """``deploy: true`` must change something: a spec without a block or layer that has a deploy form would
    build the same model and say nothing."""
    if _differ(deployed, trained) is False:
        raise spec.error(("deploy",), "changes nothing here: no block or layer of this spec has a deploy form "
                                      "(re-parameterizable ones such as rep, one, rep_stem, one_stem)")


def has_deploy_form(spec: ModelSpec) -> bool | None:
    """Whether ``deploy: true`` changes what ``spec`` builds (None: a part is measured at build time)."""
    args = (not spec.features_only, spec.width_multiplier, spec.depth_multiplier)
    return _differ(_plan(spec.model_copy(update={"deploy": True}), *args),
                   _plan(spec.model_copy(update={"deploy": False}), *args))


def _differ(a: tuple, b: tuple) -> bool | None:
    """Whether two plans differ in some part's parameters (compared where every part declares them)."""
    def params(found: tuple) -> list | None:
        _, stem, stages, head, final = found
        try:
            costs = [part.cost for part in (*stem, *stages, *final, *head)]
        except (ValueError, TypeError, NotImplementedError, RuntimeError):
            return None  # a plugin's module measured at build time: not compared
        return None if any(c is None for c in costs) else [c.params for c in costs]

    ours, theirs = params(a), params(b)
    return None if ours is None or theirs is None else ours != theirs


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
