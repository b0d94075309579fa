"""Stem and head layer types: each a params model that records its layer on a scope (``emit``).

Shapes are per sample: ``(channels, height, width)`` for feature maps, ``(features,)`` once flat.
Input channels and features always come from the previous layer; a spec never states them.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Literal

from pydantic import Field, SerializeAsAny, field_validator

from . import graph as g
from .graph import Scope, Value, spatial
from .params import LayerParams, LayerSpec

Shape = tuple[int, ...]


class Conv(LayerParams):
    """2-D convolution."""

    channels: int = Field(ge=1, le=1 << 20, description="Output channels.")
    kernel_size: int = Field(3, ge=1, le=63, description="Square kernel size.")
    stride: int = Field(1, ge=1, le=64, description="Stride.")
    padding: int | Literal["same"] | None = Field(None, description="Zero padding (0-1024); default keeps the size "
                                                  "at stride 1; 'same': TensorFlow's, from the input's size, more on "
                                                  "the right and below (timm's Conv2dSame, the tf_ models).")
    dilation: int = Field(1, ge=1, le=64, description="Dilation.")
    groups: int = Field(1, ge=1, le=1 << 20, description="Groups; must divide input and output channels.")
    bias: bool = Field(False, description="Add a bias (off: a norm usually follows).")

    @field_validator("padding")
    @classmethod
    def _padding(cls, value: Any) -> Any:
        if isinstance(value, int) and not 0 <= value <= 1024:
            raise ValueError(f"must be between 0 and 1024 (got {value})")
        return value

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        c, _, _ = spatial(x.shape, "conv")
        if self.padding == "same":
            return s.call(name, g.Conv2dSame(c, self.channels, self.kernel_size, self.stride, 0, self.dilation,
                                             self.groups, self.bias), x)
        padding = self.dilation * (self.kernel_size - 1) // 2 if self.padding is None else self.padding
        return s.call(name, g.Conv2d(c, self.channels, self.kernel_size, self.stride, padding, self.dilation,
                                   self.groups, self.bias), x)


class BatchNorm(LayerParams):
    """Batch normalization over channels."""

    role: ClassVar[str] = "norm"
    foldable: ClassVar[bool] = True  # folds into the conv before it (re-parameterization)
    eps: float = Field(1e-5, gt=0, lt=1, description="Added to the variance for stability.")
    momentum: float = Field(0.1, ge=0, le=1, description="Running-statistics momentum.")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, g.BatchNorm(x.shape[0], self.eps, self.momentum, len(x.shape) == 1), x)

    def emit_act(self, s: Scope, name: str, x: Value, act: g.Activation | None, drop: tuple | None = None) -> Value:
        """The norm with ``act`` inside (timm's ``BatchNormAct2d``; None: no activation) and ``drop`` (DropBlock's
        rate, size, gamma) between them, as timm's ``drop_layer``."""
        return s.call(name, g.BatchNormAct(x.shape[0], self.eps, self.momentum, act, drop), x)


class EvoNormS0a(LayerParams):
    """EvoNorm-S0a (Liu et al. 2020): group-std normalization with its own x * sigmoid(v * x) activation.

    timm's EvoNorm2dS0a; inside a conv-norm-act unit its gating is the activation (the spec's is not used)."""

    role: ClassVar[str] = "norm"
    group_size: int | None = Field(None, ge=1, le=1 << 20, description="Channels per group (overrides groups).")
    groups: int = Field(32, ge=1, le=1 << 20, description="Number of groups; must divide the channels.")
    eps: float = Field(1e-3, gt=0, lt=1, description="Added to the group variance for stability.")

    def _op(self, channels: int, act: bool) -> g.EvoNormS0a:
        if self.group_size is not None:
            if channels % self.group_size:
                raise ValueError(f"evonorm group_size {self.group_size} does not divide {channels} channels")
            groups = channels // self.group_size
        else:
            groups = self.groups
        return g.EvoNormS0a(channels, groups, self.eps, act)

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, self._op(x.shape[0], False), x)

    def emit_act(self, s: Scope, name: str, x: Value, act: g.Activation | None) -> Value:
        """The norm with its own gating as the activation (None: without it, timm's apply_act=False)."""
        return s.call(name, self._op(x.shape[0], act is not None), x)


