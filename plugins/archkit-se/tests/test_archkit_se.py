"""archkit-se, found through its installed entry point (not imported directly by the test)."""

from __future__ import annotations

import torch

import archkit
from archkit.catalog import BLOCKS
from archkit.testing import check_block

SPEC = "se_resnet50"  # shipped by the plugin through the archkit.specs entry point


def test_discovered_through_the_entry_point() -> None:
    entry = BLOCKS.get("se_bottleneck")
    assert entry.origin == "archkit-se 0.2.0" and entry.qualified == "archkit_se:se_bottleneck"
    assert BLOCKS.get("archkit_se:se_bottleneck").obj is entry.obj


def test_block_contract() -> None:
    assert BLOCKS.get("se_bottleneck").obj.describe is not None  # a description: costs for free, no torch
    check_block("se_bottleneck")
    check_block("se_bottleneck", {"reduction": 4, "groups": 2}, dilations=(1,))  # dilation: checked above


def test_se_resnet50_matches_timm_parameter_count() -> None:
    model = archkit.build_model(SPEC, device="meta")
    # timm's seresnet50 (timm 1.0.31, create_model('seresnet50')): 28,088,024 parameters
    assert sum(p.numel() for p in model.parameters()) == 28_088_024
    assert model.layer4[2].excite.fc1.out_channels == 2048 // 16


def test_se_resnet50_runs() -> None:
    model = archkit.build_model(SPEC).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
