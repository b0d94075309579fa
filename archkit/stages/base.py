"""The stage contract: what a stage type gets from the plan, what it gives back, and the helpers stage
types share (block plans by torchvision's rules, a described stage module)."""

import dataclasses
from typing import Any, Callable

from ..blocks.base import BlockPlan, BlockType, Shortcut
from ..errors import first_line
from ..graph import Custom, Graph, Scope, Value
from ..params import StageParams, note_reads, reading

Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class StageInput:
    """One stage as the plan hands it to its stage type (hashable: stage plans are cached by it)."""

    index: int  # 0-based
    name: str  # its module path (layer2, stages.1)
    stage: Any  # the validated stage params (a StageParams subclass of its type)
    planes: int  # after the width multiplier
    depth: int  # after the depth multiplier
    in_shape: Shape
    dilation: int  # the dilation in force before this stage
    first_block: int  # the global index of its first block
    rates: tuple[float, ...]  # the drop-path rate of each of its blocks
    norm: Any
    act: Any
    drop_block_rate: float
    layout: str = "torchvision"  # the layout's preset (torchvision, timm); ``names`` says every name
    block_type: Callable[[str], BlockType] | None = None  # the block registry's lookup (the plan passes it)
    dilate: bool = False  # turn this stage's stride into dilation (its dilate: key, or the spec's output_stride)
    deploy: bool = False  # re-parameterizable blocks in their deploy form (the spec's deploy:)
    drop_block: tuple[float, int, float] | None = None  # this stage's DropBlock (rate, size, gamma), the plan's rule
    names: Any = None  # the spec's module layout (archkit.layout.Layout); ``layout`` is its preset's name
    widths: tuple[float, int, float] = (1.0, 1, 0.0)  # the width multiplier, divisor and round_limit on stages

    def block_name(self, index: int) -> str:
        """Block ``index``'s child name (``0``.., or as the layout names blocks: ``b1``..)."""
        return self.names.block_name(index) if self.names is not None else str(index)

    @property
    def blocks_container(self) -> str:
        """Where a plain stage keeps its blocks: ``""`` (the stage is its blocks) or a child (timm's ``blocks``)."""
        return self.names.blocks if self.names is not None else "" if self.layout == "torchvision" else "blocks"


@dataclasses.dataclass(frozen=True)
class StageResult:
    """A planned stage: its blocks, their descriptions and output shapes, the stage module's own
    description (None: an ``nn.Sequential`` of its blocks), its output shape and the dilation after it."""

    blocks: tuple
    ops: tuple
    shapes: tuple[Shape, ...]
    dilation: int
    graph: Graph | None = None
    type: str = ""  # the stage type that planned it (the plan fills it in)
    reads: frozenset = frozenset()  # the block params keys its planning read (the plan fills it in)

    @property
    def out_shape(self) -> Shape:
        """The stage's per-sample output shape."""
        return self.graph.output.shape if self.graph is not None else self.shapes[-1]

    @property
    def cost(self) -> Any:
        """Parameters, MACs and writes per sample; None where a block must be measured."""
        cached = self.__dict__.get("_cost", False)
        if cached is False:
            from ..complexity import Cost

            try:
                if self.graph is not None:
                    cached = self.graph.cost((), ())
                else:
                    cached = Cost()
                    for op in self.ops:
                        cached = cached + op.cost((), ())
            except NotImplementedError:
                cached = None
            object.__setattr__(self, "_cost", cached)
        return cached


class StageProblem(ValueError):
    """A stage that cannot be built: ``where`` is the field path inside the stage, e.g. ("block",)."""

    def __init__(self, where: tuple, message: str, block: str | None = None):
        super().__init__(message)
        self.where = where
        self.block = block  # the block type whose own code failed (a plugin's, the planner names it)


@dataclasses.dataclass(frozen=True, eq=False)
class StageType:
    """A registered stage type: its params model and the function that plans a stage of it."""

    name: str
    params: type[StageParams]
    plan: Callable[[StageInput], StageResult]
    cls_name: str = "Sequential"  # the stage module's class name (tables, drawings)
    doc: str = ""

    def renamed(self, name: str) -> "StageType":
        """The same type under another registry name (plugins are also reachable as ``dist:name``)."""
        return dataclasses.replace(self, name=name)


def stage_type(name: str, params: type[StageParams], *, cls_name: str = "Sequential",
               doc: str = "") -> Callable[[Callable[[StageInput], StageResult]], StageType]:
    """Decorate a planning function into a ``StageType`` (register it through the ``archkit.stages``
    entry-point group or ``archkit.catalog.STAGES``)."""

    def wrap(fn: Callable[[StageInput], StageResult]) -> StageType:
        text = doc or ((fn.__doc__ or "").strip().splitlines() or [""])[0]
        return StageType(name, params, fn, cls_name, text)

    return wrap


# --- blocks ------------------------------------------------------------------------------------------

