"""The block, layer and attention registries, and the one place that fills them: built-ins first, then
plugins through entry points (``archkit.plugins``), each checked against its contract."""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel

from . import plugins
from .blocks import BUILTIN_BLOCKS, REP_LAYERS
from .blocks.base import ATTN_POSITIONS, BlockType, Shortcut, USER_SHORTCUTS
from .attention import BUILTIN_ATTENTION
from .generators import BUILTIN_GENERATORS, Generator
from .generators.base import SPEC_KEYS
from .stages import BUILTIN_STAGES
from .stages.base import StageType
from .layers import BUILTIN_LAYERS
from .heads import HEAD_LAYERS
from .params import AttentionParams, BlockParams, LayerParams
from .registry import Registry


def check_block(name: str, obj: Any) -> BlockType:
    """The ``BlockType`` for a registered object: a description (``archkit.blocks.block``) as it is, or
    an ``nn.Module`` class following the module contract; TypeError naming what is wrong otherwise."""
    if isinstance(obj, BlockType):
        kind = obj
    elif isinstance(obj, type) and callable(getattr(obj, "forward", None)):
        kind = _module_block(name, obj)
    else:
        raise TypeError(f"block {name!r} must be a block description (archkit.blocks.block) or an nn.Module "
                        f"class, got {obj!r}")
    if not (isinstance(kind.params, type) and issubclass(kind.params, BlockParams)):
        raise TypeError(f"block {name!r}: its params must subclass archkit.blocks.BlockParams")
    if kind.params is not BlockParams and "type" in vars(kind.params).get("__annotations__", {}):
        raise TypeError(f"block {name!r}: Params must not define 'type' (archkit adds the tag)")
    if not kind.shortcuts or not all(isinstance(k, Shortcut) for k in kind.shortcuts):
        raise TypeError(f"block {name!r}: shortcuts must be a non-empty tuple of shortcut kinds")
    if not set(kind.attn_positions) <= set(ATTN_POSITIONS):
        raise TypeError(f"block {name!r}: attn_positions must be drawn from {ATTN_POSITIONS}")
    return kind.renamed(name)


def _module_block(name: str, cls: type) -> BlockType:
    """A module-form block: ``cls(plan)`` builds it from the ``BlockPlan``; class attributes say the rest."""
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and issubclass(params, BlockParams)):
        raise TypeError(f"block {name!r}: {cls.__name__}.Params must be a BlockParams model of its parameters")
    try:
        accepted = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        accepted = {}
    if "ctx" in accepted or "in_channels" in accepted or "planes" in accepted:
        raise TypeError(f"block {name!r}: {cls.__name__}.__init__ takes (in_channels, planes, ..., ctx) (archkit "
                        "0.2's contract); a module-form block now takes the block's plan: __init__(self, b), "
                        "or describe it as data with archkit.blocks.block: see docs/plugins.md")
    shortcuts = tuple(Shortcut(k) for k in getattr(cls, "shortcuts", USER_SHORTCUTS))
    return BlockType(name, params, cls.__name__, None, cls, getattr(cls, "cost", None), getattr(cls, "expansion", 1),
                     shortcuts, tuple(getattr(cls, "attn_positions", ("pre_add", "post_add"))),
                     bool(getattr(cls, "has_drop_block", False)), bool(getattr(cls, "dilation", True)),
                     bool(getattr(cls, "stride", True)), _out_rule(cls), (cls.__doc__ or "").strip().split("\n")[0], str(getattr(cls, "stage", "resnet")))


def _out_rule(cls: type) -> Any:
    rule = getattr(cls, "out_channels", None)
    return rule if callable(rule) else None


def check_layer(name: str, cls: Any) -> Any:
    """A layer type must subclass ``LayerParams`` and leave the ``type`` tag to archkit."""
    if not (isinstance(cls, type) and issubclass(cls, LayerParams)):
        raise TypeError(f"layer {name!r} must subclass archkit.layers.LayerParams, got {cls!r}")
    if "type" in vars(cls).get("__annotations__", {}):
        raise TypeError(f"layer {name!r}: must not define 'type' (archkit adds the tag)")
    for flag, kind in _CAPABILITIES.items():  # the protocol's declared types: a wrong one fails here, not later
        value = getattr(cls, flag)
        if not isinstance(value, kind) or (isinstance(value, tuple) and not all(isinstance(v, str) for v in value)):
            raise TypeError(f"layer {name!r}: {flag} must be {' or '.join(k.__name__ for k in kind)}, got {value!r}")
    return cls


_CAPABILITIES = {"role": (str,), "widths": (tuple,), "whole": (bool,), "classifier": (bool,), "nested": (bool,),
                 "foldable": (bool,), "fixed_input_size": (bool,), "global_pool": (str, type(None))}


