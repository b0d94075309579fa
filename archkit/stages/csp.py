"""timm's DarkNet and cross-stage-partial stages (``timm/models/cspnet.py``: ``DarkStage``, ``CrossStage``,
``CrossStage3``), in its module names. A stage's ``planes`` is its output width; its blocks' planes
are ``round(planes * block_ratio)``.

- ``dark``: a strided ``conv_down``, then the blocks (DarkNet-53).
- ``csp``: ``conv_down``, a 1x1 ``conv_exp`` to ``expand_ratio`` x the width, split in two halves;
  the blocks run on the second, ``conv_transition_b`` closes them, the halves are concatenated and
  ``conv_transition`` mixes them (CSPNet, Wang et al. 2019).
- ``cs3``: as ``csp`` with the blocks on the first half and no ``conv_transition_b`` (YOLOv5-style C3).
"""

from pydantic import Field

from ..graph import Concat, Narrow, Passthrough, Pool2d, Scope, Value
from ..layers import conv_norm_act
from ..params import StageParams
from .base import StageInput, StageProblem, StageResult, call_blocks, plan_blocks, stage_type


class DarkStageParams(StageParams):
    """timm's DarkStage keys."""

    avg_down: bool = Field(False, description="Downsample with a 2x2 average pool and a 1x1 conv instead of a "
                                              "strided 3x3 (timm's darknetaa53).")
    block_ratio: float = Field(1.0, gt=0, le=16, description="The blocks' width relative to the stage's.")


class CrossStageParams(DarkStageParams):
    """timm's CrossStage and CrossStage3 keys."""

    expand_ratio: float = Field(1.0, gt=0, le=16, description="conv_exp's width relative to the stage's.")
    cross_linear: bool = Field(False, description="No activation in conv_exp (timm's cross_linear).")
    down_growth: bool = Field(False, description="conv_down grows to the stage's width (else keeps the input's).")


def _strides(si: StageInput) -> tuple[int, int, int]:
    """(stride, first dilation, dilation) by timm's create_csp_stages: a dilated stage turns its stride into
    dilation, and its downsampling conv dilates by 1 (dilation 1 or 2) or 2."""
    stride, dilation = si.stage.stride, si.dilation
    if si.dilate and stride > 1:
        dilation *= stride
        stride = 1
    return stride, 1 if dilation in (1, 2) else 2, dilation


def _groups(si: StageInput) -> int:
    return getattr(si.stage.block, "groups", 1) if si.stage.block is not None else 1


def _conv_down(si: StageInput, s: Scope, x: Value, out: int, stride: int, first_dilation: int) -> Value:
    """timm's conv_down: a strided 3x3 ConvNormAct to ``out`` channels, or (avg_down) a 2x2 average pool and
    a 1x1 ConvNormAct to the stage's width."""
    groups = _groups(si)
    if si.stage.avg_down:
        out = si.planes
    if not si.stage.avg_down:
        return conv_norm_act(s, "conv_down", x, out, 3, stride=stride, dilation=first_dilation, groups=groups)
    inner, (y,) = s.enter("conv_down", "Sequential", x, sequential=True)
    y = inner.call("0", Pool2d("avg", 2, 2) if stride == 2 else Passthrough("identity"), y)
    y = conv_norm_act(inner, "1", y, out, 1, groups=groups)
    return inner.exit(y)


def _ratio(planes: int, ratio: float, what: str) -> int:
    width = int(round(planes * ratio))
    if width < 1:
        raise StageProblem((what,), f"planes {planes} x {what} {ratio} leaves no channels")
    return width


@stage_type("dark", DarkStageParams, cls_name="DarkStage")
def dark(si: StageInput) -> StageResult:
    """A strided conv_down, then the blocks (timm's DarkStage)."""
    stride, first_dilation, dilation = _strides(si)
    out = si.planes
    s = Scope("DarkStage", norm_layer=si.norm, act_layer=si.act)
    x = _conv_down(si, s, s.input(si.in_shape), out, stride, first_dilation)
    planes = _ratio(out, si.stage.block_ratio, "block_ratio")
    blocks, ops, shapes = plan_blocks(si, x.shape, planes, stride=1, first_dilation=dilation, dilation=dilation,
                                      name=f"{si.name}.blocks")
    graph = s.finish(call_blocks(s, "blocks", x, ops, blocks))
    return StageResult(tuple(blocks), tuple(ops), tuple(shapes), dilation, graph)


def _cross(si: StageInput, three: bool) -> StageResult:
    p, out = si.stage, si.planes
    stride, first_dilation, dilation = _strides(si)
    s = Scope("CrossStage3" if three else "CrossStage", norm_layer=si.norm, act_layer=si.act)
    x = s.input(si.in_shape)
    if stride != 1 or first_dilation != dilation:
        x = _conv_down(si, s, x, out if p.down_growth else si.in_shape[0], stride, first_dilation)
    elif not three:
        x = s.call("conv_down", Passthrough("identity"), x)  # timm keeps an Identity in the slot
    exp = _ratio(out, p.expand_ratio, "expand_ratio")
    if exp < 2:
        raise StageProblem(("expand_ratio",), f"conv_exp's {exp} channel cannot be split in two")
    x = conv_norm_act(s, "conv_exp", x, exp, 1, apply_act=not p.cross_linear)
    half = exp // 2
    first, second = s.apply(Narrow(0, half), x), s.apply(Narrow(half, exp - half), x)
    planes = _ratio(out, p.block_ratio, "block_ratio")
    through, cross = (first, second) if three else (second, first)  # the half the blocks run on
    blocks, ops, shapes = plan_blocks(si, through.shape, planes, stride=1, first_dilation=dilation,
                                      dilation=dilation, name=f"{si.name}.blocks")
    through = call_blocks(s, "blocks", through, ops, blocks)
    if three:
        merged = s.apply(Concat(), through, cross)
    else:
        through = conv_norm_act(s, "conv_transition_b", through, half, 1)
        merged = s.apply(Concat(), cross, through)
    graph = s.finish(conv_norm_act(s, "conv_transition", merged, out, 1))
    return StageResult(tuple(blocks), tuple(ops), tuple(shapes), dilation, graph)


@stage_type("csp", CrossStageParams, cls_name="CrossStage")
def csp(si: StageInput) -> StageResult:
    """Cross-stage partial: blocks on half the expanded map, two transitions (timm's CrossStage)."""
    return _cross(si, three=False)


@stage_type("cs3", CrossStageParams, cls_name="CrossStage3")
def cs3(si: StageInput) -> StageResult:
    """Cross-stage partial with one transition (timm's CrossStage3, YOLOv5's C3)."""
    return _cross(si, three=True)
