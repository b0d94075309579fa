"""Variants along each design axis, checked against published figures and against timm's own models.

timm is a test-only reference here (archkit never imports it): its randomly initialized models give
the parameter counts, the state_dict keys archkit must reproduce, and the outputs to match.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision

import archkit
from archkit.nn.layers import ZeroPadShortcut
from archkit.nn.layers import DropPath
from archkit.plan import plan
from conftest import SPECS


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, expected", [
    ("cifar_resnet20", 269_722),  # He et al. 2016, Table 6: 0.27 M
    ("cifar_resnet56", 853_018),  # 0.85 M
])
def test_cifar_resnets_have_the_papers_parameter_counts(name: str, expected: int) -> None:
    model = archkit.build_model(SPECS / f"{name}.yaml", device="meta")
    assert count(model) == expected
    # option A adds no parameters: no shortcut has a weight
    assert not [n for n, _ in model.named_parameters() if "downsample" in n]


def test_zero_pad_shortcut_is_a_strided_identity_with_zero_channels() -> None:
    x = torch.randn(2, 16, 9, 9)
    out = ZeroPadShortcut(2, 16)(x)
    assert out.shape == (2, 32, 5, 5)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]) and not out[:, 16:].any()


def test_zero_pad_block_adds_the_padded_input_to_its_branch() -> None:
    model = archkit.build_model(SPECS / "cifar_resnet20.yaml").eval()
    block = model.layer2[0]
    x = torch.randn(2, 16, 8, 8)
    branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    expected = F.relu(branch + F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, 16)))
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected)


def test_plain34_is_resnet34_without_its_projection_shortcuts() -> None:
    reference = torchvision.models.resnet34()
    shortcuts = sum(p.numel() for n, p in reference.named_parameters() if "downsample" in n)
    model = archkit.build_model(SPECS / "plain34.yaml").eval()
    assert count(model) == count(reference) - shortcuts == 21_623_848
    block = model.layer2[0]  # stride 2 and 64 -> 128 channels, yet no shortcut at all
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        expected = F.relu(block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x))))))
        torch.testing.assert_close(block(x), expected)
    assert all(p.shortcut == "none" for p in plan(archkit.load_spec(SPECS / "plain34.yaml")).blocks)


@pytest.fixture(scope="module")
def probe() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 64)


@pytest.mark.parametrize("name, expected", [
    ("seresnet50", 28_088_024),
    ("resnet50d", 25_576_264),
    ("ecaresnet50d", 25_576_350),
])
def test_timm_models_load_strictly_and_give_equal_outputs(name: str, expected: int, probe) -> None:
    reference = timm.create_model(name).eval()
    model = archkit.build_model(SPECS / f"{name}.yaml").eval()
    assert count(model) == count(reference) == expected
    assert list(model.state_dict()) == list(reference.state_dict())  # same keys, same order
    model.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(model(probe), reference(probe))


@pytest.mark.parametrize("attn", ["cbam", "gc"])
def test_cbam_and_gc_follow_timm(attn: str, probe) -> None:
    reference = timm.create_model("resnet18", block_args={"attn_layer": attn}).eval()
    spec = archkit.load_spec(SPECS / "resnet18.yaml", [f"block.attn=[{{type: {attn}}}]"])
    model = archkit.build_model(spec).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        # train-mode BN in the spatial attention of timm's CBAM: run both on random running stats
        torch.testing.assert_close(model(probe), reference(probe), rtol=1e-5, atol=1e-5)


def test_resnetv2_50_matches_timm_parameter_count() -> None:
    with torch.device("meta"):
        reference = timm.create_model("resnetv2_50")
    model = archkit.build_model(SPECS / "resnetv2_50.yaml", device="meta")
    assert count(model) == count(reference) == 25_549_352


def test_preact_bottleneck_forward_is_norm_act_before_each_conv() -> None:
    model = archkit.build_model(SPECS / "resnetv2_50.yaml").eval()
    block = model.layer2[0]
    x = torch.randn(1, 256, 8, 8)
    with torch.no_grad():
        pre = F.relu(block.bn1(x))
        out = block.conv1(pre)
        out = block.conv2(F.relu(block.bn2(out)))
        out = block.conv3(F.relu(block.bn3(out)))
        torch.testing.assert_close(block(x), out + block.downsample(pre))


def test_drop_path_follows_timms_schedule_and_changes_nothing_in_eval(probe) -> None:
    spec = archkit.load_spec(SPECS / "resnet50.yaml", ["drop_path_rate=0.1", "seed=3"])
    model = archkit.build_model(spec)
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for stage in (model.layer1, model.layer2, model.layer3,
                                                                   model.layer4) for b in stage]
    reference = timm.create_model("resnet50", drop_path_rate=0.1)
    timm_rates = [getattr(b.drop_path, "drop_prob", 0.0) if b.drop_path is not None else 0.0
                  for stage in (reference.layer1, reference.layer2, reference.layer3, reference.layer4)
                  for b in stage]
    assert rates == timm_rates and len(rates) == 16
    assert rates[0] == 0.0 and model.layer1[0].drop_path is None  # no module at rate 0, as timm
    assert rates[-1] == pytest.approx(0.1) and rates[1] == pytest.approx(0.1 / 15)
    plain = archkit.build_model(archkit.load_spec(SPECS / "resnet50.yaml", ["seed=3"]))
    assert list(model.state_dict()) == list(plain.state_dict())
    assert count(model) == 25_557_032
    with torch.no_grad():
        assert torch.equal(model.eval()(probe), plain.eval()(probe))
        # in training, some residual branches are dropped: the output changes
        heavy = archkit.build_model(archkit.load_spec(SPECS / "resnet50.yaml", ["drop_path_rate=0.5", "seed=3"]))
        torch.manual_seed(0)
        x = torch.randn(8, 1024, 4, 4)
        assert not torch.equal(heavy.train().layer4(x), plain.train().layer4(x))


def test_drop_path_drops_whole_samples_and_rescales() -> None:
    torch.manual_seed(0)
    module = DropPath(0.5).train()
    out = module(torch.ones(64, 3, 2, 2))
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}  # kept samples scaled by 1 / keep
    assert (per_sample == per_sample[:, :1]).all()  # a sample is dropped whole
    assert 10 < int((per_sample[:, 0] == 0).sum()) < 54


def test_plan_labels_shortcuts_as_built() -> None:
    p = plan(archkit.load_spec(SPECS / "resnet50.yaml"))
    assert [b.shortcut for b in p.stages[0].blocks] == ["projection", "identity", "identity"]
    assert p.stages[1].blocks[0].stride == 2 and p.stages[1].blocks[0].in_size == (56, 56)
    assert p.stages[1].out_shapes[0] == (512, 28, 28) and p.output_shape == (1000,)
    darknet = plan(archkit.load_spec(SPECS / "resnet34.yaml", ["block.type=darknet"]))  # the torchvision-layout block
    assert [b.shortcut for b in darknet.stages[2].blocks] == ["stage_conv"] + ["identity"] * 5
    dilated = plan(archkit.load_spec(SPECS / "resnet50_dilated.yaml"))
    assert [b.dilation for b in dilated.stages[3].blocks] == [2, 4, 4]  # torchvision's rule
    model = archkit.build_model(SPECS / "resnet50.yaml", device="meta")
    for b in p.blocks:  # the built model is what the plan says
        module = model.get_submodule(b.name)
        assert (module.downsample is not None) == (b.shortcut == "projection")


@pytest.mark.parametrize("kind", ["projection", "avg_down", "zero_pad"])
def test_every_shortcut_kind_works_in_a_dilated_backbone(kind: str) -> None:
    spec = archkit.load_spec(SPECS / "resnet50_dilated.yaml", [f"block.shortcut={kind}", "input.size=[64, 64]"])
    model = archkit.build_model(spec).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_layer_names_never_drop_a_layer() -> None:
    # a default name must not take a name the spec gives to a later layer
    spec = {"name": "t", "stem": [{"type": "conv", "channels": 8}, {"type": "relu"},
                                  {"name": "relu", "type": "conv", "channels": 16}],
            "block": {"type": "basic"}, "stages": [{"planes": 16, "depth": 1}], "input": {"size": [16, 16]}}
    model = archkit.build_model(spec)
    assert [n for n, _ in model.named_children()][:3] == ["conv", "relu2", "relu"]
    assert isinstance(model.relu, torch.nn.Conv2d) and isinstance(model.relu2, torch.nn.ReLU)


def test_draw_labels_shortcuts_from_the_plan() -> None:
    from archkit import draw

    assert "no shortcuts (plain)" in draw.render(archkit.load_spec(SPECS / "plain34.yaml"))
    darknet = draw.render(archkit.load_spec(SPECS / "resnet34.yaml", ["block.type=darknet", "activation={type: "
                                                                      "leaky_relu, negative_slope: 0.1}"]))
    assert "1 stage_conv + 5 identity shortcuts" in darknet and "projection" not in darknet
    assert "leaky_relu(negative_slope=0.1)" in darknet  # norm and activation are shown
    backbone = draw.render(archkit.load_spec(SPECS / "resnet50.yaml", ["features_only=true"]))
    assert "layer4" in backbone and "fc" not in backbone.split("layer4")[1]
    assert "zero_pad" in draw.render(archkit.load_spec(SPECS / "cifar_resnet20.yaml"))
