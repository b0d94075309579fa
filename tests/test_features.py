"""features_only backbones: channels and reductions, torchvision weights, torchvision's feature extractor."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from torchvision.models.feature_extraction import create_feature_extractor

import archkit
from archkit import SpecError
from conftest import SPECS


@pytest.mark.parametrize("name, channels, reductions", [
    ("resnet50", [256, 512, 1024, 2048], [4, 8, 16, 32]),
    ("resnet50_dilated", [256, 512, 1024, 2048], [4, 8, 8, 8]),
    ("darknet53", [64, 128, 256, 512, 1024], [2, 4, 8, 16, 32]),
])
def test_feature_info_and_shapes(name: str, channels: list, reductions: list) -> None:
    model = archkit.build_model(SPECS / f"{name}.yaml", features_only=True, device="meta")
    assert [f["num_chs"] for f in model.feature_info] == channels
    assert [f["reduction"] for f in model.feature_info] == reductions
    size = 64
    outs = model(torch.empty(1, 3, size, size, device="meta"))
    assert [(o.shape[1], size // o.shape[2]) for o in outs] == list(zip(channels, reductions))


def test_torchvision_weights_load_and_features_equal_torchvision_extractor() -> None:
    torch.manual_seed(0)
    reference = tvm.resnet50().eval()
    model = archkit.build_model(SPECS / "resnet50.yaml", features_only=True, out_indices=[0, 2, 4])
    result = model.load_state_dict(reference.state_dict(), strict=False)
    assert result.missing_keys == [] and sorted(result.unexpected_keys) == ["fc.bias", "fc.weight"]
    model.eval()
    extractor = create_feature_extractor(reference, {"relu": "0", "layer2": "2", "layer4": "4"})
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ours, theirs = model(x), extractor(x)
    assert [f["module"] for f in model.feature_info] == ["relu", "layer2", "layer4"]  # timm's: before the pool
    for a, key in zip(ours, ["0", "2", "4"]):
        assert torch.equal(a, theirs[key])
    assert "layer3" in dict(model.named_children()) and "fc" not in dict(model.named_children())
    stem_only = archkit.build_model(SPECS / "resnet50.yaml", features_only=True, out_indices=[0])
    assert list(dict(stem_only.named_children())) == ["conv1", "bn1", "relu"]  # nothing after the feature runs


def test_features_only_as_a_spec_key() -> None:
    spec = archkit.load_spec(SPECS / "resnet18.yaml", ["features_only=true", "out_indices=[1, 3]"])
    model = archkit.build_model(spec, device="meta")
    assert [f["module"] for f in model.feature_info] == ["layer1", "layer3"]
    assert "layer4" not in dict(model.named_children())  # nothing past the last output is built


@pytest.mark.parametrize("indices, fragment", [
    ([5], "5 is out of range: 0 is the stem's feature map, 1..4 the stages"),
    ([2, 1], "must be increasing without repeats"),
    ([], "must name at least one output"),
    (3, "must be a list of integers"),
])
def test_out_indices_are_validated(indices, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        archkit.build_model(SPECS / "resnet50.yaml", features_only=True, out_indices=indices, device="meta")


def test_out_indices_in_a_spec_point_at_the_line(write) -> None:
    path = write(f"base: {SPECS / 'resnet50.yaml'}\nname: f\nfeatures_only: true\nout_indices: [1, 7]\n")
    with pytest.raises(SpecError) as info:
        archkit.build_model(path, device="meta")
    assert str(info.value).startswith(f"{path}:4:1: out_indices: 7 is out of range")
