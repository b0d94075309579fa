"""The typed parts of a spec that name a registered type: blocks, layers (stem, head, norm, activation)
and attention attachments.

Each comes in two forms. The *envelope* (``BlockSpec``, ``LayerSpec``, ``AttentionSpec``) is what the
static ``ModelSpec`` declares: a ``type`` tag, the keys every type shares, and room for the type's
own keys. The *typed* form is the registered type's params model (``BlockParams``,
``LayerParams``, ``AttentionParams`` subclasses), which forbids unknown keys; validation's second
pass turns every envelope into the typed form of its registered type (``archkit.specs``). A typed
instance is an envelope too, so ``ModelSpec.stages[i].block`` is always a ``BlockSpec`` to type checkers.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SerializeAsAny, StringConstraints, field_validator

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
LAYER_NAME_PATTERN = r"^(?:[A-Za-z_][A-Za-z0-9_]*|0|[1-9][0-9]{0,3})$"  # layers of a part: also an index (stem.0)
PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"

# attributes of torch.nn.Sequential (torch 2.x) and of archkit's model API: a child of that name
# would replace them; names starting with "_" are torch's own
RESERVED = frozenset("""T_destination add_module append apply bfloat16 buffers call_super_init children compile cpu
cuda double dump_patches eval extend extra_repr float forward get_buffer get_extra_state get_parameter get_submodule
half insert ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters parameters
pop register_backward_hook register_buffer register_forward_hook register_forward_pre_hook register_full_backward_hook
register_full_backward_pre_hook register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
register_parameter register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ set_extra_state
set_submodule share_memory state_dict to to_empty train training type xpu zero_grad spec stem_names stage_names final_names
head_names feature_info grad_checkpointing frozen_stages norm_eval num_classes num_features forward_features
forward_head get_classifier reset_classifier set_grad_checkpointing group_matcher freeze frozen_modules
transfer_plan pretrained_cfg default_cfg return_layers""".split())


def module_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a child module (None: it can): torch's own attributes, and names starting
    with ``_`` (torch keeps them), would be replaced by the child or refuse it."""
    if name.startswith("_"):
        return f"{name!r} starts with '_', which torch keeps for its own attributes; choose another"
    if name in RESERVED:
        return f"{name!r} is an attribute of torch.nn.Module; choose another"
    return None


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys refused, YAML's scalar types taken as they are (``"3"`` is
    not an integer), no NaN or infinity, immutable."""

    # defer_build: a model's validator is built when first used; a command uses a few of the types
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True, defer_build=True)
    _frozen: Any = PrivateAttr(default=None)

    def __hash__(self) -> int:
        # by value, lists included, computed once (specs key the caches of descriptions and costs)
        private = self.__pydantic_private__  # (not self._frozen: pydantic's private-attribute lookup is slow)
        if private["_frozen"] is None:
            private["_frozen"] = hash(_freeze(self))
        return private["_frozen"]

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any:
        copy = super().model_copy(update=update, deep=deep)
        copy.__pydantic_private__["_frozen"] = None  # the values may differ: hash them anew
        return copy

    def __eq__(self, other: object) -> bool:  # by value; the cached hash key is no part of it
        return type(self) is type(other) and self.__dict__ == other.__dict__ and \
            self.__pydantic_extra__ == other.__pydantic_extra__  # type: ignore[union-attr]


def _freeze(value: Any, top: bool = True) -> Any:
    if isinstance(value, SpecModel) and not top:  # a nested spec model hashes once, its hash kept for reuse
        return (type(value), hash(value))
    if isinstance(value, BaseModel):
        return (type(value), *((k, _freeze(v, False)) for k, v in value.__dict__.items()),
                *((k, _freeze(v, False)) for k, v in (value.__pydantic_extra__ or {}).items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, False) for v in value)
    if isinstance(value, dict):
        return tuple((k, _freeze(v, False)) for k, v in value.items())
    return value


class _Envelope(SpecModel):
    model_config = ConfigDict(extra="allow")


class AttentionSpec(_Envelope):
    """An attention attachment: its type, where the block places it, and the type's own keys."""

    type: str = Field(max_length=200, description="Attention type (`archkit blocks` lists them).")
    position: str = Field("pre_add", max_length=40, description="Where in the block: pre_add (before the shortcut "
                          "add), mid (after the middle conv) or post_add (after the add); default: the block's own "
                          "(pre_add where it offers it, else its first position: `archkit blocks NAME`).")


