"""DarkNet-53 residual block and its stage-opening strided conv (Redmon & Farhadi, YOLOv3)."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from .base import Act, Block, BlockParams, Norm


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> norm -> activation, DarkNet's unit."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, dilation: int,
                 norm: Norm, act: Act):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=False)
        self.bn = norm(out_channels)
        self.act = act()


class DarkNetParams(BlockParams):
    """The bottleneck ratio of the 1x1 convolution (DarkNet-53 halves the width)."""

    bottle_ratio: float = Field(0.5, gt=0.0, le=8.0, description="Width of the 1x1 conv relative to the output.")


class DarkNetBlock(Block):
    """1x1 to half width, 3x3 back, identity add (Darknet-53).

    Each conv is conv+norm+act; no activation after the add.
    """

    Params = DarkNetParams
    expansion = 1

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, params: DarkNetParams, norm: Norm, act: Act):
        super().__init__()
        mid = int(round(planes * params.bottle_ratio))
        if mid < 1:
            raise ValueError(f"planes {planes} x bottle_ratio {params.bottle_ratio} gives a width of 0")
        # The stage opens with a strided 3x3 conv; the residual then works at the new size.
        self.downsample = downsample
        self.conv1 = ConvNormAct(planes, mid, 1, 1, 1, norm, act)
        self.conv2 = ConvNormAct(mid, planes, 3, 1, dilation, norm, act)

    @classmethod
    def make_shortcut(cls, in_channels: int, out_channels: int, stride: int, dilation: int,
                      params: DarkNetParams, norm: Norm, act: Act) -> nn.Module:
        """DarkNet's stage-opening 3x3 conv with the stage's stride, run before the residual."""
        return ConvNormAct(in_channels, out_channels, 3, stride, dilation, norm, act)

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        return x + self.conv2(self.conv1(x))

    def zero_init_last(self) -> None:
        """Zero the last norm's scale so the block starts as identity."""
        if getattr(self.conv2.bn, "weight", None) is not None:
            nn.init.zeros_(self.conv2.bn.weight)
