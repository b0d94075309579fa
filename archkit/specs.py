"""Pydantic models of the spec format; the block, layer and attention unions are built from the registries."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model, field_validator

from .context import ATTN_POSITIONS, SHORTCUT_KINDS
from .errors import Mark, Problem, SpecError, format_path
from .loader import flatten, resolve_stage_blocks
from .registry import ATTENTION, BLOCKS, LAYERS, Entry, suggest
from .spec_errors import mark_for, ordered, problem

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


class WeightsMeta(_Model):
    """What a user needs to use declared weights: preprocessing, classes, published accuracy."""

    num_classes: int | None = Field(None, ge=1, le=1 << 24, description="Classes of the classifier.")
    input_size: list[Annotated[int, Field(ge=1, le=65536)]] | None = Field(
        None, min_length=2, max_length=2, description="Input [height, width] (the crop) it was evaluated at.")
    resize_size: int | None = Field(None, ge=1, le=65536, description="Resize the shorter side to this, then crop.")
    crop_pct: float | None = Field(None, gt=0, le=1, description="Crop fraction (timm): resize = input / crop_pct.")
    interpolation: str | None = Field(None, max_length=40, description="Resize interpolation (bilinear, bicubic).")
    mean: list[float] | None = Field(None, min_length=1, max_length=16, description="Normalization mean per channel.")
    std: list[float] | None = Field(None, min_length=1, max_length=16, description="Normalization std per channel.")
    accuracy: dict[str, float] | None = Field(None, description="Published metrics, e.g. imagenet1k_top1.")
    recipe: str | None = Field(None, max_length=1000, description="Where the training recipe is described.")
    license: str | None = Field(None, max_length=200, description="The weights' license.")


class WeightsEntry(_Model):
    """One set of declared weights: where it is, its hash, its key layout, how to use it."""

    url: str | None = Field(None, pattern=r"^(https?|file)://", max_length=2000, description="Download URL.")
    file: str | None = Field(None, min_length=1, max_length=4096, description="Local file (relative to the spec).")
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{8,64}$", description="SHA-256 of the file, whole or "
                               "its first hex digits (torchvision and timm publish 8 in the file name).")
    @field_validator("sha256", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError("write the hash in quotes: YAML reads an all-digit value as a number")
        return value

    format: Literal["torchvision", "timm", "archkit", "safetensors"] = Field(
        "torchvision", description="Where the file comes from (all load by archkit's keys).")
    meta: WeightsMeta = Field(default_factory=WeightsMeta, description="Preprocessing, classes, accuracy.")


class ScaleSpec(_Model):
    """One named scale of a family (ultralytics' n/s/m/l/x habit), chosen with --scale / scale=."""

    width: float = Field(1.0, gt=0, le=64, description="Width multiplier (channels kept multiples of 8).")
    depth: float = Field(1.0, gt=0, le=64, description="Depth multiplier (blocks rounded up).")
    resolution: int | None = Field(None, ge=1, le=65536, description="Input size (square), if the scale sets one.")


class _StageBase(_Model):
    planes: int = Field(ge=1, le=1 << 20, description="Block planes; output channels are planes x block expansion.")
    depth: int = Field(ge=1, le=100_000, description="Number of blocks.")
    stride: int = Field(1, ge=1, le=64, description="Stride of the first block (the stage's downsampling).")
    dilate: bool = Field(False, description="Replace the stride with dilation (torchvision's "
                                            "replace_stride_with_dilation), keeping the resolution.")


class _SpecBase(_Model):
    name: str = Field(min_length=1, max_length=200, description="Model name.")
    description: str = Field("", max_length=10_000, description="Free text: what this spec reproduces.")
    family: str = Field("", max_length=100, description="The model family `archkit list` groups by "
                        "(inherited through base:).")
    input: InputSpec = Field(default_factory=InputSpec, description="Input channels and size.")
    init: InitSpec = Field(default_factory=InitSpec, description="Weight initialization.")
    seed: int | None = Field(None, ge=0, le=_INT_MAX, description="Seed for reproducible initial weights.")
    width_multiplier: float = Field(1.0, gt=0, le=64, description="Scales every stage's planes (rounded).")
    width_divisor: int = Field(1, ge=1, le=256, description="Scaled planes are rounded to a multiple of this "
                                                            "(named scales use 8).")
    scales: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,40}$")], ScaleSpec] = Field(
        default_factory=dict, description="Named scales of this family; one must be chosen with scale: / --scale.")
    scale: str | None = Field(None, max_length=40, description="The chosen named scale (required when scales: is set).")
    depth_multiplier: float = Field(1.0, gt=0, le=64, description="Scales every stage's depth (rounded up).")
    drop_path_rate: float = Field(0.0, ge=0, lt=1, description="Stochastic depth: block i of N drops its residual "
                                  "branch with probability rate * i / (N - 1), as timm's ResNet.")
    drop_block_rate: float = Field(0.0, ge=0, lt=1, description="DropBlock (Ghiasi et al. 2018) in the third "
                                   "and fourth stages, as timm's drop_block_rate (blocks with a drop_block slot).")
    weights: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")], WeightsEntry] = Field(
        default_factory=dict, description="Declared pretrained weights by name; the first is the default. "
                                          "Not inherited through base: (they belong to one architecture).")
    frozen_stages: int = Field(-1, ge=-1, le=1000, description="Freeze the stem and the first N stages (no "
                               "gradients, norms in eval mode), as mmdetection's ResNet; -1 freezes nothing.")
    norm_eval: bool = Field(False, description="Keep every norm layer in eval mode while training (mmdetection).")
    features_only: bool = Field(False, description="Build a backbone returning feature maps (no head).")
    out_indices: list[Annotated[int, Field(ge=0, le=1000)]] | None = Field(
        None, min_length=1, description="Feature outputs: 0 = the stem before its final pool (timm), i = stage i (default: every stage).")

    _marks: dict = PrivateAttr(default_factory=dict)

    def mark_of(self, path: tuple) -> Mark | None:
        """The YAML position of a field path, or of its nearest enclosing field."""
        return mark_for(path, self._marks)

    def error(self, path: tuple, message: str) -> SpecError:
        """A SpecError located at ``path`` in the spec's source."""
        return SpecError(message, self.mark_of(path), format_path(path))


