"""ModelSpec -> plain ``nn.Sequential``, with torchvision's ``_make_layer`` rules and initialization."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any, Iterator

import torch
from torch import nn

from .errors import SpecError
from .layers import BuildContext, Shape
from .registry import BLOCKS
from .specs import ModelSpec, layer_names, scaled


def stage_plan(spec: ModelSpec, index: int) -> tuple[int, int]:
    """A stage's planes and depth after the width and depth multipliers."""
    stage = spec.stages[index]
    return scaled(stage.planes, stage.depth, spec.width_multiplier, spec.depth_multiplier)


def make_context(spec: ModelSpec) -> BuildContext:
    """Norm and activation factories from the spec's ``norm:`` and ``activation:``."""
    ctx = BuildContext(norm=lambda channels: spec.norm.build((channels, 1, 1), ctx),
                       act=lambda: spec.activation.build((), ctx), norm_layer=spec.norm)
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


class FeatureExtractor(nn.Sequential):
    """The stem and stages of a spec, returning the chosen stages' feature maps (timm's ``features_only``).

    Children keep the full model's names, so a classifier's ``state_dict`` loads by the same keys
    (its head entries are the only extras). ``feature_info`` gives each output's module, channels and
    reduction (input size / feature size).
    """

    def __init__(self, children: OrderedDict[str, nn.Module], return_layers: list[str], feature_info: list[dict]):
        super().__init__(children)
        self.return_layers = tuple(return_layers)
        self.feature_info = feature_info

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        features = []
        for name, module in self.named_children():
            x = module(x)
            if name in self.return_layers:
                features.append(x)
        return features


def _out_indices(spec: ModelSpec, out_indices: Any) -> list[int]:
    stages = len(spec.stages)
    from_spec = out_indices is None
    out_indices = spec.out_indices if from_spec else out_indices
    if out_indices is None:
        return list(range(1, stages + 1))
    field = ("out_indices",)

    def error(message: str) -> SpecError:
        return spec.error(field, message) if from_spec else SpecError(message, None, "out_indices (argument)")

    if isinstance(out_indices, int) or not all(isinstance(i, int) and not isinstance(i, bool) for i in out_indices):
        raise error(f"must be a list of integers, got {out_indices!r}")
    indices = list(out_indices)
    if not indices:
        raise error("must name at least one output")
    low = 0 if spec.stem else 1
    for i in indices:
        if not low <= i <= stages:
            raise error(f"{i} is out of range: 0 is the stem's output, 1..{stages} the stages"
                             + ("" if spec.stem else " (this spec has no stem, so no 0)"))
    if indices != sorted(set(indices)):
        raise error(f"must be increasing without repeats, got {indices}")
    return indices


def build(spec: ModelSpec, device: Any = None, *, features_only: bool | None = None,
          out_indices: Any = None) -> nn.Module:
    """Assemble the model: stem layers, ``layer1``..``layerN``, head layers, as one ``nn.Sequential``.

    ``device="meta"`` builds the structure without allocating or initializing weights.
    ``features_only`` (or the spec's ``features_only:``) returns a FeatureExtractor of the stem and the
    stages up to the last of ``out_indices`` (0 = stem output, i = stage i; default: every stage).
    """
    features = spec.features_only if features_only is None else features_only
    indices = _out_indices(spec, out_indices) if features else []
    ctx = make_context(spec)
    stem_names, head_names = layer_names(spec)
    children: OrderedDict[str, nn.Module] = OrderedDict()
    shape: Shape = (spec.input.channels, *spec.input.size)
    info: list[dict] = []

    def note(index: int, name: str) -> None:
        if index in indices:
            info.append({"index": index, "module": name, "num_chs": shape[0],
                         "reduction": round(spec.input.size[0] / shape[1])})

    device_ctx = torch.device(device) if device is not None else contextlib.nullcontext()
    with device_ctx, _seeded(spec.seed):
        for i, name in enumerate(stem_names):
            children[name], shape = _layer(spec, "stem", i, shape, ctx)
        if stem_names:
            note(0, stem_names[-1])
        dilation = 1
        last = max(indices) if features else len(spec.stages)
        for i in range(last):
            children[f"layer{i + 1}"], shape, dilation = make_stage(spec, i, shape, dilation, ctx)
            note(i + 1, f"layer{i + 1}")
        if features:
            model: nn.Module = FeatureExtractor(children, [d["module"] for d in info], info)
        else:
            for i, name in enumerate(head_names):
                children[name], shape = _layer(spec, "head", i, shape, ctx)
            model = nn.Sequential(children)
        if str(device) != "meta":
            init_weights(model, spec)
    return model