class EvoNormS0(EvoNormS0a):
    """EvoNorm-S0 as timm's ``EvoNorm2dS0``: S0a's arithmetic with its gating; without it (a norm that holds no
    activation), only the scale and shift."""

    eps: float = Field(1e-5, gt=0, lt=1, description="Added to the group variance for stability (timm's 1e-5).")

    def _op(self, channels: int, act: bool) -> g.EvoNormS0:
        a = super()._op(channels, act)
        return g.EvoNormS0(a.channels, a.groups, self.eps, act)


class GroupNorm(LayerParams):
    """Group normalization (Wu & He 2018)."""

    role: ClassVar[str] = "norm"
    groups: int = Field(32, ge=1, le=1 << 20, description="Number of groups; must divide the channels.")
    group_size: int | None = Field(None, ge=1, le=1 << 20, description="Channels per group (overrides groups; "
                                   "timm's GroupNormAct group_size).")
    eps: float = Field(1e-5, gt=0, lt=1, description="Added to the variance for stability.")

    def _groups(self, channels: int) -> int:
        if self.group_size is None:
            return self.groups
        if channels % self.group_size:
            raise ValueError(f"groupnorm group_size {self.group_size} does not divide {channels} channels")
        return channels // self.group_size

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, g.GroupNorm(self._groups(x.shape[0]), x.shape[0], self.eps), x)

    def emit_act(self, s: Scope, name: str, x: Value, act: g.Activation | None) -> Value:
        """The norm with ``act`` inside (timm's ``GroupNormAct``; None: no activation)."""
        return s.call(name, g.GroupNormAct(self._groups(x.shape[0]), x.shape[0], self.eps, act), x)


class Norm(LayerParams):
    """The spec's `norm:` (one line switches every norm)."""

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.norm(name, x)


def norm_act(s: Scope, name: str, x: Value, apply_act: bool = True) -> Value:
    """The scope's norm with its activation inside as child ``name`` (timm's ``norm_act_layer``: ``BatchNormAct2d``,
    ``GroupNormAct``; ``apply_act=False``: the norm alone, as a module of that class)."""
    norm, act = s.norm_layer, s.act_layer
    if not callable(getattr(norm, "emit_act", None)):
        raise ValueError(f"the {norm.type} norm cannot hold an activation (use batchnorm, groupnorm or evonorm_s0a)")
    if apply_act and not callable(getattr(act, "op", None)):
        raise ValueError(f"the {act.type} activation cannot sit inside a norm")
    return norm.emit_act(s, name, x, act.op() if apply_act else None)


class NormAct(LayerParams):
    """The spec's norm with the spec's activation inside it (timm's ``BatchNormAct2d``: EfficientNet's ``bn1``)."""

    apply_act: bool = Field(True, description="Put the activation inside (off: the norm alone, as a module of "
                                              "the norm-act class).")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return norm_act(s, name, x, self.apply_act)


class Act(LayerParams):
    """The spec's `activation:`."""

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.act(name, x)


class ReLU(LayerParams):
    """Rectified linear unit."""

    role: ClassVar[str] = "activation"
    inplace: bool = Field(True, description="Overwrite the input (saves memory, as torchvision).")

    def op(self) -> g.Activation:
        return g.Activation("relu", self.inplace)

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, self.op(), x)


class LeakyReLU(LayerParams):
    """Leaky ReLU (DarkNet uses slope 0.1)."""

    role: ClassVar[str] = "activation"
    negative_slope: float = Field(0.01, ge=0, le=1, description="Slope for negative inputs.")
    inplace: bool = Field(True, description="Overwrite the input.")

    def op(self) -> g.Activation:
        return g.Activation("leaky_relu", self.inplace, self.negative_slope)

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, self.op(), x)


class SiLU(LayerParams):
    """Sigmoid linear unit (swish)."""

    role: ClassVar[str] = "activation"
    inplace: bool = Field(True, description="Overwrite the input.")

    def op(self) -> g.Activation:
        return g.Activation("silu", self.inplace)

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, self.op(), x)


class _Elementwise(LayerParams):
    """An activation without settings of its own beyond ``inplace``: its graph kind in ``kind``."""

    role: ClassVar[str] = "activation"
    kind: ClassVar[str] = ""
    inplace: bool = Field(False, description="Overwrite the input (saves memory; torch's default is off).")

    def op(self) -> g.Activation:
        return g.Activation(self.kind, self.inplace)

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, self.op(), x)


