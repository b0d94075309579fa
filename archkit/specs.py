"""Pydantic models of the spec format; the block and layer unions are built from the registries."""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model

from .errors import Mark, Problem, SpecError, format_path
from .loader import MDict, MList, flatten, merge
from .registry import BLOCKS, LAYERS, Entry, suggest

_INT_MAX = 2**63 - 1


class _Model(BaseModel):
    # strict: YAML already types its scalars, so "3" (a string) or true (a bool) for an int is a mistake.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class InputSpec(_Model):
    """The input the model is designed for; used for shape checks and summaries."""

    channels: int = Field(3, ge=1, le=65536, description="Input channels (3 for RGB).")
    size: list[Annotated[int, Field(ge=1, le=65536)]] = Field(
        default_factory=lambda: [224, 224], min_length=2, max_length=2, description="Spatial size [height, width].")


class InitSpec(_Model):
    """Weight initialization, as torchvision's ResNet by default."""

    conv: Literal["kaiming_fan_out", "kaiming_fan_in", "pytorch_default"] = Field(
        "kaiming_fan_out", description="Conv weights: torchvision's kaiming_normal_(mode='fan_out', "
                                       "nonlinearity='relu'), fan_in, or PyTorch's own default.")
    zero_init_residual: bool = Field(False, description="Zero each block's last norm scale so blocks start as "
                                                        "identity (Goyal et al. 2017); blocks opt in via zero_init_last().")


class _StageBase(_Model):
    planes: int = Field(ge=1, le=1 << 20, description="Block planes; output channels are planes x block expansion.")
    depth: int = Field(ge=1, le=100_000, description="Number of blocks.")
    stride: int = Field(1, ge=1, le=64, description="Stride of the first block (the stage's downsampling).")
    dilate: bool = Field(False, description="Replace the stride with dilation (torchvision's "
                                            "replace_stride_with_dilation), keeping the resolution.")


class _SpecBase(_Model):
    name: str = Field(min_length=1, max_length=200, description="Model name.")
    description: str = Field("", max_length=10_000, description="Free text: what this spec reproduces.")
    input: InputSpec = Field(default_factory=InputSpec, description="Input channels and size.")
    init: InitSpec = Field(default_factory=InitSpec, description="Weight initialization.")
    seed: int | None = Field(None, ge=0, le=_INT_MAX, description="Seed for reproducible initial weights.")
    width_multiplier: float = Field(1.0, gt=0, le=64, description="Scales every stage's planes (rounded).")
    depth_multiplier: float = Field(1.0, gt=0, le=64, description="Scales every stage's depth (rounded up).")
    features_only: bool = Field(False, description="Build a backbone returning feature maps (no head).")
    out_indices: list[Annotated[int, Field(ge=0, le=1000)]] | None = Field(
        None, min_length=1, description="Feature outputs: 0 = stem output, i = stage i (default: every stage).")

    _marks: dict = PrivateAttr(default_factory=dict)

    def mark_of(self, path: tuple) -> Mark | None:
        """The YAML position of a field path, or of its nearest enclosing field."""
        return _mark_for(path, self._marks)

    def error(self, path: tuple, message: str) -> SpecError:
        """A SpecError located at ``path`` in the spec's source."""
        return SpecError(message, self.mark_of(path), format_path(path))


def _tagged(entry: Entry, prefix: str) -> type[BaseModel]:
    base = entry.obj.Params if entry.kind == "block" else entry.obj
    return create_model(f"{prefix}_{entry.name.replace(':', '__')}", __base__=base, __doc__=entry.description or base.__doc__,
                        type=(Literal[entry.name], Field(description=f"{prefix} type: {entry.name}.")))


def _union(models: list[type[BaseModel]]) -> Any:
    if not models:
        raise RuntimeError("no types registered")
    if len(models) == 1:  # a discriminated union of one member collapses; the Literal still checks the tag
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]


_cache: dict[tuple, type] = {}


def spec_model() -> type[_SpecBase]:
    """The ModelSpec class for the blocks and layers registered now (cached per registry state)."""
    BLOCKS.names(), LAYERS.names()  # populate first: populating bumps the generations
    key = (BLOCKS.generation, LAYERS.generation)
    if key in _cache:
        return _cache[key]
    blocks = _union([_tagged(e, "Block") for e in BLOCKS])
    layers = [_tagged(e, "Layer") for e in LAYERS]
    by_name = {m.model_fields["type"].annotation.__args__[0]: m for m in layers}
    norms = _union([by_name[n] for n in LAYERS.names("norm")])
    acts = _union([by_name[n] for n in LAYERS.names("activation")])
    stage = create_model("Stage", __base__=_StageBase, __doc__="One stage: blocks made by _make_layer's rules.",
                         block=(blocks | None, Field(None, description="Block type and params, merged over the "
                                                                     "top-level block (required if there is none).")))
    model = create_model(
        "ModelSpec", __base__=_SpecBase, __doc__="An archkit network: stem, stages of residual blocks, head.",
        norm=(norms, Field(default_factory=lambda: by_name["batchnorm"](type="batchnorm"),
                           description="Norm layer used in blocks and by 'norm' layers.")),
        activation=(acts, Field(default_factory=lambda: by_name["relu"](type="relu"),
                                description="Activation used in blocks and by 'act' layers.")),
        block=(blocks | None, Field(None, description="Block defaults for all stages (a stage may override).")),
        stem=(list[_union(layers)], Field(default_factory=list, max_length=1000, description="Layers before the stages.")),
        stages=(list[stage], Field(min_length=1, max_length=1000, description="Stages, named layer1..layerN.")),
        head=(list[_union(layers)], Field(default_factory=list, max_length=1000, description="Layers after the stages.")),
    )
    _cache.clear()
    _cache[key] = model
    return model


