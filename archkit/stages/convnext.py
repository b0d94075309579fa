"""timm's ConvNeXt stage (``timm/models/convnext.py``: ``ConvNeXtStage``): where the stage changes width or
strides, ``downsample`` (the spec's norm, then a k x k conv with bias at the stride: 2x2 by default), then the
blocks (``blocks``), all at the stage's width and resolution. A stage whose stride becomes dilation (``output_stride``)
downsamples at stride 1 with the first dilation, padded 'same', as timm's."""

from pydantic import Field

from ..graph import Conv2d, Conv2dSame, Passthrough, Scope
from ..params import StageParams
from .base import StageInput, StageResult, call_blocks, plan_blocks, stage_type


class ConvNeXtStageParams(StageParams):
    """timm's ConvNeXtStage keys."""

    downsample_kernel_size: int = Field(2, ge=1, le=15, description="The downsampling conv's kernel (timm's ds_ks: "
                                                                    "2, the stride).")


@stage_type("convnext", ConvNeXtStageParams, cls_name="ConvNeXtStage")
def convnext(si: StageInput) -> StageResult:
    """[norm, strided conv] as ``downsample``, then the blocks (timm's ConvNeXtStage)."""
    stride, dilation = si.stage.stride, si.dilation
    if si.dilate and stride > 1:  # timm's output_stride: the stride becomes dilation
        dilation *= stride
        stride = 1
    first = 1 if dilation in (1, 2) else 2
    s = Scope("ConvNeXtStage", norm_layer=si.norm, act_layer=si.act)
    x = s.input(si.in_shape)
    if si.in_shape[0] != si.planes or stride > 1 or first != dilation:
        k = si.stage.downsample_kernel_size if stride > 1 or first != dilation else 1
        inner, (y,) = s.enter("downsample", "Sequential", x, sequential=True)
        y = inner.norm("0", y)
        total = (stride - 1) + first * (k - 1)  # timm pads a dilated stage's downsampling conv 'same': static
        if dilation > 1 and total % 2:  # where it can be (create_conv2d's is_static_pad), else from the input
            conv = Conv2dSame(si.in_shape[0], si.planes, k, stride, 0, first, 1, True)
        else:
            conv = Conv2d(si.in_shape[0], si.planes, k, stride, total // 2 if dilation > 1 else 0, first, 1, True)
        x = inner.exit(inner.call("1", conv, y))
    else:
        x = s.call("downsample", Passthrough("identity"), x)
    blocks, ops, shapes = plan_blocks(si, x.shape, si.planes, stride=1, first_dilation=dilation,
                                      dilation=dilation, name=f"{si.name}.blocks")
    graph = s.finish(call_blocks(s, "blocks", x, ops, blocks))
    return StageResult(tuple(blocks), tuple(ops), tuple(shapes), dilation, graph)