_BLOCK_CACHE: dict[tuple, Graph] = {}
_CACHE_MAX = 4096


def describe_block(bp: BlockPlan) -> Graph:
    """The block's description (cached: blocks of a stage, and of many specs, share one)."""
    key = bp.key()
    graph = _BLOCK_CACHE.get(key)
    if graph is not None:
        note_reads(graph.reads)  # a cached description read these when it was made
    else:
        names = getattr(bp.params, "names", None) or {}
        if names and not bp.kind.renamable:
            raise StageProblem(("names",), f"{bp.type} blocks keep their children's names: re-parameterization "
                                           "folds their branches by name (deploy: true, archkit.reparameterize)")
        s = Scope(bp.kind.cls_name, norm_layer=bp.norm, act_layer=bp.act, deploy=bp.deploy, names=names)
        x = s.input((bp.in_channels, *bp.in_size))
        with reading() as fields:
            graph = s.finish(bp.kind.describe(bp, s, x))
        graph.renamed = frozenset(s.renamed)  # the names: keys it used (the planner checks each is used somewhere)
        graph.reads = frozenset(fields)  # the params keys this description depends on (the planner checks)
        if bp.shortcut is Shortcut.NONE:  # zero_init_residual zeroes a residual branch; with no shortcut to add
            graph.zero_init = ()           # to, it would zero the block's output (timm's init_weights rule)
        if len(_BLOCK_CACHE) > _CACHE_MAX:
            _BLOCK_CACHE.clear()
        _BLOCK_CACHE[key] = graph
    return graph


class ModuleBlock:
    """Builds a module-form block from its plan (the builder calls it, with torch imported)."""

    def __init__(self, bp: BlockPlan):
        self.bp = bp

    reads: frozenset | None = None  # the params keys its constructor read, once built (the builder checks)

    def __call__(self, context: Any) -> Any:
        with reading() as fields:
            module = self.bp.kind.module(self.bp)
        self.reads = frozenset(fields) | (self.reads or frozenset())
        return module

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModuleBlock) and other.bp.key() == self.bp.key()

    def __hash__(self) -> int:
        return hash(self.bp.key())


def _module_block(bp: BlockPlan, out_size: tuple[int, ...]) -> Custom:
    declared = bp.kind.cost(bp) if bp.kind.cost is not None else None
    return Custom(bp.kind.cls_name, ModuleBlock(bp), (), (bp.out_channels, *out_size), declared,
                  declared.params if declared is not None else 0)


def drop_block_of(rate: float, stage: int, stages: int = 4, size: int = 3) -> tuple[float, int, float] | None:
    """timm's ``drop_blocks`` (resnet.py, byobnet.py): DropBlock in the last two stages, block size ``size`` and
    gamma scale 1.0 in the last, ``2 * size - 1`` and 0.25 in the one before (4 stages: 5 and 3 in the third
    and fourth, as timm's ResNet)."""
    if rate <= 0 or stage not in (stages - 2, stages - 1):
        return None
    return (rate, 2 * size - 1, 0.25) if stage == stages - 2 else (rate, size, 1.0)


def plan_blocks(si: StageInput, in_shape: Shape, planes: int, *, stride: int, first_dilation: int,
                dilation: int, name: str, own_widths: bool = False, dilation_changes: bool = False,
                settings: list[tuple[Any, tuple, int]] | None = None) -> tuple[list[BlockPlan], list[Any], list[Shape]]:
    """The stage's ``depth`` blocks, the first with ``stride`` and ``first_dilation``, the rest at stride 1
    with ``dilation``; a block gets a shortcut module where it changes stride or channels (torchvision's
    ``_make_layer``). ``name`` is the path the blocks live under. ``own_widths``: blocks need not share
    their output width, and a ``depthwise`` block keeps its input's (timm's BYOB stages).
    ``dilation_changes``: a block whose dilation differs from the stage's also needs a shortcut module
    (timm's byobnet ``create_shortcut``). ``settings``: each block's (params, where, planes), given by the stage
    type (timm's EfficientNet stages: groups of blocks, each its own width)."""
    stage, shape, i = si.stage, in_shape, si.index
    listed = stage.blocks  # per-block settings (a pruned network's widths), else the stage's block for all
    pattern = getattr(stage, "pattern", None)  # settings repeated in order (timm's interleave_blocks)
    if listed is not None and len(listed) != si.depth:
        raise StageProblem(("blocks",), f"lists {len(listed)} blocks for a stage of depth {si.depth}")
    blocks, ops, shapes, out_channels = [], [], [], None
    for j in range(si.depth):
        if settings is not None:
            block, where, planes = settings[j]
        elif listed is not None:
            block, where = listed[j], ("blocks", j)
        elif pattern:
            block, where = pattern[j % len(pattern)], ("pattern", j % len(pattern))
        else:
            block, where = stage.block, ("block",)
        kind: BlockType = si.block_type(block.type)
        planes_j = shape[0] if own_widths and getattr(block, "depthwise", False) else planes
        out_j = _channels(kind, planes_j, block)
        if not own_widths and out_channels is not None and out_j != out_channels:
            raise StageProblem(where, f"outputs {out_j} channels where the stage's first block outputs "
                                      f"{out_channels}; a stage's blocks share their output width")
        out_channels, s = out_j, stride if j == 0 else 1
        block_dilation = first_dilation if j == 0 else dilation
        if block_dilation > 1 and not kind.dilation:
            raise StageProblem((), f"{block.type} blocks cannot dilate (stage {i + 1} needs dilation {block_dilation})")
        if s > 1 and not kind.stride:
            raise StageProblem((), f"{block.type} blocks cannot stride (stage {i + 1}'s first block strides {s}; give "
                                   "the stride to a block before them)")
        changes = s != 1 or shape[0] != out_channels or (dilation_changes and block_dilation != dilation)
        shortcut = _shortcut_kind(kind, block, changes, shape[0], out_channels, where)
        bp = BlockPlan(i, j, si.first_block + j, kind, block, shape[0], planes_j, out_channels, s, block_dilation,
                       dilation, (shape[1], shape[2]), shortcut, si.rates[j],
                       si.drop_block if kind.drop_block else None,
                       tuple(block.attn), si.norm, si.act, f"{name}.{si.block_name(j)}", si.deploy)
        op, shape = _described(bp, where)
        blocks.append(bp)
        ops.append(op)
        shapes.append(shape)
    return blocks, ops, shapes


