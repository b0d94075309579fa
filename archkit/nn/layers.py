"""Torch modules for the primitives that are not plain ``torch.nn`` layers: stochastic depth, DropBlock,
blur pooling, the option-A shortcut, 'same' average pooling and LayerNorm over channels (timm's
semantics and state_dict keys: none for all but LayerNorm2d)."""

from __future__ import annotations

from math import comb

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DropBlock2d(nn.Module):
    """DropBlock (Ghiasi et al. 2018), as timm's ``DropBlock2d`` with its defaults: one spatial mask
    shared by all channels, blocks of ``block_size``, kept activations rescaled. Identity in eval mode.

    Draws the same random numbers in the same order as timm's, so seeded runs match it.
    """

    def __init__(self, drop_prob: float = 0.1, block_size: int = 7, gamma_scale: float = 1.0):
        super().__init__()
        self.drop_prob, self.block_size, self.gamma_scale = drop_prob, block_size, gamma_scale

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not self.drop_prob:
            return x
        b, _, h, w = x.shape
        kh, kw = min(self.block_size, h), min(self.block_size, w)
        gamma = self.gamma_scale * self.drop_prob * h * w / (kh * kw) / ((h - kh + 1) * (w - kw + 1))
        with torch.no_grad():
            seeds = torch.empty((b, 1, h, w), dtype=x.dtype, device=x.device).bernoulli_(gamma)
            block_mask = F.max_pool2d(seeds, kernel_size=(kh, kw), stride=1, padding=(kh // 2, kw // 2))
            if kh % 2 == 0 or kw % 2 == 0:  # an even block: max_pool2d's output is one larger
                block_mask = block_mask[..., (kh + 1) % 2:, (kw + 1) % 2:]
            keep = 1.0 - block_mask
            keep.mul_((keep.numel() / keep.to(torch.float32).sum().add(1e-7)).to(x.dtype))
        return x * keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}, gamma_scale={self.gamma_scale}"


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop a sample's residual branch with probability ``drop_prob``.

    Same semantics and attribute name as timm's ``DropPath`` (kept samples are scaled by 1/keep).
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class BlurPool2d(nn.Module):
    """Reflect padding, then a depthwise ``filt_size`` binomial blur with ``stride`` (timm's keys: none)."""

    def __init__(self, channels: int, filt_size: int = 3, stride: int = 2, constant: bool = False):
        super().__init__()
        self.pad_mode = "constant" if constant else "reflect"  # timm's pad_mode ('blurpc': constant)
        if filt_size < 2:
            raise ValueError(f"a blur filter needs at least 2 taps, got {filt_size}")
        self.channels, self.filt_size, self.stride = channels, filt_size, stride
        self.padding = [((stride - 1) + (filt_size - 1)) // 2] * 4
        self.register_buffer("filt", torch.empty(channels, 1, filt_size, filt_size), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Write the binomial filter (C(n, k) / 2^n, outer product), e.g. after ``to_empty``."""
        if self.filt.is_meta:
            return
        taps = torch.tensor([comb(self.filt_size - 1, k) for k in range(self.filt_size)], dtype=torch.float32)
        taps = taps / 2 ** (self.filt_size - 1)
        with torch.no_grad():
            self.filt.copy_((taps[:, None] * taps[None, :]).expand(self.channels, 1, -1, -1))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, self.padding, mode=self.pad_mode), self.filt, stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, filt_size={self.filt_size}, stride={self.stride}"


class ZeroPadShortcut(nn.Module):
    """Option A: keep every ``stride``-th pixel and append ``pad`` zero channels."""

    def __init__(self, stride: int, pad: int):
        super().__init__()
        self.stride = stride
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.pad)) if self.pad else x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad={self.pad}"


class AvgPoolSame(nn.Module):
    """2x2 average at stride 1 with 'same' padding (bottom/right), timm's ``AvgPool2dSame(2, 1)``:
    what ``avg_down`` does in a stage whose stride became dilation."""

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), 2, 1)


class EvoNorm2dS0a(nn.Module):
    """timm's ``EvoNorm2dS0a`` (same keys and arithmetic): ``x * sigmoid(v * x)`` (with ``apply_act``) over
    the group standard deviation, then ``weight`` and ``bias``."""

    def __init__(self, num_features: int, groups: int, eps: float = 1e-3, apply_act: bool = True):
        super().__init__()
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.empty(num_features))
        self.bias = nn.Parameter(torch.empty(num_features))
        self.v = nn.Parameter(torch.empty(num_features)) if apply_act else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        if self.v is not None:
            nn.init.ones_(self.v)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        dtype = x.dtype
        grouped = x.reshape(b, self.groups, c // self.groups, h, w)
        std = grouped.float().var(dim=(2, 3, 4), unbiased=False, keepdim=True).add(self.eps).sqrt().to(dtype)
        d = std.expand(grouped.shape).reshape(b, c, h, w)
        shape = (1, -1, 1, 1)
        if self.v is not None:
            x = x * (x * self.v.view(shape).to(dtype)).sigmoid()
        x = x / d
        return x * self.weight.view(shape).to(dtype) + self.bias.view(shape).to(dtype)


class EvoNorm2dS0(EvoNorm2dS0a):
    """timm's ``EvoNorm2dS0`` (same keys and arithmetic): S0a's with ``apply_act``; without it, only the scale and
    shift (timm's forward divides by the group deviation only with its activation)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.v is None:
            shape = (1, -1, 1, 1)
            return x * self.weight.view(shape).to(x.dtype) + self.bias.view(shape).to(x.dtype)
        return super().forward(x)


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm2d with its activation inside, as timm's ``BatchNormAct2d`` (same keys: the norm's;
    children ``drop`` and ``act``), so conv-norm-act units load timm's weights by name."""

    archkit_primitive = True  # one op of archkit.graph: tables do not list its children

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1, act: nn.Module | None = None,
                 drop: nn.Module | None = None):
        super().__init__(channels, eps, momentum)
        self.drop = drop if drop is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        # nn.BatchNorm2d's forward without its input-dimension check, as timm's: torch.fx traces it
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        stats = not self.training or self.track_running_stats
        x = F.batch_norm(x, self.running_mean if stats else None, self.running_var if stats else None, self.weight,
                         self.bias, bn_training, factor, self.eps)
        return self.act(self.drop(x))


class GroupNormAct(nn.GroupNorm):
    """GroupNorm with its activation inside, as timm's ``GroupNormAct`` (same keys: the norm's; children ``drop``
    and ``act``)."""

    archkit_primitive = True  # one op of archkit.graph: tables do not list its children

    def __init__(self, groups: int, channels: int, eps: float = 1e-5, act: nn.Module | None = None):
        super().__init__(groups, channels, eps)
        self.drop = nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.drop(F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)))


