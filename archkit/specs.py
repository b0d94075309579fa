"""The spec format: a static pydantic ``ModelSpec``, and ``validate``, which checks a loaded tree in two
passes and reports every problem it finds at once, each as one located line.

Pass one is pydantic over the static models: every field of every section, with blocks, layers and
attention attachments as *envelopes* (a ``type`` tag and the keys all types share). Pass two checks
each envelope against its registered type's params model (unknown keys, bounds, did-you-mean) and
what the type offers (shortcut kinds, attention positions, DropBlock). Cross-field checks (names,
sizes, stage counts) run beside both, so a spec with three independent mistakes gets three lines.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SerializeAsAny, ValidationError, field_validator, model_validator

from .blocks.base import ATTN_POSITIONS, USER_SHORTCUTS
from .catalog import ATTENTION, BLOCKS, GENERATORS, LAYERS, STAGES
from .errors import Mark, Problem, SpecError, format_path
from .layers import BatchNorm, ReLU
from .scaling import scaled_depth, scaled_width
from .layout import Layout, LayoutField, scheme
from .loader import flatten, resolve_stage_blocks
from .params import AttentionSpec, BlockSpec, LayerSpec, SpecModel, StageSpec, module_name_problem
from .registry import UnknownName, suggest
from .spec_errors import mark_for, ordered, problem
from .stages.base import drop_block_of

_INT_MAX = 2**63 - 1
MAX_PROBLEMS = 20  # reported per spec: more is one mistake repeated, or not a spec at all
# words people reach for, and the position they mean (spelling alone would offer pre_add for after_add)
POSITION_SYNONYMS = {"after_add": "post_add", "after": "post_add", "post": "post_add", "end": "post_add",
                     "output": "post_add", "postadd": "post_add", "before_add": "pre_add", "before": "pre_add",
                     "pre": "pre_add", "preadd": "pre_add", "middle": "mid", "inside": "mid", "center": "mid"}


_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")  # reorder what a terminal shows


class InputSpec(SpecModel):
    """The input the model is designed for; used for shape checks and summaries."""

    channels: int = Field(3, ge=1, le=65536, description="Input channels (3 for RGB).")
    size: list[Annotated[int, Field(ge=1, le=65536)]] = Field(
        default_factory=lambda: [224, 224], min_length=2, max_length=2, description="Spatial size [height, width].")


class InitSpec(SpecModel):
    """Weight initialization, as torchvision's ResNet by default."""

    conv: Literal["kaiming_fan_out", "kaiming_fan_in", "pytorch_default"] = Field(
        "kaiming_fan_out", description="Conv weights: torchvision's kaiming_normal_(mode='fan_out', "
                                       "nonlinearity='relu'), fan_in, or PyTorch's own default.")
    zero_init_residual: bool = Field(False, description="Zero each block's last norm scale so blocks start as "
                                                        "identity (Goyal et al. 2017).")


class WeightsMeta(SpecModel):
    """What a user needs to use declared weights: preprocessing, classes, published accuracy."""

    num_classes: int | None = Field(None, ge=0, le=1 << 24, description="Classes of the classifier (0: the checkpoint has none, a feature tower).")
    input_size: list[Annotated[int, Field(ge=1, le=65536)]] | None = Field(
        None, min_length=2, max_length=2, description="Input [height, width] (the crop) it was evaluated at.")
    resize_size: int | None = Field(None, ge=1, le=65536, description="Resize the shorter side to this, then crop.")
    crop_pct: float | None = Field(None, gt=0, le=1, description="Crop fraction (timm): resize = input / crop_pct.")
    interpolation: Literal["bilinear", "bicubic", "nearest", "box", "hamming", "lanczos", "random"] | None = Field(
        None, description="Resize interpolation (timm's names: bilinear, bicubic, nearest, box, hamming, lanczos, random).")
    mean: list[float] | None = Field(None, min_length=1, max_length=16, description="Normalization mean per channel.")
    std: list[Annotated[float, Field(gt=0)]] | None = Field(None, min_length=1, max_length=16,
                                                           description="Normalization std per channel (positive).")

    @model_validator(mode="after")
    def _one_value_per_channel(self) -> "WeightsMeta":
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values and std {len(self.std)}: one each per channel")
        return self
    accuracy: dict[str, float] | None = Field(None, description="Published metrics, e.g. imagenet1k_top1.")
    recipe: str | None = Field(None, max_length=1000, description="Where the training recipe is described.")
    license: str | None = Field(None, max_length=200, description="The weights' license.")