def _tagged(entry: Entry, prefix: str, **fields: Any) -> type[BaseModel]:
    base = entry.obj.Params if entry.kind == "block" else entry.obj
    return create_model(f"{prefix}_{entry.name.replace(':', '__')}", __base__=base, __doc__=entry.description or base.__doc__,
                        type=(Literal[entry.name], Field(description=f"{prefix} type: {entry.name}.")), **fields)


def _union(models: list[type[BaseModel]]) -> Any:
    if not models:
        raise RuntimeError("no types registered")
    if len(models) == 1:  # a discriminated union of one member collapses; the Literal still checks the tag
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]


_cache: dict[tuple, type] = {}
NARROWED_MAX = 6  # narrowed spec models built per process before the full one is cheaper


def _block_fields(attention: Any) -> dict[str, Any]:
    """The keys every block type shares, whatever its own params."""
    return {
        "shortcut": (str | None, Field(None, description="Shortcut kind when a stage changes shape: " + ", ".join(
            SHORTCUT_KINDS) + " (default: the block's first accepted kind; see `archkit blocks NAME`).")),
        "attn": (list[attention], Field(default_factory=list, max_length=16, description="Attention modules to "
                                        "attach, each {type, position, <params>}; see `archkit blocks`.")),
    }


def spec_model(used: tuple[frozenset, frozenset, frozenset] | None = None) -> type[_SpecBase]:
    """The ModelSpec class for the blocks, layers and attention types registered now (cached per state).

    ``used`` (block, layer and attention type names) narrows the unions to what one spec uses:
    building every type's pydantic model costs most of a command's start-up, and a spec that names
    only registered types validates the same either way.
    """
    for registry in (BLOCKS, LAYERS, ATTENTION):
        registry.names()  # populate first: populating bumps the generations
    key = (BLOCKS.generation, LAYERS.generation, ATTENTION.generation, used)
    if key in _cache:
        return _cache[key]
    if used is not None and sum(k[:3] == key[:3] and k[3] is not None for k in _cache) >= NARROWED_MAX:
        return spec_model(None)  # many specs in one process (validate a zoo): one full model serves them all

    tagged = _tagged_models(key[:3])

    def pick(kind: str, registry: Any, names: frozenset | None) -> list[type[BaseModel]]:
        return [tagged.get(kind, e) for e in registry if names is None or e.name in names]

    blocks_used, layers_used, _ = used or (None, None, None)
    if layers_used is not None:  # every norm and activation: 'norm:' and 'activation:' choose among them
        layers_used = layers_used | set(LAYERS.names("norm")) | set(LAYERS.names("activation"))
    blocks = _union(pick("block", BLOCKS, blocks_used))
    layer_union = _union(pick("layer", LAYERS, layers_used))
    by_name = {e.name: tagged.get("layer", e) for e in LAYERS
               if e.name in LAYERS.names("norm") + LAYERS.names("activation")}
    norms = _union([by_name[n] for n in LAYERS.names("norm")])
    acts = _union([by_name[n] for n in LAYERS.names("activation")])
    stage = create_model("Stage", __base__=_StageBase, __doc__="One stage: blocks made by _make_layer's rules.",
                         block=(blocks | None, Field(None, description="Block type and params, merged over the "
                                                                     "top-level block (required if there is none).")),
                         blocks=(list[blocks] | None, Field(None, max_length=100_000, description="Per-block "
                                 "settings, one mapping per block merged over the stage's block (e.g. the widths "
                                 "of a channel-pruned network); as many as depth.")))
    model = create_model(
        "ModelSpec", __base__=_SpecBase, __doc__="An archkit network: stem, stages of residual blocks, head.",
        norm=(norms, Field(default_factory=lambda: by_name["batchnorm"](type="batchnorm"),
                           description="Norm layer used in blocks and by 'norm' layers.")),
        activation=(acts, Field(default_factory=lambda: by_name["relu"](type="relu"),
                                description="Activation used in blocks and by 'act' layers.")),
        block=(blocks | None, Field(None, description="Block defaults for all stages (a stage may override).")),
        stem=(list[layer_union], Field(default_factory=list, max_length=1000, description="Layers before the stages.")),
        stages=(list[stage], Field(min_length=1, max_length=1000, description="Stages, named layer1..layerN.")),
        head=(list[layer_union], Field(default_factory=list, max_length=1000, description="Layers after the stages.")),
    )
    if len(_cache) > 64:
        _cache.clear()
    _cache[key] = model
    return model


