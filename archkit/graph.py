"""Modules described once, without torch: a recorded graph of primitive ops with shapes and costs.

A description is plain Python that calls ``Scope`` methods on symbolic values::

    out = s.conv("conv1", x, 64, 1)          # registers child "conv1" (a Conv2d) and records the call
    out = s.act("relu", s.norm("bn1", out))  # the spec's norm and activation
    out = s.add(out, x)                      # a functional op: no child

From the recorded ``Graph`` archkit derives everything else: the modules (``archkit.lower`` turns each
op into its torch layer and each graph into a module whose ``forward`` is generated from the
recording; child names are the ``state_dict`` keys, in the order they were first used), the shapes,
and the parameters, multiply-accumulates and written elements (each primitive knows its cost, as
pycls' ``complexity()`` and torch's ``FlopCounterMode`` count them: convolutions, linear layers and
matrix products only, FLOPs / 2).

Shapes are per sample: ``(channels, height, width)`` or ``(features,)``. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar

from .complexity import Cost

Shape = tuple[int, ...]


def numel(shape: Shape) -> int:
    """Elements of a per-sample shape."""
    n = 1
    for s in shape:
        n *= s
    return n


def spatial(shape: Shape, what: str) -> tuple[int, int, int]:
    """``shape`` as (channels, height, width), or a ValueError naming ``what`` needs a feature map."""
    if len(shape) != 3:
        raise ValueError(f"{what} needs a (channels, height, width) input, but the input is flat {list(shape)}")
    return shape  # type: ignore[return-value]


def window(size: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil: bool = False) -> int:
    """Output size of a convolution or pooling window (PyTorch's rule, floor or ceil mode)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if not ceil:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + padding:  # the last window must start inside the input or left padding
        out -= 1
    return out


def _sized(c: int, h: int, w: int, what: str, shape: Shape) -> Shape:
    if h < 1 or w < 1:
        raise ValueError(f"{what} turns a {shape[1]}x{shape[2]} input into {h}x{w}: the input is too small")
    return (c, h, w)


# --- primitives ------------------------------------------------------------------------------------


class Op:
    """A primitive: a torch layer (``functional`` False: a child module) or an expression (True).

    Subclasses are frozen dataclasses, so equal configurations compare equal (a name used twice must
    mean the same layer) and hash (cost caches). ``type_name`` is the torch class the builder makes.
    """

    type_name: ClassVar[str] = ""
    functional: ClassVar[bool] = False

    def out_shape(self, *shapes: Shape) -> Shape:
        """The per-sample output shape for inputs of ``shapes``; ValueError if impossible."""
        return shapes[0]

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        """Parameters, MACs and written elements per sample for one call (default: its parameters, no
        MACs, one output written)."""
        return Cost(self.params, 0, numel(out))

    @property
    def params(self) -> int:
        """Learnable parameters of the layer (counted once however often it is called)."""
        return 0


def _frozen(cls: type) -> type:
    return dataclasses.dataclass(frozen=True, slots=True)(cls)


@_frozen
class Conv2d(Op):
    """``nn.Conv2d`` with a square kernel."""

    in_channels: int
    out_channels: int
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    bias: bool = False
    type_name: ClassVar[str] = "Conv2d"

    def out_shape(self, *shapes: Shape) -> Shape:
        c, h, w = spatial(shapes[0], "conv")
        if c != self.in_channels:
            raise ValueError(f"conv expects {self.in_channels} channels, gets {c}")
        if self.out_channels < 1:
            raise ValueError(f"a conv of {self.in_channels} channels would give {self.out_channels} (a ratio too small?)")
        for channels in (self.in_channels, self.out_channels):
            if channels % self.groups:
                raise ValueError(f"groups {self.groups} does not divide {channels} channels")
        k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
        return _sized(self.out_channels, window(h, k, s, p, d), window(w, k, s, p, d),
                      f"conv {k}x{k}/{s}", shapes[0])

    @property
    def params(self) -> int:
        return self.out_channels * (self.in_channels // self.groups) * self.kernel_size ** 2 + \
            (self.out_channels if self.bias else 0)

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        weights = self.out_channels * (self.in_channels // self.groups) * self.kernel_size ** 2
        return Cost(self.params, weights * out[1] * out[2], numel(out), 0, numel(out))


@_frozen
class Conv2dSame(Conv2d):
    """TensorFlow's 'SAME' convolution (timm's ``Conv2dSame``): the input padded, more on the right and below,
    to ``ceil(size / stride)`` outputs, the padding computed from each input's size as timm's ``pad_same``."""

    type_name: ClassVar[str] = "Conv2dSame"

    def out_shape(self, *shapes: Shape) -> Shape:
        c, h, w = spatial(shapes[0], "conv")
        padded = (c, h + same_padding(h, self.kernel_size, self.stride, self.dilation),
                  w + same_padding(w, self.kernel_size, self.stride, self.dilation))
        return Conv2d.out_shape(self, padded)

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        c, h, w = shapes[0]
        k, s, d = self.kernel_size, self.stride, self.dilation
        padded = c * (h + same_padding(h, k, s, d)) * (w + same_padding(w, k, s, d))  # F.pad's copy
        return Conv2d.cost(self, shapes, out) + Cost(0, 0, padded)


@_frozen
class CondConv2d(Conv2d):
    """timm's ``CondConv2d`` (Yang et al. 2019, CondConv): ``experts`` kernels mixed per sample by routing weights
    (the second input, (experts,)), ``weight`` of shape (experts, out x in / groups x k x k); ``same``: TensorFlow's
    padding from the input's size (else ``padding``)."""

    experts: int = 4
    same: bool = False
    type_name: ClassVar[str] = "CondConv2d"

    def out_shape(self, *shapes: Shape) -> Shape:
        if len(shapes) != 2 or shapes[1] != (self.experts,):
            raise ValueError(f"a CondConv2d takes a map and {self.experts} routing weights")
        if not self.same:
            return Conv2d.out_shape(self, shapes[0])
        return Conv2dSame.out_shape(self, shapes[0])  # type: ignore[arg-type]

    @property
    def params(self) -> int:
        return self.experts * self.out_channels * (self.in_channels // self.groups) * self.kernel_size ** 2

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        mixed = self.params  # each sample's kernel: routing (experts) @ weight (experts, kernel)
        conv = Conv2dSame.cost(self, shapes[:1], out) if self.same else Conv2d.cost(self, shapes[:1], out)  # type: ignore[arg-type]
        return Cost(self.params, conv.macs + mixed, conv.writes + mixed // self.experts, 0, conv.acts)


def same_padding(size: int, kernel_size: int, stride: int, dilation: int = 1) -> int:
    """timm's ``get_same_padding``: the total padding of one dimension for TF's 'SAME'."""
    return max((math.ceil(size / stride) - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)


@_frozen
class Conv1d(Op):
    """``nn.Conv1d`` over a (channels, length) input."""

    in_channels: int
    out_channels: int
    kernel_size: int = 1
    padding: int = 0
    bias: bool = False
    type_name: ClassVar[str] = "Conv1d"

    def out_shape(self, *shapes: Shape) -> Shape:
        c, n = shapes[0]
        return (self.out_channels, n + 2 * self.padding - self.kernel_size + 1)

    @property
    def params(self) -> int:
        return self.out_channels * self.in_channels * self.kernel_size + (self.out_channels if self.bias else 0)

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost(self.params, self.out_channels * self.in_channels * self.kernel_size * out[1], numel(out), 0,
                    numel(out))


@_frozen
class BatchNorm(Op):
    """``nn.BatchNorm2d`` on a feature map, ``nn.BatchNorm1d`` on features."""

    channels: int
    eps: float = 1e-5
    momentum: float = 0.1
    flat: bool = False

    @property
    def type_name(self) -> str:  # type: ignore[override]
        return "BatchNorm1d" if self.flat else "BatchNorm2d"

    @property
    def params(self) -> int:
        return 2 * self.channels


@_frozen
class BatchNormAct(Op):
    """timm's ``BatchNormAct2d``: a BatchNorm2d with its activation inside (children ``drop``, ``act``;
    the keys are the norm's), as timm's ``ConvNormAct`` names it ``bn``."""

    channels: int
    eps: float = 1e-5
    momentum: float = 0.1
    act: "Activation | None" = None  # None: an Identity (timm's apply_act=False)
    drop: tuple[float, int, float] | None = None  # DropBlock (rate, size, gamma) as its ``drop`` (timm's drop_layer)
    type_name: ClassVar[str] = "BatchNormAct2d"

    @property
    def params(self) -> int:
        return 2 * self.channels

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        acted = self.act is not None and not self.act.inplace and self.act.kind != "identity"
        return Cost(self.params, 0, numel(out) * (2 if acted else 1))


@_frozen
class GroupNorm(Op):
    """``nn.GroupNorm``."""

    groups: int
    channels: int
    eps: float = 1e-5
    type_name: ClassVar[str] = "GroupNorm"

    def out_shape(self, *shapes: Shape) -> Shape:
        if self.channels % self.groups:
            raise ValueError(f"groupnorm groups {self.groups} does not divide {self.channels} channels")
        return shapes[0]

    @property
    def params(self) -> int:
        return 2 * self.channels

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost(self.params, 0, numel(out) + 2 * self.groups)  # and its per-group mean and rstd


@_frozen
class GroupNormAct(GroupNorm):
    """timm's ``GroupNormAct``: a GroupNorm with its activation inside (children ``drop``, ``act``; the keys are
    the norm's), the norm of timm's ``regnety_040_sgn`` conv-norm-act units."""

    act: "Activation | None" = None  # None: an Identity (timm's apply_act=False)
    type_name: ClassVar[str] = "GroupNormAct"

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        acted = self.act is not None and not self.act.inplace and self.act.kind != "identity"
        return Cost(self.params, 0, numel(out) * (2 if acted else 1) + 2 * self.groups)


@_frozen
class EvoNormS0a(Op):
    """timm's ``EvoNorm2dS0a`` (Liu et al. 2020): ``x * sigmoid(v * x)`` where ``act`` (its own activation),
    divided by the group standard deviation of ``x``, then scaled and shifted (keys weight, bias, v)."""

    channels: int
    groups: int
    eps: float = 1e-3
    act: bool = True
    type_name: ClassVar[str] = "EvoNorm2dS0a"

    def out_shape(self, *shapes: Shape) -> Shape:
        spatial(shapes[0], "evonorm")
        if self.channels % self.groups:
            raise ValueError(f"evonorm groups {self.groups} do not divide {self.channels} channels")
        return shapes[0]

    @property
    def params(self) -> int:
        return (3 if self.act else 2) * self.channels

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        # the group variance, +eps and sqrt per group, the expanded std's copy (a view where one group or
        # one channel per group lets the reshape be one), [x * v, sigmoid, product], the quotient, scale and
        # shift: as timm's forward writes them
        copy = self.groups > 1 and self.channels // self.groups > 1
        return Cost(self.params, 0, 3 * self.groups + (copy + (6 if self.act else 3)) * numel(out))


@_frozen
class EvoNormS0(EvoNormS0a):
    """timm's ``EvoNorm2dS0``: as S0a with its activation; without it (``apply_act=False``) only the scale and
    shift, no division by the group deviation (timm's forward)."""

    eps: float = 1e-5
    type_name: ClassVar[str] = "EvoNorm2dS0"

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        if self.act:
            return EvoNormS0a.cost(self, shapes, out)
        return Cost(self.params, 0, 2 * numel(out))


@_frozen
class LayerNorm2d(Op):
    """LayerNorm over the channels of a feature map (timm's ``LayerNorm2d``)."""

    channels: int
    eps: float = 1e-6
    type_name: ClassVar[str] = "LayerNorm2d"

    @property
    def params(self) -> int:
        return 2 * self.channels

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost(self.params, 0, numel(out) + 2 * numel(out[1:]))  # and a mean and rstd per position


@_frozen
class LayerNormAct2d(LayerNorm2d):
    """timm's ``LayerNormAct2d``: LayerNorm2d with ``act`` inside (children ``drop``, ``act``)."""

    act: Any = None  # an Activation, or None
    type_name: ClassVar[str] = "LayerNormAct2d"

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        acted = self.act is not None and not self.act.inplace and self.act.kind != "identity"
        return LayerNorm2d.cost(self, shapes, out) + Cost(0, 0, numel(out) if acted else 0)


@_frozen
class RmsNorm2d(Op):
    """RMS normalization over the channels of a feature map (timm's ``RmsNorm2d``: a ``weight``, no bias)."""

    channels: int
    eps: float = 1e-6
    type_name: ClassVar[str] = "RmsNorm2d"

    @property
    def params(self) -> int:
        return self.channels

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        # x ** 2, its channel mean, + eps, rsqrt (one per position each), x * rsqrt, * weight
        return Cost(self.params, 0, 3 * numel(out) + 3 * numel(out[1:]))


@_frozen
class SimpleNorm2d(RmsNorm2d):
    """timm's ``SimpleNorm2d`` (ConvNeXt-Zepto): each position's channels divided by the square root of their
    (unbiased) variance plus ``eps``, uncentered, times a ``weight``."""

    type_name: ClassVar[str] = "SimpleNorm2d"

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        # the variance, + eps, rsqrt (one per position each), x * rsqrt, * weight
        return Cost(self.params, 0, 2 * numel(out) + 3 * numel(out[1:]))


@_frozen
class LayerScale(Op):
    """A learnable per-channel scale (timm's ``LayerScale2d``: ``gamma``), initialized to ``init``."""

    channels: int
    init: float = 1e-5
    type_name: ClassVar[str] = "LayerScale2d"

    @property
    def params(self) -> int:
        return self.channels


@_frozen
class Activation(Op):
    """An elementwise activation: ``relu``, ``leaky_relu`` (``slope``), ``silu``, ``sigmoid``, ``gelu``,
    ``tanh``, ``hardswish``; in place where ``inplace`` (it then writes nothing new)."""

    kind: str = "relu"
    inplace: bool = False
    slope: float = 0.01

    @property
    def type_name(self) -> str:  # type: ignore[override]
        return _ACT_NAMES[self.kind]

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost(0, 0, 0 if self.inplace else numel(out))


_ACT_NAMES = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "silu": "SiLU", "sigmoid": "Sigmoid", "gelu": "GELU",
              "gelu_tanh": "GELU", "tanh": "Tanh", "hardswish": "Hardswish", "hardsigmoid": "Hardsigmoid",
              "relu6": "ReLU6", "mish": "Mish", "identity": "Identity"}


@_frozen
class Pool2d(Op):
    """``nn.MaxPool2d`` / ``nn.AvgPool2d``."""

    kind: str  # "max" or "avg"
    kernel_size: int
    stride: int
    padding: int = 0
    ceil_mode: bool = False
    count_include_pad: bool = True

    @property
    def type_name(self) -> str:  # type: ignore[override]
        return "MaxPool2d" if self.kind == "max" else "AvgPool2d"

    def out_shape(self, *shapes: Shape) -> Shape:
        c, h, w = spatial(shapes[0], f"{self.kind}pool")
        if 2 * self.padding > self.kernel_size:
            raise ValueError(f"padding {self.padding} must be at most half the kernel size {self.kernel_size}")
        k, s, p, ceil = self.kernel_size, self.stride, self.padding, self.ceil_mode
        return _sized(c, window(h, k, s, p, ceil=ceil), window(w, k, s, p, ceil=ceil), f"pool {k}x{k}/{s}", shapes[0])

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        # max pooling also writes its int64 indices: two float32 elements' worth each
        return Cost(0, 0, numel(out) * (3 if self.kind == "max" else 1))


@_frozen
class AdaptiveAvgPool2d(Op):
    """``nn.AdaptiveAvgPool2d`` to a square size."""

    size: int = 1
    type_name: ClassVar[str] = "AdaptiveAvgPool2d"

    def out_shape(self, *shapes: Shape) -> Shape:
        c, _, _ = spatial(shapes[0], "adaptive_avgpool")
        return (c, self.size, self.size)


@_frozen
class Flatten(Op):
    """``nn.Flatten(1)``: a view, writes nothing."""

    type_name: ClassVar[str] = "Flatten"

    def out_shape(self, *shapes: Shape) -> Shape:
        return (numel(shapes[0]),)

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost()


@_frozen
class Linear(Op):
    """``nn.Linear``."""

    in_features: int
    out_features: int
    bias: bool = True
    type_name: ClassVar[str] = "Linear"

    def out_shape(self, *shapes: Shape) -> Shape:
        if len(shapes[0]) != 1:
            raise ValueError(f"linear needs a flat input but gets {list(shapes[0])}; put a flatten layer before it")
        return (self.out_features,)

    @property
    def params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost(self.params, self.in_features * self.out_features, self.out_features, 0, self.out_features)


@_frozen
class LinearLast(Op):
    """``nn.Linear`` over the last dimension of a channels-last map (H, W, C): timm's ConvNeXt MLP."""

    in_features: int
    out_features: int
    bias: bool = True
    type_name: ClassVar[str] = "Linear"

    def out_shape(self, *shapes: Shape) -> Shape:
        if len(shapes[0]) < 2 or shapes[0][-1] != self.in_features:
            raise ValueError(f"a channels-last linear of {self.in_features} features gets {list(shapes[0])}")
        return (*shapes[0][:-1], self.out_features)

    @property
    def params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost(self.params, numel(out) * self.in_features, numel(out), 0, numel(out))


@_frozen
class LayerNorm(Op):
    """``nn.LayerNorm`` over the last dimension of a channels-last map (timm's ConvNeXt ``LayerNorm``)."""

    channels: int
    eps: float = 1e-6
    type_name: ClassVar[str] = "LayerNorm"

    def out_shape(self, *shapes: Shape) -> Shape:
        if shapes[0][-1] != self.channels:
            raise ValueError(f"a layernorm of {self.channels} channels gets {list(shapes[0])}")
        return shapes[0]

    @property
    def params(self) -> int:
        return 2 * self.channels

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost(self.params, 0, numel(out) + 2 * numel(out[:-1]))  # and a mean and rstd per position


@_frozen
class GlobalResponseNorm(Op):
    """ConvNeXt V2's global response normalization (timm's ``GlobalResponseNorm``, keys weight, bias):
    ``x + bias + weight * x * n``, ``n`` each channel's spatial L2 norm over their mean; on an NCHW map or a
    channels-last one (``channels_last``)."""

    channels: int
    eps: float = 1e-6
    channels_last: bool = True
    type_name: ClassVar[str] = "GlobalResponseNorm"

    @property
    def params(self) -> int:
        return 2 * self.channels

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost(self.params, 0, 3 * numel(out) + 2 * self.channels + 2)  # x * n, the product, the sum; the
        # norms and their ratio to the mean; the mean and + eps


@_frozen
class Passthrough(Op):
    """A layer that returns its input in eval mode (where costs are counted): ``nn.Identity``,
    ``nn.Dropout``, stochastic depth (``DropPath``), ``DropBlock2d``."""

    kind: str = "identity"  # identity, dropout, drop_path, drop_block
    rate: float = 0.0
    block_size: int = 0
    gamma_scale: float = 1.0

    @property
    def type_name(self) -> str:  # type: ignore[override]
        return {"identity": "Identity", "dropout": "Dropout", "drop_path": "DropPath",
                "drop_block": "DropBlock2d"}[self.kind]

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost()


@_frozen
class BlurPool2d(Op):
    """timm's ``BlurPool2d``: reflect padding (``constant``: zeros, timm's 'blurpc'), then a depthwise binomial
    blur with the stride."""

    channels: int
    filt_size: int = 3
    stride: int = 2
    constant: bool = False
    type_name: ClassVar[str] = "BlurPool2d"

    def pad(self) -> int:
        return ((self.stride - 1) + (self.filt_size - 1)) // 2

    def out_shape(self, *shapes: Shape) -> Shape:
        c, h, w = spatial(shapes[0], "blurpool")
        if self.pad() >= min(h, w) and not self.constant:
            raise ValueError(f"a {h}x{w} input is too small for the blur's reflect padding")
        return _sized(c, window(h, self.filt_size, self.stride, self.pad()), window(w, self.filt_size, self.stride,
                                                                                    self.pad()), "blurpool", shapes[0])

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        c, h, w = shapes[0]
        p = self.pad()
        return Cost(0, numel(out) * self.filt_size ** 2, c * (h + 2 * p) * (w + 2 * p) + numel(out))


@_frozen
class ZeroPadShortcut(Op):
    """The ResNet paper's option A: every ``stride``-th pixel, then ``pad`` zero channels appended."""

    stride: int
    pad: int
    type_name: ClassVar[str] = "ZeroPadShortcut"

    def out_shape(self, *shapes: Shape) -> Shape:
        c, h, w = spatial(shapes[0], "zero_pad")
        return (c + self.pad, (h - 1) // self.stride + 1, (w - 1) // self.stride + 1)

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost(0, 0, numel(out) if self.pad else 0)


@_frozen
class AvgPoolSame(Op):
    """2x2 average at stride 1 with 'same' padding (bottom/right): timm's ``AvgPool2dSame(2, 1)``."""

    type_name: ClassVar[str] = "AvgPoolSame"

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        c, h, w = shapes[0]
        return Cost(0, 0, c * ((h + 1) * (w + 1) + h * w))  # the padded copy, then the pool


@_frozen
class Custom(Op):
    """A layer the builder makes from ``factory``: ``"package.module:Class"`` (imported, then called with
    ``kwargs``) or a callable given the builder's context class (``archkit.build.TorchContext``):
    attention modules, module-form plugin layers and blocks. ``declared`` is its cost per
    call where known; None makes the summary measure it on the meta device."""

    name: str  # the torch class name, for tables (the factory's, when it is a class)
    factory: Any  # "package.module:Class" (imported when built) or a callable
    kwargs: tuple = ()
    shape: Shape = ()
    declared: Cost | None = None
    weights: int = 0  # its parameters, where declared

    @property
    def type_name(self) -> str:  # type: ignore[override]
        return self.name

    def out_shape(self, *shapes: Shape) -> Shape:
        return self.shape or shapes[0]

    @property
    def params(self) -> int:
        return self.weights

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        if self.declared is None:
            raise NotImplementedError(f"{self.name} declares no cost")
        return self.declared


# --- functional ops: expressions in the generated forward, no child module --------------------------


class Functional(Op):
    """An expression over the inputs (``{0}``, ``{1}``, ... in ``template``)."""

    functional: ClassVar[bool] = True
    template: ClassVar[str] = ""

    def code(self, args: list[str]) -> str:
        """The Python expression for inputs named ``args``."""
        return self.template.format(*args)


@_frozen
class PoolFlat(Functional):
    """timm's ``F.adaptive_avg_pool2d(x, 1).flatten(1)``: each channel's mean, flat (CondConv's routing input)."""

    def out_shape(self, *shapes: Shape) -> Shape:
        return (spatial(shapes[0], "a global pool")[0],)

    def code(self, args: list[str]) -> str:
        return f"torch.nn.functional.adaptive_avg_pool2d({args[0]}, 1).flatten(1)"


@_frozen
class Sigmoid(Functional):
    """``torch.sigmoid`` as an expression (CondConv's routing weights)."""

    def code(self, args: list[str]) -> str:
        return f"torch.sigmoid({args[0]})"


@_frozen
class Add(Functional):
    """``a + b`` of equal shapes (``broadcast``: ``b`` may have 1s where ``a`` has not); ``inplace`` writes
    into ``a`` (torchvision's ``out += identity``)."""

    inplace: bool = False
    broadcast: bool = False

    def out_shape(self, *shapes: Shape) -> Shape:
        if self.broadcast and len(shapes[0]) == len(shapes[1]) and all(
                b in (1, a) for a, b in zip(shapes[0], shapes[1])):
            return shapes[0]
        if shapes[0] != shapes[1]:
            raise ValueError(f"cannot add a {'x'.join(map(str, shapes[1]))} shortcut to a "
                             f"{'x'.join(map(str, shapes[0]))} output")
        return shapes[0]

    def code(self, args: list[str]) -> str:
        return " + ".join(args)

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost(0, 0, 0 if self.inplace else numel(out))


@_frozen
class Mul(Functional):
    """``a * b`` with broadcasting (a gate of shape (C, 1, 1) or (1, H, W) over a feature map)."""

    def out_shape(self, *shapes: Shape) -> Shape:
        return tuple(max(a, b) for a, b in zip(shapes[0], shapes[1]))

    def code(self, args: list[str]) -> str:
        return f"{args[0]} * {args[1]}"


@_frozen
class MeanHW(Functional):
    """The spatial mean of each channel, kept as (C, 1, 1) (``keepdim``) or flattened to (C,)."""

    keepdim: bool = True

    def out_shape(self, *shapes: Shape) -> Shape:
        c, _, _ = spatial(shapes[0], "a spatial mean")
        return (c, 1, 1) if self.keepdim else (c,)

    def code(self, args: list[str]) -> str:
        return f"{args[0]}.mean((2, 3), keepdim={self.keepdim})"


@_frozen
class Reduce(Functional):
    """A reduction (``mean``, ``amax``, ``sum``) over per-sample dimensions ``dims`` (0 = channels)."""

    kind: str = "mean"
    dims: tuple[int, ...] = (1, 2)
    keepdim: bool = True

    def out_shape(self, *shapes: Shape) -> Shape:
        shape = shapes[0]
        if any(d >= len(shape) for d in self.dims):
            raise ValueError(f"cannot reduce dimensions {self.dims} of a {len(shape)}-dimensional sample")
        if self.keepdim:
            return tuple(1 if i in self.dims else s for i, s in enumerate(shape))
        return tuple(s for i, s in enumerate(shape) if i not in self.dims)

    def code(self, args: list[str]) -> str:
        dims = tuple(d + 1 for d in self.dims)
        return f"{args[0]}.{self.kind}({dims!r}, keepdim={self.keepdim})"


@_frozen
class Reshape(Functional):
    """A view of each sample as ``shape`` (same elements; writes nothing). One dimension may be -1: the
    generated code keeps it so, and a model built at one input size runs at another."""

    shape: tuple[int, ...]

    def out_shape(self, *shapes: Shape) -> Shape:
        known = numel(tuple(d for d in self.shape if d != -1))
        total = numel(shapes[0])
        shape = tuple(total // known if d == -1 else d for d in self.shape)
        if self.shape.count(-1) > 1 or numel(shape) != total:
            raise ValueError(f"cannot view {list(shapes[0])} as {list(self.shape)}")
        return shape

    def code(self, args: list[str]) -> str:
        return f"{args[0]}.reshape({args[0]}.shape[0], {', '.join(map(str, self.shape))})"

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost()


@_frozen
class Permute(Functional):
    """Each sample's dimensions in the order ``dims`` (a view: NCHW to channels-last and back)."""

    dims: tuple[int, ...]

    def out_shape(self, *shapes: Shape) -> Shape:
        if sorted(self.dims) != list(range(len(shapes[0]))):
            raise ValueError(f"cannot permute {list(shapes[0])} by {list(self.dims)}")
        return tuple(shapes[0][d] for d in self.dims)

    def code(self, args: list[str]) -> str:
        return f"{args[0]}.permute(0, {', '.join(str(d + 1) for d in self.dims)})"

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost()


@_frozen
class OwnScale(Functional):
    """``x * self.NAME`` per channel, ``NAME`` a parameter of the module itself rather than of a child (timm's
    ConvNeXt ``gamma``: a bare ``nn.Parameter`` of ``channels`` values starting at ``init``)."""

    name: str
    channels: int
    init: float = 1e-6

    def out_shape(self, *shapes: Shape) -> Shape:
        if shapes[0][0] != self.channels:
            raise ValueError(f"{self.name} scales {self.channels} channels, not {shapes[0][0]}")
        return shapes[0]

    def code(self, args: list[str]) -> str:
        return f"{args[0]}.mul(self.{self.name}.reshape(1, -1, 1, 1))"

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost(self.channels, 0, numel(out))


@_frozen
class Softmax(Functional):
    """Softmax over per-sample dimension ``dim`` (default the last; 0 = the first after the batch)."""

    dim: int = -1

    def code(self, args: list[str]) -> str:
        return f"torch.softmax({args[0]}, dim={self.dim + 1 if self.dim >= 0 else self.dim})"


@_frozen
class HeadsQuery(Functional):
    """timm's MultiQueryAttention2d query reshape: (heads x dim, H, W) -> (heads, H x W, dim), a contiguous copy."""

    heads: int
    dim: int

    def out_shape(self, *shapes: Shape) -> Shape:
        c, h, w = spatial(shapes[0], "an attention query")
        if c != self.heads * self.dim:
            raise ValueError(f"a query of {c} channels is not {self.heads} heads of {self.dim}")
        return (self.heads, h * w, self.dim)

    def code(self, args: list[str]) -> str:
        x = args[0]
        return f"{x}.reshape({x}.shape[0], {self.heads}, {self.dim}, -1).transpose(-1, -2).contiguous()"


@_frozen
class SharedKV(Functional):
    """timm's MultiQueryAttention2d key / value reshape: (dim, h, w) -> (1, h x w, dim), shared by every head."""

    def out_shape(self, *shapes: Shape) -> Shape:
        c, h, w = spatial(shapes[0], "an attention key")
        return (1, h * w, c)

    def code(self, args: list[str]) -> str:
        x = args[0]
        return f"{x}.reshape({x}.shape[0], {x}.shape[1], -1).transpose(1, 2).unsqueeze(1).contiguous()"


@_frozen
class Attention(Functional):
    """``F.scaled_dot_product_attention(q, k, v)`` of (heads, L, dim) queries over (1 or heads, S, dim) keys and
    values: a multiply-accumulate per query-key and per weight-value term (FlopCounterMode's count)."""

    def out_shape(self, *shapes: Shape) -> Shape:
        q, k, v = shapes
        if len(q) != 3 or len(k) != 3 or len(v) != 3 or q[2] != k[2] or k[1] != v[1] or k[0] not in (1, q[0]):
            raise ValueError(f"cannot attend {list(q)} queries over {list(k)} keys and {list(v)} values")
        return (q[0], q[1], v[2])

    def code(self, args: list[str]) -> str:
        return f"torch.nn.functional.scaled_dot_product_attention({', '.join(args)})"

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        q, k, v = shapes
        return Cost(0, q[0] * q[1] * k[1] * (q[2] + v[2]), numel(out) + q[0] * q[1])  # and its logsumexp


@_frozen
class HeadsOut(Functional):
    """timm's MultiQueryAttention2d output reshape: (heads, H x W, dim) back to (heads x dim, H, W), the size taken
    from the second input (the attention's input map)."""

    def out_shape(self, *shapes: Shape) -> Shape:
        (heads, hw, dim), (_, h, w) = shapes[0], spatial(shapes[1], "an attention output")
        if hw != h * w:
            raise ValueError(f"{hw} positions are not a {h}x{w} map")
        return (heads * dim, h, w)

    def code(self, args: list[str]) -> str:
        o, x = args
        return (f"{o}.transpose(1, 2).reshape({o}.shape[0], {x}.shape[2], {x}.shape[3], -1)"
                ".permute(0, 3, 1, 2).contiguous()")

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost(0, 0, 2 * numel(out))  # the transposed reshape copies, and so does contiguous()


@_frozen
class MatMul(Functional):
    """``a @ b`` over each sample's last two dimensions (a multiply-accumulate per product term)."""

    def out_shape(self, *shapes: Shape) -> Shape:
        a, b = shapes
        if len(a) < 2 or len(b) < 2 or a[-1] != b[-2] or a[:-2] != b[:-2]:
            raise ValueError(f"cannot multiply {list(a)} by {list(b)}")
        return (*a[:-1], b[-1])

    def code(self, args: list[str]) -> str:
        return f"{args[0]} @ {args[1]}"

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost(0, numel(out) * shapes[0][-1], numel(out))


@_frozen
class Pad(Functional):
    """Zero padding of each map by (left, right, top, bottom) (``F.pad``): asymmetric where a symmetric conv
    padding cannot say it (TF's 'same' padding, stems that pad one side before a 2x2 conv)."""

    left: int
    right: int
    top: int
    bottom: int

    def out_shape(self, *shapes: Shape) -> Shape:
        c, h, w = spatial(shapes[0], "pad")
        return (c, h + self.top + self.bottom, w + self.left + self.right)

    def code(self, args: list[str]) -> str:
        return f"torch.nn.functional.pad({args[0]}, ({self.left}, {self.right}, {self.top}, {self.bottom}))"


@_frozen
class Concat(Functional):
    """Channel concatenation (``torch.cat(..., dim=1)``)."""

    def out_shape(self, *shapes: Shape) -> Shape:
        first = shapes[0]
        if any(s[1:] != first[1:] for s in shapes):
            raise ValueError("cannot concatenate maps of different sizes: " + ", ".join("x".join(map(str, s))
                                                                                   for s in shapes))
        return (sum(s[0] for s in shapes), *first[1:])

    def code(self, args: list[str]) -> str:
        return f"torch.cat([{', '.join(args)}], dim=1)"


@_frozen
class Narrow(Functional):
    """Channels ``start`` .. ``start + length`` of a map (one part of a split; a view, no write)."""

    start: int
    length: int

    def out_shape(self, *shapes: Shape) -> Shape:
        if self.start + self.length > shapes[0][0]:
            raise ValueError(f"cannot take channels {self.start}..{self.start + self.length} of {shapes[0][0]}")
        return (self.length, *shapes[0][1:])

    def code(self, args: list[str]) -> str:
        return f"{args[0]}.narrow(1, {self.start}, {self.length})"

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost()


@_frozen
class Contiguous(Functional):
    """A contiguous copy of a view (timm's ``.contiguous()`` after a split half)."""

    def code(self, args: list[str]) -> str:
        return f"{args[0]}.contiguous()"

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        return Cost()  # a view of a contiguous tensor: no copy in the cases described here


@_frozen
class ListOf(Op):
    """A list of child layers (``nn.ModuleList``, timm's MobileOne branches): the parent calls item ``i``
    as ``name[i]`` (``Scope.call_item``); the list itself is never called."""

    items: tuple
    type_name: ClassVar[str] = "ModuleList"

    @property
    def params(self) -> int:
        return sum(item.params for item in self.items)

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        raise NotImplementedError("a ModuleList is not called; its items are")


# --- graphs ----------------------------------------------------------------------------------------


class Value:
    """A symbolic tensor in a description: its index in the graph and its per-sample shape."""

    __slots__ = ("index", "shape")

    def __init__(self, index: int, shape: Shape):
        self.index = index
        self.shape = shape

    def __repr__(self) -> str:
        return f"Value({self.index}, {self.shape})"


class Node:
    """One recorded call: a child (``target`` names it) or a functional op, its inputs, output and cost."""

    __slots__ = ("target", "op", "inputs", "output", "cost", "in_shapes", "out_shape")

    def __init__(self, target: str | None, op: Any, inputs: tuple[int, ...], output: int, cost: Cost | None,
                 in_shapes: tuple[Shape, ...], out_shape: Shape):
        self.target, self.op, self.inputs, self.output, self.cost = target, op, inputs, output, cost
        self.in_shapes, self.out_shape = in_shapes, out_shape


class Graph:
    """A finished description of one module: children in registration order, recorded calls, output.

    ``sequential`` graphs are a chain of their children, each called once in order: the builder makes
    them ``nn.Sequential`` (torchvision's ``downsample``, timm's deep stems). A graph is itself an op:
    a parent may call it as a child (``Scope.call``), so descriptions nest.
    """

    functional = False

    def __init__(self, type_name: str, sequential: bool, inputs: tuple[Value, ...], nodes: tuple[Node, ...],
                 children: dict[str, Any], output: Value, zero_init: tuple[str, ...], empty: tuple[str, ...] = ()):
        self.type_name = type_name
        self.empty = empty  # slots the module has as None (torchvision's ``downsample = None``)
        self.sequential = sequential
        self.inputs = inputs
        self.nodes = nodes
        self.children = children
        self.output = output
        self.zero_init = zero_init
        total: Cost | None = Cost()
        for node in nodes:
            if node.cost is None:  # a layer without a declared cost: the summary measures it
                total = None
                break
            total = total + node.cost
        self.total = total  # per sample, one call; None where a part must be measured
    @property
    def params(self) -> int:
        if self.total is None:
            raise NotImplementedError(f"{self.type_name} holds a layer without a declared cost")
        return self.total.params

    def out_shape(self, *shapes: Shape) -> Shape:
        expected = tuple(v.shape for v in self.inputs)
        if tuple(shapes) != expected:
            raise ValueError(f"{self.type_name} was described for inputs {expected}, called with {tuple(shapes)}")
        return self.output.shape

    def cost(self, shapes: tuple[Shape, ...], out: Shape) -> Cost:
        if self.total is None:
            raise NotImplementedError(f"{self.type_name} holds a layer without a declared cost")
        return self.total

    def calls(self, target: str) -> list[Node]:
        """The recorded calls of child ``target``."""
        return [n for n in self.nodes if n.target == target or (n.target or "").startswith(f"{target}[")]

    def __repr__(self) -> str:
        return f"<Graph {self.type_name}: {len(self.children)} children, out {self.output.shape}>"


class _Prefixed(set):
    """A nested scope's ``renamed``: adds its paths, prefixed, to its parent's."""

    def __init__(self, parent: set, prefix: str):
        super().__init__()
        self.parent, self.prefix = parent, prefix

    def add(self, path: str) -> None:
        super().add(path)
        self.parent.add(f"{self.prefix}.{path}")


class DescriptionError(ValueError):
    """A description that contradicts itself (a name reused for another layer, a shape mismatch); ``field``:
    the spec key to blame, where one is (a block's ``names``)."""

    def __init__(self, message: str, field: tuple = ()):
        super().__init__(message)
        self.field = field


class Scope:
    """Records one module's description: ``call`` children, apply functional ops, ``finish``.

    ``norm_layer`` and ``act_layer`` are the spec's norm and activation (layer params with ``emit``):
    ``norm`` and ``act`` place them; a nested scope (``enter``) inherits them.
    """

    def __init__(self, type_name: str, *, sequential: bool = False, norm_layer: Any = None, act_layer: Any = None,
                 deploy: bool = False, names: dict[str, str] | None = None):
        self.type_name = type_name
        # the spec's own names for children (a block's names: key), by dotted path: what the description
        # calls conv1 is registered as names["conv1"]; used: the paths renamed (shared with nested scopes)
        self.names = dict(names or {})
        self.renamed: set[str] = set()
        self._origin: dict[str, str] = {}  # registered name -> the description's
        self.sequential = sequential
        self.norm_layer = norm_layer
        self.act_layer = act_layer
        self.deploy = deploy  # describe re-parameterizable units in their deploy form (one fused conv)
        self._inputs: list[Value] = []
        self._nodes: list[Node] = []
        self._children: dict[str, Any] = {}
        self._params_seen: set[str] = set()
        self._zero_init: list[str] = []
        self._empty: list[str] = []
        self._last: list[str] = []
        self._count = 0
        self._parent: tuple[Scope, str, tuple[Value, ...]] | None = None

    # values ---------------------------------------------------------------------------------------

    def _value(self, shape: Shape) -> Value:
        value = Value(self._count, shape)
        self._count += 1
        return value

    def input(self, shape: Shape) -> Value:
        """A new input of ``shape`` (a block has one; a graph may have several)."""
        value = self._value(tuple(shape))
        self._inputs.append(value)
        return value

    # children -------------------------------------------------------------------------------------

    def _name(self, name: str) -> str:
        """The name child ``name`` of the description is registered under (the spec may rename it)."""
        new = self.names.get(name, name)
        if name in self.names:
            self.renamed.add(name)
        if self._origin.setdefault(new, name) != name:
            raise DescriptionError(f"{self.type_name}: names: {self._origin[new]!r} and {name!r} would both be "
                                   f"named {new!r}", ("names",))
        return new

    def path(self, path: str) -> str:
        """Dotted ``path`` as registered (each part as the spec renames it)."""
        parts = path.split(".")
        return ".".join(self.names.get(".".join(parts[:k + 1]), part) for k, part in enumerate(parts))

    def child(self, name: str) -> Any:
        """The layer (op or graph) registered as child ``name`` (the description's name)."""
        return self._children[self.names.get(name, name)]

    def graph_nodes(self) -> tuple[Node, ...]:
        """The calls and functional ops recorded so far, in order."""
        return tuple(self._nodes)

    def child_names(self) -> list[str]:
        """The registered children's names, in registration order."""
        return list(self._children)

    def call(self, name: str, op: Any, *inputs: Value) -> Value:
        """Call child ``name`` (registered on first use; a later use must be the same layer) on ``inputs``."""
        name = self._name(name)
        old = self._children.get(name)
        if old is None:
            if not name or not (name.isidentifier() or name.isdigit()):  # digits: a Sequential's, a ModuleDict's
                raise DescriptionError(f"{self.type_name}: child name {name!r} is not an identifier")
            self._children[name] = op
        elif old is not op and old != op:
            raise DescriptionError(f"{self.type_name}: child {name!r} is used for two different layers "
                                   f"({_brief(old)} and {_brief(op)})")
        return self._record(name, op, inputs)

    def _record(self, target: str, op: Any, inputs: tuple[Value, ...]) -> Value:
        """Record a call of child ``target`` (its output shape and cost; a reused layer's parameters once)."""
        shapes = tuple(v.shape for v in inputs)
        out = op.out_shape(*shapes)
        cost = _cost(op, shapes, out)
        if cost is not None and target in self._params_seen:
            cost = cost.without_params()  # a reused layer's parameters count once
        self._params_seen.add(target)
        value = self._value(out)
        self._nodes.append(Node(target, op, tuple(v.index for v in inputs), value.index, cost, shapes, out))
        return value

    def call_item(self, name: str, index: int, op: Any, *inputs: Value) -> Value:
        """Call item ``index`` of the list child ``name`` (an ``nn.ModuleList``, registered on first use and
        grown one item at a time) on ``inputs``."""
        name = self._name(name)
        if not name.isidentifier():
            raise DescriptionError(f"{self.type_name}: child name {name!r} is not an identifier")
        old = self._children.get(name)
        items = list(old.items) if isinstance(old, ListOf) else []
        if old is not None and not isinstance(old, ListOf):
            raise DescriptionError(f"{self.type_name}: child {name!r} is a layer, not a list")
        if index == len(items):
            items.append(op)
            self._children[name] = ListOf(tuple(items))
        elif not 0 <= index < len(items) or (items[index] is not op and items[index] != op):
            raise DescriptionError(f"{self.type_name}: {name}[{index}] is not the next item or another layer")
        return self._record(f"{name}[{index}]", op, inputs)

    def apply(self, op: Functional, *inputs: Value) -> Value:
        """A functional op (an expression in the generated forward) on ``inputs``."""
        shapes = tuple(v.shape for v in inputs)
        out = op.out_shape(*shapes)
        value = self._value(out)
        self._nodes.append(Node(None, op, tuple(v.index for v in inputs), value.index, op.cost(shapes, out), shapes,
                                out))
        return value

    def empty(self, name: str) -> None:
        """Give the module attribute ``name`` as None: a slot this configuration leaves empty, as
        torchvision's ``downsample = None`` (code written against torchvision and timm reads them)."""
        name = self._name(name)
        if not name.isidentifier():
            raise DescriptionError(f"{self.type_name}: slot name {name!r} is not an identifier")
        self._empty.append(name)

    def register_last(self, name: str) -> None:
        """Put child ``name`` after the others in the module (its ``state_dict`` keys last), however early it is
        called: timm registers CondConv's ``routing_fn`` last and calls it first."""
        if self.sequential:
            raise DescriptionError(f"{self.type_name}: a sequential scope runs its children in order; none goes last")
        self._last.append(self._name(name))

    def has(self, name: str) -> bool:
        """Whether child ``name`` is registered already."""
        return self.names.get(name, name) in self._children

    def enter(self, name: str, type_name: str, *inputs: Value, sequential: bool = False) -> tuple["Scope", list[Value]]:
        """A nested module named ``name`` taking ``inputs``: record into the returned scope, then ``exit``."""
        nested = {k[len(name) + 1:]: v for k, v in self.names.items() if k.startswith(f"{name}.")}
        child = Scope(type_name, sequential=sequential, norm_layer=self.norm_layer, act_layer=self.act_layer,
                      deploy=self.deploy, names=nested)
        child.renamed = _Prefixed(self.renamed, name)
        child._parent = (self, name, inputs)
        return child, [child.input(v.shape) for v in inputs]

    def exit(self, output: Value) -> Value:
        """Finish a nested scope (from ``enter``) and call it in its parent; the parent's value."""
        assert self._parent is not None, "exit() without enter()"
        parent, name, inputs = self._parent
        return parent.call(name, self.finish(output), *inputs)

    def finish(self, output: Value) -> Graph:
        """The finished graph with ``output`` as its result."""
        if self.sequential:
            self._check_chain(output)
        empty = tuple(n for n in dict.fromkeys(self._empty) if n not in self._children)
        children = {k: v for k, v in self._children.items() if k not in self._last}
        children.update((k, self._children[k]) for k in self._last if k in self._children)
        return Graph(self.type_name, self.sequential, tuple(self._inputs), tuple(self._nodes), children,
                     output, tuple(self._zero_init), empty)

    def _check_chain(self, output: Value) -> None:
        previous = self._inputs[0].index if len(self._inputs) == 1 else None
        names = list(self._children)
        ok = len(self._nodes) == len(names) and output.index == (self._nodes[-1].output if self._nodes else previous)
        for node, name in zip(self._nodes, names):
            ok = ok and node.target == name and node.inputs == (previous,)
            previous = node.output
        if not ok:
            raise DescriptionError(f"{self.type_name}: a sequential scope must call each child once, in order")

    # the spec's layers -------------------------------------------------------------------------------

    def norm(self, name: str, x: Value, *, zero_init: bool = False) -> Value:
        """The spec's norm as child ``name``; ``zero_init`` zeroes its scale for ``init.zero_init_residual``."""
        if zero_init:
            self._zero_init.append(self.path(name))
        return self.norm_layer.emit(self, name, x)

    def act(self, name: str, x: Value) -> Value:
        """The spec's activation as child ``name`` (one module may serve several calls, as torchvision's ``relu``)."""
        return self.act_layer.emit(self, name, x)

    def mark_zero_init(self, path: str) -> None:
        """Zero the scale of the norm at dotted ``path`` (``conv2.bn``) for ``init.zero_init_residual``."""
        self._zero_init.append(self.path(path))

    # common primitives --------------------------------------------------------------------------------

    def conv(self, name: str, x: Value, out: int, kernel_size: int = 1, *, stride: int = 1, dilation: int = 1,
             groups: int = 1, bias: bool = False, padding: int | None = None) -> Value:
        """A ``kernel_size`` conv; the default padding keeps the size at stride 1 (torchvision's)."""
        pad = dilation * (kernel_size - 1) // 2 if padding is None else padding
        return self.call(name, Conv2d(x.shape[0], out, kernel_size, stride, pad, dilation, groups, bias), x)

    def add(self, a: Value, b: Value, *, inplace: bool = False) -> Value:
        """``a + b`` (in place into ``a`` where ``inplace``)."""
        return self.apply(Add(inplace), a, b)

    def mul(self, a: Value, b: Value) -> Value:
        """``a * b`` with broadcasting."""
        return self.apply(Mul(), a, b)


def _cost(op: Any, shapes: tuple[Shape, ...], out: Shape) -> Cost | None:
    try:
        return op.cost(shapes, out)
    except NotImplementedError:
        return None


def _brief(op: Any) -> str:
    return getattr(op, "type_name", type(op).__name__)


def describe_chain(type_name: str, shape: Shape, layers: list[tuple[str, Callable[[Scope, str, Value], Value]]],
                   *, norm_layer: Any = None, act_layer: Any = None) -> Graph:
    """A sequential graph of ``layers`` (name, emit) on an input of ``shape``."""
    s = Scope(type_name, sequential=True, norm_layer=norm_layer, act_layer=act_layer)
    x = s.input(shape)
    for name, emit in layers:
        x = emit(s, name, x)
    return s.finish(x)