class WeightsEntry(SpecModel):
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

    @model_validator(mode="after")
    def _one_place(self) -> "WeightsEntry":
        if self.url is None and self.file is None:
            raise ValueError("declares neither url: nor file: (where are the weights?)")
        if self.url is not None and self.file is not None:
            raise ValueError("declares both url: and file:; keep one")
        return self


class ScaleSpec(SpecModel):
    """One named scale of a family (ultralytics' n/s/m/l/x habit), chosen with --scale / scale=."""

    width: float = Field(1.0, gt=0, le=64, description="Width multiplier (channels kept multiples of 8).")
    depth: float = Field(1.0, gt=0, le=64, description="Depth multiplier (blocks rounded up).")
    resolution: int | None = Field(None, ge=1, le=65536, description="Input size (square), if the scale sets one.")


class ScalingSpec(SpecModel):
    """How the multipliers round and what they scale: the family's rule (timm's ``round_chs_fn``,
    ``depth_trunc``, ``fix_stem``)."""

    round_limit: float = Field(0.0, ge=0, lt=1, description="A rounded width below this fraction of the exact one "
                               "gets one more divisor (timm's make_divisible round_limit; EfficientNet: 0.9).")
    depth: Literal["ceil", "round"] = Field("ceil", description="Scaled depths rounded up (timm's depth_trunc "
                                            "'ceil', the default) or to the nearest (timm's 'round'), at least 1.")
    parts: list[Literal["stages", "stem", "final", "head"]] = Field(
        default_factory=lambda: ["stages"], max_length=4, description="What the width multiplier scales: the "
        "stages' planes, and the channels of the stem's, final and head layers named here (EfficientNet: stages, "
        "stem, final; a classifier's classes never).")
    floor: list[Literal["stem", "final", "head"]] = Field(default_factory=list, max_length=3, description="Parts whose "
                                                          "scaled widths never fall below the written ones (timm's "
                                                          "max(1280, round(1280 x w)): MobileNetV2, TinyNet).")
    fixed_below: dict[Literal["stem", "final", "head"], float] = Field(
        default_factory=dict, description="Parts that keep their written widths while the width multiplier is below "
        "this (timm's fix_stem: MobileNetV3's 0.75, MobileNetV4's 1.0).")


