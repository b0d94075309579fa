"""archkit-resnetd, found through its installed entry points."""

from __future__ import annotations

from pathlib import Path

import torch

import archkit
from archkit.registry import BLOCKS
from archkit.testing import check_block

SPEC = Path(__file__).resolve().parent.parent / "specs" / "resnet50d.yaml"


def test_discovered_with_distribution_and_version() -> None:
    for name in ("bottleneck_d", "basic_d"):
        assert BLOCKS.get(name).origin == "archkit-resnetd 0.1.0"


def test_block_contract() -> None:
    check_block(BLOCKS.get("bottleneck_d").obj)
    check_block(BLOCKS.get("basic_d").obj)


def test_resnet50d_matches_timm_parameter_count() -> None:
    model = archkit.build_model(SPEC, device="meta")
    # timm's resnet50d (timm 1.0.31, create_model('resnet50d')): 25,576,264 parameters
    assert sum(p.numel() for p in model.parameters()) == 25_576_264
    assert isinstance(model.layer2[0].downsample[0], torch.nn.AvgPool2d)
    assert not isinstance(model.layer1[0].downsample[0], torch.nn.AvgPool2d)  # stride 1: no pooling


def test_resnet50d_runs_on_odd_sizes() -> None:
    model = archkit.build_model(SPEC).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 65, 65)).shape == (1, 1000)
