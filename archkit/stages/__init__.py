"""Stage types: how a stage spec becomes block plans and a stage module. ``resnet`` is torchvision's
``ResNet._make_layer``; ``dark``, ``csp`` and ``cs3`` are timm's DarkNet and cross-stage-partial stages;
``byob`` is timm's bring-your-own-blocks stage; ``convnext`` timm's ConvNeXt stage; ``efficientnet`` timm's EfficientNet-family stage."""

from .base import StageInput, StageProblem, StageResult, StageType, call_blocks, describe_block, plan_blocks, stage_type
from .byob import byob
from .convnext import convnext
from .csp import cs3, csp, dark
from .efficientnet import efficientnet
from .resnet import resnet

BUILTIN_STAGES: dict[str, StageType] = {t.name: t for t in (resnet, dark, csp, cs3, byob, convnext, efficientnet)}

__all__ = ["BUILTIN_STAGES", "StageInput", "StageProblem", "StageResult", "StageType", "call_blocks",
           "describe_block", "plan_blocks", "stage_type"]
