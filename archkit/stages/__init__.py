"""Stage types: how a stage spec becomes block plans and descriptions. ``resnet`` is torchvision's
``ResNet._make_layer``: N blocks, the first with the stage's stride and, where shape changes, a
shortcut module."""

from .base import StageInput, StageProblem, StageResult
from .resnet import plan_resnet_stage

__all__ = ["StageInput", "StageProblem", "StageResult", "plan_resnet_stage"]
