"""Built-in residual blocks, one file per family; registered by name in ``BUILTIN_BLOCKS``."""

from .base import Block, BlockParams, conv1x1, conv3x3
from .basic import BasicBlock
from .bottleneck import Bottleneck, ResNeXtBottleneck, WideBottleneck
from .darknet import DarkNetBlock
from .preact import PreActBottleneck, WideBasic
from .regnet import RegNetBlock

BUILTIN_BLOCKS = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
    "resnext": ResNeXtBottleneck,
    "wide_bottleneck": WideBottleneck,
    "wide_basic": WideBasic,
    "preact_bottleneck": PreActBottleneck,
    "darknet": DarkNetBlock,
    "regnet": RegNetBlock,
}

__all__ = ["Block", "BlockParams", "conv1x1", "conv3x3", "BUILTIN_BLOCKS", "BasicBlock", "Bottleneck",
           "ResNeXtBottleneck", "WideBottleneck", "WideBasic", "PreActBottleneck", "DarkNetBlock", "RegNetBlock"]
