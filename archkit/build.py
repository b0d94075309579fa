"""Plan -> network: the stem, stages and head lowered to modules (``lower``) and assembled into an
``ArchkitNet``; weights initialized once, as torchvision's ResNet.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from typing import Any, Iterator

import torch
from torch import nn

from .errors import SpecError, first_line
from .loader import MAX_PARAMS_ENV
from .lower import TorchContext, _restore, module_of  # noqa: F401 - plugins import TorchContext from here; older pickles name archkit.build._restore
from .model import ArchkitNet, FeatureExtractor, Freezable
from .nn.attention_pool import AttentionPool2d
from .nn.layers import BlurPool2d, CondConv2d, EvoNorm2dS0a
from .plan import Plan, check_reads, out_indices as _indices, plan
from .specs import ModelSpec


# --- the network -------------------------------------------------------------------------------------


def init_weights(model: nn.Module, spec: ModelSpec) -> None:
    """torchvision's ResNet init; ``zero_init_residual`` zeroes the norms blocks mark (``zero_init_last()``).

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
_SELF_INIT = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.LayerNorm, BlurPool2d, AttentionPool2d, EvoNorm2dS0a, CondConv2d)
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


def _child(spec: ModelSpec, path: tuple, what: str, op: Any) -> nn.Module:
    try:
        return module_of(op)
    except (ValueError, NotImplementedError, RuntimeError, TypeError) as exc:  # a plugin's constructor, say
        raise spec.error(path, f"{what}: {first_line(exc)}") from exc


def _stage_module(spec: ModelSpec, sp: Any) -> nn.Module:
    if sp.result is not None and sp.result.graph is not None:  # a stage type's own module (a CSP stage)
        return _child(spec, ("stages", sp.index), f"{sp.type} stage", sp.result.graph)
    return nn.Sequential(OrderedDict((bp.name.rpartition(".")[2], _child(spec, ("stages", sp.index),
                                                                         f"{bp.type} block", op))
                                     for bp, op in zip(sp.blocks, sp.ops)))


def _assemble(spec: ModelSpec, p: Plan, features: bool, indices: list[int]) -> nn.Module:
    stem, stages, final = p.backbone(indices) if features else (p.stem, p.stages, p.final)
    head = () if features else p.head
    children: OrderedDict[str, nn.Module] = OrderedDict()
    for part, planned in (("stem", stem), ("stages", stages), ("final", final), ("head", head)):
        container = "" if part == "final" else getattr(p.names, part)  # "": the network's own children
        modules = OrderedDict(
            (item.name[len(container) + 1:] if container else item.name,
             _stage_module(spec, item) if part == "stages" else
             _child(spec, (item.part, item.index), item.layer.type, item.op)) for item in planned)
        if not container:
            children.update(modules)
        elif [item.name for item in planned] == [container]:  # a whole-part layer is the part (timm's byob stems)
            children[container] = modules[""]
        elif modules or part != "head":  # (a backbone has no head container)
            children[container] = nn.Sequential(modules)
    check_reads(spec, stages)  # module-form blocks: what their constructors read is known now
    if features:
        info = p.feature_info(indices)
        return FeatureExtractor(children, [d["module"] for d in info], info, spec, [lp.name for lp in stem],
                                [sp.name for sp in stages], [lp.name for lp in final])
    return ArchkitNet(children, spec, [lp.name for lp in p.stem], [sp.name for sp in p.stages],
                      [lp.name for lp in p.head], p.feature_info(list(range(0 if p.stem else 1, len(p.stages) + 1))),
                      [lp.name for lp in p.final])


