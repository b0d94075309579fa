"""timm's bring-your-own-blocks stage (``timm/models/byobnet.py``: ``create_byob_stages``): the blocks
themselves are the stage's children (``stages.N.M``), the first strided, each block with its own
settings (``blocks:``) and, unlike torchvision's ``_make_layer``, its own output width (a ``depthwise``
block keeps its input's: MobileOne's stages alternate depthwise and pointwise blocks). A stage whose
stride becomes dilation (``output_stride``) opens with dilation 1 (for 2) or 2, as timm's."""

from ..params import StageParams
from .base import StageInput, StageResult, plan_blocks, stage_type


class ByobStage(StageParams):
    """timm's BYOB stage (no keys of its own: each block's are in ``block:`` / ``blocks:``)."""


@stage_type("byob", ByobStage)
def byob(si: StageInput) -> StageResult:
    """The blocks as the stage (stages.N.M), the first strided, widths per block (timm's byobnet)."""
    stride, dilation = si.stage.stride, si.dilation
    if si.dilate and stride > 1:
        dilation *= stride
        stride = 1
    first_dilation = 1 if dilation in (1, 2) else 2
    blocks, ops, shapes = plan_blocks(si, si.in_shape, si.planes, stride=stride, first_dilation=first_dilation,
                                      dilation=dilation, name=si.name, own_widths=True,
                                      dilation_changes=True)
    return StageResult(tuple(blocks), tuple(ops), tuple(shapes), dilation, None)
