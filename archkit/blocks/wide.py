"""Pre-activation wide basic block of Wide Residual Networks (Zagoruyko & Komodakis, 2016)."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from .base import Act, Block, BlockParams, Norm, conv1x1, conv3x3


class WideBasicParams(BlockParams):
    """Dropout between the two convolutions, as the WRN paper's "B(3,3) with dropout"."""

    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability between the 3x3 convolutions.")


class WideBasic(Block):
    """Pre-activation WRN block with dropout (WRN-d-k).

    BN-ReLU-conv3x3-dropout-BN-ReLU-conv3x3; a bare 1x1 conv shortcut when the shape changes.
    """

    Params = WideBasicParams
    expansion = 1

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, params: WideBasicParams, norm: Norm, act: Act):
        super().__init__()
        self.bn1 = norm(in_channels)
        self.relu1 = act()
        self.conv1 = conv3x3(in_channels, planes, stride, dilation=dilation)
        self.dropout = nn.Dropout(params.dropout)
        self.bn2 = norm(planes)
        self.relu2 = act()
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.downsample = downsample

    @classmethod
    def make_shortcut(cls, in_channels: int, out_channels: int, stride: int, dilation: int,
                      params: WideBasicParams, norm: Norm, act: Act) -> nn.Module:
        """A 1x1 convolution alone: it reads the already normalized, activated input."""
        return conv1x1(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(x))
        # When the shape changes the shortcut shares the pre-activation (as the authors' code does);
        # otherwise the identity carries the raw input.
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.dropout(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + shortcut
