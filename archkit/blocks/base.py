"""The block contract: a block type is a *description* (a function recording its layers and dataflow
on a ``Scope``, see ``archkit.graph``) or, for plugins that need it, an ``nn.Module`` class.

Both receive one ``BlockPlan``: the plan's view of the block (channels, stride, dilation, sizes,
shortcut kind, attention attachments, drop rates, the spec's norm and activation, its position).
From a description archkit derives the module (children named as recorded: the ``state_dict``
keys), the shapes and the costs; the builder never branches on block type.

A description, whole (the ResNet bottleneck)::

    @block("bottleneck", BottleneckParams, cls_name="Bottleneck", expansion=4, drop_block=True,
           attn_positions=("mid", "pre_add", "post_add"))
    def bottleneck(b: BlockPlan, s: Scope, x: Value) -> Value:
        width, first = bottleneck_width(b.planes, b.params), first_width(b.planes, b.params)
        out = s.act("relu", s.norm("bn1", s.conv("conv1", x, first, 1)))
        out = s.norm("bn2", s.conv("conv2", out, width, 3, stride=b.conv_stride, dilation=b.dilation,
                                   groups=b.params.groups))
        out = attend(b, s, "mid", drop_act_aa(b, s, out), "attn")
        out = s.norm("bn3", s.conv("conv3", out, b.out_channels, 1), zero_init=True)
        return attend(b, s, "post_add", s.act("relu", residual(b, s, out, x)), "attn_out")
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable, Literal

from pydantic import Field

from ..graph import AvgPoolSame, BlurPool2d, Conv2d, Passthrough, Pool2d, Scope, Value, ZeroPadShortcut
from ..params import AttentionParams, BlockParams, LayerParams

ATTN_POSITIONS = ("mid", "pre_add", "post_add")


class Shortcut(str, enum.Enum):
    """How a block's input reaches its output add.

    ``IDENTITY``: the input itself (the block keeps stride and channels); ``NONE``: no shortcut at all
    (a plain network); ``PROJECTION`` (1x1 conv with the stride, then norm: torchvision's ``_make_layer``,
    the paper's option B), ``AVG_DOWN`` (2x2 average pool, 1x1 conv, norm: ResNet-D) and ``ZERO_PAD``
    (strided identity plus zero channels: the paper's option A) are modules used where a stage changes
    shape; ``STAGE_CONV`` is DarkNet-53's stage-opening strided 3x3 conv, run before the block.
    """

    IDENTITY = "identity"
    NONE = "none"
    PROJECTION = "projection"
    AVG_DOWN = "avg_down"
    ZERO_PAD = "zero_pad"
    STAGE_CONV = "stage_conv"

    @property
    def builds_module(self) -> bool:
        """Whether the kind is a module of its own (``downsample``)."""
        return self not in (Shortcut.IDENTITY, Shortcut.NONE)

    @property
    def adds(self) -> bool:
        """Whether the block adds a shortcut at all."""
        return self is not Shortcut.NONE

    @property
    def needs_norm(self) -> bool:
        """Whether the module carries the spec's norm (learned shortcuts do; option A has no weights)."""
        return self in (Shortcut.PROJECTION, Shortcut.AVG_DOWN, Shortcut.STAGE_CONV)

    def __str__(self) -> str:
        return self.value


# what a spec's `shortcut:` may name; "identity": an identity shortcut where the block keeps its shape and
# none where it changes (timm's byobnet downsample='', RegNetZ's and EfficientNet's rule)
USER_SHORTCUTS = ("projection", "avg_down", "zero_pad", "none", "identity")


class ResNetParams(BlockParams):
    """What timm's ResNet blocks add to torchvision's: anti-aliased downsampling, a reduced first
    convolution (SENet-154) and a larger projection kernel (SENet-154's 3x3 downsample)."""

    aa: Literal["blur", "avg"] | None = Field(None, description="Anti-aliased downsampling (timm's aa_layer): "
                                              "the strided conv runs at stride 1, then blur or avg pools.")
    reduce_first: int = Field(1, ge=1, le=64, description="The first conv's width is divided by this "
                                                          "(timm's block_reduce_first; SENet-154 uses 2).")
    shortcut_kernel_size: int = Field(1, ge=1, le=7, description="Kernel of a strided projection shortcut "
                                      "(timm's down_kernel_size; 1x1 where the stage keeps its resolution).")


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """One block as the plan makes it: everything its description (or module) and its cost need."""

    stage: int  # 0-based stage index
    index: int  # within the stage
    global_index: int  # over the whole network
    kind: "BlockType"
    params: Any  # the validated BlockParams of the block's type
    in_channels: int
    planes: int
    out_channels: int
    stride: int
    dilation: int  # of the strided position: the dilation in force before the stage, for a stage's first block
    stage_dilation: int  # the stage's own dilation (timm dilates a BasicBlock's second conv with it)
    in_size: tuple[int, int]
    shortcut: Shortcut
    drop_path_rate: float
    drop_block: tuple[float, int, float] | None  # (rate, block size, gamma scale), timm's drop_blocks
    attn: tuple[AttentionParams, ...]
    norm: LayerParams
    act: LayerParams
    name: str = ""  # its module path, e.g. layer2.0
    deploy: bool = False  # re-parameterizable blocks in their deploy form (the spec's deploy:)

    @property
    def type(self) -> str:
        """The block type's registered name."""
        return self.kind.name

    @property
    def aa(self) -> str | None:
        """Anti-aliased downsampling (blur, avg) where the block strides, or (timm's rule) opens a stage
        whose stride became dilation; else None."""
        aa = getattr(self.params, "aa", None)
        return aa if self.stride > 1 or self.dilation != self.stage_dilation else None

    @property
    def conv_stride(self) -> int:
        """The strided conv's stride: 1 where anti-aliasing downsamples after it (timm's aa_layer)."""
        return 1 if self.aa is not None else self.stride

    def key(self) -> tuple:
        """What the block's structure depends on (its position does not): blocks of a stage share it."""
        return (self.kind, self.params, self.in_channels, self.planes, self.out_channels, self.stride, self.dilation,
                self.stage_dilation, self.in_size, self.shortcut, self.drop_path_rate, self.drop_block, self.attn, self.norm, self.act,
                self.deploy)


Describe = Callable[[BlockPlan, Scope, Value], Value]


def _default_out_channels(expansion: int) -> Callable[[int, Any], int]:
    return lambda planes, params: planes * expansion


@dataclasses.dataclass(frozen=True, eq=False)
class BlockType:
    """A registered block type: its params, its description (or module class) and what it offers."""

    name: str
    params: type[BlockParams]
    cls_name: str  # the class name of the built module (tables, drawings)
    describe: Describe | None = None
    module: Any = None  # module form: an nn.Module class constructed as module(plan)
    cost: Callable[[BlockPlan], Any] | None = None  # module form: optional declared cost of a plan
    expansion: int = 1
    shortcuts: tuple[Shortcut, ...] = (Shortcut.PROJECTION, Shortcut.AVG_DOWN, Shortcut.ZERO_PAD, Shortcut.NONE)
    attn_positions: tuple[str, ...] = ("pre_add", "post_add")
    drop_block: bool = False  # places DropBlock (the spec's drop_block_rate)
    dilation: bool = True  # accepts dilation > 1
    stride: bool = True  # accepts stride > 1 (MobileNetV4's attention blocks keep the resolution)
    out_channels: Callable[[int, Any], int] | None = None  # planes, params -> channels (default planes x expansion)
    doc: str = ""
    stage: str = "resnet"  # the stage type it is built in (a block that leaves striding to its stage: that one)
    renamable: bool = True  # its children may take a spec's names: (re-parameterizable blocks keep their branches')

    @property
    def attn_default(self) -> str | None:
        """Where an attention attachment that names no position goes: pre_add where the block offers it
        (the residual branch's end, as timm's ``se_layer``), else the block's first offered position."""
        if "pre_add" in self.attn_positions:
            return "pre_add"
        return self.attn_positions[0] if self.attn_positions else None

    def channels_out(self, planes: int, params: Any) -> int:
        """The channels this block outputs for ``planes``."""
        rule = self.out_channels or _default_out_channels(self.expansion)
        return rule(planes, params)

    def renamed(self, name: str) -> "BlockType":
        """The same type under another registry name (plugins are also reachable as ``dist:name``)."""
        return dataclasses.replace(self, name=name)


def block(name: str, params: type[BlockParams], *, cls_name: str, expansion: int = 1,
          shortcuts: tuple[str, ...] = USER_SHORTCUTS, attn_positions: tuple[str, ...] = ("pre_add", "post_add"),
          drop_block: bool = False, dilation: bool = True,
          out_channels: Callable[[int, Any], int] | None = None, stage: str = "resnet",
          renamable: bool = True, stride: bool = True) -> Callable[[Describe], BlockType]:
    """Decorate a description function into a ``BlockType`` (register it with ``archkit.register_block``
    or through the ``archkit.blocks`` entry-point group)."""

    def wrap(fn: Describe) -> BlockType:
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        return BlockType(name, params, cls_name, fn, None, None, expansion, tuple(Shortcut(k) for k in shortcuts),
                         tuple(attn_positions), drop_block, dilation, stride, out_channels, doc, stage, renamable)

    return wrap


# --- helpers descriptions share ----------------------------------------------------------------------


def attend(b: BlockPlan, s: Scope, position: str, x: Value, name: str) -> Value:
    """The block's attention attachments at ``position`` as child ``name`` (several: a Sequential)."""
    chosen = [a for a in b.attn if a.position == position]
    if not chosen:
        s.empty(name)
        return x
    if len(chosen) == 1:
        return chosen[0].emit_in(s, name, x, b)
    inner, (y,) = s.enter(name, "Sequential", x, sequential=True)
    for i, a in enumerate(chosen):
        y = a.emit_in(inner, str(i), y, b)
    return inner.exit(y)


def drop_block(b: BlockPlan, s: Scope, x: Value) -> Value:
    """timm's DropBlock where the plan places one (``drop_block`` child; identity in eval mode)."""
    if b.drop_block is None:
        s.empty("drop_block")
        return x
    rate, size, gamma = b.drop_block
    return s.call("drop_block", Passthrough("drop_block", rate, size, gamma), x)


def anti_alias(b: BlockPlan, s: Scope, x: Value, name: str = "aa") -> Value:
    """Anti-aliased downsampling after a strided position (blur: timm's BlurPool2d; avg: a pool)."""
    if b.aa is None:
        s.empty(name)
        return x
    if b.aa == "blur":  # at stride 1 (a dilated stage's first block) it still blurs, as timm's
        return s.call(name, BlurPool2d(x.shape[0], 3, b.stride), x)
    _, h, w = x.shape
    if h % b.stride or w % b.stride:  # the shortcut's strided output would be one larger
        raise ValueError(f"aa: avg needs a size divisible by the stride {b.stride}, gets {h}x{w}")
    return s.call(name, Pool2d("avg", b.stride, b.stride), x)


def drop_act_aa(b: BlockPlan, s: Scope, x: Value, act: str = "relu") -> Value:
    """timm's order after the strided conv's norm: DropBlock, the activation, anti-aliasing."""
    return anti_alias(b, s, s.act(act, drop_block(b, s, x)))


def drop_path(b: BlockPlan, s: Scope, x: Value) -> Value:
    """Stochastic depth on the residual branch (timm's ``drop_path`` child; none at rate 0)."""
    if b.drop_path_rate <= 0:
        s.empty("drop_path")
        return x
    return s.call("drop_path", Passthrough("drop_path", b.drop_path_rate), x)


def shortcut(b: BlockPlan, s: Scope, x: Value, *, norm: bool = True, kernel_size: int = 1,
             name: str = "downsample") -> Value | None:
    """The shortcut of the plan's kind on ``x``: ``x`` itself, None (no shortcut), or the ``downsample``
    module (a Sequential of pool, conv and norm as torchvision and timm name them; ``norm=False``: a
    bare conv, as pre-activation blocks have)."""
    kind = b.shortcut
    if kind is Shortcut.IDENTITY:
        s.empty(name)
        return x
    if kind is Shortcut.NONE:
        s.empty(name)
        return None
    c_in, c_out = x.shape[0], b.out_channels
    if kind is Shortcut.ZERO_PAD:
        if c_out < c_in:
            raise ValueError(f"a zero_pad shortcut cannot shrink {c_in} channels to {c_out}")
        return s.call(name, ZeroPadShortcut(b.stride, c_out - c_in), x)
    if kind not in (Shortcut.PROJECTION, Shortcut.AVG_DOWN):
        raise ValueError(f"{b.kind.name} blocks build no {kind.value} shortcut")
    # timm's downsample_conv / downsample_avg: decided by the stage's dilation, the conv dilated by the
    # dilation in force before the stage (torchvision's 1x1 projections are the same either way)
    stride, dilation, first = b.stride, b.stage_dilation, b.dilation
    layers: list[Any] = []
    conv_stride = stride
    if kind is Shortcut.AVG_DOWN:
        # timm keeps the pool slot (Identity at stride 1) so conv and norm stay at indices 1 and 2
        if stride == 1 and dilation == 1:
            layers.append(Passthrough("identity"))
        elif dilation > 1:  # a stage whose stride became dilation: a 'same' 2x2 average at stride 1
            layers.append(AvgPoolSame())
        else:  # ceil_mode and count_include_pad=False keep odd sizes right, as timm's
            layers.append(Pool2d("avg", 2, stride, 0, True, False))
        conv_stride = 1
    k = 1 if kind is not Shortcut.PROJECTION or (stride == 1 and dilation == 1) else kernel_size
    if k == 1:
        layers.append(Conv2d(c_in, c_out, 1, conv_stride))
    else:
        layers.append(Conv2d(c_in, c_out, k, conv_stride, ((stride - 1) + first * (k - 1)) // 2, first))
    if not norm and len(layers) == 1:
        return s.call(name, layers[0], x)
    inner, (y,) = s.enter(name, "Sequential", x, sequential=True)
    for i, op in enumerate(layers):
        y = inner.call(str(i), op, y)
    if norm:
        y = inner.norm(str(len(layers)), y)
    return inner.exit(y)


def residual(b: BlockPlan, s: Scope, out: Value, x: Value, *, shortcut_input: Value | None = None,
             inplace: bool = True, norm: bool = True) -> Value:
    """What a residual block ends with: attention before the add (child ``se``, timm's slot, so its
    weights load), stochastic depth, the shortcut (``downsample``) and the add (in place, as
    torchvision's ``out += identity``; ``inplace=False`` where the branch ends in an activation, whose
    backward reads its output). ``shortcut_input`` feeds a shortcut module (pre-activation blocks pass
    the normalized input); the identity always adds ``x``."""
    out = drop_path(b, s, attend(b, s, "pre_add", out, "se"))
    module_input = shortcut_input if shortcut_input is not None and b.shortcut.builds_module else x
    sc = shortcut(b, s, module_input, norm=norm, kernel_size=getattr(b.params, "shortcut_kernel_size", 1))
    if sc is None:
        return out
    return s.add(out, sc, inplace=inplace)