class ModelSpec(SpecModel):
    """An archkit network: stem, stages of residual blocks, head."""

    name: str = Field(min_length=1, max_length=200, description="Model name (printable: it titles summaries "
                                                                 "and model cards).")
    description: str = Field("", max_length=10_000, description="Free text: what this spec reproduces (printable; "
                                                               "newlines and tabs allowed).")

    @field_validator("name", "description")
    @classmethod
    def _printable(cls, value: str, info: Any) -> str:
        allowed = "" if info.field_name == "name" else "\n\t"
        bad = next((c for c in value if c not in allowed and (ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c in _BIDI)),
                   None)
        if bad is not None:
            raise ValueError(f"holds the control character {bad!r}; write printable text")
        return value
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
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description="How the multipliers round and which "
                                 "parts' widths they scale (the family's rule).")
    drop_path_rate: float = Field(0.0, ge=0, lt=1, description="Stochastic depth: block i of N drops its residual "
                                  "branch with probability rate * i / (N - 1), as timm's ResNet.")
    drop_path_schedule: Literal["linspace", "fraction"] = Field("linspace", description="How the rate grows over "
                                                                "the blocks: rate * i / (N - 1) (timm's linspace: "
                                                                "ResNet, CSP, BYOB) or rate * i / N (timm's "
                                                                "EfficientNet builder).")
    drop_block_rate: float = Field(0.0, ge=0, lt=1, description="DropBlock (Ghiasi et al. 2018) in the last two "
                                   "stages, as timm's drop_block_rate (blocks with a drop_block slot).")
    drop_block_size: int = Field(3, ge=1, le=63, description="DropBlock's block size in the last stage; the stage "
                                 "before takes 2 * size - 1 (timm's byobnet drop_block_size; ResNet's 5 and 3).")
    weights: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")], WeightsEntry] = Field(
        default_factory=dict, description="Declared pretrained weights by name; the first is the default. "
                                          "Not inherited through base: (they belong to one architecture).")
    output_stride: Literal[8, 16, 32, 64] = Field(32, description="The network's stride at most this: once the "
                                                  "stages reach it, later strides become dilation (timm's "
                                                  "output_stride; 8 and 16 for dense prediction).")
    deploy: bool = Field(False, description="Build re-parameterizable blocks and stems (rep, one) in their deploy "
                         "form: each a single convolution with bias (archkit.reparameterize converts weights).")
    frozen_stages: int = Field(-1, ge=-1, le=1000, description="Freeze the stem and the first N stages (no "
                               "gradients, norms in eval mode), as mmdetection's ResNet; -1 freezes nothing.")
    norm_eval: bool = Field(False, description="Keep every norm layer in eval mode while training (mmdetection).")
    features_only: bool = Field(False, description="Build a backbone returning feature maps (no head).")
    out_indices: list[Annotated[int, Field(ge=0, le=1000)]] | None = Field(
        None, min_length=1, description="Feature outputs: 0 = the stem before its final pool (timm), i = stage i "
                                        "(default: every stage).")
    norm: SerializeAsAny[LayerSpec] = Field(default_factory=lambda: BatchNorm(type="batchnorm"),
                                            description="Norm layer used in blocks and by 'norm' layers.")
    activation: SerializeAsAny[LayerSpec] = Field(default_factory=lambda: ReLU(type="relu"),
                                                  description="Activation used in blocks and by 'act' layers.")
    block: SerializeAsAny[BlockSpec] | None = Field(None, description="Block defaults for all stages (a stage may "
                                                    "override).")
    stage: dict[str, Any] | None = Field(None, description="Stage defaults for all stages, merged under each (a "
                                         "stage type and its keys, as timm's CspStagesCfg broadcasts them).")
    stem: list[SerializeAsAny[LayerSpec]] = Field(default_factory=list, max_length=1000,
                                                  description="Layers before the stages.")
    stages: list[SerializeAsAny[StageSpec]] = Field(min_length=1, max_length=1000, description="Stages, named "
                                                    "layer1..layerN (layout torchvision), stages.0.. (timm) or as "
                                                    "the layout or their name: says.")
    layout: LayoutField = Field("torchvision", description=(
        "Module names: torchvision's (conv1, layer1.0, fc), timm's newer models' (stem.*, stages.0.*, head.*), or "
        "a scheme of its own ({like: timm, stage: 's{n}', block: 'b{n}'}: docs/specs.md). A spec's keys are its "
        "contract: it keeps its layout."))
    final: list[SerializeAsAny[LayerSpec]] = Field(default_factory=list, max_length=1000, description=(
        "Layers after the last stage that belong to the features (timm's final_conv, a pre-activation "
        "network's last norm): children of the network itself, by name, in either layout; the last stage's "
        "feature map is their output, as timm's."))
    final_in_features: bool = Field(True, description=(
        "The last feature map (features_only, out_indices) is the final layers' output (timm's byobnet); false: "
        "the last stage's, the final layers feeding only the head (timm's RegNet and EfficientNet conv_head)."))
    head: list[SerializeAsAny[LayerSpec]] = Field(default_factory=list, max_length=1000,
                                                  description="Layers after the stages (and final).")

    _marks: dict = PrivateAttr(default_factory=dict)

    @property
    def names(self) -> Layout:
        """The layout as a ``Layout`` (a preset's name resolved): where every module lives."""
        return scheme(self.layout)

    def stage_path(self, index: int) -> str:
        """Stage ``index``'s module path (its ``name:``, else the layout's pattern)."""
        return self.names.stage_path(index, self.stages[index].name)

    def mark_of(self, path: tuple) -> Mark | None:
        """The YAML position of a field path, or of its nearest enclosing field."""
        return mark_for(path, self.__pydantic_private__["_marks"])

    def error(self, path: tuple, message: str) -> SpecError:
        """A SpecError located at ``path`` in the spec's source."""
        return SpecError(message, self.mark_of(path), format_path(path))

    def data(self, exclude: set | None = None) -> dict:
        """This spec as plain data that validates back to the same spec: the keys that were set, at every
        level. (Not ``exclude_defaults``: a stage that sets a value back to its default over a top-level
        ``block:`` / ``stage:`` would lose it, and the inherited value would come back on re-validation.)"""
        return self.model_dump(mode="json", exclude_unset=True, exclude=exclude)

    def tree(self) -> Any:
        """This spec as a loader tree (``--set``-style changes apply to it), validating back to the same spec."""
        from .loader import from_mapping

        return from_mapping(self.data())


