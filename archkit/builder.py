"""ModelSpec -> plain ``nn.Sequential``, with torchvision's ``_make_layer`` rules and initialization."""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from typing import Any, Iterator

import torch
from torch import nn

from .layers import BuildContext, Shape
from .registry import BLOCKS
from .specs import ModelSpec, layer_names


def stage_plan(spec: ModelSpec, index: int) -> tuple[int, int]:
    """A stage's planes and depth after the width and depth multipliers."""
    stage = spec.stages[index]
    planes = max(1, int(round(stage.planes * spec.width_multiplier)))
    depth = max(1, math.ceil(stage.depth * spec.depth_multiplier - 1e-9))
    return planes, depth


def make_context(spec: ModelSpec) -> BuildContext:
    """Norm and activation factories from the spec's ``norm:`` and ``activation:``."""
    holder: list[BuildContext] = []
    ctx = BuildContext(norm=lambda channels: spec.norm.build((channels, 1, 1), holder[0]),
                       act=lambda: spec.activation.build((), holder[0]), norm_layer=spec.norm)
    holder.append(ctx)
    return ctx


def _layer(spec: ModelSpec, part: str, index: int, shape: Shape, ctx: BuildContext) -> tuple[nn.Module, Shape]:
    layer = getattr(spec, part)[index]
    try:
        out_shape = layer.output_shape(shape)
        module = layer.build(shape, ctx)
    except (ValueError, NotImplementedError) as exc:
        raise spec.error((part, index), f"{layer.type}: {exc}") from None
    return module, out_shape


def make_stage(spec: ModelSpec, index: int, shape: Shape, dilation: int,
               ctx: BuildContext) -> tuple[nn.Sequential, Shape, int]:
    """One stage by ``ResNet._make_layer``: returns the stage, its output shape and the running dilation."""
    stage = spec.stages[index]
    path = ("stages", index)
    if len(shape) != 3:
        raise spec.error(path, f"a stage needs a (channels, height, width) input, but gets {list(shape)}")
    entry = BLOCKS.get(stage.block.type)
    cls, params = entry.obj, stage.block
    planes, depth = stage_plan(spec, index)
    stride, previous_dilation = stage.stride, dilation
    if stage.dilate:  # replace_stride_with_dilation: later blocks dilate instead of striding
        dilation *= stride
        stride = 1
    in_channels, height, width = shape
    try:
        out_channels = cls.out_channels(planes, params)
        size = [(s - 1) // stride + 1 for s in (height, width)]
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = cls.make_shortcut(in_channels, out_channels, stride, previous_dilation, params,
                                           ctx.norm, ctx.act)
        # torchvision gives the first block the dilation in force before this stage, the rest the new one.
        blocks = [cls(in_channels, planes, stride=stride, dilation=previous_dilation, downsample=downsample,
                      params=params, norm=ctx.norm, act=ctx.act)]
        for _ in range(1, depth):
            blocks.append(cls(out_channels, planes, stride=1, dilation=dilation, downsample=None,
                              params=params, norm=ctx.norm, act=ctx.act))
    except (ValueError, NotImplementedError) as exc:
        raise spec.error(path, f"{stage.block.type} block: {exc}") from None
    return nn.Sequential(*blocks), (out_channels, *size), dilation


def init_weights(model: nn.Module, spec: ModelSpec) -> None:
    """torchvision's ResNet init; blocks opt into ``zero_init_residual`` through ``zero_init_last()``."""
    mode = {"kaiming_fan_out": "fan_out", "kaiming_fan_in": "fan_in"}.get(spec.init.conv)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and mode is not None:
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if spec.init.zero_init_residual:
        # This improves the model by 0.2~0.3% according to https://arxiv.org/abs/1706.02677
        for m in model.modules():
            zero = getattr(m, "zero_init_last", None)
            if callable(zero):
                zero()


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build(spec: ModelSpec, device: Any = None) -> nn.Sequential:
    """Assemble the model: stem layers, ``layer1``..``layerN``, head layers, as one ``nn.Sequential``.

    ``device="meta"`` builds the structure without allocating or initializing weights.
    """
    ctx = make_context(spec)
    stem_names, head_names = layer_names(spec)
    children: OrderedDict[str, nn.Module] = OrderedDict()
    shape: Shape = (spec.input.channels, *spec.input.size)
    device_ctx = torch.device(device) if device is not None else contextlib.nullcontext()
    with device_ctx, _seeded(spec.seed):
        for i, name in enumerate(stem_names):
            children[name], shape = _layer(spec, "stem", i, shape, ctx)
        dilation = 1
        for i in range(len(spec.stages)):
            children[f"layer{i + 1}"], shape, dilation = make_stage(spec, i, shape, dilation, ctx)
        for i, name in enumerate(head_names):
            children[name], shape = _layer(spec, "head", i, shape, ctx)
        model = nn.Sequential(children)
        if str(device) != "meta":
            init_weights(model, spec)
    return model
