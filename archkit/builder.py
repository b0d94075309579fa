"""Plan -> plain ``nn.Sequential``, with torchvision's ``_make_layer`` rules and initialization."""

from __future__ import annotations

import contextlib
import dataclasses
from collections import OrderedDict
from typing import Any, Iterator

import torch
from torch import nn

from .context import Context
from .errors import first_line
from .plan import BlockPlan, LayerPlan, StagePlan, plan
from .plan import out_indices as _indices
from .specs import ModelSpec


def make_context(spec: ModelSpec) -> Context:
    """Norm and activation factories from the spec's ``norm:`` and ``activation:``."""
    ctx = Context(norm=lambda channels: spec.norm.build((channels, 1, 1), ctx),
                  act=lambda: spec.activation.build((), ctx), norm_layer=spec.norm, act_layer=spec.activation)
    return ctx


def _layer(spec: ModelSpec, lp: LayerPlan, ctx: Context) -> nn.Module:
    try:
        return lp.layer.build(lp.in_shape, ctx)
    except (ValueError, NotImplementedError, RuntimeError) as exc:  # RuntimeError: e.g. numel overflow in torch
        raise spec.error((lp.part, lp.index), f"{lp.layer.type}: {first_line(exc)}") from exc


def block_context(base: Context, bp: BlockPlan) -> Context:
    """The block's own context: its shortcut kind, attention, drop-path rate and position."""
    return dataclasses.replace(base, shortcut=bp.shortcut, attn=bp.attn, drop_path_rate=bp.drop_path_rate,
                               index=bp.global_index, stage=bp.stage)


def make_block(bp: BlockPlan, ctx: Context) -> nn.Module:
    """One block from its plan (the shortcut module only where the plan has one)."""
    downsample = None
    if bp.shortcut not in ("identity", "none"):
        downsample = bp.cls.make_shortcut(bp.in_channels, bp.out_channels, bp.stride, bp.dilation, bp.params, ctx)
    return bp.cls(bp.in_channels, bp.planes, stride=bp.stride, dilation=bp.dilation, downsample=downsample,
                  params=bp.params, ctx=ctx)


def make_stage(spec: ModelSpec, sp: StagePlan, ctx: Context) -> nn.Sequential:
    """One stage by ``ResNet._make_layer``."""
    try:
        return nn.Sequential(*(make_block(bp, block_context(ctx, bp)) for bp in sp.blocks))
    except (ValueError, NotImplementedError, RuntimeError) as exc:  # chained: --traceback shows a plugin's frame
        raise spec.error(("stages", sp.index), f"{sp.blocks[0].type} block: {first_line(exc)}") from exc


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


def build(spec: ModelSpec, device: Any = None, *, features_only: bool | None = None,
          out_indices: Any = None) -> nn.Module:
    """Assemble the model: stem layers, ``layer1``..``layerN``, head layers, as one ``nn.Sequential``.

    ``device="meta"`` builds the structure without allocating or initializing weights.
    ``features_only`` (or the spec's ``features_only:``) returns a FeatureExtractor of the stem and the
    stages up to the last of ``out_indices`` (0 = stem output, i = stage i; default: every stage).
    """
    features = spec.features_only if features_only is None else features_only
    indices = _indices(spec, out_indices) if features else []
    p = plan(spec, head=not features)
    ctx = make_context(spec)
    children: OrderedDict[str, nn.Module] = OrderedDict()
    device_ctx = torch.device(device) if device is not None else contextlib.nullcontext()
    with device_ctx, _seeded(spec.seed):
        for lp in p.stem:
            children[lp.name] = _layer(spec, lp, ctx)
        for sp in p.stages[: max(indices) if features else None]:
            children[sp.name] = make_stage(spec, sp, ctx)
        if features:
            info = p.feature_info(indices)
            model: nn.Module = FeatureExtractor(children, [d["module"] for d in info], info)
        else:
            for lp in p.head:
                children[lp.name] = _layer(spec, lp, ctx)
            model = nn.Sequential(children)
        if str(device) != "meta":
            init_weights(model, spec)
    return model