class BlockSpec(_Envelope):
    """A block: its type, the keys every block shares, and the type's own keys."""

    type: str = Field(max_length=200, description="Block type (`archkit blocks` lists them).")
    shortcut: str | None = Field(None, max_length=40, description="Shortcut kind when a stage changes shape: "
                                 "projection, avg_down, zero_pad or none (default: the block's first accepted kind; "
                                 "see `archkit blocks NAME`).")
    attn: list[SerializeAsAny[AttentionSpec]] = Field(default_factory=list, max_length=16, description=(
        "Attention modules to attach, each {type, position, <params>}; see `archkit blocks`."))
    names: dict[Annotated[str, StringConstraints(pattern=PATH_PATTERN, max_length=200)],
                Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=64)]] | None = Field(
        None, max_length=64, description="The block's children under names of your own, {conv1: conv_pw} (dotted "
        "for a nested child: se.fc1); `archkit build SPEC --summary --depth 3` shows the block's own names.")

    @field_validator("names")
    @classmethod
    def _module_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        """A new name must be able to name a child module (torch's own attributes are refused)."""
        for new in (value or {}).values():
            problem = module_name_problem(new)
            if problem:
                raise ValueError(problem)
        return value


class StageSpec(_Envelope):
    """One stage: its type (``resnet``: torchvision's ``_make_layer``, the default), the keys every stage
    type shares, and the type's own keys."""

    type: str = Field("resnet", max_length=200, description="Stage type (`archkit blocks` lists them): resnet "
                      "(torchvision's _make_layer), dark, csp, cs3 (timm's CSPNet stages).")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_]+$", max_length=64, description="The stage's module "
                             "name (default: the layout's, layer1.. or 0..).")

    @field_validator("name", mode="before")
    @classmethod
    def _digits(cls, value: Any) -> Any:
        """``name: 1`` (YAML's integer) is the name "1": stage names may be digits, as a Sequential's."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else value
    planes: int = Field(ge=1, le=1 << 20, description="Block planes (resnet stages: output channels are planes x "
                        "block expansion); the stage's output channels for dark, csp and cs3 stages.")
    depth: int = Field(ge=1, le=100_000, description="Number of blocks.")
    stride: int = Field(1, ge=1, le=64, description="Stride of the first block (the stage's downsampling).")
    depth_multiplier: float | None = Field(None, gt=0, le=64, description="This stage's own depth multiplier, in "
                                           "place of the spec's (1.0: its depth as written, timm's fix_first_last).")
    dilate: bool = Field(False, description="Replace the stride with dilation (torchvision's "
                                            "replace_stride_with_dilation), keeping the resolution.")
    block: SerializeAsAny[BlockSpec] | None = Field(None, description="Block type and params, merged over the "
                                                    "top-level block (required if there is none).")
    blocks: list[SerializeAsAny[BlockSpec]] | None = Field(None, max_length=100_000, description="Per-block "
                                                           "settings, one mapping per block merged over the stage's "
                                                           "block (e.g. the widths of a channel-pruned network); as "
                                                           "many as depth.")
    pattern: list[SerializeAsAny[BlockSpec]] | None = Field(None, min_length=1, max_length=1000, description=(
        "Block settings repeated in order over the stage's blocks, each merged over the stage's block: "
        "[{depthwise: true}, {kernel_size: 1}] alternates two kinds (timm's interleave_blocks); unlike "
        "blocks:, it follows depth_multiplier."))


class StageParams(StageSpec):
    """Base of a stage type's params: subclasses add the type's own keys."""

    model_config = ConfigDict(extra="forbid")


class LayerSpec(_Envelope):
    """A stem, head, norm or activation layer: its type, optional child name, and the type's own keys."""

    type: str = Field(max_length=200, description="Layer type (`archkit blocks` lists them).")
    name: str | None = Field(None, pattern=LAYER_NAME_PATTERN, max_length=64,
                             description="Child module name, the state_dict prefix; defaults to the type name. "
                                         "A number names an index in a sequential part (timm's stem.0).")


