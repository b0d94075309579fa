"""SE-ResNet's squeeze-and-excitation bottleneck (Hu et al., CVPR 2018), as timm's ``seresnet``."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from archkit.blocks.bottleneck import Bottleneck, BottleneckParams
from archkit.context import Context

__version__ = "0.1.0"


def make_divisible(value: float, divisor: int) -> int:
    """Round ``value`` down to a multiple of ``divisor`` (at least one divisor), as timm's SE width."""
    return max(divisor, int(value) // divisor * divisor)


class SEModule(nn.Module):
    """Squeeze (global average) -> 1x1 conv reduce -> ReLU -> 1x1 conv expand -> sigmoid gate."""

    def __init__(self, channels: int, reduced: int, act: nn.Module):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = act
        self.fc2 = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(scale))))


class SEParams(BottleneckParams):
    """Bottleneck width plus the SE reduction."""

    reduction: int = Field(16, ge=1, le=1024, description="Channel reduction inside the SE module (r).")
    divisor: int = Field(8, ge=1, le=256, description="Round the SE width to a multiple of this.")


class SEBottleneck(Bottleneck):
    """Bottleneck with squeeze-and-excitation (SE-ResNet).

    The residual is recalibrated by the SE module before the add.
    """

    Params = SEParams
    attn_positions = ("pre_add", "post_add")  # its forward has no slot for a spec's mid attention

    def __init__(self, in_channels: int, planes: int, *, params: SEParams, ctx: Context, **kwargs):
        super().__init__(in_channels, planes, params=params, ctx=ctx, **kwargs)
        channels = self.out_channels(planes, params)
        self.excite = SEModule(channels, make_divisible(channels / params.reduction, params.divisor), ctx.act())

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.drop_act_aa(self.bn2(self.conv2(out)))  # the parent's DropBlock and anti-aliasing slots
        out = self.excite(self.bn3(self.conv3(out)))
        # add_residual: the spec's own attention (attn:), drop path, the add unless shortcut: none
        return self.after_add(self.relu(self.add_residual(out, identity)))