class _Tagged:
    """Every registered type's tagged model, built on first use and kept per registry state: building
    pydantic models is most of a command's start-up, and a spec uses a few of the types.

    Blocks carry the full attention union and nested layer groups the full layer union, so each model
    serves every narrowed ModelSpec.
    """

    def __init__(self) -> None:
        self.models: dict[tuple[str, str], type[BaseModel]] = {}
        self.attention_union: Any = None
        self.layer_union: Any = None

    def get(self, kind: str, entry: Entry) -> type[BaseModel]:
        key = (kind, entry.name)
        if key not in self.models:
            if kind == "attention":
                self.models[key] = _tagged(entry, "Attention")
            elif kind == "block":
                if self.attention_union is None:
                    self.attention_union = _union([self.get("attention", e) for e in ATTENTION])
                self.models[key] = _tagged(entry, "Block", **_block_fields(self.attention_union))
            elif getattr(entry.obj, "nested", False):
                nested = {"layers": (list["LayerUnion"], Field(min_length=1, max_length=1000, description="The "
                                     "layers, in order; children are named 0, 1, ... unless named."))}
                model = self.models[key] = _tagged(entry, "Layer", **nested)
                if self.layer_union is None:
                    self.layer_union = _union([self.get("layer", e) for e in LAYERS])
                model.model_rebuild(_types_namespace={"LayerUnion": self.layer_union})
            else:
                self.models[key] = _tagged(entry, "Layer")
        return self.models[key]