class GlobalResponseNorm(nn.Module):
    """ConvNeXt V2's global response normalization, as timm's ``GlobalResponseNorm`` (keys weight, bias)."""

    def __init__(self, channels: int, eps: float = 1e-6, channels_last: bool = True):
        super().__init__()
        self.eps = eps
        self.spatial_dim, self.channel_dim = ((1, 2), -1) if channels_last else ((2, 3), 1)
        self.wb_shape = (1, 1, 1, -1) if channels_last else (1, -1, 1, 1)
        self.weight = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        x_g = x.norm(p=2, dim=self.spatial_dim, keepdim=True)
        x_n = x_g / (x_g.mean(dim=self.channel_dim, keepdim=True) + self.eps)
        return x + torch.addcmul(self.bias.view(self.wb_shape), self.weight.view(self.wb_shape), x * x_n)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (timm's ``LayerNorm2d``)."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LayerNormAct2d(LayerNorm2d):
    """LayerNorm2d with its activation inside, as timm's ``LayerNormAct2d`` (keys the norm's; children ``drop``,
    ``act``)."""

    archkit_primitive = True  # one op of archkit.graph: tables do not list its children

    def __init__(self, channels: int, eps: float = 1e-5, act: nn.Module | None = None):
        super().__init__(channels, eps=eps)
        self.drop = nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.drop(super().forward(x)))


