"""timm's ConvNeXt stage (``timm/models/convnext.py``: ``ConvNeXtStage``): where the stage changes width or
strides, ``downsample`` (the spec's norm, then a k x k conv with bias at the stride: 2x2 by default), then the
blocks (``blocks``), all at the stage's width and resolution."""

from pydantic import Field

from ..graph import Conv2d, Passthrough, Scope
from ..params import StageParams
from .base import StageInput, StageProblem, StageResult, call_blocks, plan_blocks, stage_type


class ConvNeXtStageParams(StageParams):
    """timm's ConvNeXtStage keys."""

    downsample_kernel_size: int = Field(2, ge=1, le=15, description="The downsampling conv's kernel (timm's ds_ks: "
                                                                    "2, the stride).")


@stage_type("convnext", ConvNeXtStageParams, cls_name="ConvNeXtStage")
def convnext(si: StageInput) -> StageResult:
    """[norm, strided conv] as ``downsample``, then the blocks (timm's ConvNeXtStage)."""
    stride = si.stage.stride
    if si.dilate and stride > 1:
        raise StageProblem(("stride",), "convnext stages do not dilate yet (output_stride below 32)")
    s = Scope("ConvNeXtStage", norm_layer=si.norm, act_layer=si.act)
    x = s.input(si.in_shape)
    if si.in_shape[0] != si.planes or stride > 1:
        k = si.stage.downsample_kernel_size if stride > 1 else 1
        inner, (y,) = s.enter("downsample", "Sequential", x, sequential=True)
        y = inner.norm("0", y)
        x = inner.exit(inner.call("1", Conv2d(si.in_shape[0], si.planes, k, stride, 0, 1, 1, True), y))
    else:
        x = s.call("downsample", Passthrough("identity"), x)
    blocks, ops, shapes = plan_blocks(si, x.shape, si.planes, stride=1, first_dilation=si.dilation,
                                      dilation=si.dilation, name=f"{si.name}.blocks")
    graph = s.finish(call_blocks(s, "blocks", x, ops, blocks))
    return StageResult(tuple(blocks), tuple(ops), tuple(shapes), si.dilation, graph)