def build(spec: ModelSpec, device: Any = None, *, features_only: bool | None = None,
          out_indices: Any = None, max_params: int | None = None) -> nn.Module:
    """Assemble the model: stem layers, ``layer1``..``layerN``, head layers, as one ``nn.Sequential``.

    ``device="meta"`` builds the structure without allocating or initializing weights.
    ``features_only`` (or the spec's ``features_only:``) returns a FeatureExtractor of the stem and the
    stages up to the last of ``out_indices`` (0 = the stem's feature map before its final downsampling,
    as timm's; i = stage i; default: every stage).

    Each weight is initialized once: the model is built on the meta device, materialized with
    ``to_empty`` on ``device`` and initialized by ``init_weights`` (PyTorch's default init, which
    torchvision then overwrites, never runs). A model holding plugin modules with state of their own
    is built directly on ``device`` instead, so their constructors' values stay.

    Weights are allocated only for at most ``max_params`` parameters (default: ``$ARCHKIT_MAX_PARAMS``,
    else ``MAX_PARAMS``), counted before anything is allocated; more is a SpecError.
    """
    with _float32():  # whatever a plugin or the caller set as torch's default: the dtype the summary reports
        return _build(spec, device, features_only, out_indices, max_params)


def params_limit(max_params: int | None = None) -> int:
    """The most parameters a build allocates: ``max_params``, else ``$ARCHKIT_MAX_PARAMS``, else ``MAX_PARAMS``."""
    import os

    from .loader import MAX_PARAMS

    if max_params is not None:
        return max_params
    env = os.environ.get(MAX_PARAMS_ENV)
    if env is None:
        return MAX_PARAMS
    if not (env.isascii() and env.isdigit()) or int(env) < 1:
        raise SpecError(f"${MAX_PARAMS_ENV} must be a positive integer, got {env!r}")
    return int(env)


def check_budget(spec: ModelSpec, max_params: int | None = None) -> None:
    """Refuse, from the plan alone (no module built), a spec whose declared parameters exceed the limit."""
    features = spec.features_only
    indices = _indices(spec, None) if features else []
    _within_budget(spec, _planned_params(plan(spec, head=not features), features, indices), params_limit(max_params))


def _within_budget(spec: ModelSpec, count: int, limit: int) -> None:
    if count > limit:
        raise SpecError(f"{spec.name} has {count:,} parameters, above the limit of {limit:,} for allocating its "
                        f"weights; raise it with ${MAX_PARAMS_ENV} (max_params= in the API, --max-params in the CLI)")


def _planned_params(p: Plan, features: bool, indices: list) -> int:
    """Parameters the plan declares for what is built (a lower bound: what must be measured counts 0)."""
    stem, stages, final = p.backbone(indices) if features else (p.stem, p.stages, p.final)
    return sum(_declared(part) for part in (*stem, *stages, *final, *(() if features else p.head)))


def _declared(part: Any) -> int:
    try:
        cost = part.cost
    except (ValueError, TypeError, NotImplementedError, RuntimeError):  # a plugin's module, measured later
        return 0
    return cost.params if cost is not None else 0


@contextlib.contextmanager
def _float32() -> Iterator[None]:
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def _build(spec: ModelSpec, device: Any, features_only: bool | None, out_indices: Any,
           max_params: int | None) -> nn.Module:
    features = spec.features_only if features_only is None else features_only
    indices = _indices(spec, out_indices) if features else []
    p = plan(spec, head=not features)
    if str(device) == "meta":
        with torch.device("meta"):
            return _assemble(spec, p, features, indices)
    limit = params_limit(max_params)
    _within_budget(spec, _planned_params(p, features, indices), limit)  # before even the meta build: a giant is refused at once
    target = torch.device(device) if device is not None else torch.device("cpu")
    with torch.device("meta"):
        skeleton = _assemble(spec, p, features, indices)
    _within_budget(spec, sum(q.numel() for q in skeleton.parameters()), limit)  # exact, nothing allocated yet
    if _fully_initialized_by_us(skeleton):
        model = skeleton.to_empty(device=target)
        with _seeded(spec.seed):
            init_weights(model, spec)
    else:
        with torch.device(target), _seeded(spec.seed):
            model = _assemble(spec, p, features, indices)
            init_weights(model, spec)
    if isinstance(model, Freezable):
        model.train()  # frozen stages and norm_eval take effect on the built weights
    return model