# --- validation ------------------------------------------------------------------------------------


class _Pass:
    """One spec's second pass: every block, layer and attention envelope typed against its registry."""

    def __init__(self, data: dict, marks: dict):
        self.data, self.marks = data, marks
        self.problems: list[Problem] = []
        self._once: set[tuple] = set()

    def add(self, path: tuple, message: str, key: tuple | None = None) -> None:
        if key is not None:
            if key in self._once:
                return
            self._once.add(key)
        self.problems.append(Problem(message, mark_for(path, self.marks), format_path(path)))

    def typed(self, registry: Any, value: Any, path: tuple, what: str, validate: Any = None) -> Any:
        """``value`` as its registered type's params model (the raw value when pass one will say why not)."""
        if not isinstance(value, dict) or not isinstance(value.get("type"), str):
            return value  # not a mapping, or no type: pass one locates it
        name = value["type"]
        try:
            entry = registry.get(name)
        except UnknownName as exc:
            self.add((*path, "type"), str(exc.problems[0].message))
            return value
        cls = entry.obj.params if what in ("block", "stage") else entry.obj
        if validate is not None:
            value = validate(entry, value)
            if any(v is FAILED or isinstance(v, list) and any(x is FAILED for x in v) for v in value.values()):
                return FAILED  # a nested part's problems are reported: the rest waits for it
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            for err in exc.errors():
                if what == "block" and self._foreign_key(err, name, path):
                    continue
                self.problems.append(problem(err, value, self.marks, cls, prefix=path))
            return FAILED

    def _foreign_key(self, err: dict, block_type: str, path: tuple) -> bool:
        """A key another block type takes, on a block whose type changed under it (a base's per-stage settings
        under a new top-level ``block: {type: ...}``): said once, as the cause, not once per stage."""
        if err["type"] != "extra_forbidden" or len(err["loc"]) != 1:
            return False
        key = err["loc"][0]
        owners = sorted({e.name.split(":")[-1] for e in BLOCKS if key in e.obj.params.model_fields})
        if not owners:
            return False
        type_mark = mark_for((*path, "type"), self.marks)
        where = f", its type set at {type_mark}" if type_mark is not None else ""
        shown = ", ".join(owners[:4]) + (", ..." if len(owners) > 4 else "")
        fields = sorted(k for k in BLOCKS.get(block_type).obj.params.model_fields)
        self.add((*path, key), f"{key!r} is a key of {shown} blocks, not of this {block_type} block{where} "
                               f"(a setting for another block type; {block_type} takes: {', '.join(fields)})",
                 ("foreign", key, block_type))
        return True

    def layer(self, value: Any, path: tuple, role: str | None = None) -> Any:
        def nested(entry: Any, raw: dict) -> dict:
            if role is not None and entry.kind != role:
                choices = LAYERS.names(role)
                article = "an" if role[0] in "aeiou" else "a"
                self.add((*path, "type"), f"{raw['type']!r} is a {entry.kind} type, not {article} {role}"
                         + suggest(raw["type"], choices))
            if entry.obj.nested and isinstance(raw.get("layers"), list):
                raw = {**raw, "layers": [self.layer(v, (*path, "layers", i)) for i, v in enumerate(raw["layers"])]}
            if "attn" in getattr(entry.obj, "model_fields", {}) and isinstance(raw.get("attn"), list):
                raw = {**raw, "attn": [self.typed(ATTENTION, v, (*path, "attn", i), "attention")
                                       for i, v in enumerate(raw["attn"])]}
            return raw

        return self.typed(LAYERS, value, path, "layer", nested)

    def block(self, value: Any, path: tuple, stage: int | None, drop_block: bool) -> Any:
        def nested(entry: Any, raw: dict) -> dict:
            kind = entry.obj
            if isinstance(raw.get("attn"), list) and kind.attn_default is not None:  # the block's own default
                raw = {**raw, "attn": [{**a, "position": kind.attn_default} if isinstance(a, dict) and
                                       "position" not in a else a for a in raw["attn"]]}
            self._block_offers(kind, raw, path, stage, drop_block)
            if isinstance(raw.get("attn"), list):
                raw = {**raw, "attn": [self.typed(ATTENTION, v, (*path, "attn", i), "attention")
                                       for i, v in enumerate(raw["attn"])]}
            return raw

        return self.typed(BLOCKS, value, path, "block", nested)

    def stage(self, value: dict, path: tuple, index: int, drop_block: bool) -> Any:
        """A stage as its stage type's params (``resnet`` unless it names another); a stage type's own
        block-valued keys (``alternate: {type: ...}``) are typed like ``block``."""
        if "type" not in value:
            value = {**value, "type": "resnet"}

        def nested(entry: Any, raw: dict) -> dict:
            for key, field in entry.obj.params.model_fields.items():
                if key not in ("block", "blocks", "pattern") and "BlockSpec" in str(field.annotation) and \
                        raw.get(key) is not None:
                    value = raw[key]
                    typed = [self.block(v, (*path, key, j), index, drop_block) for j, v in enumerate(value)] \
                        if isinstance(value, list) else self.block(value, (*path, key), index, drop_block)
                    raw = {**raw, key: typed}
            return raw

        typed = self.typed(STAGES, value, path, "stage", nested)
        if typed is FAILED or not isinstance(typed, SpecModel):
            return value if typed is not FAILED else FAILED
        return typed

    def _block_offers(self, kind: Any, raw: dict, path: tuple, stage: int | None, drop_block: bool) -> None:
        """Shortcut kinds, attention positions and DropBlock: what this block type offers."""
        short = raw.get("shortcut")
        offered = [k.value for k in kind.shortcuts]
        if isinstance(short, str) and short not in offered:
            if short not in USER_SHORTCUTS and short not in offered:
                self.add((*path, "shortcut"), f"unknown shortcut kind {short!r}"
                         + suggest(short, sorted(set(USER_SHORTCUTS) | set(offered))))
            else:
                self.add((*path, "shortcut"), f"{kind.name} blocks accept shortcut kinds {', '.join(offered)}, "
                                              f"not {short!r}")
        for j, attn in enumerate(_items(raw.get("attn"))):
            position = attn.get("position", "pre_add") if isinstance(attn, dict) else None
            if isinstance(position, str) and position not in kind.attn_positions:
                where = (*path, "attn", j, "position")
                if position not in ATTN_POSITIONS:
                    self.add(where, f"unknown attention position {position!r}"
                             + suggest(position, list(ATTN_POSITIONS), synonyms=POSITION_SYNONYMS))
                else:
                    self.add(where, f"{kind.name} blocks offer attention positions "
                                    f"{', '.join(kind.attn_positions)}, not {position!r}")
        stages = len(self.data["stages"]) if isinstance(self.data.get("stages"), list) else 4
        if drop_block and stage is not None and drop_block_of(1.0, stage, stages) and not kind.drop_block:
            takers = sorted({e.name.split(":")[-1] for e in BLOCKS if e.obj.drop_block})
            self.add(("drop_block_rate",), f"{kind.name} blocks have no DropBlock slot; drop_block_rate needs "
                                           f"{', '.join(takers)} blocks in the last two stages", ("drop_block", kind.name))

    def run(self) -> dict:
        """The data with every envelope replaced by its typed instance where it validates."""
        data = dict(self.data)
        drop_block = _number(data.get("drop_block_rate")) > 0
        for key, role in (("norm", "norm"), ("activation", "activation")):
            if key in data:
                data[key] = self.layer(data[key], (key,), role)
        for part in ("stem", "final", "head"):
            if isinstance(data.get(part), list):
                data[part] = [self.layer(v, (part, i)) for i, v in enumerate(data[part])]
        if "block" in data:  # first: its problems are reported as block.*, not once per stage
            data["block"] = self.block(data["block"], ("block",), None, False)
        if isinstance(data.get("stages"), list):
            stages = []
            for i, stage in enumerate(data["stages"]):
                if isinstance(stage, dict):
                    stage = dict(stage)
                    if "block" in stage:
                        stage["block"] = self.block(stage["block"], ("stages", i, "block"), i, drop_block)
                    for key in ("blocks", "pattern"):
                        if isinstance(stage.get(key), list):
                            stage[key] = [self.block(b, ("stages", i, key, j), i, drop_block)
                                          for j, b in enumerate(stage[key])]
                    if not any(v is FAILED for v in [stage.get("block"), *_items(stage.get("blocks")),
                                                     *_items(stage.get("pattern"))]):
                        stage = self.stage(stage, ("stages", i), i, drop_block)  # else its blocks' problems stand
                stages.append(stage)
            data["stages"] = stages
        return data