class HardSwish(_Elementwise):
    """Hard swish (MobileNetV3): x * relu6(x + 3) / 6."""

    kind: ClassVar[str] = "hardswish"


class HardSigmoid(_Elementwise):
    """Hard sigmoid (MobileNetV3's gates): relu6(x + 3) / 6."""

    kind: ClassVar[str] = "hardsigmoid"


class ReLU6(_Elementwise):
    """ReLU clipped at 6 (MobileNetV2)."""

    kind: ClassVar[str] = "relu6"


class Mish(_Elementwise):
    """Mish: x * tanh(softplus(x))."""

    kind: ClassVar[str] = "mish"


class Sigmoid(LayerParams):
    """The logistic sigmoid."""

    role: ClassVar[str] = "activation"

    def op(self) -> g.Activation:
        return g.Activation("sigmoid")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, self.op(), x)


class Tanh(Sigmoid):
    """The hyperbolic tangent."""

    def op(self) -> g.Activation:
        return g.Activation("tanh")


class GELU(LayerParams):
    """Gaussian error linear unit (ConvNeXt, transformers); ``approximate: tanh`` as torch's."""

    role: ClassVar[str] = "activation"
    approximate: Literal["none", "tanh"] = Field("none", description="The exact erf form, or its tanh estimate.")

    def op(self) -> g.Activation:
        return g.Activation("gelu" if self.approximate == "none" else "gelu_tanh")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, self.op(), x)


class LayerNorm2d(LayerParams):
    """LayerNorm over the channels of a feature map (timm's ``LayerNorm2d``: ConvNeXt's norm)."""

    role: ClassVar[str] = "norm"
    eps: float = Field(1e-6, gt=0, lt=1, description="Added to the variance for stability (timm's 1e-6).")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        spatial(x.shape, "layernorm2d")
        return s.call(name, g.LayerNorm2d(x.shape[0], self.eps), x)

    def emit_act(self, s: Scope, name: str, x: Value, act: g.Activation | None) -> Value:
        """The norm with ``act`` inside (timm's ``LayerNormAct2d``; None: no activation)."""
        spatial(x.shape, "layernorm2d")
        return s.call(name, g.LayerNormAct2d(x.shape[0], self.eps, act), x)


class RmsNorm2d(LayerParams):
    """RMS normalization over the channels of a feature map (timm's ``RmsNorm2d``: a weight, no bias)."""

    role: ClassVar[str] = "norm"
    eps: float = Field(1e-6, gt=0, lt=1, description="Added to the mean square for stability (timm's 1e-6).")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        spatial(x.shape, "rmsnorm2d")
        return s.call(name, g.RmsNorm2d(x.shape[0], self.eps), x)


class SimpleNorm2d(RmsNorm2d):
    """timm's ``SimpleNorm2d`` (ConvNeXt-Zepto): channels over the square root of their variance, uncentered, a weight."""

    eps: float = Field(1e-6, gt=0, lt=1, description="Added to the variance for stability (timm's 1e-6).")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        spatial(x.shape, "simplenorm2d")
        return s.call(name, g.SimpleNorm2d(x.shape[0], self.eps), x)


class LayerScale(LayerParams):
    """A learnable per-channel scale (timm's ``LayerScale2d``, key ``gamma``; CaiT, ConvNeXt)."""

    init_values: float = Field(1e-5, gt=0, le=1e3, description="The scale's initial value.")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        spatial(x.shape, "layer_scale")
        return s.call(name, g.LayerScale(x.shape[0], self.init_values), x)


def timm_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """timm's ``get_padding``: 'same'-like symmetric padding for a square kernel."""
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2


def aa_op(aa: str, channels: int, stride: int) -> g.Op:
    """timm's ``create_aa``: AvgPool2d(stride) for avg, BlurPool2d(channels, stride) for blur (constant padded for
    blurpc)."""
    return g.Pool2d("avg", stride, stride) if aa == "avg" else g.BlurPool2d(channels, 3, stride, aa == "blurpc")