_tagged_cache: dict[tuple, _Tagged] = {}


def _tagged_models(generations: tuple) -> _Tagged:
    if generations not in _tagged_cache:
        _tagged_cache.clear()
        _tagged_cache[generations] = _Tagged()
    return _tagged_cache[generations]


def _used_types(data: Any) -> tuple[frozenset, frozenset, frozenset] | None:
    """The block, layer and attention type names a raw spec names, or None if any is not a registered
    name (then the full model validates, so the error lists every choice)."""
    blocks, layers, attention = set(), set(), set()

    def block(b: Any) -> bool:
        if b is None:
            return True
        if not isinstance(b, dict) or not isinstance(b.get("type"), str):
            return False
        blocks.add(b["type"])
        attn = b.get("attn", [])
        if not isinstance(attn, list):
            return False
        for a in attn:
            if not isinstance(a, dict) or not isinstance(a.get("type"), str):
                return False
            attention.add(a["type"])
        return True

    def layer_list(items: Any) -> bool:
        if not isinstance(items, list):
            return False
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                return False
            layers.add(item["type"])
            if "layers" in item and not layer_list(item["layers"]):
                return False
        return True

    if not isinstance(data, dict):
        return None
    ok = block(data.get("block")) and layer_list(data.get("stem", [])) and layer_list(data.get("head", []))
    for key in ("norm", "activation"):
        if key in data:
            ok = ok and layer_list([data[key]])
    stages = data.get("stages", [])
    ok = ok and isinstance(stages, list) and all(
        isinstance(s, dict) and block(s.get("block"))
        and (s.get("blocks") is None or isinstance(s["blocks"], list) and all(block(b) for b in s["blocks"]))
        for s in stages)
    if not ok or not blocks or not (blocks <= set(BLOCKS.names()) and layers <= set(LAYERS.names())
                                    and attention <= set(ATTENTION.names())):
        return None
    return frozenset(blocks), frozenset(layers), frozenset(attention)


ModelSpec = _SpecBase  # for type hints: every validated spec is an instance of a spec_model() class


def json_schema() -> dict:
    """JSON Schema of the spec format with every registered block's and layer's parameters."""
    schema = spec_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "archkit spec"
    # ``base:`` is resolved by the loader before validation; editors must still accept it.
    schema["properties"]["base"] = {"type": "string", "description": "Spec file this one inherits from (deep merge)."}
    # A spec with base: may leave required fields to its base, and may set a block's keys without its
    # type (they merge over the base's block), so both checks apply only without one.
    required = schema.pop("required", [])
    props = schema["properties"]
    strict = {"block": props["block"]}
    props["block"] = {"type": ["object", "null"], "description": props["block"].get("description", "")}
    stage = schema["$defs"]["Stage"]
    strict_stage = stage["properties"]["block"]
    stage["properties"]["block"] = {"type": ["object", "null"], "description": strict_stage.get("description", "")}
    # per-block items merge over the stage's block, so each may give a few keys without a type
    stage["properties"]["blocks"] = {"type": ["array", "null"], "items": {"type": "object"},
                                     "description": stage["properties"]["blocks"].get("description", "")}
    # ``regnet:`` is expanded into stages before validation: a spec may give it instead of stages
    from .regnet import RegNetSpec

    regnet = RegNetSpec.model_json_schema()
    props["regnet"] = {k: v for k, v in regnet.items() if k != "title"}
    schema["if"] = {"required": ["base"]}
    schema["else"] = {"anyOf": [{"required": required}, {"required": [r for r in required if r != "stages"] + ["regnet"]}],
                      "properties": {**strict, "stages": {"type": "array", "items": {"properties": {"block": strict_stage}}}}}
    return schema