_LOCAL = threading.local()  # per thread: the stack of sets ``reading`` collects into


def _stack() -> list[set]:
    stack = getattr(_LOCAL, "reads", None)
    if stack is None:
        stack = _LOCAL.reads = []
    return stack


class BlockParams(BlockSpec):
    """Base of a block type's params: subclasses add fields with defaults, bounds and descriptions.

    The planner records which fields a block's description reads (``reading``): a key that a spec sets
    and no description of its type ever reads would change nothing, and is refused."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field("", max_length=200, description="Block type (`archkit blocks` lists them).")

    def __getattribute__(self, name: str) -> Any:
        stack = getattr(_LOCAL, "reads", None)
        if stack and not name.startswith("_") and name in type(self).model_fields:
            stack[-1].add(name)
        return super().__getattribute__(name)

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        note_reads(type(self).model_fields)  # whoever takes them all (Module(**params.model_dump())) reads them all
        return super().model_dump(**kwargs)

    def __iter__(self) -> Any:
        note_reads(type(self).model_fields)
        return super().__iter__()


def note_reads(fields: Any) -> None:
    """Count ``fields`` as read where ``reading`` collects (a cached description's reads, say)."""
    stack = getattr(_LOCAL, "reads", None)
    if stack:
        stack[-1].update(fields)


class reading:  # noqa: N801 - used as ``with reading() as fields:``
    """Collect the names of the block params fields read inside the ``with`` block (per thread); what a
    nested ``reading`` collects counts for the enclosing one too."""

    def __enter__(self) -> set:
        _stack().append(set())
        return _stack()[-1]

    def __exit__(self, *exc: Any) -> None:
        done = _stack().pop()
        note_reads(done)


class AttentionParams(AttentionSpec):
    """Base of an attention type's params. A type either describes itself (``emit``, costs for free)
    or builds a module (``build(channels)``, with an optional ``cost``; measured on meta otherwise)."""

    model_config = ConfigDict(extra="forbid")
    role: ClassVar[str] = "attention"
    type: str = Field("", max_length=200, description="Attention type (`archkit blocks` lists them).")

    def emit_in(self, s: Any, name: str, x: Any, block: Any) -> Any:
        """``emit`` inside a block, given the block's plan (``archkit.blocks.BlockPlan``: its input, output and
        planned widths, stride): a type that sizes itself from them overrides this (SE's ``rd_from``)."""
        return self.emit(s, name, x)

    def emit(self, s: Any, name: str, x: Any) -> Any:
        """Record this attachment as child ``name`` of scope ``s`` on value ``x`` (see ``archkit.graph``)."""
        from .graph import Custom

        declared = None
        if type(self).cost is not AttentionParams.cost:
            declared = self.cost(x.shape[0], x.shape[1:])
        return s.call(name, Custom(type(self).__name__, _AttentionFactory(self, x.shape[0]), (), x.shape,
                                   declared, declared.params if declared else 0), x)

    def build(self, channels: int) -> Any:
        """A module-form type's ``nn.Module`` for ``channels`` (imports torch itself)."""
        raise NotImplementedError(f"attention type {self.type!r} neither describes itself nor builds a module")

    def cost(self, channels: int, hw: tuple[int, ...]) -> Any:
        """A module-form type's parameters, MACs and writes per sample (``archkit.complexity.Cost``)."""
        raise NotImplementedError


class _AttentionFactory:
    """Builds a module-form attention type's module (called by the builder, which has torch)."""

    def __init__(self, params: AttentionParams, channels: int):
        self.params, self.channels = params, channels

    def __call__(self, context: Any) -> Any:
        return self.params.build(self.channels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _AttentionFactory) and (other.params, other.channels) == (self.params, self.channels)

    def __hash__(self) -> int:
        return hash((type(self.params), self.channels))


class LayerParams(LayerSpec):
    """Base of a layer type's params. ``role`` is "layer", "norm" (takes channels) or "activation".

    A type describes itself with ``emit(s, name, x)``; a module-form (plugin) type implements
    ``build(shape, ctx)`` (``ctx.norm(channels)``, ``ctx.act()``: the spec's), ``output_shape`` and
    optionally ``cost``.

    What a type can be is declared here, once, as class attributes a subclass overrides (archkit reads
    nothing else about a layer type): the capability protocol.
    """

    model_config = ConfigDict(extra="forbid")
    role: ClassVar[str] = "layer"  # "layer", "norm" (the spec's norm: takes channels) or "activation"
    widths: ClassVar[tuple[str, ...]] = ("channels",)  # the fields a width multiplier scales (scaling.parts)
    whole: ClassVar[bool] = False  # a container's only unnamed layer is the container itself (timm's stem.conv)
    classifier: ClassVar[bool] = False  # as a head's last such layer, its ``features`` are the classes
    nested: ClassVar[bool] = False  # holds layers of its own (``layers:``), validated as a spec's layers
    foldable: ClassVar[bool] = False  # a norm that folds into the conv before it (re-parameterization)
    fixed_input_size: ClassVar[bool] = False  # sized for one input size (timm's pretrained_cfg says so)
    global_pool: ClassVar[str | None] = None  # timm's name for the pooling it does (config.json's global_pool)
    type: str = Field("", max_length=200, description="Layer type (`archkit blocks` lists them).")

    def emit(self, s: Any, name: str, x: Any) -> Any:
        """Record this layer as child ``name`` of scope ``s`` on value ``x`` (see ``archkit.graph``)."""
        from .graph import Custom

        shape = x.shape
        declared = None
        if type(self).cost is not LayerParams.cost:
            declared = self.cost(shape, None)
        out = self.output_shape(shape)
        return s.call(name, Custom(type(self).__name__, _LayerFactory(self, shape, s.norm_layer, s.act_layer), (),
                                   out, declared, declared.params if declared else 0), x)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A module-form type's per-sample output shape (ValueError if impossible)."""
        return shape

    def build(self, shape: tuple[int, ...], ctx: Any) -> Any:
        """A module-form type's ``nn.Module`` for an input of ``shape``."""
        raise NotImplementedError(f"layer type {self.type!r} neither describes itself nor builds a module")

    def cost(self, shape: tuple[int, ...], ctx: Any) -> Any:
        """A module-form type's parameters, MACs and writes per sample."""
        raise NotImplementedError


class _LayerFactory:
    """Builds a module-form layer with a torch context of the spec's norm and activation."""

    def __init__(self, layer: LayerParams, shape: tuple[int, ...], norm: Any, act: Any):
        self.layer, self.shape, self.norm, self.act = layer, shape, norm, act

    def __call__(self, context: Any) -> Any:
        return self.layer.build(self.shape, context(self.norm, self.act))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _LayerFactory) and (other.layer, other.shape) == (self.layer, self.shape)

    def __hash__(self) -> int:
        return hash((type(self.layer), self.shape))


def shared_block_keys() -> dict[str, Any]:
    """The keys every block type accepts beside its own (for ``archkit blocks NAME``)."""
    return {name: field for name, field in BlockSpec.model_fields.items() if name != "type"}
