"""docs/api.md's dense-prediction examples, as written there: an archkit backbone at output stride 8 in
torchvision's DeepLabV3, and at its natural strides under torchvision's feature pyramid."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.segmentation import deeplabv3_resnet50
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
from torchvision.ops import FeaturePyramidNetwork

import archkit


class LastFeature(nn.Module):
    """torchvision's segmentation models read ``{"out": features}`` from their backbone."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.body = backbone

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.body(x)[-1]}


def test_deeplabv3_on_an_archkit_backbone_at_output_stride_8() -> None:
    backbone = archkit.create_model("resnet50", features_only=True, output_stride=8, out_indices=[4])
    model = DeepLabV3(LastFeature(backbone), DeepLabHead(backbone.feature_info.channels(-1), num_classes=21)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert model(x)["out"].shape == (1, 21, 64, 64)
    assert backbone.feature_info.reduction() == [8]
    # the backbone is torchvision's own DeepLabV3 backbone (resnet50, replace_stride_with_dilation=[F, T, T])
    reference = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21).backbone.eval()
    backbone.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(backbone.eval()(x)[-1], reference(x)["out"])


def test_a_feature_pyramid_over_archkit_backbones() -> None:
    for name, size in (("resnet50", 64), ("cspdarknet53", 64)):
        backbone = archkit.create_model(name, features_only=True, out_indices=[1, 2, 3, 4]).eval()
        fpn = FeaturePyramidNetwork(backbone.feature_info.channels(), out_channels=32).eval()
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            features = OrderedDict(zip(backbone.feature_info.module_name(), backbone(x)))
            pyramid = fpn(features)
        assert [tuple(p.shape[1:]) for p in pyramid.values()] == \
            [(32, size // r, size // r) for r in backbone.feature_info.reduction()]