class _Failed:
    """Where pass two reported an envelope's problems (pass one must not report it again)."""

    def __repr__(self) -> str:
        return "<reported>"


FAILED = _Failed()


def _items(value: Any) -> list:
    """A list field's items, or none where it is of another shape (pass one says what is wrong with it)."""
    return value if isinstance(value, list) else []


def _number(value: Any) -> float:
    """A well-typed finite number, else 0 (pass one reports what is wrong with it)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return 0.0


def validate(tree: Any, source: str = "<spec>") -> ModelSpec:
    """Validate a loaded spec tree (see ``archkit.loader``) into a ModelSpec, or raise SpecError listing
    every problem found (at most ``MAX_PROBLEMS``), each located."""
    if not isinstance(tree, dict):
        raise SpecError(f"a spec must be a mapping, not {_kind(tree)}", Mark(source))
    generators = {k: GENERATORS.get(k).obj for k in tree if k not in ModelSpec.model_fields and k in GENERATORS}
    if generators:  # a generator's numbers become the stages
        from .generate import expand

        tree = expand(tree, generators)
    own = _own_patterns(tree)
    tree = resolve_stage_blocks(tree)
    data, marks = flatten(tree)
    second = _Pass(data, marks)
    typed = second.run()
    problems = list(second.problems) + [Problem(message, mark_for(path, marks), format_path(path))
                                        for path, message in own]
    spec = None
    try:
        spec = ModelSpec.model_validate(typed)
    except ValidationError as exc:
        for err in exc.errors():
            if _typed_part_failed(err, typed):
                continue  # an envelope pass two already reported
            problems.append(problem(err, typed, marks, ModelSpec))
    problems += _cross_checks(typed, marks)
    if problems:
        raise SpecError(_capped(ordered(problems, source)))
    assert spec is not None
    spec.__pydantic_private__["_marks"] = marks
    return _apply_scale(spec)


def _own_patterns(tree: Any) -> list[tuple[tuple, str]]:
    """A stage's own ``pattern:`` longer than its depth would be cut short without a word (a pattern set for
    every stage in ``stage:`` is cut by each stage's depth on purpose, as timm's, and so is one that
    ``depth_multiplier`` shortens)."""
    stages = tree.get("stages") if isinstance(tree, dict) else None
    default = tree.get("stage") if isinstance(tree, dict) else None
    default = default.get("pattern") if isinstance(default, dict) else None
    out = []
    for i, stage in enumerate(stages if isinstance(stages, list) else []):
        pattern, depth = (stage.get("pattern"), stage.get("depth")) if isinstance(stage, dict) else (None, None)
        if _inherited(pattern, default) or _cut_by_a_later_depth(tree, stage):
            continue  # the default's items (a resolved spec's dump), or a base's pattern under a depth set later
        if isinstance(pattern, list) and type(depth) is int and 0 < depth < len(pattern):
            out.append((("stages", i, "pattern"), f"lists {len(pattern)} block settings for a stage of depth "
                                                  f"{depth}: the last {len(pattern) - depth} would never be used"))
    return out


def _cut_by_a_later_depth(tree: Any, stage: Any) -> bool:
    """Whether a stage's pattern came from a base file and its depth from elsewhere (the user's own file or
    ``--set``): cutting the base's pattern is then the point, as ``depth_multiplier`` does."""
    marks = getattr(stage, "marks", None) if isinstance(stage, dict) else None
    if not isinstance(marks, dict):
        return False
    top = getattr(getattr(tree, "marks", {}).get("name"), "source", None)

    def rank(source: str | None) -> int:  # base files, then the user's own file, then --set
        return 2 if source is None or source.startswith("--") else 1 if source == top else 0

    pattern, depth = (getattr(marks.get(k), "source", None) for k in ("pattern", "depth"))
    return pattern is not None and rank(depth) > rank(pattern)