def _channels(kind: BlockType, planes: int, block: Any) -> int:
    try:
        return kind.channels_out(planes, block)
    except (ValueError, NotImplementedError) as exc:
        raise StageProblem((), f"{block.type} block: {first_line(exc)}") from None


def _shortcut_kind(kind: BlockType, block: Any, changes: bool, c_in: int, c_out: int, where: tuple) -> Shortcut:
    """The kind asked for (the block's first by default) where the block changes shape, else the identity;
    ``none`` always none, ``identity`` none where the shape changes (timm's ``downsample=''``)."""
    asked = Shortcut(block.shortcut) if block.shortcut else kind.shortcuts[0]
    if asked is Shortcut.NONE or (asked is Shortcut.IDENTITY and changes):
        return Shortcut.NONE
    shortcut = asked if changes else Shortcut.IDENTITY
    if shortcut is Shortcut.ZERO_PAD and c_out < c_in:
        raise StageProblem((*where, "shortcut"), f"zero_pad cannot shrink {c_in} channels to {c_out}; "
                                                 "use projection or avg_down")
    return shortcut


def _described(bp: BlockPlan, where: tuple) -> tuple[Any, Shape]:
    """The block's description (or module-form op) and its output shape, problems located at ``where``."""
    block, (h, w) = bp.params, bp.in_size
    try:
        if bp.kind.describe is not None:
            op = describe_block(bp)
            out_shape = op.output.shape
        else:
            if getattr(block, "names", None):
                raise StageProblem(("names",), f"{block.type} blocks are modules of their own: they name their "
                                               "children themselves (names: renames a described block's)")
            out_size = ((h - 1) // bp.stride + 1, (w - 1) // bp.stride + 1)
            sizer = getattr(bp.kind.module, "out_size", None)
            if sizer is not None:
                out_size = tuple(sizer(in_size=(h, w), stride=bp.stride, params=block))
            op = _module_block(bp, out_size)
            out_shape = (bp.out_channels, *out_size)
    except StageProblem as exc:  # located inside the block (its names: key)
        raise StageProblem((*where, *exc.where), str(exc)) from None
    except (ValueError, NotImplementedError) as exc:  # DescriptionError is a ValueError
        raise StageProblem((*where, *getattr(exc, "field", ())), f"{block.type} block: {first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a block's own code failing (a plugin's): located, named
        raise StageProblem(where, f"{block.type} block: {type(exc).__name__}: {first_line(exc)}",
                           block.type) from exc
    if out_shape[0] != bp.out_channels:
        raise StageProblem((), f"{block.type} block: its description outputs {out_shape[0]} channels, its type "
                               f"says {bp.out_channels}")
    return op, tuple(out_shape)


def call_blocks(s: Scope, name: str, x: Value, ops: list[Any], blocks: list[BlockPlan] | None = None) -> Value:
    """The planned blocks as a sequential child ``name`` of ``s`` (``blocks.0``, ``blocks.1``, ...), each named
    as its plan (``blocks``, from ``plan_blocks``) names it: the layout's block names."""
    inner, (y,) = s.enter(name, "Sequential", x, sequential=True)
    for j, op in enumerate(ops):
        y = inner.call(blocks[j].name.rpartition(".")[2] if blocks else str(j), op, y)
    return inner.exit(y)
