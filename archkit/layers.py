"""Stem and head layer types: each a pydantic params model that builds its module and its output shape.

Shapes are per sample: ``(channels, height, width)`` for feature maps, ``(features,)`` once flat.
Input channels and features always come from the previous layer; a spec never states them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from . import complexity
from .complexity import Cost
from .context import Context

Shape = tuple[int, ...]
BuildContext = Context  # what a layer may need beyond its own params: the spec's norm and activation


class LayerParams(BaseModel):
    """Base of every layer type: an optional child name, then the type's own parameters."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
    role: ClassVar[str] = "layer"  # "layer", "norm" (takes channels) or "activation"

    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64,
                             description="Child module name, the state_dict prefix; defaults to the type name.")

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        """The module for an input of ``shape``."""
        raise NotImplementedError

    def output_shape(self, shape: Shape) -> Shape:
        """The per-sample output shape for an input of ``shape``; raises ValueError if impossible."""
        return shape

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        """Parameters, MACs and written elements per sample (archkit.complexity); types that do not
        declare it are measured on the meta device instead."""
        raise NotImplementedError


def _numel(shape: Shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _spatial(shape: Shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"{what} needs a (channels, height, width) input, but the input is flat {list(shape)}")
    return shape  # type: ignore[return-value]


def _pooled(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _check_size(c: int, h: int, w: int, what: str, shape: Shape) -> Shape:
    if h < 1 or w < 1:
        raise ValueError(f"{what} turns a {shape[1]}x{shape[2]} input into {h}x{w}: the input is too small")
    return (c, h, w)


class Conv(LayerParams):
    """2-D convolution."""

    channels: int = Field(ge=1, le=1 << 20, description="Output channels.")
    kernel_size: int = Field(3, ge=1, le=63, description="Square kernel size.")
    stride: int = Field(1, ge=1, le=64, description="Stride.")
    padding: int | None = Field(None, ge=0, le=1024, description="Zero padding; default keeps size at stride 1.")
    dilation: int = Field(1, ge=1, le=64, description="Dilation.")
    groups: int = Field(1, ge=1, le=1 << 20, description="Groups; must divide input and output channels.")
    bias: bool = Field(False, description="Add a bias (off: a norm usually follows).")

    def _padding(self) -> int:
        return self.dilation * (self.kernel_size - 1) // 2 if self.padding is None else self.padding

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        return nn.Conv2d(shape[0], self.channels, self.kernel_size, self.stride, self._padding(),
                         self.dilation, self.groups, self.bias)

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = _spatial(shape, "conv")
        for channels in (c, self.channels):
            if channels % self.groups:
                raise ValueError(f"groups {self.groups} does not divide {channels} channels")
        size = [_pooled(s, self.kernel_size, self.stride, self._padding(), self.dilation) for s in (h, w)]
        return _check_size(self.channels, *size, f"conv {self.kernel_size}x{self.kernel_size}/{self.stride}", shape)

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        out = self.output_shape(shape)
        return complexity.conv(shape[0], self.channels, self.kernel_size, out[1:], self.groups, self.bias)


class BatchNorm(LayerParams):
    """Batch normalization over channels."""

    role: ClassVar[str] = "norm"
    eps: float = Field(1e-5, gt=0, lt=1, description="Added to the variance for stability.")
    momentum: float = Field(0.1, ge=0, le=1, description="Running-statistics momentum.")

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        if len(shape) == 1:
            return nn.BatchNorm1d(shape[0], self.eps, self.momentum)
        return nn.BatchNorm2d(shape[0], self.eps, self.momentum)

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        return Cost(2 * shape[0], 0, _numel(shape))


class GroupNorm(LayerParams):
    """Group normalization (Wu & He 2018)."""

    role: ClassVar[str] = "norm"
    groups: int = Field(32, ge=1, le=1 << 20, description="Number of groups; must divide the channels.")
    eps: float = Field(1e-5, gt=0, lt=1, description="Added to the variance for stability.")

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        if shape[0] % self.groups:
            raise ValueError(f"groupnorm groups {self.groups} does not divide {shape[0]} channels")
        return nn.GroupNorm(self.groups, shape[0], self.eps)

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        return Cost(2 * shape[0], 0, _numel(shape))


class Norm(LayerParams):
    """The spec's `norm:` (one line switches every norm)."""

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        return ctx.norm_layer.build(shape, ctx) if ctx.norm_layer is not None else ctx.norm(shape[0])

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        return ctx.norm_cost(shape[0], shape[1:])


class Act(LayerParams):
    """The spec's `activation:`."""

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        return ctx.act()

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        return ctx.act_cost(shape[0], shape[1:])


class ReLU(LayerParams):
    """Rectified linear unit."""

    role: ClassVar[str] = "activation"
    inplace: bool = Field(True, description="Overwrite the input (saves memory, as torchvision).")

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        return nn.ReLU(inplace=self.inplace)

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        return complexity.elementwise(_numel(shape), self.inplace)


class LeakyReLU(LayerParams):
    """Leaky ReLU (DarkNet uses slope 0.1)."""

    role: ClassVar[str] = "activation"
    negative_slope: float = Field(0.01, ge=0, le=1, description="Slope for negative inputs.")
    inplace: bool = Field(True, description="Overwrite the input.")

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        return nn.LeakyReLU(self.negative_slope, inplace=self.inplace)

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        return complexity.elementwise(_numel(shape), self.inplace)


class SiLU(LayerParams):
    """Sigmoid linear unit (swish)."""

    role: ClassVar[str] = "activation"
    inplace: bool = Field(True, description="Overwrite the input.")

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        return nn.SiLU(inplace=self.inplace)

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        return complexity.elementwise(_numel(shape), self.inplace)


class _Pool(LayerParams):
    kernel_size: int = Field(ge=1, le=64, description="Square window size.")
    stride: int | None = Field(None, ge=1, le=64, description="Stride; defaults to the kernel size.")
    padding: int = Field(0, ge=0, le=32, description="Implicit padding; at most half the kernel.")

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = _spatial(shape, self.__class__.__name__.lower())
        if 2 * self.padding > self.kernel_size:
            raise ValueError(f"padding {self.padding} must be at most half the kernel size {self.kernel_size}")
        stride = self.stride or self.kernel_size
        size = [_pooled(s, self.kernel_size, stride, self.padding) for s in (h, w)]
        return _check_size(c, *size, f"pool {self.kernel_size}x{self.kernel_size}/{stride}", shape)

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        return complexity.elementwise(_numel(self.output_shape(shape)))


class MaxPool(_Pool):
    """2-D max pooling."""

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        return nn.MaxPool2d(self.kernel_size, self.stride, self.padding)


class AvgPool(_Pool):
    """2-D average pooling."""

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        return nn.AvgPool2d(self.kernel_size, self.stride, self.padding)


class BlurPool(LayerParams):
    """Anti-aliased downsampling: reflect pad, depthwise binomial blur, stride (timm's BlurPool2d)."""

    filt_size: int = Field(3, ge=2, le=7, description="Taps of the binomial filter ([1, 2, 1] for 3).")
    stride: int = Field(2, ge=1, le=8, description="Stride.")

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        from .blocks.antialias import BlurPool2d

        return BlurPool2d(shape[0], self.filt_size, self.stride)

    def output_shape(self, shape: Shape) -> Shape:
        from .blocks.antialias import blur_size

        c, h, w = _spatial(shape, "blurpool")
        if (self.filt_size - 1 + self.stride - 1) // 2 >= min(h, w):
            raise ValueError(f"a {h}x{w} input is too small for reflect padding")
        return _check_size(c, blur_size(h, self.filt_size, self.stride), blur_size(w, self.filt_size, self.stride),
                           "blurpool", shape)

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        c, h, w = self.output_shape(shape)
        pad = (self.filt_size - 1 + self.stride - 1) // 2
        padded = shape[0] * (shape[1] + 2 * pad) * (shape[2] + 2 * pad)
        return Cost(0, c * h * w * self.filt_size ** 2, padded + c * h * w)


class AdaptiveAvgPool(LayerParams):
    """Average pooling to a fixed size (1 = global)."""

    output_size: int = Field(1, ge=1, le=1024, description="Square output size.")

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        return nn.AdaptiveAvgPool2d((self.output_size, self.output_size))

    def output_shape(self, shape: Shape) -> Shape:
        c, _, _ = _spatial(shape, "adaptive_avgpool")
        return (c, self.output_size, self.output_size)

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        return complexity.elementwise(_numel(self.output_shape(shape)))


class Flatten(LayerParams):
    """Flatten each sample to a vector."""

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        return nn.Flatten(1)

    def output_shape(self, shape: Shape) -> Shape:
        return (_numel(shape),)

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        return Cost()  # a view


class Linear(LayerParams):
    """Fully connected; in_features flow in."""

    features: int = Field(ge=1, le=1 << 24, description="Output features (classes for a classifier).")
    bias: bool = Field(True, description="Add a bias.")

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        return nn.Linear(shape[0], self.features, self.bias)

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) != 1:
            raise ValueError(f"linear needs a flat input but gets {list(shape)}; put a flatten layer before it")
        return (self.features,)

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        return complexity.linear(shape[0], self.features, self.bias)


class Dropout(LayerParams):
    """Dropout."""

    p: float = Field(0.5, ge=0, lt=1, description="Probability of zeroing an element.")

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        return nn.Dropout(self.p)

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        return Cost()  # identity in eval mode, where the summary measures


class Identity(LayerParams):
    """Does nothing (e.g. to drop a layer by override)."""

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        return nn.Identity()

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        return Cost()


class Sequential(LayerParams):
    """A group of layers as one child (timm's deep stem: conv1.0, conv1.1, ...)."""

    nested: ClassVar[bool] = True
    layers: list[Any] = Field(min_length=1, max_length=1000, description="The layers, in order.")

    def child_names(self) -> list[str]:
        """Each inner layer's child name: its own name, else its position (``0``, ``1``, ...)."""
        return [layer.name or str(i) for i, layer in enumerate(self.layers)]

    def build(self, shape: Shape, ctx: BuildContext) -> nn.Module:
        children = nn.Sequential()
        for name, layer in zip(self.child_names(), self.layers):
            children.add_module(name, layer.build(shape, ctx))
            shape = layer.output_shape(shape)
        return children

    def output_shape(self, shape: Shape) -> Shape:
        for i, layer in enumerate(self.layers):
            try:
                shape = layer.output_shape(shape)
            except ValueError as exc:
                raise ValueError(f"layers[{i}] ({layer.type}): {exc}") from None
        return shape

    def cost(self, shape: Shape, ctx: BuildContext) -> Cost:
        total = Cost()
        for layer in self.layers:
            total = total + layer.cost(shape, ctx)
            shape = layer.output_shape(shape)
        return total


BUILTIN_LAYERS: dict[str, type[LayerParams]] = {
    "conv": Conv,
    "batchnorm": BatchNorm,
    "groupnorm": GroupNorm,
    "norm": Norm,
    "act": Act,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "silu": SiLU,
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