def _inherited(pattern: Any, default: Any) -> bool:
    """Whether ``pattern`` is the default pattern, item by item (each item may add keys the default leaves out)."""
    return isinstance(pattern, list) and isinstance(default, list) and len(pattern) == len(default) and all(
        isinstance(p, dict) and isinstance(d, dict) and all(k in p and p[k] == v for k, v in d.items())
        for p, d in zip(pattern, default))


def _typed_part_failed(err: dict, typed: dict) -> bool:
    """Whether a pass-one error lies inside an envelope that pass two left untyped (None: reported)."""
    node: Any = typed
    for part in err["loc"]:
        if node is FAILED:
            return True
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return False
    return node is FAILED


def _capped(problems: list[Problem]) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return problems[:MAX_PROBLEMS] + [Problem(f"... and {len(problems) - MAX_PROBLEMS} more problems")]


def _kind(value: Any) -> str:
    for kind, text in ((list, "a list"), (str, "a string"), (bool, "a boolean"), ((int, float), "a number")):
        if isinstance(value, kind):
            return text
    return type(value).__name__


def _cross_checks(data: dict, marks: dict) -> list[Problem]:
    """What needs several fields at once; each check runs where its fields are well-typed."""
    problems: list[Problem] = []

    def add(path: tuple, message: str) -> None:
        problems.append(Problem(message, mark_for(path, marks), format_path(path)))

    stages = [_fields(s) for s in data["stages"]] if isinstance(data.get("stages"), list) else []
    width = _number(data.get("width_multiplier", 1.0)) or 1.0
    depth_mult = _number(data.get("depth_multiplier", 1.0)) or 1.0
    flagged: set[str] = set()
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            continue
        if stage.get("block") is None and not stage.get("blocks") and not stage.get("pattern") and \
                not stage.get("groups"):
            add(("stages", i, "block"), "needs a block type (here or in a top-level 'block:' default)")
        if stage.get("blocks") is not None and stage.get("pattern") is not None:
            add(("stages", i, "pattern"), "a stage lists its blocks (blocks:) or repeats a pattern (pattern:), not both")
        listed = stage.get("blocks")
        if isinstance(listed, list):
            depth = stage.get("depth")
            if isinstance(depth, int) and not isinstance(depth, bool) and len(listed) != depth:
                add(("stages", i, "blocks"), f"lists {len(listed)} blocks for a stage of depth {depth}")
            if depth_mult != 1.0 and "depth" not in flagged:
                flagged.add("depth")
                add(("depth_multiplier",), f"stage {i + 1} lists its blocks one by one, which depth_multiplier "
                                           "cannot scale")
        explicit = [b for b in [stage.get("block"), *(listed if isinstance(listed, list) else [])]
                    if getattr(b, "widths", None) or getattr(b, "out_channels", None)]
        if explicit and width != 1.0 and "widths" not in flagged:
            flagged.add("widths")
            add(("width_multiplier",), f"stage {i + 1} sets explicit widths (widths:, out_channels:), which "
                                       "width_multiplier cannot scale")
    problems += _check_meta(data, marks)
    frozen = data.get("frozen_stages")
    if isinstance(frozen, int) and not isinstance(frozen, bool) and stages and frozen > len(stages):
        add(("frozen_stages",), f"{frozen} is beyond the {len(stages)} stages (0 freezes the stem, "
                                f"{len(stages)} everything but the head)")
    problems += _check_size(stages, width, depth_mult, _number(data.get("width_divisor", 1)) or 1, marks)
    problems += _check_names(data, len(stages), marks)
    return problems