class RmsNorm2d(nn.Module):
    """RMS normalization over the channels of an NCHW map, a ``weight`` per channel (timm's ``RmsNorm2d``)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.normalized_shape, self.eps = (channels,), eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        x = x * torch.rsqrt(torch.mean(x.pow(2), dim=1, keepdim=True) + self.eps)
        return x * self.weight.reshape(1, -1, 1, 1)


class SimpleNorm2d(RmsNorm2d):
    """timm's ``SimpleNorm2d``: channels-last, ``x * rsqrt(var(x) + eps) * weight`` (uncentered), as timm computes it."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = x * torch.rsqrt(torch.var(x, dim=-1, keepdim=True) + self.eps)
        return (x * self.weight).permute(0, 3, 1, 2)


class LayerScale2d(nn.Module):
    """A learnable per-channel scale of an NCHW map (timm's ``LayerScale2d``: ``gamma``)."""

    def __init__(self, channels: int, init_values: float = 1e-5):
        super().__init__()
        self.init_values = init_values
        self.gamma = nn.Parameter(init_values * torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma.view(1, -1, 1, 1)


class CondConv2d(nn.Module):
    """timm's ``CondConv2d``: ``num_experts`` kernels (``weight``: one flat kernel per expert) mixed per sample by
    routing weights, run as one grouped conv over the batch; ``same``: TensorFlow's padding from the input's size."""

    fx_leaf = True  # its forward reshapes by the batch and input size: torch.fx keeps it one call (archkit.fuse)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, num_experts: int = 4, same: bool = False):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.num_experts, self.same = num_experts, same
        self.weight = nn.Parameter(torch.empty(num_experts, out_channels * (in_channels // groups) * kernel_size ** 2))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Each expert's kernel as PyTorch's conv default (timm's, per expert)."""
        if self.weight.is_meta:
            return
        shape = (self.out_channels, self.in_channels // self.groups, self.kernel_size, self.kernel_size)
        with torch.no_grad():
            for i in range(self.num_experts):
                kernel = torch.empty(shape)
                nn.init.kaiming_uniform_(kernel, a=5 ** 0.5)
                self.weight[i].copy_(kernel.flatten())

    def forward(self, x: Tensor, routing_weights: Tensor) -> Tensor:
        b, c, h, w = x.shape
        k = self.kernel_size
        weight = torch.matmul(routing_weights, self.weight)
        weight = weight.view(b * self.out_channels, self.in_channels // self.groups, k, k)
        x = x.reshape(1, b * c, h, w)
        if self.same:
            x = pad_same(x, (k, k), (self.stride, self.stride), (self.dilation, self.dilation))
        out = F.conv2d(x, weight, None, self.stride, 0 if self.same else self.padding, self.dilation,
                       self.groups * b)
        return out.permute([1, 0, 2, 3]).view(b, self.out_channels, out.shape[-2], out.shape[-1])


class Conv2dSame(nn.Conv2d):
    """TensorFlow's 'SAME' convolution (timm's ``Conv2dSame``): the input padded from its size, then a conv."""

    fx_leaf = True  # its padding is computed from the input's size: torch.fx keeps it one call (archkit.fuse)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(pad_same(x, self.kernel_size, self.stride, self.dilation), self.weight, self.bias,
                        self.stride, 0, self.dilation, self.groups)


def pad_same(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]) -> Tensor:
    """timm's ``pad_same``: TensorFlow's 'SAME' padding of ``x`` for a conv, more on the right and below."""
    ih, iw = x.shape[-2:]
    pad_h = max((-(-ih // stride[0]) - 1) * stride[0] + (kernel[0] - 1) * dilation[0] + 1 - ih, 0)
    pad_w = max((-(-iw // stride[1]) - 1) * stride[1] + (kernel[1] - 1) * dilation[1] + 1 - iw, 0)
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
