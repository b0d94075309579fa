"""Module names as data: a spec's ``layout:`` scheme and its stages' ``name:`` give the state_dict keys, and
everything that reads module paths (features, freezing, classifier, layer decay, summary) follows the plan.
The reference is torchvision's ResNet-18 under a key mapping written here, independently of archkit."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision

import archkit
from archkit.cli import main
from archkit.errors import SpecError

REGNET_KEYS = {"layout": {"like": "timm", "stages": "", "stage": "s{n}", "blocks": "", "block": "b{n}"}}  # timm's


def _regnet_style(key: str) -> str:
    """torchvision's ResNet key as timm's RegNet names its parts: stem.*, s1.b1.*, head.fc.*."""
    if key.startswith(("conv1.", "bn1.")):
        return f"stem.{key}"
    if key.startswith("fc."):
        return f"head.{key}"
    return re.sub(r"^layer(\d+)\.(\d+)\.", lambda m: f"s{m[1]}.b{int(m[2]) + 1}.", key)


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    return archkit.create_model("resnet18", **REGNET_KEYS).eval(), torchvision.models.resnet18().eval()


def test_a_layout_of_its_own_gives_its_keys_and_loads_torchvision_weights_by_them(pair) -> None:
    ours, reference = pair
    mapped = {_regnet_style(k): v for k, v in reference.state_dict().items()}
    assert list(ours.state_dict()) == list(mapped)  # same keys, same order
    ours.load_state_dict(mapped)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_everything_reading_module_paths_follows_the_layout(pair) -> None:
    ours, _ = pair
    assert ours.get_classifier() is ours.head.fc
    assert [d["module"] for d in ours.feature_info] == ["stem.relu", "s1", "s2", "s3", "s4"]
    backbone = archkit.create_model("resnet18", **REGNET_KEYS, features_only=True, out_indices=(2, 4))
    assert [f.shape[1] for f in backbone(torch.randn(1, 3, 64, 64))] == [128, 512]
    frozen = archkit.create_model("resnet18", **REGNET_KEYS, frozen_stages=1)
    trainable = {n.split(".")[0] for n, p in frozen.named_parameters() if p.requires_grad}
    assert trainable == {"s2", "s3", "s4", "head"}
    resized = archkit.create_model("resnet18", **REGNET_KEYS, num_classes=7)
    assert resized.head.fc.out_features == 7
    # layer-wise decay groups the same parameters as torchvision's names do (the default layout)
    default = archkit.create_model("resnet18")
    from archkit.optim import layer_ids as ids

    assert {_regnet_style(k): v for k, v in ids(default).items()} == ids(ours)


def test_stages_take_their_own_names(tmp_path, capsys) -> None:
    spec = tmp_path / "named.yaml"
    spec.write_text("base: resnet18\nname: named\nlayout: timm\nstages:\n"
                    "  - {name: early, planes: 64, depth: 2}\n  - {planes: 128, depth: 2, stride: 2}\n"
                    "  - {name: late, planes: 256, depth: 2, stride: 2}\n  - {planes: 512, depth: 2, stride: 2}\n")
    model = archkit.create_model(str(spec), device="meta")
    assert model.stage_names == ["stages.early", "stages.1", "stages.late", "stages.3"]
    assert "stages.early.blocks.1.conv2.weight" in model.state_dict()
    assert main(["build", str(spec), "--summary"]) == 0
    assert "\nstages.late " in capsys.readouterr().out


@pytest.mark.parametrize("override, where, message", [
    ("layout={stage: 'stage'}", "layout.stage", "names every stage the same"),
    ("stages.2.name=layer1", "stages[2].name", "stage 3 is named 'layer1', also stage 1's name"),
    ("stages.0.name=conv1", "stem[0].name", "'conv1' is the name of stage 1"),
    ("layout={stage: 's{x}'}", "layout.stage", "must match"),
    ("layout={head: 'state_dict'}", "layout", "'state_dict' is an attribute of torch.nn.Module"),
    ("layout={like: timmm}", "layout.like", None),
    ("stages.0.name=forward", "stages[0].name", "an attribute of torch.nn.Module"),
])
def test_bad_names_are_one_located_line(override: str, where: str, message: str | None, tmp_path, capsys) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("base: resnet18\nname: bad\n")
    assert main(["validate", str(spec), "--set", override]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and where in err, err
    assert message is None or message.lower() in err.lower(), err


# --- a block's children under names of its own (names:) ------------------------------------------------

BLOCK_NAMES = {"block.names": {"conv1": "conv_pw", "bn1": "bn_pw", "downsample": "shortcut"}}


def _block_names(key: str) -> str:
    """torchvision's ResNet-50 key with its bottlenecks' first conv, norm and downsample renamed."""
    key = re.sub(r"^(layer\d+\.\d+)\.conv1\.", r"\1.conv_pw.", key)
    key = re.sub(r"^(layer\d+\.\d+)\.bn1\.", r"\1.bn_pw.", key)
    return re.sub(r"^(layer\d+\.\d+)\.downsample\.", r"\1.shortcut.", key)


def test_a_blocks_children_take_the_names_the_spec_gives() -> None:
    reference = torchvision.models.resnet50().eval()
    ours = archkit.create_model("resnet50", **BLOCK_NAMES).eval()
    mapped = {_block_names(k): v for k, v in reference.state_dict().items()}
    assert list(ours.state_dict()) == list(mapped) and "conv1.weight" in mapped  # the stem's conv1 is no block's
    ours.load_state_dict(mapped)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_nested_children_and_zero_init_follow_the_names() -> None:
    import timm

    reference = timm.create_model("seresnet50").eval()
    names = {"se": "squeeze", "se.fc1": "conv_reduce", "se.fc2": "conv_expand"}
    ours = archkit.create_model("seresnet50", **{"block.names": names}).eval()
    rename = {".se.fc1.": ".squeeze.conv_reduce.", ".se.fc2.": ".squeeze.conv_expand."}
    mapped = {re.sub(r"\.se\.fc[12]\.", lambda m: rename[m[0]], k): v for k, v in reference.state_dict().items()}
    ours.load_state_dict(mapped)  # strict: every key renamed, none left
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))
    # zero_init_residual zeroes the renamed norm (timm's byob bottle marks conv3_1x1.bn)
    zeroed = archkit.create_model("eca_resnet33ts", **{"block.names": {"conv3_1x1": "c3", "conv3_1x1.bn": "norm"},
                                                       "init.zero_init_residual": True}, device="cpu")
    weights = [p for n, p in zeroed.named_parameters() if n.endswith("c3.norm.weight")]
    assert weights and all(bool((w == 0).all()) for w in weights)


@pytest.mark.parametrize("names, where, message", [
    ("{conv9: x}", "stages[0].block.names.conv9", "no bottleneck block of this network has a child 'conv9'"),
    ("{conv1: conv2}", "stages[0].block.names", "'conv1' and 'conv2' would both be named 'conv2'"),
    ("{conv1: 2x}", "block.names.conv1", "identifier"),
])
def test_bad_block_names_are_one_located_line(names: str, where: str, message: str, capsys) -> None:
    assert main(["validate", "resnet50", "--set", f"block.names={names}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and where in err and message in err, err


def test_renaming_downsample_is_fine_where_only_some_blocks_have_one(capsys) -> None:
    """ResNet-18's first stage has no shortcut module: the name applies where there is one."""
    model = archkit.create_model("resnet18", **{"block.names": {"downsample": "shortcut"}}, device="meta")
    assert "layer2.0.shortcut.0.weight" in model.state_dict() and "layer1.0.shortcut.0.weight" not in model.state_dict()