def _check_meta(data: dict, marks: dict) -> list[Problem]:
    """Declared preprocessing fits the input: a mean and std per channel (or for RGB, which in_chans adapts)."""
    channels = (data.get("input") or {}).get("channels", 3) if isinstance(data.get("input"), dict) else 3
    weights = data.get("weights") if isinstance(data.get("weights"), dict) else {}
    out = []
    for name, entry in weights.items():
        meta = entry.get("meta") if isinstance(entry, dict) else None
        for key in ("mean", "std"):
            values = meta.get(key) if isinstance(meta, dict) else None
            if isinstance(values, list) and isinstance(channels, int) and len(values) not in (1, 3, channels):
                path = ("weights", name, "meta", key)
                out.append(Problem(f"{len(values)} values for a {channels}-channel input (one per channel)",
                                   mark_for(path, marks), format_path(path)))
    return out


def _fields(value: Any) -> Any:
    """A stage as a mapping, whether pass two typed it (a model) or left it raw."""
    return dict(value) if isinstance(value, SpecModel) else value


def _apply_scale(spec: ModelSpec) -> ModelSpec:
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
    scaled_spec.__pydantic_private__["_marks"] = spec.__pydantic_private__["_marks"]
    return scaled_spec


MAX_BLOCKS = 10_000  # ResNet-1001 has 333; more is a typo or a hostile spec that would take minutes to build