def check_attention(name: str, cls: Any) -> Any:
    """An attention type must subclass ``AttentionParams`` and leave the ``type`` tag to archkit."""
    if not (isinstance(cls, type) and issubclass(cls, AttentionParams)):
        raise TypeError(f"attention {name!r} must subclass archkit.attention.AttentionParams, got {cls!r}")
    if "type" in vars(cls).get("__annotations__", {}):
        raise TypeError(f"attention {name!r}: must not define 'type' (archkit adds the tag)")
    return cls


def check_stage(name: str, obj: Any) -> StageType:
    """A stage type must be a ``StageType`` (``archkit.stages.stage_type``) whose params subclass StageParams."""
    from .params import StageParams

    if not isinstance(obj, StageType):
        raise TypeError(f"stage {name!r} must be a stage type (archkit.stages.stage_type), got {obj!r}")
    if not (isinstance(obj.params, type) and issubclass(obj.params, StageParams)):
        raise TypeError(f"stage {name!r}: its params must subclass archkit.params.StageParams")
    return obj.renamed(name)


def _fill_blocks(registry: Registry) -> None:
    for name, kind in BUILTIN_BLOCKS.items():
        registry.register(name, kind, kind="block")
    plugins.discover(registry, plugins.BLOCK_GROUP, check_block, lambda obj: "block")


def _fill_layers(registry: Registry) -> None:
    for name, cls in {**BUILTIN_LAYERS, **REP_LAYERS, **HEAD_LAYERS}.items():
        registry.register(name, cls, kind=cls.role)
    plugins.discover(registry, plugins.LAYER_GROUP, check_layer, lambda cls: cls.role)


def _fill_attention(registry: Registry) -> None:
    for name, cls in BUILTIN_ATTENTION.items():
        registry.register(name, cls, kind="attention")
    plugins.discover(registry, plugins.ATTENTION_GROUP, check_attention, lambda cls: "attention")


def _fill_stages(registry: Registry) -> None:
    for name, kind in BUILTIN_STAGES.items():
        registry.register(name, kind, kind="stage")
    plugins.discover(registry, plugins.STAGE_GROUP, check_stage, lambda obj: "stage")


def check_generator(name: str, obj: Any) -> Generator:
    """A registered generator: an ``archkit.generators.Generator`` named by its spec key."""
    if not isinstance(obj, Generator):
        raise TypeError(f"generator {name!r} must be an archkit.generators.Generator, got {obj!r}")
    if obj.name != name:
        raise TypeError(f"generator {name!r} is registered under another name than its spec key {obj.name!r}")
    if name in SPEC_KEYS:
        raise TypeError(f"generator {name!r} would take the spec's own key {name}:; choose another name")
    if not (isinstance(obj.params, type) and issubclass(obj.params, BaseModel)) or not callable(obj.stages):
        raise TypeError(f"generator {name!r} needs params (a pydantic model) and stages (a callable)")
    missing = [a.name for a in obj.axes if a.name not in obj.params.model_fields]
    if missing:
        raise TypeError(f"generator {name!r} varies {', '.join(missing)}, which its params do not declare")
    return obj


def _fill_generators(registry: Registry) -> None:
    for name, gen in BUILTIN_GENERATORS.items():
        registry.register(name, gen, kind="generator")
    plugins.discover(registry, plugins.GENERATOR_GROUP, check_generator, lambda obj: "generator")


def _plugins_off() -> str:
    return "" if plugins.enabled() else f" (plugins are off: --no-plugins or ${plugins.DISABLE_ENV}; a plugin may provide it)"


BLOCKS = Registry("block", _fill_blocks, _plugins_off)
LAYERS = Registry("layer", _fill_layers, _plugins_off)
ATTENTION = Registry("attention", _fill_attention, _plugins_off)
STAGES = Registry("stage", _fill_stages, _plugins_off)
GENERATORS = Registry("generator", _fill_generators, _plugins_off)
REGISTRIES = (BLOCKS, LAYERS, ATTENTION, STAGES, GENERATORS)


def _reset() -> None:
    for registry in REGISTRIES:
        registry.reset()


plugins.on_change(_reset)


def register_block(name: str, obj: Any, *, origin: str = "built-in", description: str | None = None) -> Any:
    """Register a block type: a description (``archkit.blocks.block``) or a module-form class."""
    kind = check_block(name, obj)
    BLOCKS.register(name, kind, kind="block", origin=origin, description=description)
    return obj


def block_type(name: str) -> BlockType:
    """The registered block type ``name`` (UnknownName with suggestions otherwise)."""
    return BLOCKS.get(name).obj


def stage_kind(name: str) -> StageType:
    """The registered stage type ``name`` (UnknownName with suggestions otherwise)."""
    return STAGES.get(name).obj

