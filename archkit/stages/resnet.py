"""torchvision's ``ResNet._make_layer``: a stage of ``depth`` blocks, the first with the stage's stride
(or, with ``dilate``, the dilation it replaces) and, where the shape changes, a shortcut module."""

from ..graph import Scope
from ..params import StageParams
from .base import StageInput, StageResult, call_blocks, plan_blocks, stage_type


class ResNetStage(StageParams):
    """A stage of blocks by torchvision's ``_make_layer`` (no keys of its own)."""


@stage_type("resnet", ResNetStage)
def resnet(si: StageInput) -> StageResult:
    """N blocks, the first strided (torchvision's _make_layer)."""
    stride, dilation = si.stage.stride, si.dilation
    if si.dilate:  # replace_stride_with_dilation (or output_stride): later blocks dilate instead of striding
        dilation *= stride
        stride = 1
    # torchvision gives the first block the dilation in force before this stage, the rest the new one
    container = si.blocks_container  # "" (torchvision's layer1.0) or timm's newer models' stages.N.blocks.M
    blocks, ops, shapes = plan_blocks(si, si.in_shape, si.planes, stride=stride, first_dilation=si.dilation,
                                      dilation=dilation, name=f"{si.name}.{container}" if container else si.name)
    graph = None
    if container:
        s = Scope("ResNetStage", norm_layer=si.norm, act_layer=si.act)
        graph = s.finish(call_blocks(s, container, s.input(si.in_shape), ops, blocks))
    return StageResult(tuple(blocks), tuple(ops), tuple(shapes), dilation, graph)
