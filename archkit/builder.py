"""Plan -> plain ``nn.Sequential``, with torchvision's ``_make_layer`` rules and initialization."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections import OrderedDict
from typing import Any, Iterator

import torch
from torch import nn

from .context import Context
from .blocks.antialias import BlurPool2d
from .errors import first_line
from .model import ArchkitNet, FeatureInfo, Freezable, _run_stage
from .plan import BlockPlan, LayerPlan, StagePlan, plan
from .plan import out_indices as _indices
from .specs import ModelSpec


def make_context(spec: ModelSpec) -> Context:
    """Norm and activation factories from the spec's ``norm:`` and ``activation:``."""
    ctx = Context(norm=lambda channels: spec.norm.build((channels, 1, 1), ctx),
                  act=lambda: spec.activation.build((), ctx), norm_layer=spec.norm, act_layer=spec.activation,
                  drop_block_rate=spec.drop_block_rate)
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
    """torchvision's ResNet init; blocks opt into ``zero_init_residual`` through ``zero_init_last()``.

    Every tensor is written here, so a model materialized from the meta device (``to_empty``) is fully
    initialized: convolutions by ``init.conv`` (bias as PyTorch's default), norms to ones and zeros
    with fresh running statistics, everything else by its own ``reset_parameters()``.
    """
    mode = {"kaiming_fan_out": "fan_out", "kaiming_fan_in": "fan_in"}.get(spec.init.conv)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and mode is not None:
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:  # PyTorch's default for a conv bias
                fan_in = m.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
                nn.init.uniform_(m.bias, -bound, bound)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)):
            if isinstance(m, nn.modules.batchnorm._NormBase):
                m.reset_running_stats()
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, _SELF_INIT):
            m.reset_parameters()
    if spec.init.zero_init_residual:
        # This improves the model by 0.2~0.3% according to https://arxiv.org/abs/1706.02677
        for m in model.modules():
            zero = getattr(m, "zero_init_last", None)
            if callable(zero):
                zero()


# modules whose whole state their own reset_parameters() writes
_SELF_INIT = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.LayerNorm, BlurPool2d)
_KNOWN = (*_SELF_INIT, nn.modules.batchnorm._NormBase, nn.GroupNorm)


def _fully_initialized_by_us(model: nn.Module) -> bool:
    """Whether ``init_weights`` writes every parameter and buffer (no plugin module with state of its own)."""
    for m in model.modules():
        if isinstance(m, _KNOWN):
            continue
        if next(m.parameters(recurse=False), None) is not None or next(m.buffers(recurse=False), None) is not None:
            return False
    return True


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class FeatureExtractor(Freezable, nn.Sequential):
    """The stem and stages of a spec, returning the chosen stages' feature maps (timm's ``features_only``).

    Children keep the full model's names, so a classifier's ``state_dict`` loads by the same keys
    (its head entries are the only extras). ``feature_info`` gives each output's module, channels and
    reduction (input size / feature size).
    """

    def __init__(self, children: OrderedDict[str, nn.Module], return_layers: list[str], feature_info: list[dict],
                 spec: Any = None, stem: list[str] = (), stages: list[str] = ()):
        super().__init__(children)
        self.return_layers = tuple(return_layers)
        self.feature_info = FeatureInfo(feature_info)
        self.grad_checkpointing = False
        self.spec = spec
        self.stem_names, self.stage_names = list(stem), list(stages)
        self.frozen_stages = min(getattr(spec, "frozen_stages", -1), len(self.stage_names))
        self.norm_eval = getattr(spec, "norm_eval", False)
        self._apply_freezing()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        features = []
        for name, module in self.named_children():
            if name.startswith("layer") and name[5:].isdigit():
                x = _run_stage(module, x, self.grad_checkpointing)
            else:
                x = module(x)
            if name in self.return_layers:
                features.append(x)
        return features

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (timm's name)."""
        self.grad_checkpointing = enable

    def reset_classifier(self, num_classes: int) -> None:
        """A backbone has no classifier: refused in one line."""
        raise ValueError("a features_only backbone has no classifier to reset (build the full model instead)")


def _assemble(spec: ModelSpec, p: Any, ctx: Context, features: bool, indices: list[int]) -> nn.Module:
    children: OrderedDict[str, nn.Module] = OrderedDict()
    stem = p.stem
    if features and max(indices) == 0:  # the stem's feature map only: nothing after it runs
        stem = stem[: stem.index(p.stem_feature) + 1]
    for lp in stem:
        children[lp.name] = _layer(spec, lp, ctx)
    for sp in p.stages[: max(indices) if features else None]:
        children[sp.name] = make_stage(spec, sp, ctx)
    if features:
        info = p.feature_info(indices)
        return FeatureExtractor(children, [d["module"] for d in info], info, spec, [lp.name for lp in stem],
                                [sp.name for sp in p.stages[: max(indices)]])
    for lp in p.head:
        children[lp.name] = _layer(spec, lp, ctx)
    return ArchkitNet(children, spec, [lp.name for lp in p.stem], [sp.name for sp in p.stages],
                      [lp.name for lp in p.head], p.feature_info(list(range(len(p.stages) + 1))))


def build(spec: ModelSpec, device: Any = None, *, features_only: bool | None = None,
          out_indices: Any = None) -> nn.Module:
    """Assemble the model: stem layers, ``layer1``..``layerN``, head layers, as one ``nn.Sequential``.

    ``device="meta"`` builds the structure without allocating or initializing weights.
    ``features_only`` (or the spec's ``features_only:``) returns a FeatureExtractor of the stem and the
    stages up to the last of ``out_indices`` (0 = the stem's feature map before its final downsampling,
    as timm's; i = stage i; default: every stage).

    Each weight is initialized once: the model is built on the meta device, materialized with
    ``to_empty`` on ``device`` and initialized by ``init_weights`` (PyTorch's default init, which
    torchvision then overwrites, never runs). A model holding plugin modules with state of their own
    is built directly on ``device`` instead, so their constructors' values stay.
    """
    features = spec.features_only if features_only is None else features_only
    indices = _indices(spec, out_indices) if features else []
    p = plan(spec, head=not features)
    ctx = make_context(spec)
    if str(device) == "meta":
        with torch.device("meta"):
            return _assemble(spec, p, ctx, features, indices)
    target = torch.device(device) if device is not None else torch.device("cpu")
    with torch.device("meta"):
        skeleton = _assemble(spec, p, ctx, features, indices)
    if _fully_initialized_by_us(skeleton):
        model = skeleton.to_empty(device=target)
        with _seeded(spec.seed):
            init_weights(model, spec)
    else:
        with torch.device(target), _seeded(spec.seed):
            model = _assemble(spec, p, ctx, features, indices)
            init_weights(model, spec)
    if isinstance(model, Freezable):
        model.train()  # frozen stages and norm_eval take effect on the built weights
    return model