ModelSpec = _SpecBase  # for type hints: every validated spec is an instance of a spec_model() class


def json_schema() -> dict:
    """JSON Schema of the spec format with every registered block's and layer's parameters."""
    schema = spec_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "archkit spec"
    # ``base:`` is resolved by the loader before validation; editors must still accept it.
    schema["properties"]["base"] = {"type": "string", "description": "Spec file this one inherits from (deep merge)."}
    # A spec with base: may leave required fields to its base, so "required" applies only without one.
    required = schema.pop("required", [])
    schema["if"] = {"required": ["base"]}
    schema["else"] = {"required": required}
    return schema


def resolve_stage_blocks(tree: MDict) -> MDict:
    """Merge the top-level ``block`` defaults under each stage's own ``block`` (returns a new tree)."""
    default = tree.get("block")
    stages = tree.get("stages")
    if not isinstance(default, dict) or not isinstance(stages, list):
        return tree
    out = MDict(tree, mark=tree.mark)
    out.marks = dict(tree.marks)
    new_stages = MList(mark=getattr(stages, "mark", None))
    new_stages.marks = list(getattr(stages, "marks", [None] * len(stages)))
    for stage in stages:
        if isinstance(stage, dict) and (stage.get("block") is None or isinstance(stage.get("block"), dict)):
            own = stage.get("block") or {}
            new = MDict(stage, mark=getattr(stage, "mark", None))
            new.marks = dict(getattr(stage, "marks", {}))
            new["block"] = merge(default, own)
            if "block" not in stage or stage["block"] is None:
                new.marks["block"] = tree.marks.get("block")
            stage = new
        new_stages.append(stage)
    out["stages"] = new_stages
    return out


def validate(tree: Any, source: str = "<spec>") -> _SpecBase:
    """Validate a loaded spec tree (see ``archkit.loader``) into a ModelSpec, or raise SpecError."""
    if not isinstance(tree, dict):
        raise SpecError(f"a spec must be a mapping, not {type(tree).__name__}", Mark(source))
    tree = resolve_stage_blocks(tree)
    data, marks = flatten(tree)
    cls = spec_model()
    try:
        spec = cls.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(err, data, marks, cls) for err in exc.errors()]
        raise SpecError(_ordered(problems, source)) from None
    spec._marks = marks
    problems = _check_names(spec) + _check_size(spec)
    for i, stage in enumerate(spec.stages):
        if stage.block is None:
            path = ("stages", i, "block")
            problems.append(Problem("needs a block type (here or in a top-level 'block:' default)",
                                    spec.mark_of(path), format_path(path)))
    if problems:
        raise SpecError(_ordered(problems, source))
    return spec


def _ordered(problems: list[Problem], source: str) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        key = (p.mark, p.message)
        if key not in seen:  # stage blocks share the top-level block's lines: report each line once
            seen.add(key)
            out.append(p)

    def order(p: Problem) -> tuple:
        m = p.mark
        if m is None:
            return (2, "", 0, 0)
        return (0 if m.source == source else 1, m.source, m.line or 0, m.column or 0)
    return sorted(out, key=order)


def layer_names(spec: _SpecBase) -> tuple[list[str], list[str]]:
    """Child names of the stem and head layers: the given name, else the type (numbered if repeated)."""
    taken = {f"layer{i + 1}" for i in range(len(spec.stages))}
    result = []
    for layers in (spec.stem, spec.head):
        names = []
        for layer in layers:
            name = layer.name or layer.type
            if layer.name is None and name in taken:
                k = 2
                while f"{name}{k}" in taken:
                    k += 1
                name = f"{name}{k}"
            taken.add(name)
            names.append(name)
        result.append(names)
    return result[0], result[1]


MAX_BLOCKS = 10_000  # ResNet-1001 has 333; more is a typo or a hostile spec that would take minutes to build


def scaled(planes: int, depth: int, width_multiplier: float, depth_multiplier: float) -> tuple[int, int]:
    """A stage's planes and depth after the multipliers: planes rounded, depth rounded up (at least 1)."""
    return max(1, int(round(planes * width_multiplier))), max(1, math.ceil(depth * depth_multiplier - 1e-9))