def validate(tree: Any, source: str = "<spec>") -> _SpecBase:
    """Validate a loaded spec tree (see ``archkit.loader``) into a ModelSpec, or raise SpecError."""
    if not isinstance(tree, dict):
        raise SpecError(f"a spec must be a mapping, not {type(tree).__name__}", Mark(source))
    if "regnet" in tree:  # a RegNet's four numbers become its stages
        from . import regnet

        tree = regnet.expand(tree, *flatten(tree))
    tree = resolve_stage_blocks(tree)
    data, marks = flatten(tree)
    cls = spec_model(_used_types(data))
    try:
        spec = cls.model_validate(data)
    except ValidationError as exc:
        problems = [problem(err, data, marks, cls) for err in exc.errors()]
        raise SpecError(ordered(problems, source)) from None
    spec._marks = marks
    spec = _apply_scale(spec)
    problems = _check_names(spec) + _check_size(spec) + _check_blocks(spec)
    if spec.frozen_stages > len(spec.stages):
        problems.append(Problem(f"{spec.frozen_stages} is beyond the {len(spec.stages)} stages (0 freezes the stem, "
                                f"{len(spec.stages)} everything but the head)", spec.mark_of(("frozen_stages",)),
                                "frozen_stages"))
    if problems:
        raise SpecError(ordered(problems, source))
    return spec


def _apply_scale(spec: _SpecBase) -> _SpecBase:
    """The chosen named scale folded into the multipliers and the input size; never a silent default."""
    if not spec.scales and spec.scale is None:
        return spec
    choices = ", ".join(spec.scales) or "none: this spec declares no scales"
    if spec.scale is None:
        raise spec.error(("scales",), f"this spec declares scales ({choices}); choose one with --scale NAME "
                                      "(or scale: NAME)")
    if spec.scale not in spec.scales:
        raise spec.error(("scale",), f"unknown scale {spec.scale!r}" + suggest(spec.scale, list(spec.scales))
                         + ("" if spec.scales else " (this spec declares no scales)"))
    chosen = spec.scales[spec.scale]
    # folded in and cleared: the resolved spec (stored in checkpoints, revalidated) is not scaled twice
    update: dict[str, Any] = {"width_multiplier": spec.width_multiplier * chosen.width,
                              "depth_multiplier": spec.depth_multiplier * chosen.depth, "width_divisor": 8,
                              "scales": {}, "scale": None}
    if chosen.resolution is not None:
        update["input"] = spec.input.model_copy(update={"size": [chosen.resolution, chosen.resolution]})
    scaled_spec = spec.model_copy(update=update)
    scaled_spec._marks = spec._marks
    return scaled_spec


def _check_blocks(spec: _SpecBase) -> list[Problem]:
    """Every stage has a block; its shortcut kind and attention positions are ones the block offers."""
    problems = []

    def add(path: tuple, message: str) -> None:
        problems.append(Problem(message, spec.mark_of(path), format_path(path)))

    once: set[tuple] = set()  # problems reported once per spec, however many stages have them
    for i, stage in enumerate(spec.stages):
        path = ("stages", i, "block")
        if stage.block is None and not stage.blocks:
            add(path, "needs a block type (here or in a top-level 'block:' default)")
            continue
        if stage.blocks is not None and len(stage.blocks) != stage.depth:
            add(("stages", i, "blocks"), f"lists {len(stage.blocks)} blocks for a stage of depth {stage.depth}")
        if stage.blocks is not None and spec.depth_multiplier != 1.0 and ("depth",) not in once:
            once.add(("depth",))
            add(("depth_multiplier",), f"stage {i + 1} lists its blocks one by one, which depth_multiplier "
                                       "cannot scale")
        listed = [(("stages", i, "blocks", j), b) for j, b in enumerate(stage.blocks or [])]
        for where_block, block in [(path, stage.block)] * (stage.block is not None) + listed:
            cls = BLOCKS.get(block.type).obj
            if spec.width_multiplier != 1.0 and (getattr(block, "widths", None) or getattr(block, "out_channels", None)) \
                    and ("widths",) not in once:
                once.add(("widths",))
                add(("width_multiplier",), f"stage {i + 1} sets explicit widths (widths:, out_channels:), which "
                                           "width_multiplier cannot scale")
            if spec.drop_block_rate > 0 and i in (2, 3) and not getattr(cls, "has_drop_block", False) \
                    and ("drop_block", block.type) not in once:
                once.add(("drop_block", block.type))
                takers = sorted({e.name.split(":")[-1] for e in BLOCKS if getattr(e.obj, "has_drop_block", False)})
                add(("drop_block_rate",), f"{block.type} blocks have no DropBlock slot; drop_block_rate needs "
                                          f"{', '.join(takers)} blocks in stages 3 and 4")
            kind = block.shortcut
            if kind is not None and kind not in cls.shortcuts:
                known = sorted(set(SHORTCUT_KINDS) | {k for e in BLOCKS for k in e.obj.shortcuts})
                if kind not in known:
                    add((*where_block, "shortcut"), f"unknown shortcut kind {kind!r}" + suggest(kind, known))
                else:
                    add((*where_block, "shortcut"), f"{block.type} blocks accept shortcut kinds "
                                                    f"{', '.join(cls.shortcuts)}, not {kind!r}")
            for j, attn in enumerate(block.attn):
                if attn.position not in cls.attn_positions:
                    where = (*where_block, "attn", j, "position")
                    if attn.position not in ATTN_POSITIONS:
                        add(where, f"unknown attention position {attn.position!r}"
                            + suggest(attn.position, list(ATTN_POSITIONS)))
                    else:
                        add(where, f"{block.type} blocks offer attention positions "
                                   f"{', '.join(cls.attn_positions)}, not {attn.position!r}")
    return problems


