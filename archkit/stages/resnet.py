"""torchvision's ``ResNet._make_layer``: a stage of ``depth`` blocks, the first with the stage's stride
(or, with ``dilate``, the dilation it replaces) and, where the shape changes, a shortcut module."""

from typing import Any

from ..blocks.base import BlockPlan, BlockType, Shortcut
from ..catalog import block_type
from ..errors import first_line
from ..graph import Custom, Graph, Scope
from .base import StageInput, StageProblem, StageResult

_BLOCK_CACHE: dict[tuple, Graph] = {}
_CACHE_MAX = 4096


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

    def __call__(self, context: Any) -> Any:
        return self.bp.kind.module(self.bp)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModuleBlock) and other.bp.key() == self.bp.key()

    def __hash__(self) -> int:
        return hash(self.bp.key())


def _module_block(bp: BlockPlan, out_size: tuple[int, ...]) -> Custom:
    declared = bp.kind.cost(bp) if bp.kind.cost is not None else None
    return Custom(bp.kind.cls_name, ModuleBlock(bp), (), (bp.out_channels, *out_size), declared,
                  declared.params if declared is not None else 0)


def drop_block_of(rate: float, stage: int) -> tuple[float, int, float] | None:
    """timm's ``drop_blocks``: block size 5 and gamma scale 0.25 in the third stage, 3 and 1.0 in the fourth."""
    if rate <= 0 or stage not in (2, 3):
        return None
    return (rate, 5, 0.25) if stage == 2 else (rate, 3, 1.0)


def plan_resnet_stage(si: StageInput) -> StageResult:
    """The stage's blocks by ``_make_layer``'s rules; a StageProblem where it cannot be built."""
    stage, shape, i = si.stage, si.in_shape, si.index
    listed = stage.blocks  # per-block settings (a pruned network's widths), else the stage's block for all
    if listed is not None and len(listed) != si.depth:
        raise StageProblem(("blocks",), f"lists {len(listed)} blocks for a stage of depth {si.depth}")
    stride, first_dilation, dilation = stage.stride, si.dilation, si.dilation
    if stage.dilate:  # replace_stride_with_dilation: later blocks dilate instead of striding
        dilation *= stride
        stride = 1
    blocks, ops, shapes, out_channels = [], [], [], None
    for j in range(si.depth):
        block = listed[j] if listed is not None else stage.block
        where = ("blocks", j) if listed is not None else ("block",)
        kind: BlockType = block_type(block.type)
        try:
            out_j = kind.channels_out(si.planes, block)
        except (ValueError, NotImplementedError) as exc:
            raise StageProblem((), f"{block.type} block: {first_line(exc)}") from None
        if out_channels is not None and out_j != out_channels:
            raise StageProblem(where, f"outputs {out_j} channels where the stage's first block outputs "
                                      f"{out_channels}; a stage's blocks share their output width")
        out_channels = out_j
        s = stride if j == 0 else 1
        # torchvision gives the first block the dilation in force before this stage, the rest the new one
        block_dilation = first_dilation if j == 0 else dilation
        if block_dilation > 1 and not kind.dilation:
            raise StageProblem((), f"{block.type} blocks cannot dilate (stage {i + 1} needs dilation {block_dilation})")
        asked = Shortcut(block.shortcut) if block.shortcut else kind.shortcuts[0]
        changes = s != 1 or shape[0] != out_channels
        shortcut = Shortcut.NONE if asked is Shortcut.NONE else asked if changes else Shortcut.IDENTITY
        if shortcut is Shortcut.ZERO_PAD and out_channels < shape[0]:
            raise StageProblem((*where, "shortcut"), f"zero_pad cannot shrink {shape[0]} channels to {out_channels}; "
                                                     "use projection or avg_down")
        bp = BlockPlan(i, j, si.first_block + j, kind, block, shape[0], si.planes, out_channels, s, block_dilation,
                       dilation, (shape[1], shape[2]), shortcut, si.rates[j],
                       drop_block_of(si.drop_block_rate, i) if kind.drop_block else None,
                       tuple(block.attn), si.norm, si.act, f"{si.name}.{j}")
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
            raise StageProblem((), f"{block.type} block: {first_line(exc)}") from None
        if out_shape[0] != out_channels:
            raise StageProblem((), f"{block.type} block: its description outputs {out_shape[0]} channels, its type "
                                   f"says {out_channels}")
        blocks.append(bp)
        ops.append(op)
        shapes.append(tuple(out_shape))
        shape = tuple(out_shape)
    return StageResult(tuple(blocks), tuple(ops), tuple(shapes), dilation)