def conv_norm_act(s: Scope, name: str, x: Value, out: int, kernel_size: int = 1, *, stride: int = 1,
                  dilation: int = 1, groups: int = 1, padding: int | None = None, apply_act: bool = True,
                  zero_init: bool = False, aa: str | None = None, drop: tuple | None = None) -> Value:
    """timm's ``ConvNormAct`` as child ``name``: ``conv`` (no bias, timm's padding), then ``bn``, the
    spec's norm with the spec's activation inside it (``apply_act=False``: none). ``aa`` (``avg``, ``blur``):
    timm's ``aa_layer``: a strided conv runs at stride 1 and child ``aa`` downsamples after the norm.
    ``drop``: DropBlock (rate, size, gamma) inside the norm, before its activation (timm's ``drop_layer``)."""
    inner, (y,) = s.enter(name, "ConvNormAct", x)
    use_aa = aa is not None and stride > 1  # the conv then runs at stride 1, padded for it (timm's)
    pad = timm_padding(kernel_size, 1 if use_aa else stride, dilation) if padding is None else padding
    y = inner.call("conv", g.Conv2d(x.shape[0], out, kernel_size, 1 if use_aa else stride, pad, dilation, groups), y)
    norm, act = s.norm_layer, s.act_layer
    if not callable(getattr(norm, "emit_act", None)):
        raise ValueError(f"a conv-norm-act unit puts the activation inside the norm: the {norm.type} norm "
                         "cannot hold one (use batchnorm, groupnorm or evonorm_s0a)")
    if apply_act and not callable(getattr(act, "op", None)):
        raise ValueError(f"a conv-norm-act unit puts the activation inside the norm: the {act.type} activation "
                         "cannot sit there (use relu, leaky_relu or silu)")
    if drop is not None and "drop" not in inspect.signature(norm.emit_act).parameters:
        raise ValueError(f"DropBlock sits inside the norm of a conv-norm-act unit: the {norm.type} norm cannot hold it")
    y = norm.emit_act(inner, "bn", y, act.op() if apply_act else None, **({"drop": drop} if drop else {}))
    if use_aa:
        y = inner.call("aa", aa_op(aa, out, stride), y)
    if zero_init:
        s.mark_zero_init(f"{name}.bn")
    return inner.exit(y)


class ConvNormAct(LayerParams):
    """timm's ConvNormAct: conv, then the spec's norm with its activation inside (keys conv.*, bn.*)."""

    channels: int = Field(ge=1, le=1 << 20, description="Output channels.")
    kernel_size: int = Field(3, ge=1, le=63, description="Square kernel size.")
    stride: int = Field(1, ge=1, le=64, description="Stride.")
    padding: int | None = Field(None, ge=0, le=1024, description="Zero padding; default timm's "
                                "((stride - 1) + dilation * (kernel_size - 1)) // 2.")
    dilation: int = Field(1, ge=1, le=64, description="Dilation.")
    groups: int = Field(1, ge=1, le=1 << 20, description="Groups; must divide input and output channels.")
    apply_act: bool = Field(True, description="Put the spec's activation inside the norm (timm's apply_act).")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        spatial(x.shape, "conv_norm_act")
        return conv_norm_act(s, name, x, self.channels, self.kernel_size, stride=self.stride, dilation=self.dilation,
                             groups=self.groups, padding=self.padding, apply_act=self.apply_act)


class _Pool(LayerParams):
    kernel_size: int = Field(ge=1, le=64, description="Square window size.")
    stride: int | None = Field(None, ge=1, le=64, description="Stride; defaults to the kernel size.")
    padding: int = Field(0, ge=0, le=32, description="Implicit padding; at most half the kernel.")
    kind: ClassVar[str] = "max"

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, g.Pool2d(self.kind, self.kernel_size, self.stride or self.kernel_size, self.padding), x)


class MaxPool(_Pool):
    """2-D max pooling."""


class AvgPool(_Pool):
    """2-D average pooling."""

    kind: ClassVar[str] = "avg"
    count_include_pad: bool = Field(True, description="Count padded zeros in each average (torch's default; timm's "
                                                      "avg_down shortcuts leave them out).")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, g.Pool2d("avg", self.kernel_size, self.stride or self.kernel_size, self.padding,
                                     count_include_pad=self.count_include_pad), x)


class BlurPool(LayerParams):
    """Anti-aliased downsampling: reflect pad, depthwise binomial blur, stride (timm's BlurPool2d)."""

    filt_size: int = Field(3, ge=2, le=7, description="Taps of the binomial filter ([1, 2, 1] for 3).")
    stride: int = Field(2, ge=1, le=8, description="Stride.")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        c, _, _ = spatial(x.shape, "blurpool")
        return s.call(name, g.BlurPool2d(c, self.filt_size, self.stride), x)


