"""PP-HGNet and PP-HGNetV2 (timm's ``hgnet.py``; PaddleClas) as an archkit plugin: a whole family in one
package and no line of it in archkit.

- ``hg_block``: the HG block (``HighPerfGpuBlock``): ``layers`` convolutions in a chain (or light
  ones: a 1x1 then a depthwise kxk), their outputs and the input concatenated, aggregated by a 1x1 conv
  and ESE (V1) or two 1x1 convs (V2); residual where the stage keeps the width (every block but the first).
- ``hg`` stage (``HighPerfGpuStage``): a depthwise 3x3 ``downsample`` where the stage strides, then the blocks.
- ``hg_conv`` (``ConvBNAct``: conv, the spec's norm and activation, and V2's learnable affine ``lab``),
  ``hg_stem`` (V2's stem: two branches concatenated) and ``lab`` (the learnable affine alone) layers.

Everything is a description over archkit's primitives, so archkit derives the modules (timm's names:
its weights load by key), shapes, parameters and MACs; only the learnable affine is a module of its own
(``archkit_hgnet.modules``, imported when a model is built). No torch is imported here.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from archkit.blocks import BlockParams, Shortcut, block
from archkit.complexity import Cost
from archkit.graph import (Activation, Concat, Custom, Graph, MeanHW, Pad, Passthrough, Pool2d, Scope, Value,
                           numel, spatial)
from archkit.layers import timm_padding
from archkit.params import LayerParams, StageParams
from archkit.stages import StageInput, StageProblem, StageResult, call_blocks, plan_blocks, stage_type

__version__ = "0.1.0"

_IDENTITY = Passthrough("identity")


def affine(shape: tuple[int, ...]) -> Custom:
    """timm's ``LearnableAffineBlock``: ``scale * x + bias``, two scalars (its cost declared: no MACs)."""
    return Custom("LearnableAffineBlock", "archkit_hgnet.modules:LearnableAffineBlock", (), shape,
                  Cost(2, 0, numel(shape)), 2)


def conv_bn_act(norm, act, shape: tuple[int, ...], out: int, kernel_size: int, *, stride: int = 1,  # noqa: ANN001
                groups: int = 1, use_act: bool = True, lab: bool = False) -> Graph:
    """timm's hgnet ``ConvBNAct``: ``conv`` (timm's padding, no bias), ``bn``, ``act`` and ``lab`` (Identity
    where unused, as timm's: the affine only follows an activation)."""
    s = Scope("ConvBNAct", norm_layer=norm, act_layer=act)
    y = s.input(shape)
    y = s.conv("conv", y, out, kernel_size, stride=stride, groups=groups, padding=timm_padding(kernel_size, stride))
    y = s.norm("bn", y)
    y = s.act("act", y) if use_act else s.call("act", _IDENTITY, y)
    y = s.call("lab", affine(y.shape) if use_act and lab else _IDENTITY, y)
    return s.finish(y)


def _unit(s: Scope, name: str, x: Value, out: int, kernel_size: int, **kwargs) -> Value:  # noqa: ANN003
    return s.call(name, conv_bn_act(s.norm_layer, s.act_layer, x.shape, out, kernel_size, **kwargs), x)


def _light(s: Scope, shape: tuple[int, ...], out: int, kernel_size: int, lab: bool) -> Graph:
    """timm's ``LightConvBNAct``: a 1x1 ``conv1`` without activation, then a depthwise ``conv2``."""
    inner = Scope("LightConvBNAct", norm_layer=s.norm_layer, act_layer=s.act_layer)
    y = inner.input(shape)
    y = _unit(inner, "conv1", y, out, 1, use_act=False, lab=lab)
    return inner.finish(_unit(inner, "conv2", y, out, kernel_size, groups=out, lab=lab))


def _ese(s: Scope, name: str, x: Value) -> Value:
    """timm's ``EseModule``: the channels' means through a 1x1 ``conv`` (with bias) and a sigmoid gate."""
    inner, (y,) = s.enter(name, "EseModule", x)
    gate = inner.apply(MeanHW(True), y)
    gate = inner.call("sigmoid", Activation("sigmoid"), inner.conv("conv", gate, x.shape[0], 1, bias=True))
    return inner.exit(inner.mul(y, gate))


# --- the block -------------------------------------------------------------------------------------------


class HgBlockParams(BlockParams):
    """An HG block's keys (a row of timm's ``model_cfgs``: mid_chs, light_block, kernel_size, layer_num)."""

    mid: int | None = Field(None, ge=1, le=1 << 16, description="Channels of each of the chained convolutions "
                            "(mid_chs; timm's models set it per stage; default: a quarter of the block's width).")
    layers: int = Field(3, ge=1, le=64, description="Chained convolutions whose outputs are concatenated "
                                                    "(layer_num).")
    kernel_size: int = Field(3, ge=1, le=15, description="Their kernel.")
    light: bool = Field(False, description="Light convolutions: a 1x1, then a depthwise kxk (light_block).")
    agg: Literal["ese", "se"] = Field("ese", description="Aggregation: a 1x1 conv and ESE (PP-HGNet), or two 1x1 "
                                                         "convs through half the width (PP-HGNetV2).")
    lab: bool = Field(False, description="A learnable affine after every activation (V2's use_lab).")


@block("hg_block", HgBlockParams, cls_name="HighPerfGpuBlock", shortcuts=("identity",), attn_positions=(),
       dilation=False, stage="hg")