def _check_size(stages: list, width: float, depth_mult: float, divisor: float, marks: dict) -> list[Problem]:
    total = 0
    for s in stages:
        if isinstance(s, dict) and isinstance(s.get("depth"), int) and isinstance(s.get("planes"), int):
            own = _number(s.get("depth_multiplier"))  # a stage's own multiplier, in place of the spec's
            total += scaled_depth(s["depth"], own if own else depth_mult)
    if total <= MAX_BLOCKS:
        return []
    return [Problem(f"{total:,} blocks in all (after depth_multiplier); at most {MAX_BLOCKS:,} are supported",
                    mark_for(("stages",), marks), "stages")]




def _check_names(data: dict, stage_count: int, marks: dict) -> list[Problem]:
    problems = []
    names = scheme(data.get("layout", "torchvision"))
    stages = _stage_names(data, stage_count, names, marks, problems) if names is not None else {}
    seen: dict[str, tuple] = {}

    def check(layers: Any, path: tuple, taken: dict[str, tuple], top: bool) -> None:
        if not isinstance(layers, list):
            return
        for i, layer in enumerate(layers):
            if not isinstance(layer, LayerSpec):
                continue
            if isinstance(getattr(layer, "layers", None), list):
                check(layer.layers, (*path, i, "layers"), {}, False)
            if layer.name is None:
                continue
            where = (*path, i, "name")
            flat = top and (path == ("final",) or names is None or not getattr(names, path[0]))
            if module_name_problem(layer.name):
                message = module_name_problem(layer.name)
            elif flat and layer.name in stages:
                message = f"{layer.name!r} is the name of {stages[layer.name]}; choose another"
            elif layer.name in taken:
                message = f"duplicate layer name {layer.name!r} (also {format_path(taken[layer.name])})"
            else:
                taken[layer.name] = where
                continue
            problems.append(Problem(message, mark_for(where, marks), format_path(where)))

    for part in ("stem", "final", "head"):
        check(data.get(part), (part,), seen, True)
    return problems


def _stage_names(data: dict, count: int, names: Any, marks: dict, problems: list[Problem]) -> dict[str, str]:
    """The names the network's own children take besides the stem, final and head layers: the layout's
    containers, or the stages themselves (what a top-level layer name may not be). Two containers or two
    stages of one name, and a name torch keeps, are refused where the name is given."""
    top: dict[str, str] = {}
    for part in ("stem", "stages", "head"):
        container = getattr(names, part)
        if container and container in top:
            problems.append(Problem(f"the {part} container is named {container!r}, as {top[container]}; one "
                                    "container each", mark_for(("layout", part), marks), f"layout.{part}"))
        elif container:
            top[container] = f"the layout's {part} container"
    stages = data.get("stages") if isinstance(data.get("stages"), list) else []
    seen: dict[str, tuple[int, bool]] = {}  # name -> (stage, whether its name: key gave it)
    for i in range(count):
        given = getattr(stages[i], "name", None) if i < len(stages) else None
        name = names.stage_name(i, given)
        if name in seen and not given and "{" not in names.stage:
            problems.append(Problem(f"stage: {names.stage!r} names every stage the same; put {{i}} (0-based) or "
                                    "{n} (1-based) in it, or give the stages name: keys",
                                    mark_for(("layout", "stage"), marks), "layout.stage"))
            break
        where = ("stages", i, "name") if given else ("layout", "stage")
        if name in seen and seen[name][1] and not given:  # blame the name: key, not the layout's pattern
            where = ("stages", seen[name][0], "name")
        clash = f"also stage {seen[name][0] + 1}'s name" if name in seen else \
            f"also {top[name]}" if name in top and not names.stages else None
        message = f"stage {i + 1} is named {name!r}, {clash}; choose another" if clash else module_name_problem(name)
        if message:
            problems.append(Problem(message, mark_for(where, marks), format_path(where)))
        seen.setdefault(name, (i, bool(given)))
    if not names.stages:
        top.update({name: f"stage {i + 1}" for name, (i, _) in seen.items()})
    return top

__all__ = ["ModelSpec", "StageSpec", "BlockSpec", "LayerSpec", "AttentionSpec", "validate",
           "scaled_depth", "scaled_width"]
