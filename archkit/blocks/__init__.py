"""Built-in block types, one file per family, each a description (see ``archkit.blocks.base``)."""

from .base import (ATTN_POSITIONS, BlockParams, BlockPlan, BlockType, ResNetParams, Shortcut, anti_alias, attend, block,
                   drop_act_aa, drop_block, drop_path, residual, shortcut)
from .basic import basic
from .csp import CspBlockParams, csp_bottle, csp_dark, csp_edge
from .byob import BottleParams, ByobParams, bottle, byob_basic, dark, edge
from .convnext import ConvNeXtParams, convnext
from .bottleneck import (BottleneckParams, GroupedParams, ResNeXtParams, WideParams, bottleneck, bottleneck_main,
                         bottleneck_width, first_width, resnext, wide_bottleneck)
from .darknet import DarkNetParams, conv_norm_act, darknet
from .mobile import (ConvBnActParams, DepthwiseSeparableParams, EdgeResidualParams, InvertedResidualParams,
                     MobileAttentionParams, MobileParams, SqueezeExciteSpec, UniversalInvertedResidualParams, conv_bn_act,
                     depthwise_separable, edge_residual, inverted_residual, mobile_attention, universal_inverted_residual)
from .preact import WideBasicParams, preact_bottleneck, wide_basic
from .regnet import RegNetBottleParams, RegNetParams, regnet, regnet_bottle, regnet_prebottle
from .rep import REP_LAYERS, OneParams, RepParams, one, rep
from .res2net import Res2NetParams, res2net
from .resnest import ResNeStParams, resnest
from .sknet import SelectiveKernelBottleneckParams, SelectiveKernelParams, sk_basic, sk_bottleneck

BUILTIN_BLOCKS: dict[str, BlockType] = {t.name: t for t in (
    basic, bottleneck, resnext, wide_bottleneck, wide_basic, preact_bottleneck, darknet, regnet, csp_bottle, csp_dark,
    csp_edge, rep, one, byob_basic, bottle, dark, edge, regnet_bottle, regnet_prebottle, res2net, resnest, sk_basic, sk_bottleneck, convnext,
    depthwise_separable, inverted_residual, edge_residual, conv_bn_act, universal_inverted_residual,
    mobile_attention)}

__all__ = ["ATTN_POSITIONS", "BUILTIN_BLOCKS", "ConvBnActParams", "DepthwiseSeparableParams", "EdgeResidualParams",
           "InvertedResidualParams", "MobileAttentionParams", "MobileParams", "SqueezeExciteSpec",
           "UniversalInvertedResidualParams", "OneParams", "REP_LAYERS", "RepParams", "BlockParams", "CspBlockParams", "BlockPlan", "BlockType", "BottleneckParams", "BottleParams", "ByobParams", "ConvNeXtParams",
           "DarkNetParams", "GroupedParams", "ResNeXtParams", "ResNetParams", "RegNetBottleParams", "RegNetParams", "Res2NetParams", "ResNeStParams", "SelectiveKernelBottleneckParams", "SelectiveKernelParams", "Shortcut",
           "WideBasicParams", "WideParams", "anti_alias", "attend", "block", "bottleneck_main", "bottleneck_width",
           "conv_norm_act", "drop_act_aa", "drop_block", "drop_path", "first_width", "residual", "shortcut"]