def hg_block(b, s, x):  # noqa: ANN001, ANN201
    """Chained convs, concatenated with the input, aggregated (timm's HighPerfGpuBlock)."""
    if b.stride != 1:
        raise ValueError("an HG block does not stride: its stage downsamples (stage type hg)")
    p = b.params
    mid = p.mid if p.mid is not None else max(1, b.out_channels // 4)
    outputs, y = [x], x
    for i in range(p.layers):
        unit = _light(s, y.shape, mid, p.kernel_size, p.lab) if p.light else \
            conv_bn_act(s.norm_layer, s.act_layer, y.shape, mid, p.kernel_size, lab=p.lab)
        y = s.call_item("layers", i, unit, y)
        outputs.append(y)
    agg, (z,) = s.enter("aggregation", "Sequential", s.apply(Concat(), *outputs), sequential=True)
    if p.agg == "se":
        z = _unit(agg, "1", _unit(agg, "0", z, b.out_channels // 2, 1, lab=p.lab), b.out_channels, 1, lab=p.lab)
    else:
        z = _ese(agg, "1", _unit(agg, "0", z, b.out_channels, 1, lab=p.lab))
    y = agg.exit(z)
    if b.shortcut is not Shortcut.IDENTITY:  # the stage's first block (timm's residual=False)
        return y
    rate = b.drop_path_rate
    y = s.call("drop_path", Passthrough("drop_path", rate) if rate > 0 else _IDENTITY, y)
    return s.add(y, x)


# --- the stage -----------------------------------------------------------------------------------------------


class HgStageParams(StageParams):
    """timm's HighPerfGpuStage: ``stride: 2`` is its depthwise ``downsample`` conv, ``stride: 1`` none."""


@stage_type("hg", HgStageParams, cls_name="HighPerfGpuStage")
def hg_stage(si: StageInput) -> StageResult:
    """A depthwise strided downsample, then HG blocks (timm's HighPerfGpuStage)."""
    if si.dilate:
        raise StageProblem(("stride",), "hg stages cannot dilate (timm's PP-HGNet has no output_stride)")
    s = Scope("HighPerfGpuStage", norm_layer=si.norm, act_layer=si.act)
    x = s.input(si.in_shape)
    c = si.in_shape[0]
    stride = si.stage.stride
    x = _unit(s, "downsample", x, c, 3, stride=stride, groups=c, use_act=False) if stride > 1 else \
        s.call("downsample", _IDENTITY, x)
    blocks, ops, shapes = plan_blocks(si, x.shape, si.planes, stride=1, first_dilation=1, dilation=1,
                                      name=f"{si.name}.blocks")
    graph = s.finish(call_blocks(s, "blocks", x, ops, blocks))
    return StageResult(tuple(blocks), tuple(ops), tuple(shapes), si.dilation, graph)


# --- layers --------------------------------------------------------------------------------------------------


class HgConv(LayerParams):
    """timm's hgnet ConvBNAct as a stem or head layer (keys conv.*, bn.*, lab.*)."""

    channels: int = Field(ge=1, le=1 << 20, description="Output channels.")
    kernel_size: int = Field(3, ge=1, le=15, description="Square kernel.")
    stride: int = Field(1, ge=1, le=8, description="Stride.")
    groups: int = Field(1, ge=1, le=1 << 20, description="Groups.")
    use_act: bool = Field(True, description="The spec's activation after the norm.")
    lab: bool = Field(False, description="A learnable affine after the activation (V2's use_lab).")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        spatial(x.shape, "hg_conv")
        return _unit(s, name, x, self.channels, self.kernel_size, stride=self.stride, groups=self.groups,
                     use_act=self.use_act, lab=self.lab)


class HgStem(LayerParams):
    """PP-HGNetV2's stem (timm's StemV2): a stride-2 conv, then a max pool beside two 2x2 convs (each input
    padded right and below), concatenated, a stride-2 conv and a 1x1 (in timm's layout, the stem itself)."""

    whole: ClassVar[bool] = True
    mid: int = Field(ge=2, le=1 << 16, description="Width of the first convs (stem_chs[0]).")
    channels: int = Field(ge=1, le=1 << 16, description="Output channels (stem_chs[1]).")
    lab: bool = Field(False, description="A learnable affine after every activation (use_lab).")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        spatial(x.shape, "hg_stem")
        mid, lab = self.mid, self.lab
        inner, (y,) = s.enter(name, "StemV2", x)
        y = inner.apply(Pad(0, 1, 0, 1), _unit(inner, "stem1", y, mid, 3, stride=2, lab=lab))
        branch = _unit(inner, "stem2a", y, mid // 2, 2, lab=lab)
        branch = _unit(inner, "stem2b", inner.apply(Pad(0, 1, 0, 1), branch), mid, 2, lab=lab)
        pooled = inner.call("pool", Pool2d("max", 2, 1, 0, ceil_mode=True), y)
        y = _unit(inner, "stem3", inner.apply(Concat(), pooled, branch), mid, 3, stride=2, lab=lab)
        return inner.exit(_unit(inner, "stem4", y, self.channels, 1, lab=lab))


class LearnableAffine(LayerParams):
    """PP-HGNetV2's learnable affine (``scale * x + bias``, two scalars), e.g. after the head's last conv."""

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, affine(x.shape), x)


__all__ = ["HgBlockParams", "HgConv", "HgStageParams", "HgStem", "LearnableAffine", "conv_bn_act", "hg_block",
           "hg_stage"]