class AdaptiveAvgPool(LayerParams):
    """Average pooling to a fixed size (1 = global)."""

    output_size: int = Field(1, ge=1, le=1024, description="Square output size.")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, g.AdaptiveAvgPool2d(self.output_size), x)


class Flatten(LayerParams):
    """Flatten each sample to a vector."""

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, g.Flatten(), x)


class Linear(LayerParams):
    """Fully connected; in_features flow in."""

    classifier: ClassVar[bool] = True  # as a head's last such layer, its features are the classes (num_classes)

    features: int = Field(ge=1, le=1 << 24, description="Output features (classes for a classifier).")
    bias: bool = Field(True, description="Add a bias.")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        if len(x.shape) != 1:
            raise ValueError(f"linear needs a flat input but gets {list(x.shape)}; put a flatten layer before it")
        return s.call(name, g.Linear(x.shape[0], self.features, self.bias), x)


class Dropout(LayerParams):
    """Dropout."""

    p: float = Field(0.5, ge=0, lt=1, description="Probability of zeroing an element.")

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, g.Passthrough("dropout", self.p), x)


class Identity(LayerParams):
    """Does nothing (e.g. to drop a layer by override)."""

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        return s.call(name, g.Passthrough("identity"), x)


class Sequential(LayerParams):
    """A group of layers as one child (timm's deep stem: conv1.0, conv1.1, ...)."""

    nested: ClassVar[bool] = True
    layers: list[SerializeAsAny[LayerSpec]] = Field(min_length=1, max_length=1000, description="The layers, in "
                                                    "order; children are named 0, 1, ... unless named.")

    def child_names(self) -> list[str]:
        """Each inner layer's child name: its own name, else its position (``0``, ``1``, ...)."""
        return [layer.name or str(i) for i, layer in enumerate(self.layers)]

    def emit(self, s: Scope, name: str, x: Value) -> Value:
        inner, (y,) = s.enter(name, "Sequential", x, sequential=True)
        for i, (child, layer) in enumerate(zip(self.child_names(), self.layers)):
            try:
                y = layer.emit(inner, child, y)
            except ValueError as exc:
                raise ValueError(f"layers[{i}] ({layer.type}): {exc}") from None
        return inner.exit(y)


BUILTIN_LAYERS: dict[str, type[LayerParams]] = {
    "conv": Conv,
    "conv_norm_act": ConvNormAct,
    "batchnorm": BatchNorm,
    "groupnorm": GroupNorm,
    "evonorm_s0a": EvoNormS0a,
    "evonorm_s0": EvoNormS0,
    "norm": Norm,
    "norm_act": NormAct,
    "act": Act,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "silu": SiLU,
    "gelu": GELU,
    "hard_swish": HardSwish,
    "hard_sigmoid": HardSigmoid,
    "relu6": ReLU6,
    "mish": Mish,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "layernorm2d": LayerNorm2d,
    "rmsnorm2d": RmsNorm2d,
    "simplenorm2d": SimpleNorm2d,
    "layer_scale": LayerScale,
    "maxpool": MaxPool,
    "avgpool": AvgPool,
    "blurpool": BlurPool,
    "adaptive_avgpool": AdaptiveAvgPool,
    "flatten": Flatten,
    "linear": Linear,
    "dropout": Dropout,
    "identity": Identity,
    "sequential": Sequential,
}


def describe(layer: Any, name: str, shape: Shape, norm: Any, act: Any, deploy: bool = False) -> tuple[Any, Shape]:
    """The op (or graph) a layer records as child ``name`` on an input of ``shape``, and its output shape
    (``deploy``: a re-parameterizable layer in its deploy form)."""
    s = Scope("_", norm_layer=norm, act_layer=act, deploy=deploy)
    name = name if name.isidentifier() else f"_{name}"  # an index in a sequential part (stem.0): the op is the same
    out = layer.emit(s, name, s.input(shape))
    if s.child_names() != [name] or len(s.graph_nodes()) != 1:
        raise ValueError(f"layer type {layer.type!r} must record exactly one child named {name!r}")
    return s.child(name), out.shape