def _check_size(spec: _SpecBase) -> list[Problem]:
    total = sum(scaled(s.planes, s.depth, spec.width_multiplier, spec.depth_multiplier)[1] for s in spec.stages)
    if total <= MAX_BLOCKS:
        return []
    return [Problem(f"{total:,} blocks in all (after depth_multiplier); at most {MAX_BLOCKS:,} are supported",
                    spec.mark_of(("stages",)), "stages")]


def _check_names(spec: _SpecBase) -> list[Problem]:
    problems = []
    stages = {f"layer{i + 1}" for i in range(len(spec.stages))}
    seen: dict[str, tuple] = {}
    for part in ("stem", "head"):
        for i, layer in enumerate(getattr(spec, part)):
            if layer.name is None:
                continue
            path = (part, i, "name")
            if layer.name in stages:
                problems.append(Problem(f"{layer.name!r} is the name of a stage; choose another",
                                        spec.mark_of(path), format_path(path)))
            elif layer.name in seen:
                problems.append(Problem(f"duplicate layer name {layer.name!r} (also {format_path(seen[layer.name])})",
                                        spec.mark_of(path), format_path(path)))
            seen.setdefault(layer.name, path)
    return problems


# --- pydantic errors -> one line each, in the user's words -------------------------------------

def _mark_for(path: tuple, marks: dict) -> Mark | None:
    for n in range(len(path), -1, -1):
        if path[:n] in marks:
            return marks[path[:n]]
    return None


def _clean_loc(loc: tuple, data: Any) -> tuple:
    """Drop the union-tag parts pydantic adds (``block.bottleneck.groups`` -> ``block.groups``)."""
    path, node = [], data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue
        if isinstance(part, str) and not isinstance(node, dict) and path:
            continue  # e.g. a union member label under a scalar
        path.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(path)


def _unwrap(tp: Any) -> list[Any]:
    """The model classes a type annotation may hold (through Optional, Annotated, list, Union)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (Union, list, types.UnionType):
        return [m for arg in typing.get_args(tp) for m in _unwrap(arg)]
    return [tp] if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _fields_at(cls: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the model found at ``loc`` (a pydantic loc, tags included)."""
    models = [cls]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt = []
        for m in models:
            if part in m.model_fields:
                nxt.extend(_unwrap(m.model_fields[part].annotation))
            elif "type" in m.model_fields and typing.get_args(m.model_fields["type"].annotation) == (part,):
                nxt.append(m)
        models = nxt
    return sorted({f for m in models for f in m.model_fields})


def _problem(err: dict, data: Any, marks: dict, cls: type[BaseModel]) -> Problem:
    loc = tuple(err["loc"])
    path = _clean_loc(loc, data)
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    got = f" (got {_short(value)})"
    if kind == "missing":
        message = "required field is missing"
    elif kind == "extra_forbidden":
        message = f"unknown field {path[-1]!r}" + suggest(str(path[-1]), _fields_at(cls, loc[:-1]), limit=16)
    elif kind == "union_tag_invalid":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        tag = str(ctx.get("tag"))
        explained = BLOCKS.explain(tag) if "block" in path else LAYERS.explain(tag)
        message = explained or f"unknown type {tag!r}" + suggest(tag, [c for c in choices if ":" not in c], limit=40)
        if isinstance(value, dict) and "type" in value:
            path = (*path, "type")
    elif kind == "union_tag_not_found":
        message = "needs a 'type'"
        if path and path[-1] == "block":
            message += " (here or in a top-level 'block:' default)"
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op, bound = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
                     "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}[kind]
        message = f"must be {op} {ctx.get(bound)}{got}"
    elif kind in ("int_type", "int_parsing", "int_from_float"):
        message = f"expected an integer{got}"
    elif kind in ("float_type", "float_parsing"):
        message = f"expected a number{got}"
    elif kind == "finite_number":
        message = f"must be a finite number{got}"
    elif kind == "bool_type":
        message = f"expected true or false{got}"
    elif kind == "string_type":
        message = f"expected a string{got}"
    elif kind in ("list_type",):
        message = f"expected a list{got}"
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        message = f"expected a mapping{got}"
    elif kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        message = f"must be one of {ctx.get('expected')}{got}" + (
            f"; did you mean {difflib.get_close_matches(str(value), choices, 1)[0]!r}?"
            if difflib.get_close_matches(str(value), choices, 1) else "")
    elif kind == "too_short":
        message = f"must have at least {ctx.get('min_length')} item(s)" if isinstance(value, list) else \
            f"must not be empty{got}"
    elif kind == "too_long":
        message = f"must have at most {ctx.get('max_length')} item(s)" if isinstance(value, list) else \
            f"is too long (at most {ctx.get('max_length')} characters)"
    elif kind == "string_pattern_mismatch":
        message = f"must be a Python identifier{got}"
    else:
        message = err["msg"][:1].lower() + err["msg"][1:]
    return Problem(message, _mark_for(path, marks), format_path(path))


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."