MAX_BLOCKS = 10_000  # ResNet-1001 has 333; more is a typo or a hostile spec that would take minutes to build


def scaled(planes: int, depth: int, width_multiplier: float, depth_multiplier: float,
           divisor: int = 1) -> tuple[int, int]:
    """A stage's planes and depth after the multipliers: planes rounded (to a multiple of ``divisor``),
    depth rounded up (at least 1)."""
    width = planes if width_multiplier == 1.0 else max(divisor, int(planes * width_multiplier / divisor + 0.5) * divisor)
    return max(1, width), max(1, math.ceil(depth * depth_multiplier - 1e-9))


def _check_size(spec: _SpecBase) -> list[Problem]:
    total = sum(scaled(s.planes, s.depth, spec.width_multiplier, spec.depth_multiplier, spec.width_divisor)[1]
                for s in spec.stages)
    if total <= MAX_BLOCKS:
        return []
    return [Problem(f"{total:,} blocks in all (after depth_multiplier); at most {MAX_BLOCKS:,} are supported",
                    spec.mark_of(("stages",)), "stages")]


def stage_name(index: int) -> str:
    """The child name of stage ``index`` (0-based): ``layer1``.. as torchvision, so weights load by key."""
    return f"layer{index + 1}"


def _reserved() -> set[str]:
    from torch import nn

    return set(dir(nn.Sequential()))  # forward, training, eval, ...: a child of that name breaks the module


def _check_names(spec: _SpecBase) -> list[Problem]:
    problems = []
    stages = {stage_name(i) for i in range(len(spec.stages))}
    reserved = _reserved()
    seen: dict[str, tuple] = {}

    def check(layers: list, path: tuple, taken: dict[str, tuple], top: bool) -> None:
        for i, layer in enumerate(layers):
            if getattr(layer, "layers", None) is not None:
                check(layer.layers, (*path, i, "layers"), {}, False)
            if layer.name is None:
                continue
            where = (*path, i, "name")
            if layer.name in reserved:
                message = f"{layer.name!r} is an attribute of torch.nn.Module; choose another name"
            elif top and layer.name in stages:
                message = f"{layer.name!r} is the name of a stage; choose another"
            elif layer.name in taken:
                message = f"duplicate layer name {layer.name!r} (also {format_path(taken[layer.name])})"
            else:
                taken[layer.name] = where
                continue
            problems.append(Problem(message, spec.mark_of(where), format_path(where)))

    for part in ("stem", "head"):
        check(getattr(spec, part), (part,), seen, True)
    return problems
