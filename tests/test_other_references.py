"""Specs checked against published figures: Darknet-53 (YOLOv3, timm's model card) and the WRN paper's WRN-28-10."""

from __future__ import annotations

import torch

import archkit
from archkit import summary
from conftest import SPECS


def _count(model: torch.nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


def test_darknet53_matches_timm_and_yolov3() -> None:
    spec = archkit.load_spec(SPECS / "darknet53.yaml")
    model = archkit.build_model(spec, device="meta")
    # timm's darknet53 model card: 41.6 M params, 9.3 GMACs at 256x256 (exact count 41,609,928 in timm)
    assert sum(p.numel() for p in model.parameters()) == 41_609_928
    assert round(summary.measure(spec).macs / 1e9, 1) == 9.3
    # YOLOv3 Table 1: 52 convolutional layers, then the classifier
    assert _count(model, torch.nn.Conv2d) == 52
    assert _count(model, torch.nn.Linear) == 1
    # timm's darknet53 (whose weights the spec declares) trained with LeakyReLU's default slope 0.01;
    # the YOLOv3 paper's network uses 0.1, a one-line variant: --set activation.negative_slope=0.1
    slopes = {m.negative_slope for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.01}


def test_wrn28_10_matches_the_paper() -> None:
    model = archkit.build_model(SPECS / "wrn28_10.yaml", device="meta")
    # Zagoruyko & Komodakis 2016, Table for CIFAR: WRN-28-10 has 36.5 M parameters
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 36.5
    # depth 28 = 6n + 4 with n = 4 blocks per stage: the stem 3x3 conv plus 2 x 12 block convs are 3x3;
    # every stage changes the width, so each has one 1x1 shortcut conv
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(m.kernel_size == (3, 3) for m in convs) == 25
    assert sum(m.kernel_size == (1, 1) for m in convs) == 3
    out = archkit.build_model(SPECS / "wrn28_10.yaml").eval()(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
